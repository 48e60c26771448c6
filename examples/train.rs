//! Trains LeNet-5 on the MNIST digits of `data/mnist` with burn-train and saves the weights as
//! a burnpack record, which `lenet-jacobian --weights` and `lenet5::import::load` read.
//!
//! ```sh
//! cargo run --release --example train --features train -- \
//!     --data data/mnist --epochs 10 --out models/lenet5-mnist.bpk [--backend flex|ndarray]
//! ```
//!
//! Prints each epoch's loss and accuracy on the training digits and on the held-out test
//! digits, then the final held-out accuracy. The record is written to a temporary file next
//! to `--out` and renamed into place: an interrupted run leaves no truncated file.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::AutodiffBackend;
use clap::{Parser, ValueEnum};
use lenet5::mnist::{accuracy, Mnist, Split};
use lenet5::train::{train, TrainingConfig};
use lenet5::LeNet5Backend;
use lenet_jacobian::output::AtomicFile;

/// Train LeNet-5 on MNIST digits and save the weights as a burnpack record (.bpk).
#[derive(Parser, Debug)]
struct Args {
    /// Directory with MNIST's IDX files (train-images-idx3-ubyte[.gz], t10k-..., labels).
    #[arg(long, default_value = "data/mnist")]
    data: PathBuf,
    /// Passes over the training digits.
    #[arg(long, default_value_t = TrainingConfig::new().num_epochs)]
    epochs: usize,
    /// Digits per optimisation step.
    #[arg(long, default_value_t = TrainingConfig::new().batch_size)]
    batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = TrainingConfig::new().learning_rate)]
    learning_rate: f64,
    /// Seed of the initial weights and of the order of the training digits.
    #[arg(long, default_value_t = TrainingConfig::new().seed)]
    seed: u64,
    /// Largest random translation of a training digit, in pixels along each axis (0 to 2).
    #[arg(long, default_value_t = TrainingConfig::new().max_shift)]
    max_shift: usize,
    /// Threads making batches (more than 1 makes the batch order, and the weights, vary
    /// between runs).
    #[arg(long, default_value_t = TrainingConfig::new().num_workers)]
    workers: usize,
    /// Weight lambda of the Jacobian penalty lambda / 2 * mean ||J||_F^2 added to the loss
    /// (0: plain training).
    #[arg(long, default_value_t = TrainingConfig::new().jacobian_penalty)]
    jacobian_penalty: f64,
    /// The penalty's norms from N random projections (Hoffman et al.), or 0 for every row of
    /// the Jacobian.
    #[arg(long, value_name = "N", default_value_t = TrainingConfig::new().penalty_projections)]
    penalty_projections: usize,
    /// Training digits held back to validate on (for choosing hyper-parameters), instead of
    /// evaluating the held-out test digits after each epoch.
    #[arg(long, value_name = "N", default_value_t = TrainingConfig::new().validation_digits)]
    validation_digits: usize,
    /// Where to write the trained weights (burnpack record).
    #[arg(long, default_value = "models/lenet5-mnist.bpk")]
    out: PathBuf,
    /// Directory for burn-train's metric logs and the configuration (default: a directory
    /// `lenet5-train` in the system's temporary directory).
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// Burn backend (flex: the faster CPU backend).
    #[arg(long, value_enum, default_value_t = BackendName::Flex)]
    backend: BackendName,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendName {
    Flex,
    Ndarray,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.backend {
        BackendName::Flex => run::<Autodiff<Flex>>(&args),
        BackendName::Ndarray => run::<Autodiff<NdArray>>(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run<B>(args: &Args) -> Result<(), Box<dyn Error>>
where
    B: AutodiffBackend,
    B::InnerBackend: LeNet5Backend,
{
    let config = TrainingConfig::new()
        .with_num_epochs(args.epochs)
        .with_batch_size(args.batch_size)
        .with_learning_rate(args.learning_rate)
        .with_seed(args.seed)
        .with_num_workers(args.workers)
        .with_max_shift(args.max_shift)
        .with_jacobian_penalty(args.jacobian_penalty)
        .with_penalty_projections(args.penalty_projections)
        .with_validation_digits(args.validation_digits);
    let artifacts = args
        .artifacts
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("lenet5-train"));
    // Before training: a bad --out is reported now, not after minutes of work (the temporary
    // file is made in --out's directory and renamed into place once the weights are written).
    let out = AtomicFile::create(&args.out).map_err(|e| e.one_line())?;

    let penalty = match (config.jacobian_penalty, config.penalty_projections) {
        (0.0, _) => "no Jacobian penalty".to_string(),
        (lambda, 0) => format!("Jacobian penalty {lambda} / 2 * mean ||J||_F^2 (exact)"),
        (lambda, n) => format!(
            "Jacobian penalty {lambda} / 2 * mean ||J||_F^2 (estimated from {n} random projection(s))"
        ),
    };
    let valid = match config.validation_digits {
        0 => "the held-out test digits".to_string(),
        n => format!("{n} training digits held back"),
    };
    println!(
        "training LeNet-5 on the MNIST digits of {} on {:?}: {} epochs, batches of {}, Adam with \
         learning rate {}, random shifts of up to {} pixels, {penalty}, seed {}, {} batch \
         worker(s); valid = {valid}; logs in {}",
        args.data.display(),
        args.backend,
        config.num_epochs,
        config.batch_size,
        config.learning_rate,
        config.max_shift,
        config.seed,
        config.num_workers,
        artifacts.display()
    );
    let device = B::Device::default();
    let start = Instant::now();
    let model = train::<B>(&config, &args.data, &artifacts, &device)?;
    let elapsed = start.elapsed().as_secs_f64();

    let test = Mnist::load(&args.data, Split::Test)?;
    let held_out = accuracy(&model, &test, 500, &device)?;
    println!("trained in {elapsed:.1} s; held-out test accuracy: {held_out}");

    let bytes = lenet5::import::to_burnpack_bytes(&model)?;
    out.write_all(&bytes).map_err(|e| e.one_line())?;
    out.commit().map_err(|e| e.one_line())?;
    println!("wrote {} ({} bytes)", args.out.display(), bytes.len());
    Ok(())
}
