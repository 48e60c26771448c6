//! The `lenet-jacobian` application: computes, explains and writes input Jacobians of LeNet-5
//! on a Burn backend chosen at run time. `main.rs` only calls [`main_with_args`].

pub mod backend;
pub mod bench;
pub mod cli;
pub mod compute;
pub mod error;
pub mod images;
pub mod model;
pub mod norms;
pub mod npy;
pub mod progress;
pub mod report;
pub mod saliency;

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
    // One line, whatever a dependency's message holds.
    let message = one_line(&e.to_string());
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

/// Memory the Jacobian may take: what the system reports available, less a margin for the
/// model and the backend.
fn max_jacobian_bytes() -> u64 {
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

/// The input batch a compute run asks for.
fn input_batch(args: &ComputeArgs) -> Result<Batch> {
    match &args.input {
        Some(path) => {
            let array = npy::read(path)?;
            let converted = array.converted_from_f64;
            let batch = Batch::from_array(path, &array.shape, array.values, args.allow_non_finite)?;
            // Only once the input is accepted: a failing run prints its error alone.
            if converted {
                eprintln!(
                    "note: {}: float64 values converted to float32",
                    path.display()
                );
            }
            Ok(batch)
        }
        None => Ok(Batch::random(args.batch as usize, args.seed)),
    }
}

fn compute(args: &ComputeArgs) -> Result<()> {
    // Checked before any work: a --saliency path that cannot be written fails at once.
    let saliency_file = args
        .saliency
        .as_deref()
        .map(npy::AtomicFile::create)
        .transpose()?;
    let (batch, names) = named_input_batch(args)?;
    let keep_first = match &saliency_file {
        Some(_) => saliency::rows(batch.len),
        None => 0,
    };
    let request = Request {
        backend: args.engine.backend,
        batch,
        weights: args.weights.clone(),
        seed: args.seed,
        save_weights: args.save_weights.clone(),
        layout: args.engine.layout(),
        output: args.output.clone(),
        config: args
            .engine
            .config()
            .with_max_bytes(Some(max_jacobian_bytes())),
        strategy: args.engine.strategy(),
        method: args.engine.method,
        norms: args.norms,
        keep_first,
    };
    let outcome = compute::compute(&request)?;
    print!(
        "{}",
        report::render(&outcome, args.engine.backend.name(), args.output.as_deref())
    );
    print_norms_and_write_saliency(&request, &outcome, names.as_deref(), saliency_file)
}

/// The input batch, with each sample's file name for `--images`.
fn named_input_batch(args: &ComputeArgs) -> Result<(Batch, Option<Vec<String>>)> {
    let Some(dir) = &args.images else {
        return Ok((input_batch(args)?, None));
    };
    let images = images::load_dir(dir)?;
    let shown = images.names.iter().take(saliency::MAX_ROWS);
    let shown: Vec<&str> = shown.map(String::as_str).collect();
    eprintln!(
        "note: {}: {} image(s) as samples 0.. in file-name order: {}{}",
        dir.display(),
        images.batch.len,
        shown.join(", "),
        if images.names.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    );
    Ok((images.batch, Some(images.names)))
}

/// `--norms`' table on stdout and `--saliency`'s PNG.
fn print_norms_and_write_saliency(
    request: &Request,
    outcome: &compute::Outcome,
    names: Option<&[String]>,
    saliency_file: Option<npy::AtomicFile>,
) -> Result<()> {
    let outputs = outcome.shape[1];
    if let Some(norms) = &outcome.norms {
        println!();
        print!("{}", norms::table(norms, outputs, lenet5::IMAGE_LEN, names));
    }
    if let (Some(file), Some(first)) = (saliency_file, &outcome.first) {
        let rows = first.samples();
        if rows < request.batch.len {
            eprintln!(
                "note: --saliency draws the first {rows} of the {} samples",
                request.batch.len
            );
        }
        let path = file.target().to_path_buf();
        let inputs = &request.batch.values[..rows * lenet5::IMAGE_LEN];
        saliency::write(file, inputs, first)?;
        println!(
            "saliency maps of {rows} sample(s) x {outputs} classes written to {}",
            path.display()
        );
    }
    Ok(())
}

fn bench(args: &BenchArgs) -> Result<()> {
    let bench = bench::Bench {
        backend: args.engine.backend,
        batch: args.batch as usize,
        layout: args.engine.layout(),
        repeats: args.repeats as usize,
        config: args.engine.config(),
        strategy: args.engine.strategy(),
        method: args.engine.method,
    };
    let timings = bench::run(&bench)?;
    if args.json {
        println!("{}", bench::json_line(&bench, &timings));
    } else {
        println!(
            "{} {} {} batch {} on {} ({}): min {:.4} s, median {:.4} s, max {:.4} s over {} runs",
            bench.layout,
            format!("{:?}", bench.method).to_lowercase(),
            format!("{:?}", bench.strategy).to_lowercase(),
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
