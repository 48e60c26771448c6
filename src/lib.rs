//! The `lenet-jacobian` application: computes, explains and writes input Jacobians of LeNet-5
//! on a Burn backend chosen at run time. `main.rs` only calls [`main`].
//!
//! - [`cli`]: the command line, turned into a [`run::Request`], a [`bench::Bench`], a
//!   [`robustness::Robustness`] or a [`hessian::HessianRequest`];
//! - [`input`]: the batch, from a `.npy` file, images or random, and its checks;
//! - [`run`]: the main job, on the backend of [`backend`] with the model of [`model`];
//! - [`robustness`]: accuracy under noise and attacks; [`hessian`]: input Hessians;
//! - [`output`]: every file written, atomically; [`report`]: what is printed;
//!   [`saliency`]: the maps; [`plot`]: charts; [`font`]: text in pictures;
//! - [`error`]: typed errors and their exit codes; [`panic`]: the panic guard.

pub mod backend;
pub mod bench;
pub mod cli;
pub mod error;
pub mod font;
pub mod hessian;
pub mod input;
pub mod matrix;
pub mod model;
pub mod output;
pub mod panic;
pub mod plot;
pub mod progress;
pub mod report;
pub mod robustness;
pub mod run;
pub mod saliency;

use std::ffi::OsString;
use std::process::ExitCode;

use crate::cli::Command;
use crate::error::{Error, Result};

/// Parses `args` (program name first), runs, prints, and returns the exit code. Every error,
/// a panic included, is one line on stderr.
pub fn main<I: IntoIterator<Item = OsString>>(args: I) -> ExitCode {
    panic::install_quiet_hook();
    let result = panic::quietly(|| -> Result<()> {
        match cli::parse(args)? {
            Command::Compute(request) => {
                let request = run::Request {
                    config: request
                        .config
                        .clone()
                        .with_max_bytes(Some(available_memory())),
                    ..*request
                };
                run::run(&request)
            }
            Command::Bench(bench) => bench::run(&bench),
            Command::Robustness(request) => robustness::run(&request),
            Command::Hessian(request) => hessian::run(&request),
            Command::Done => Ok(()),
        }
    })
    .unwrap_or_else(|panic| Err(Error::Panic(panic)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.one_line());
            ExitCode::from(e.exit_code())
        }
    }
}

/// Memory the Jacobian may take: what the system reports available, less a margin for the
/// model and the backend.
fn available_memory() -> u64 {
    let available_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        });
    match available_kib {
        Some(kib) => kib * 1024 * 3 / 4,
        None => 4 << 30,
    }
}
