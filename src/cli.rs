//! The command line: the only module that knows clap. It turns the arguments into a
//! [`run::Request`] or a [`bench::Bench`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jacobian::{JacobianConfig, Layout, Strategy};

use crate::backend::BackendKind;
use crate::bench::Bench;
use crate::error::{Error, Result};
use crate::hessian::HessianRequest;
use crate::input::Source;
use crate::model::Stated;
use crate::robustness::{Robustness, ADVERSARIAL_EPS};
use crate::run::{Method, Normalize, Request, Saliency};
use crate::saliency::Target;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Compute, write and explain a Jacobian.
    Compute(Box<Request>),
    /// Time the computation.
    Bench(Bench),
    /// Measure robustness.
    Robustness(Box<Robustness>),
    /// Compute input Hessians.
    Hessian(Box<HessianRequest>),
    /// Nothing more: clap printed the help or the version.
    Done,
}

/// Parses `args` (program name first).
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return Ok(Command::Done);
        }
        Err(e) => return Err(Error::Usage(one_line(&e.render().to_string()))),
    };
    match cli.command {
        Some(Subcommands::Bench(args)) => args.bench().map(Command::Bench),
        Some(Subcommands::Robustness(args)) => {
            args.robustness().map(|r| Command::Robustness(Box::new(r)))
        }
        Some(Subcommands::Hessian(args)) => Ok(Command::Hessian(Box::new(args.request()))),
        None => cli.compute.request().map(|r| Command::Compute(Box::new(r))),
    }
}

/// clap's several-line error as one line.
fn one_line(rendered: &str) -> String {
    let line = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

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
struct Cli {
    /// A subcommand; without one, computes a Jacobian.
    #[command(subcommand)]
    command: Option<Subcommands>,
    /// What to compute.
    #[command(flatten)]
    compute: ComputeArgs,
}

#[derive(Debug, Subcommand)]
enum Subcommands {
    /// Time the Jacobian computation alone (after a warm-up; no process start, no file I/O).
    Bench(BenchArgs),
    /// Measure robustness on labelled digits: clean accuracy, Jacobian norms, accuracy under
    /// Gaussian noise and white-box FGSM and PGD attacks (their gradients from the Jacobians);
    /// several models side by side.
    Robustness(RobustnessArgs),
    /// The input Hessian of one logit, per sample, by differentiating the Jacobian once more
    /// (what torch.autograd.functional.hessian gives).
    Hessian(HessianArgs),
}

/// Options shared by computing and benchmarking.
#[derive(Debug, Args, Clone)]
struct EngineArgs {
    /// Backend to run on.
    #[arg(long, value_enum, default_value_t = BackendArg::Ndarray)]
    backend: BackendArg,
    /// Layout of the Jacobian: torch's full layout, or the per-sample batch diagonal.
    #[arg(long, value_enum, default_value_t = LayoutArg::Full)]
    layout: LayoutArg,
    /// How the Jacobian is computed: LeNet-5's own (one forward pass and a hand-written
    /// backward sweep: fused kernels on the CPU backends, tensor ops on the wgpu device), or
    /// Burn's autodiff through the general engine (the reference; tested equal).
    #[arg(long, value_enum, default_value_t = MethodArg::Analytic)]
    method: MethodArg,
    /// How --method autodiff gathers per-sample rows: all outputs in one stacked pass, or one
    /// pass per output.
    #[arg(long, value_enum, default_value_t = StrategyArg::Stacked)]
    strategy: StrategyArg,
    /// Samples per chunk (the full layout: chunk-size / batch output samples, at least one):
    /// bounds memory; outputs are written chunk by chunk.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: u64,
}

impl EngineArgs {
    fn config(&self) -> JacobianConfig {
        JacobianConfig::new()
            .with_chunk_size(Some(self.chunk_size as usize))
            .with_with_outputs(true)
    }
}

/// The architecture, where the weights do not say it.
#[derive(Debug, Args, Clone)]
struct ArchitectureArgs {
    /// The activation after each convolution and hidden linear layer (a PyTorch state_dict
    /// does not record it; ONNX files and the tool's own records do). Default: tanh, the
    /// question's LeNet5.
    #[arg(long, value_enum)]
    activation: Option<ActivationArg>,
    /// The 2 x 2 pooling after each convolution (not recorded in a state_dict either).
    /// Default: avg.
    #[arg(long, value_enum)]
    pooling: Option<PoolingArg>,
    /// Zero padding of the first convolution: 0 for 32 x 32 input, 2 for 28 x 28 (d2l's
    /// LeNet). The input side is 32 - 2 x N. Default: 0.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=lenet5::model::config::MAX_PADDING as u64))]
    padding: Option<u64>,
}

impl ArchitectureArgs {
    fn stated(&self) -> Stated {
        Stated {
            activation: self.activation.map(Into::into),
            pooling: self.pooling.map(Into::into),
            padding: self.padding.map(|p| p as usize),
        }
    }
}

/// Where the input batch comes from (without any: random).
#[derive(Debug, Args, Clone)]
struct InputArgs {
    /// Input batch: a float32 .npy array of shape [N, C, H, W], the model's input (float64 is
    /// converted), or an MNIST IDX images file such as t10k-images-idx3-ubyte.gz (plain or
    /// gzip; 28 x 28 digits are centred in the model's input, padded to 32 x 32), told apart
    /// by their first bytes.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// The labels of --input: for an IDX images file, an IDX labels file (by default the one
    /// beside it, t10k-labels-idx1-ubyte[.gz] beside t10k-images-idx3-ubyte[.gz], if any); for
    /// a .npy input, a .npy array of N integer class indices.
    #[arg(long, value_name = "FILE", requires = "input")]
    labels: Option<PathBuf>,
    /// Input batch: the PNG and JPEG files (*.png, *.jpg, *.jpeg) of a directory, in file-name
    /// order, other files ignored. Each is converted to grayscale (RGB for a 3-channel model)
    /// with values in [0, 1]; a 28 x 28 image (an MNIST digit) is padded with 2 zero pixels on
    /// every side to 32 x 32, as LeNet-5 expects; other sizes are resized to the model's input
    /// (triangle filter, aspect ratio not kept). A file named like 7_0003.png (a number, then
    /// an underscore) is labelled 7.
    #[arg(long, value_name = "DIR", conflicts_with = "input")]
    images: Option<PathBuf>,
}

impl InputArgs {
    /// The source: the file, the directory, or `batch` random images from `seed`.
    fn source(self, batch: u64, seed: u64) -> Source {
        match (self.input, self.images) {
            (Some(path), _) => Source::File {
                path,
                labels: self.labels,
            },
            (None, Some(dir)) => Source::Images(dir),
            (None, None) => Source::Random {
                batch: batch as usize,
                seed,
            },
        }
    }
}

/// `--normalize`.
#[derive(Debug, Args, Clone)]
struct NormalizeArgs {
    /// Standardise the input as the model was trained: it sees (x - MEAN) / STD per channel,
    /// as torchvision's Normalize(mean, std), and the Jacobian is with respect to the pixels
    /// x. Two values (a mean and a std for every channel), or the C means then the C stds,
    /// comma-separated: --normalize 0.1307,0.3081 for MNIST.
    #[arg(long, value_name = "MEAN,STD", value_delimiter = ',', num_args = 1.., allow_negative_numbers = true)]
    normalize: Option<Vec<f32>>,
}

impl NormalizeArgs {
    fn normalize(&self) -> Result<Option<Normalize>> {
        self.normalize.as_deref().map(Normalize::parse).transpose()
    }
}

/// Measuring robustness.
#[derive(Debug, Args)]
struct RobustnessArgs {
    /// Backend to run on.
    #[arg(long, value_enum, default_value_t = BackendArg::Ndarray)]
    backend: BackendArg,
    /// A model's weights (any format --weights takes); repeat it to put models side by side.
    #[arg(long, value_name = "FILE", required = true)]
    weights: Vec<PathBuf>,
    /// The architecture, where the weights do not say it (the same for every model).
    #[command(flatten)]
    architecture: ArchitectureArgs,
    /// The labelled digits: --input with its labels (IDX, or .npy with --labels), or --images
    /// named by label.
    #[command(flatten)]
    input: InputArgs,
    /// The input standardisation the models were trained with (perturbations stay of the
    /// pixels in [0, 1]).
    #[command(flatten)]
    normalize: NormalizeArgs,
    /// Seed of the Gaussian noise.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Samples per chunk of Jacobians (bounds memory).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: u64,
    /// Print the measurements as one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Draw accuracy against the perturbation's size (one curve per attack and model) as a PNG.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// Write the FGSM images (float32 .npy, the input's shape) at --adversarial-eps.
    #[arg(long, value_name = "FILE.npy")]
    adversarial: Option<PathBuf>,
    /// The L-inf budget of the images --adversarial writes.
    #[arg(long, value_name = "EPS", default_value_t = ADVERSARIAL_EPS, requires = "adversarial")]
    adversarial_eps: f32,
}

impl RobustnessArgs {
    fn robustness(self) -> Result<Robustness> {
        if self.input.input.is_none() && self.input.images.is_none() {
            return Err(Error::Usage(
                "robustness needs labelled digits: --input FILE (IDX with its labels, or .npy \
                 with --labels) or --images DIR (files named <label>_<name>.png)"
                    .into(),
            ));
        }
        if !(self.adversarial_eps.is_finite() && self.adversarial_eps >= 0.0) {
            return Err(Error::Usage(format!(
                "--adversarial-eps {}: expected a number >= 0",
                self.adversarial_eps
            )));
        }
        Ok(Robustness {
            backend: self.backend.into(),
            weights: self.weights,
            stated: self.architecture.stated(),
            normalize: self.normalize.normalize()?,
            input: self.input.source(1, self.seed),
            seed: self.seed,
            chunk_size: self.chunk_size as usize,
            json: self.json,
            plot: self.plot,
            adversarial: self.adversarial.map(|path| (path, self.adversarial_eps)),
        })
    }
}

/// Computing input Hessians.
#[derive(Debug, Args)]
struct HessianArgs {
    /// Backend to run on.
    #[arg(long, value_enum, default_value_t = BackendArg::Ndarray)]
    backend: BackendArg,
    /// Weights (any format the main command takes). Default: seeded, untrained.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// The architecture, where the weights do not say it.
    #[command(flatten)]
    architecture: ArchitectureArgs,
    /// The input batch.
    #[command(flatten)]
    input: InputArgs,
    /// Samples of the random input when no --input is given.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Seed of the random input and of the weights when no --input / --weights are given.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// The logit whose Hessian is computed.
    #[arg(long, value_name = "K")]
    class: usize,
    /// Write the Hessians, float32 [N, C, H, W, C, H, W], as .npy.
    #[arg(long, value_name = "FILE.npy")]
    output: Option<PathBuf>,
    /// Rows of a Hessian given by one backward pass (bounds memory).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: u64,
}

impl HessianArgs {
    fn request(self) -> HessianRequest {
        HessianRequest {
            backend: self.backend.into(),
            weights: self.weights,
            seed: self.seed,
            stated: self.architecture.stated(),
            input: self.input.source(self.batch, self.seed),
            class: self.class,
            output: self.output,
            chunk_size: self.chunk_size as usize,
        }
    }
}

/// Computing a Jacobian.
#[derive(Debug, Args)]
struct ComputeArgs {
    /// Backend, layout and engine options.
    #[command(flatten)]
    engine: EngineArgs,
    /// The architecture, where the weights do not say it.
    #[command(flatten)]
    architecture: ArchitectureArgs,
    /// Samples of the random input (uniform in [0, 1), like torch.rand) when no --input is given.
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Seed of the random input and of the weights when no --input / --weights are given.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// The input batch.
    #[command(flatten)]
    input: InputArgs,
    /// The logits PyTorch gave for the same input, float32 [N, classes] .npy: the model's own
    /// forward pass is checked against them before anything is computed (exit 4 on a
    /// mismatch, naming the variant that would match, if any).
    #[arg(long, value_name = "FILE.npy")]
    reference_logits: Option<PathBuf>,
    /// The input standardisation the model was trained with.
    #[command(flatten)]
    normalize: NormalizeArgs,
    /// Proceed even when the input or the weights hold NaN or Inf values (the report then says
    /// how many entries of the Jacobian are not finite, and where).
    #[arg(long)]
    allow_non_finite: bool,
    /// Weights: a PyTorch state_dict or training checkpoint (.pt/.pth; the layers are found by
    /// their shapes, whatever their names), a .safetensors file, an ONNX export (.onnx, its
    /// graph saying the architecture), or a burnpack record (.bpk). Default: seeded, untrained.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Save the model's weights: a burnpack record (.bpk, Burn's, with the architecture), or
    /// SafeTensors in PyTorch's layout (.safetensors: the question's module's keys, [out, in]
    /// Linear weights, the architecture in its metadata), both loadable with --weights.
    #[arg(long, value_name = "FILE")]
    save_weights: Option<PathBuf>,
    /// Write the Jacobian as a float32 C-order .npy file (numpy.load reads it).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print each sample's Frobenius norm and spectral norm (largest singular value) of its
    /// 10 x 1024 Jacobian.
    #[arg(long)]
    norms: bool,
    /// Write the logits, float32 [N, classes], as .npy.
    #[arg(long, value_name = "FILE.npy")]
    logits: Option<PathBuf>,
    /// Draw saliency maps |J| as a PNG: one row per sample (the first 16), the input, the maps
    /// of the --target classes, the label (L) and the predicted class (P) with its
    /// probability; each row scaled by its largest |J|.
    #[arg(long, value_name = "FILE.png")]
    saliency: Option<PathBuf>,
    /// The classes whose maps --saliency draws: every class (the predicted one framed green,
    /// or red when it is not the label, the label blue), the predicted class, or the label.
    #[arg(long, value_enum, default_value_t = TargetArg::All, requires = "saliency")]
    target: TargetArg,
    /// Draw J itself (blue negative, red positive) rather than |J|.
    #[arg(long, requires = "saliency")]
    signed: bool,
    /// Draw the full layout (--layout full, at most 32 samples) as the (B x O) by
    /// (B x C x H x W) matrix it is, |J| on a log scale: the two batch axes, and the zero
    /// blocks off the diagonal, at a glance.
    #[arg(long, value_name = "FILE.png")]
    matrix: Option<PathBuf>,
}

impl ComputeArgs {
    fn request(self) -> Result<Request> {
        if let Some(path) = &self.save_weights {
            let extension = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if !matches!(extension.as_deref(), Some("bpk" | "safetensors")) {
                return Err(Error::Usage(format!(
                    "--save-weights {}: expected a .bpk (burnpack) or .safetensors file name",
                    path.display()
                )));
            }
        }
        let normalize = self.normalize.normalize()?;
        let input = self.input.source(self.batch, self.seed);
        Ok(Request {
            backend: self.engine.backend.into(),
            stated: self.architecture.stated(),
            reference_logits: self.reference_logits,
            normalize,
            input,
            allow_non_finite: self.allow_non_finite,
            weights: self.weights,
            seed: self.seed,
            save_weights: self.save_weights,
            layout: self.engine.layout.into(),
            output: self.output,
            config: self.engine.config(),
            strategy: self.engine.strategy.into(),
            method: self.engine.method.into(),
            norms: self.norms,
            logits: self.logits,
            saliency: self.saliency.map(|path| Saliency {
                path,
                target: self.target.into(),
                signed: self.signed,
            }),
            matrix: self.matrix,
        })
    }
}

/// Benchmarking.
#[derive(Debug, Args)]
struct BenchArgs {
    /// Backend, layout and engine options.
    #[command(flatten)]
    engine: EngineArgs,
    /// The architecture of the (seeded) model timed.
    #[command(flatten)]
    architecture: ArchitectureArgs,
    /// Samples in the batch.
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Timed runs after the warm-up.
    #[arg(long, value_name = "R", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    repeats: u64,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Time, instead of the engine, the plain Burn forward and backward passes reverse mode
    /// needs (the batch stacked once per class, per chunk): what the engine adds is the
    /// difference. Per-sample layout only.
    #[arg(long)]
    plain_pass: bool,
}

impl BenchArgs {
    fn bench(self) -> Result<Bench> {
        let layout = Layout::from(self.engine.layout);
        if self.plain_pass && layout != Layout::PerSample {
            return Err(Error::Usage(
                "--plain-pass times the passes of the per-sample layout: add --layout per-sample"
                    .into(),
            ));
        }
        Ok(Bench {
            backend: self.engine.backend.into(),
            stated: self.architecture.stated(),
            batch: self.batch as usize,
            layout,
            repeats: self.repeats as usize,
            config: self.engine.config(),
            strategy: self.engine.strategy.into(),
            method: self.engine.method.into(),
            plain_pass: self.plain_pass,
            json: self.json,
        })
    }
}

/// `--backend` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// Burn's ndarray CPU backend.
    Ndarray,
    /// Burn's wgpu backend (a GPU, or Mesa's software Vulkan driver without one).
    Wgpu,
    /// Burn's flex CPU backend (faster than ndarray on CPU).
    Flex,
}

impl From<BackendArg> for BackendKind {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Ndarray => BackendKind::Ndarray,
            BackendArg::Wgpu => BackendKind::Wgpu,
            BackendArg::Flex => BackendKind::Flex,
        }
    }
}

/// `--activation` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ActivationArg {
    /// tanh (the question's LeNet5, the classic paper's).
    Tanh,
    /// ReLU (PyTorch's tutorial Net, CIFAR-10 LeNets).
    Relu,
    /// The logistic sigmoid (d2l's LeNet).
    Sigmoid,
}

impl From<ActivationArg> for lenet5::Activation {
    fn from(arg: ActivationArg) -> Self {
        match arg {
            ActivationArg::Tanh => lenet5::Activation::Tanh,
            ActivationArg::Relu => lenet5::Activation::Relu,
            ActivationArg::Sigmoid => lenet5::Activation::Sigmoid,
        }
    }
}

/// `--pooling` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PoolingArg {
    /// Average of each 2 x 2 window.
    Avg,
    /// Maximum of each 2 x 2 window.
    Max,
}

impl From<PoolingArg> for lenet5::Pooling {
    fn from(arg: PoolingArg) -> Self {
        match arg {
            PoolingArg::Avg => lenet5::Pooling::Avg,
            PoolingArg::Max => lenet5::Pooling::Max,
        }
    }
}

/// `--layout` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LayoutArg {
    /// `[B, O, B, 1, 32, 32]`, as torch.autograd.functional.jacobian.
    Full,
    /// `[B, O, 1, 32, 32]`, the batch diagonal (einsum "bibj->bij").
    PerSample,
}

impl From<LayoutArg> for Layout {
    fn from(arg: LayoutArg) -> Self {
        match arg {
            LayoutArg::Full => Layout::Full,
            LayoutArg::PerSample => Layout::PerSample,
        }
    }
}

/// `--method` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    /// Burn's autodiff through the general engine.
    Autodiff,
    /// LeNet-5's own Jacobian (its backend extension).
    Analytic,
}

impl From<MethodArg> for Method {
    fn from(arg: MethodArg) -> Self {
        match arg {
            MethodArg::Autodiff => Method::Autodiff,
            MethodArg::Analytic => Method::Analytic,
        }
    }
}

/// `--strategy` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StrategyArg {
    /// The batch repeated once per output: one forward and one backward pass in all.
    Stacked,
    /// One forward and one backward pass per output.
    PerOutput,
}

impl From<StrategyArg> for Strategy {
    fn from(arg: StrategyArg) -> Self {
        match arg {
            StrategyArg::Stacked => Strategy::StackedOutputs,
            StrategyArg::PerOutput => Strategy::PerOutput,
        }
    }
}

/// `--target` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TargetArg {
    /// Every class.
    All,
    /// The predicted class.
    Predicted,
    /// The label.
    Label,
}

impl From<TargetArg> for Target {
    fn from(arg: TargetArg) -> Self {
        match arg {
            TargetArg::All => Target::All,
            TargetArg::Predicted => Target::Predicted,
            TargetArg::Label => Target::Label,
        }
    }
}
