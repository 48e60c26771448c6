//! The main job: read the input, compute a LeNet-5 input Jacobian in the layout asked for on
//! the backend asked for, write what was asked, and report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use jacobian::{
    frobenius_norm, spectral_norm, Chunk, Differentiable, Jacobian, JacobianConfig, Layout,
    Magnitudes, ReverseMode, SinkError, Standardized, Strategy,
};
use lenet5::{Activation, LeNet5, LeNet5Backend, Pooling};

use crate::backend::{run_on, BackendJob, BackendKind};
use crate::error::{Error, Result};
use crate::input::{self, Batch};
use crate::model::{Model, Stated};
use crate::output::npy::NpyFile;
use crate::output::{self, AtomicFile};
use crate::progress::Progress;
use crate::{matrix, report, saliency};

/// Logits that agree with `--reference-logits` within this fraction of the largest of them:
/// the agreement of a float32 forward pass with PyTorch's, with a wide margin, and far below
/// what another activation or pooling changes.
pub const REFERENCE_TOLERANCE: f64 = 1e-4;

/// Samples whose full Jacobian is measured to show the off-diagonal blocks in per-sample runs.
pub const OFF_DIAGONAL_PROBE: usize = 4;

/// How the Jacobian is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The general engine: Burn's autodiff, per output or with stacked outputs.
    Autodiff,
    /// LeNet-5's specialised path: one forward pass and a hand-written backward sweep, on the
    /// backend's device (fused host kernels on the CPU backends).
    Analytic,
}

/// LeNet-5 as the engine takes it, computed by `method`; its Jacobians are tensors of the
/// inner backend, on the model's device.
pub fn differentiable<'a, B>(
    model: &'a LeNet5<B>,
    method: Method,
    strategy: Strategy,
) -> Box<dyn Differentiable<B::InnerBackend, 4> + 'a>
where
    B: AutodiffBackend,
    B::InnerBackend: LeNet5Backend,
{
    match method {
        Method::Autodiff => {
            Box::new(ReverseMode::new(move |x| model.forward(x)).with_strategy(strategy))
        }
        Method::Analytic => Box::new(model.valid()),
    }
}

/// `--normalize`: the model sees `(x - mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    /// One mean for every channel, or one per channel.
    pub mean: Vec<f32>,
    /// As many standard deviations.
    pub std: Vec<f32>,
}

impl Normalize {
    /// `MEAN,STD` or the C means then the C standard deviations.
    pub fn parse(values: &[f32]) -> Result<Self> {
        if values.is_empty() || !values.len().is_multiple_of(2) {
            return Err(Error::Usage(format!(
                "--normalize takes a mean and a standard deviation, or the C means then the C \
                 standard deviations: {} value(s) given",
                values.len()
            )));
        }
        let (mean, std) = values.split_at(values.len() / 2);
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::Usage(format!(
                "--normalize: standard deviation {s} is not a positive number"
            )));
        }
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(Error::Usage(format!(
                "--normalize: mean {m} is not a number"
            )));
        }
        Ok(Normalize {
            mean: mean.to_vec(),
            std: std.to_vec(),
        })
    }

    /// Refuses per-channel values for another number of channels than the model's.
    pub fn check(&self, channels: usize) -> Result<()> {
        if self.mean.len() == 1 || self.mean.len() == channels {
            return Ok(());
        }
        Err(Error::Usage(format!(
            "--normalize gives {} means and standard deviations, and the model takes {channels} \
             channel(s): give one of each, or {channels} of each",
            self.mean.len()
        )))
    }
}

/// What to compute and where to write it: everything the command line says.
#[derive(Clone, Debug)]
pub struct Request {
    /// Backend to run on.
    pub backend: BackendKind,
    /// The architecture, as the command line states it.
    pub stated: Stated,
    /// PyTorch's logits for the input, to check the model's forward pass against.
    pub reference_logits: Option<PathBuf>,
    /// The model's input standardisation.
    pub normalize: Option<Normalize>,
    /// Where the input batch comes from.
    pub input: input::Source,
    /// Proceed when the input holds NaN or Inf.
    pub allow_non_finite: bool,
    /// Weights file; seeded weights when `None`.
    pub weights: Option<PathBuf>,
    /// Seed of the weights when no file is given.
    pub seed: u64,
    /// Where to save the model's weights (`.bpk` or `.safetensors`).
    pub save_weights: Option<PathBuf>,
    /// Layout of the Jacobian.
    pub layout: Layout,
    /// Where to write the Jacobian (`.npy`).
    pub output: Option<PathBuf>,
    /// Engine options.
    pub config: JacobianConfig,
    /// How reverse mode gathers rows (`--method autodiff`).
    pub strategy: Strategy,
    /// How the Jacobian is computed.
    pub method: Method,
    /// Compute and print each sample's norms (`--norms`).
    pub norms: bool,
    /// Where to write the logits (`--logits`).
    pub logits: Option<PathBuf>,
    /// Where to draw the saliency maps (`--saliency`), of which classes, signed or not.
    pub saliency: Option<Saliency>,
    /// Where to draw the full layout as a matrix (`--matrix`).
    pub matrix: Option<PathBuf>,
}

/// `--saliency FILE.png`, `--target`, `--signed`.
#[derive(Clone, Debug)]
pub struct Saliency {
    /// The PNG to write.
    pub path: PathBuf,
    /// Which classes' maps.
    pub target: saliency::Target,
    /// `J` through a diverging map rather than `|J|`.
    pub signed: bool,
}

/// The norms of one sample's Jacobian matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleNorms {
    /// `sqrt(sum J[k, i]^2)`.
    pub frobenius: f64,
    /// The largest singular value: the largest amplification of a small input change.
    pub spectral: f64,
}

impl SampleNorms {
    /// The norms of one sample's `outputs x input_len` Jacobian matrix, row-major.
    pub fn of(matrix: &[f32], outputs: usize) -> Self {
        SampleNorms {
            frobenius: frobenius_norm(matrix),
            spectral: spectral_norm(matrix, outputs),
        }
    }
}

/// What was computed, for the report.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Layout computed.
    pub layout: Layout,
    /// The shape of one input sample.
    pub input_dims: [usize; 3],
    /// How the forward pass compared with `--reference-logits`: the largest difference over
    /// the largest reference logit.
    pub reference: Option<f64>,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The sizes of its entries.
    pub magnitudes: Magnitudes,
    /// The off-diagonal blocks, measured: the full layout's own, or (per-sample runs) those of
    /// the full Jacobian of the first [`OFF_DIAGONAL_PROBE`] samples; and over how many samples.
    pub off_diagonal: (Magnitudes, usize),
    /// Time spent computing the Jacobian (not loading or writing).
    pub elapsed: Duration,
    /// Each sample's norms, when [`Request::norms`] is set.
    pub norms: Option<Vec<SampleNorms>>,
    /// The per-sample Jacobian of the first samples, for the saliency maps (`None` when none
    /// is drawn).
    pub first: Option<Jacobian>,
    /// The whole full layout on the host, for `--matrix` (`None` otherwise).
    pub full: Option<Jacobian>,
    /// The logits, `[batch, classes]` row-major.
    pub logits: Vec<f32>,
}

impl Outcome {
    /// Classes per sample.
    pub fn classes(&self) -> usize {
        self.shape[1]
    }

    /// Each sample's predicted class and its probability (the softmax of its logits).
    pub fn predictions(&self) -> Vec<(usize, f32)> {
        self.logits
            .chunks_exact(self.classes())
            .map(|logits| {
                let (class, &top) = logits
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .expect("at least one class");
                let total: f32 = logits.iter().map(|&l| (l - top).exp()).sum();
                (class, 1.0 / total)
            })
            .collect()
    }
}

/// The job run on the chosen backend: the request, the model and its input batch.
struct Job<'a> {
    request: &'a Request,
    model: &'a Model,
    batch: &'a Batch,
    /// `--reference-logits`, read.
    reference: Option<&'a [f32]>,
    /// What to tell the user on stderr once the input is accepted (the model's forward pass
    /// checked against the reference logits, when given).
    notes: Vec<String>,
    /// Samples, from the first, whose per-sample Jacobian is kept for the saliency maps.
    keep_first: usize,
}

impl BackendJob for &Job<'_> {
    type Output = Outcome;

    fn run<B>(self, device: B::Device) -> Result<Outcome>
    where
        B: AutodiffBackend,
        B::InnerBackend: LeNet5Backend,
    {
        let request = self.request;
        // Input Jacobians never need the weights' gradients: skip computing them.
        let model = self.model.on::<B>(&device)?.no_grad();
        let base = differentiable(&model, request.method, request.strategy);
        let standardized = match &request.normalize {
            Some(n) => Some(
                Standardized::new(base.as_ref(), n.mean.clone(), n.std.clone())
                    .map_err(|e| Error::Usage(format!("--normalize: {e}")))?,
            ),
            None => None,
        };
        let f: &dyn Differentiable<B::InnerBackend, 4> = match &standardized {
            Some(g) => g,
            None => base.as_ref(),
        };
        let x = self.batch.to_tensor::<B::InnerBackend>(&device);
        let reference = match self.reference {
            Some(reference) => Some(self.check_reference(&model, f, x.clone(), reference)?),
            None => None,
        };
        for note in &self.notes {
            eprintln!("note: {note}");
        }
        let mut outcome = self.jacobian(f, x)?;
        outcome.reference = reference;
        Ok(outcome)
    }
}

impl Job<'_> {
    /// The model's logits against PyTorch's: their largest difference over the largest
    /// reference logit, or the error saying by how much they differ and which variant of the
    /// family would give them.
    fn check_reference<B>(
        &self,
        model: &LeNet5<B>,
        f: &dyn Differentiable<B::InnerBackend, 4>,
        x: Tensor<B::InnerBackend, 4>,
        reference: &[f32],
    ) -> Result<f64>
    where
        B: AutodiffBackend,
        B::InnerBackend: LeNet5Backend,
    {
        let deviation = |logits: Tensor<B::InnerBackend, 2>| {
            let logits = to_host(logits);
            let scale = reference
                .iter()
                .fold(0f64, |m, &v| m.max(f64::from(v).abs()));
            let worst = logits.iter().zip(reference).fold(0f64, |m, (&a, &b)| {
                m.max((f64::from(a) - f64::from(b)).abs())
            });
            (worst, worst / scale.max(f64::MIN_POSITIVE))
        };
        let (worst, relative) = deviation(f.forward(x.clone()));
        if relative <= REFERENCE_TOLERANCE {
            return Ok(relative);
        }
        let config = model.config();
        let mut matching = Vec::new();
        for activation in Activation::ALL {
            for pooling in Pooling::ALL {
                if (activation, pooling) == (config.activation, config.pooling) {
                    continue;
                }
                let other = model.clone().with_layers(activation, pooling).valid();
                let logits = match &self.request.normalize {
                    Some(n) => Standardized::new(&other, n.mean.clone(), n.std.clone())
                        .map_err(|e| Error::Usage(e.to_string()))?
                        .forward(x.clone()),
                    None => other.forward(x.clone()),
                };
                if deviation(logits).1 <= REFERENCE_TOLERANCE {
                    matching.push(format!("--activation {activation} --pooling {pooling}"));
                }
            }
        }
        Err(Error::ReferenceMismatch {
            path: self.request.reference_logits.clone().unwrap_or_default(),
            worst,
            relative,
            computed: format!(
                "{} activation, {} pooling",
                config.activation, config.pooling
            ),
            matching,
        })
    }
}

fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32")
}

/// What the chunks of a run leave: the file, the sizes, the norms, the first samples.
struct Collector {
    input_dims: [usize; 3],
    output: Option<NpyFile>,
    logits: Vec<f32>,
    magnitudes: Magnitudes,
    norms: Option<Vec<SampleNorms>>,
    keep_first: usize,
    first: Option<Jacobian>,
    /// The full layout's chunks gathered, for `--matrix`.
    full: Option<Jacobian>,
    progress: Progress,
}

impl Collector {
    /// Takes a chunk from the engine: the one place where a chunk leaves the device.
    fn take<B: Backend, const R: usize>(&mut self, mut chunk: Chunk<B, R>) -> Result<()> {
        if let Some(logits) = chunk.outputs.take() {
            self.logits.extend(
                logits
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("converted to f32"),
            );
        }
        let chunk = Jacobian::from_chunk(chunk, &self.input_dims);
        self.magnitudes.merge(&chunk.magnitudes());
        if let Some(output) = self.output.as_mut() {
            output.write(&chunk.values)?;
        }
        if let Some(full) = self.full.as_mut() {
            full.values.extend_from_slice(&chunk.values);
            full.shape[0] += chunk.samples();
        }
        let outputs = chunk.num_outputs();
        if let Some(norms) = self.norms.as_mut() {
            norms.extend(
                (0..chunk.samples()).map(|i| SampleNorms::of(&chunk.sample_matrix(i), outputs)),
            );
        }
        let wanted = self
            .keep_first
            .saturating_sub(chunk.start)
            .min(chunk.samples());
        if wanted > 0 {
            let first = self.first.get_or_insert_with(|| Jacobian {
                layout: Layout::PerSample,
                start: 0,
                shape: Layout::PerSample.shape(0, outputs, &self.input_dims),
                values: Vec::new(),
            });
            for i in 0..wanted {
                first.values.extend(chunk.sample_matrix(i));
            }
            first.shape[0] += wanted;
        }
        self.progress.advance(chunk.samples() as u64);
        Ok(())
    }
}

impl Job<'_> {
    /// Computes (and writes) the Jacobian of `f` at `x`, streamed chunk by chunk.
    fn jacobian<B: Backend>(
        &self,
        f: &dyn Differentiable<B, 4>,
        x: Tensor<B, 4>,
    ) -> Result<Outcome> {
        let request = self.request;
        let (batch, dims) = (self.batch.len, self.batch.dims);
        let outputs = f.forward(x.clone().narrow(0, 0, 1)).dims()[1];
        let shape = request.layout.shape(batch, outputs, &dims);
        request.check_full_fits(batch, outputs, dims)?;
        let output = match &request.output {
            Some(path) => Some(NpyFile::create(path, &shape)?),
            None => None,
        };
        let mut collector = Collector {
            input_dims: dims,
            output,
            logits: Vec::with_capacity(batch * outputs),
            magnitudes: Magnitudes::default(),
            norms: request.norms.then(Vec::new),
            keep_first: self.keep_first.min(batch),
            first: None,
            full: request.matrix.as_ref().map(|_| Jacobian {
                layout: Layout::Full,
                start: 0,
                shape: Layout::Full.shape(0, outputs, &dims),
                values: Vec::new(),
            }),
            progress: Progress::new(batch as u64, "samples"),
        };
        let start = Instant::now();
        let mut failure = None;
        let mut sink = |result: Result<()>| -> std::result::Result<(), SinkError> {
            result.map_err(|e| {
                let message = e.one_line();
                failure = Some(e);
                message.into()
            })
        };
        let config = &request.config;
        let streamed = match request.layout {
            Layout::PerSample => jacobian::per_sample_chunks(f, x.clone(), config, |chunk| {
                sink(collector.take(chunk))
            }),
            Layout::Full => {
                jacobian::full_chunks(f, x.clone(), config, |chunk| sink(collector.take(chunk)))
            }
        };
        if let Err(e) = streamed {
            return Err(failure.take().unwrap_or_else(|| e.into()));
        }
        let elapsed = start.elapsed();
        collector.progress.finish();
        let off_diagonal = match request.layout {
            Layout::Full => (collector.magnitudes.clone(), batch),
            // Measured, not assumed: the full Jacobian of the first few samples.
            Layout::PerSample => {
                let probe = batch.min(OFF_DIAGONAL_PROBE);
                let mut magnitudes = Magnitudes::default();
                jacobian::full_chunks(f, x.narrow(0, 0, probe), config, |chunk| {
                    magnitudes.merge(&Jacobian::from_chunk(chunk, &dims).magnitudes());
                    Ok(())
                })?;
                (magnitudes, probe)
            }
        };
        // Last, so that a failure above leaves no output behind.
        if let Some(output) = collector.output.take() {
            output.commit()?;
        }
        Ok(Outcome {
            layout: request.layout,
            input_dims: dims,
            reference: None,
            shape,
            magnitudes: collector.magnitudes,
            off_diagonal,
            elapsed,
            norms: collector.norms,
            first: collector.first,
            full: collector.full,
            logits: collector.logits,
        })
    }
}

impl Request {
    /// The full layout is streamed, but offered only when the whole would fit in memory: past
    /// that, its B^2 x O rows take hours to days, and the per-sample layout holds the same
    /// information for LeNet-5.
    fn check_full_fits(&self, batch: usize, outputs: usize, dims: [usize; 3]) -> Result<()> {
        let limit = match (self.layout, self.config.max_bytes) {
            (Layout::Full, Some(limit)) => limit,
            _ => return Ok(()),
        };
        let bytes = Layout::Full.bytes(batch, outputs, &dims);
        if bytes <= u128::from(limit) {
            return Ok(());
        }
        Err(Error::FullTooLarge {
            shape: jacobian::python_shape(&Layout::Full.shape(batch, outputs, &dims)),
            bytes,
            available: u128::from(limit),
            per_sample_bytes: Layout::PerSample.bytes(batch, outputs, &dims),
        })
    }
}

/// Runs the main job: reads the input, computes, writes and reports on stdout; notes go to
/// stderr, only once the input is accepted (a failing run prints its error alone).
pub fn run(request: &Request) -> Result<()> {
    // Checked before any work: an output that cannot be written fails at once, and no output
    // is committed until everything else succeeded.
    let saliency_file = request
        .saliency
        .as_ref()
        .map(|s| AtomicFile::create(&s.path))
        .transpose()?;
    let logits_file = request
        .logits
        .as_deref()
        .map(AtomicFile::create)
        .transpose()?;
    let model = Model::load(
        request.weights.as_deref(),
        request.seed,
        request.stated,
        request.allow_non_finite,
    )?;
    let config = model.config();
    if let Some(normalize) = &request.normalize {
        normalize.check(config.in_channels)?;
    }
    let (batch, notes) = input::load(
        &request.input,
        config.input_dims(),
        request.allow_non_finite,
    )?;
    if let Some(s) = &request.saliency {
        check_labels_for(s.target, &batch)?;
    }
    let matrix_file = match &request.matrix {
        Some(path) => {
            if request.layout != Layout::Full || batch.len > matrix::MAX_SAMPLES {
                return Err(Error::Usage(format!(
                    "--matrix draws the full layout of at most {} samples: add --layout full, \
                     with --batch (or an input) of {} samples or fewer",
                    matrix::MAX_SAMPLES,
                    matrix::MAX_SAMPLES
                )));
            }
            Some(AtomicFile::create(path)?)
        }
        None => None,
    };
    let reference = request
        .reference_logits
        .as_deref()
        .map(|path| input::reference_logits(path, batch.len, config.num_classes))
        .transpose()?;
    // Encoded now, and its directory checked; written only once everything else succeeded.
    let save_weights = match &request.save_weights {
        Some(path) => Some((AtomicFile::create(path)?, model.encode_as(path)?)),
        None => None,
    };
    let mut notes: Vec<String> = notes.into_iter().chain(model.notes.clone()).collect();
    // Logits checked against PyTorch's confirm what was assumed; without them, say it.
    if reference.is_none() {
        notes.extend(report::assumption_note(&model));
    }
    let job = Job {
        request,
        model: &model,
        batch: &batch,
        reference: reference.as_deref(),
        notes,
        keep_first: match &saliency_file {
            Some(_) => saliency::rows(batch.len),
            None => 0,
        },
    };
    let outcome = run_on(request.backend, &job)?;
    print!("{}", report::render(&outcome, request, &model));
    println!();
    print!("{}", report::samples_table(&outcome, &batch));
    if let Some(file) = logits_file {
        let shape = [batch.len, outcome.classes()];
        let mut npy = crate::output::npy::NpyFile::from_atomic(file, &shape)?;
        npy.write(&outcome.logits)?;
        npy.commit()?;
    }
    if let (Some(file), Some(first), Some(options)) =
        (saliency_file, &outcome.first, &request.saliency)
    {
        let rows = first.samples();
        if rows < batch.len {
            eprintln!(
                "note: --saliency draws the first {rows} of the {} samples",
                batch.len
            );
        }
        let predictions = outcome.predictions();
        let samples: Vec<saliency::Sample> = batch
            .first(rows)
            .chunks_exact(batch.sample_len())
            .zip(&batch.labels)
            .zip(predictions)
            .map(
                |((input, &label), (predicted, probability))| saliency::Sample {
                    input,
                    label,
                    predicted,
                    probability,
                },
            )
            .collect();
        let path = file.target().to_path_buf();
        let image = saliency::render(&samples, first, options.target, options.signed);
        output::write_png(file, &image)?;
        let channels = match batch.dims[0] {
            1 => String::new(),
            c => format!(" (each pixel's entry of largest |J| over its {c} channels)"),
        };
        println!(
            "saliency maps of {rows} sample(s) written to {}{channels}",
            path.display()
        );
    }
    if let (Some(file), Some(full)) = (matrix_file, &outcome.full) {
        let path = file.target().to_path_buf();
        output::write_png(file, &matrix::render(full))?;
        println!("the full layout drawn as a matrix in {}", path.display());
    }
    if let Some((file, bytes)) = save_weights {
        let path = file.target().to_path_buf();
        file.write_all(&bytes)?;
        file.commit()?;
        println!("weights written to {}", path.display());
    }
    Ok(())
}

/// `--target label` draws each sample's label: every drawn sample needs one.
fn check_labels_for(target: saliency::Target, batch: &Batch) -> Result<()> {
    if target != saliency::Target::Label {
        return Ok(());
    }
    let rows = saliency::rows(batch.len);
    match batch.labels[..rows].iter().position(Option::is_none) {
        None => Ok(()),
        Some(b) => Err(Error::Usage(format!(
            "--target label draws each sample's label, and sample {b} has none: labels come \
             from an MNIST IDX labels file (--labels, or the one beside the images file), a \
             .npy file of labels (--labels), or image file names such as 7_0003.png"
        ))),
    }
}
