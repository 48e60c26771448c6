//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jacobian::{JacobianConfig, Layout, Strategy};

use crate::backend::BackendKind;
pub use crate::compute::Method;

/// Input Jacobians of LeNet-5 on Burn: torch's full layout (B, O, B, 1, 32, 32) and the
/// per-sample layout (B, O, 1, 32, 32), on a backend chosen at run time.
///
/// With no options it answers the question "why does torch.autograd.functional.jacobian of a
/// LeNet5 on 12 images have shape (12, 10, 12, 1, 32, 32)?": it computes that Jacobian for a
/// random batch of 12 and explains each axis.
#[derive(Debug, Parser)]
#[command(
    name = "lenet-jacobian",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A subcommand; without one, computes a Jacobian.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// What to compute.
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Time the Jacobian computation alone (after a warm-up; no process start, no file I/O).
    Bench(BenchArgs),
}

/// Options shared by computing and benchmarking.
#[derive(Debug, Args, Clone)]
pub struct EngineArgs {
    /// Backend to run on.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
    /// Layout of the Jacobian: torch's full layout, or the per-sample batch diagonal.
    #[arg(long, value_enum, default_value_t = LayoutArg::Full)]
    pub layout: LayoutArg,
    /// How per-sample rows are gathered: all outputs in one stacked pass, or one pass per output.
    #[arg(long, value_enum, default_value_t = StrategyArg::Stacked)]
    pub strategy: StrategyArg,
    /// How the Jacobian is computed: Burn's autodiff engine, or LeNet-5's specialised path (one
    /// forward pass and a hand-written backward sweep on the host CPU, whatever the backend;
    /// tested equal to autodiff).
    #[arg(long, value_enum, default_value_t = Method::Autodiff)]
    pub method: Method,
    /// Samples per chunk of the per-sample computation (bounds memory).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_size: u64,
}

impl EngineArgs {
    /// The engine's options.
    pub fn config(&self) -> JacobianConfig {
        JacobianConfig::new()
            .with_chunk_size(Some(self.chunk_size as usize))
            .with_with_outputs(true)
    }

    /// How reverse mode gathers rows.
    pub fn strategy(&self) -> Strategy {
        match self.strategy {
            StrategyArg::Stacked => Strategy::StackedOutputs,
            StrategyArg::PerOutput => Strategy::PerOutput,
        }
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        match self.layout {
            LayoutArg::Full => Layout::Full,
            LayoutArg::PerSample => Layout::PerSample,
        }
    }
}

/// Computing a Jacobian.
#[derive(Debug, Args)]
pub struct ComputeArgs {
    /// Backend, layout and engine options.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Samples of the random input (uniform in [0, 1), like torch.rand) when no --input is given.
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Seed of the random input and of the weights when no --input / --weights are given.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Input batch: a float32 .npy array of shape [N, 1, 32, 32] (float64 is converted).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Input batch: the PNG and JPEG files (*.png, *.jpg, *.jpeg) of a directory, in file-name
    /// order, other files ignored. Each is converted to grayscale with values in [0, 1]; a
    /// 28 x 28 image (an MNIST digit) is padded with 2 zero pixels on every side to 32 x 32,
    /// as LeNet-5 expects; other sizes are resized to 32 x 32 (triangle filter, aspect ratio
    /// not kept).
    #[arg(long, value_name = "DIR", conflicts_with = "input")]
    pub images: Option<PathBuf>,
    /// Proceed even when the input holds NaN or Inf values.
    #[arg(long)]
    pub allow_non_finite: bool,
    /// Weights: a PyTorch state_dict (.pt/.pth), a .safetensors file, or a burnpack record (.bpk).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Save the model's weights as a burnpack record (.bpk), loadable with --weights.
    #[arg(long, value_name = "FILE")]
    pub save_weights: Option<PathBuf>,
    /// Write the Jacobian as a float32 C-order .npy file (numpy.load reads it).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print each sample's Frobenius norm and spectral norm (largest singular value) of its
    /// 10 x 1024 Jacobian.
    #[arg(long)]
    pub norms: bool,
    /// Draw per-class saliency maps |J| as a PNG: one row per sample (the first 16), the
    /// input then one tile per class, each row scaled by its largest |J|.
    #[arg(long, value_name = "FILE.png")]
    pub saliency: Option<PathBuf>,
}

/// Benchmarking.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Backend, layout and engine options.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Samples in the batch.
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Timed runs after the warm-up.
    #[arg(long, value_name = "R", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    pub repeats: u64,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--layout` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// `[B, O, B, 1, 32, 32]`, as torch.autograd.functional.jacobian.
    Full,
    /// `[B, O, 1, 32, 32]`, the batch diagonal (einsum "bibj->bij").
    PerSample,
}

/// `--strategy` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// The batch repeated once per output: one forward and one backward pass in all.
    Stacked,
    /// One forward and one backward pass per output.
    PerOutput,
}
