//! The `lenet-jacobian` application: computes, explains and writes input Jacobians of LeNet-5
//! on a Burn backend chosen at run time. `main.rs` only calls [`main_with_args`].

pub mod backend;
pub mod bench;
pub mod cli;
pub mod compute;
pub mod error;
pub mod model;
pub mod npy;
pub mod progress;
pub mod report;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{BenchArgs, Cli, Command, ComputeArgs};
use crate::compute::Request;
use crate::error::{AppError, Result};
use crate::model::Batch;

/// Parses `args` (program name first), runs, prints, and returns the exit code.
pub fn main_with_args<I: IntoIterator<Item = OsString>>(args: I) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&AppError::Usage(one_line(&e.render().to_string()))),
    };
    let result = match cli.command {
        Some(Command::Bench(args)) => bench(&args),
        None => compute(&cli.compute),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &AppError) -> ExitCode {
    let message = e.to_string();
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("error: {message}");
    e.exit_code()
}

/// clap's several-line error as one line.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Memory the full layout may take: what the system reports available, less a margin for
/// the model and the backend.
fn max_full_bytes() -> u128 {
    let available_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u128>().ok())
        });
    match available_kib {
        Some(kib) => kib * 1024 * 3 / 4,
        None => 4 << 30,
    }
}

/// The input batch a compute run asks for.
fn input_batch(args: &ComputeArgs) -> Result<Batch> {
    match &args.input {
        Some(path) => {
            let array = npy::read(path)?;
            if array.converted_from_f64 {
                eprintln!(
                    "note: {}: float64 values converted to float32",
                    path.display()
                );
            }
            Batch::from_array(path, &array.shape, array.values, args.allow_non_finite)
        }
        None => Ok(Batch::random(args.batch as usize, args.seed)),
    }
}

fn compute(args: &ComputeArgs) -> Result<()> {
    let request = Request {
        backend: args.engine.backend,
        batch: input_batch(args)?,
        weights: args.weights.clone(),
        seed: args.seed,
        save_weights: args.save_weights.clone(),
        layout: args.engine.layout(),
        output: args.output.clone(),
        config: args.engine.config(),
        max_full_bytes: max_full_bytes(),
    };
    let outcome = compute::compute(&request)?;
    print!(
        "{}",
        report::render(&outcome, args.engine.backend.name(), args.output.as_deref())
    );
    Ok(())
}

fn bench(args: &BenchArgs) -> Result<()> {
    let bench = bench::Bench {
        backend: args.engine.backend,
        batch: args.batch as usize,
        layout: args.engine.layout(),
        repeats: args.repeats as usize,
        config: args.engine.config(),
    };
    let timings = bench::run(&bench)?;
    if args.json {
        println!("{}", bench::json_line(&bench, &timings));
    } else {
        println!(
            "{} {} batch {} on {} ({}): min {:.4} s, median {:.4} s, max {:.4} s over {} runs",
            bench.layout,
            format!("{:?}", bench.config.strategy).to_lowercase(),
            bench.batch,
            bench.backend,
            timings.device,
            timings.min(),
            timings.median(),
            timings.max(),
            timings.seconds.len()
        );
    }
    Ok(())
}
