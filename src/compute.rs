//! The main job: compute a LeNet-5 input Jacobian in the layout asked for, write it, explain it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use jacobian::{
    Chunk, Differentiable, Jacobian, JacobianConfig, Layout, Magnitudes, ReverseMode, SinkError,
    Strategy,
};
use lenet5::{LeNet5, LeNet5Backend, IMAGE_DIMS};

use crate::backend::{run_on, BackendJob, BackendKind};
use crate::error::{AppError, Result};
use crate::model::{load_model, Batch};
use crate::norms::{self, SampleNorms};
use crate::npy::NpyOutput;
use crate::progress::Progress;

/// Samples whose full Jacobian is measured to show the off-diagonal blocks in per-sample runs.
pub const OFF_DIAGONAL_PROBE: usize = 4;

/// How the Jacobian is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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

/// What to compute and where to write it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Backend to run on.
    pub backend: BackendKind,
    /// The input batch.
    pub batch: Batch,
    /// Weights file; seeded weights when `None`.
    pub weights: Option<PathBuf>,
    /// Seed of the weights when no file is given.
    pub seed: u64,
    /// Where to save the model's weights as a burnpack record.
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
    /// Compute each sample's norms (`--norms`).
    pub norms: bool,
    /// Samples, from the first, whose per-sample Jacobian is kept even in streamed runs
    /// (for `--saliency`).
    pub keep_first: usize,
}

/// What was computed, for the report.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Layout computed.
    pub layout: Layout,
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
    /// The per-sample Jacobian of the first [`Request::keep_first`] samples (`None` for zero).
    pub first: Option<Jacobian>,
}

impl BackendJob for &Request {
    type Output = Outcome;

    fn run<B>(self, device: B::Device) -> Result<Outcome>
    where
        B: AutodiffBackend,
        B::InnerBackend: LeNet5Backend,
    {
        let model = load_model::<B>(self.weights.as_deref(), self.seed, &device)?;
        // Encoded and its directory checked now, written only once everything else succeeded.
        let save_weights = match &self.save_weights {
            Some(path) => Some((
                crate::npy::AtomicFile::create(path)?,
                lenet5::import::to_burnpack_bytes(&model)?,
            )),
            None => None,
        };
        // Input Jacobians never need the weights' gradients: skip computing them.
        let model = model.no_grad();
        let f = differentiable(&model, self.method, self.strategy);
        let x = self.batch.to_tensor::<B::InnerBackend>(&device);
        let outcome = self.jacobian(f.as_ref(), x)?;
        if let Some((file, bytes)) = save_weights {
            file.write_all(&bytes)?;
            file.commit()?;
        }
        Ok(outcome)
    }
}

/// What the chunks of a run leave: the file, the sizes, the norms, the first samples.
struct Collector {
    output: Option<NpyOutput>,
    magnitudes: Magnitudes,
    norms: Option<Vec<SampleNorms>>,
    keep_first: usize,
    first: Option<Jacobian>,
    progress: Progress,
}

impl Collector {
    /// Takes a chunk from the engine: the one place where a chunk leaves the device.
    fn take<B: Backend, const R: usize>(&mut self, chunk: Chunk<B, R>) -> Result<()> {
        let chunk = Jacobian::from_chunk(chunk, &IMAGE_DIMS);
        self.magnitudes.merge(&chunk.magnitudes());
        if let Some(output) = self.output.as_mut() {
            output.write(&chunk.values)?;
        }
        let outputs = chunk.num_outputs();
        if let Some(norms) = self.norms.as_mut() {
            norms.extend((0..chunk.samples()).map(|i| norms::of(&chunk.sample_matrix(i), outputs)));
        }
        let wanted = self
            .keep_first
            .saturating_sub(chunk.start)
            .min(chunk.samples());
        if wanted > 0 {
            let first = self.first.get_or_insert_with(|| Jacobian {
                layout: Layout::PerSample,
                start: 0,
                shape: Layout::PerSample.shape(0, outputs, &IMAGE_DIMS),
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

impl Request {
    /// Computes (and writes) the Jacobian of `f` at `x`, streamed chunk by chunk.
    fn jacobian<B: Backend>(
        &self,
        f: &dyn Differentiable<B, 4>,
        x: Tensor<B, 4>,
    ) -> Result<Outcome> {
        let batch = self.batch.len;
        let outputs = f.forward(x.clone().narrow(0, 0, 1)).dims()[1];
        let shape = self.layout.shape(batch, outputs, &IMAGE_DIMS);
        self.check_full_fits(outputs)?;
        let output = match &self.output {
            Some(path) => Some(NpyOutput::create(path, &shape)?),
            None => None,
        };
        let mut collector = Collector {
            output,
            magnitudes: Magnitudes::default(),
            norms: self.norms.then(Vec::new),
            keep_first: self.keep_first.min(batch),
            first: None,
            progress: Progress::new(batch as u64, "samples"),
        };
        let start = Instant::now();
        let mut failure = None;
        let mut sink = |result: Result<()>| -> std::result::Result<(), SinkError> {
            result.map_err(|e| {
                let message = e.to_string();
                failure = Some(e);
                message.into()
            })
        };
        let streamed = match self.layout {
            Layout::PerSample => jacobian::per_sample_chunks(f, x.clone(), &self.config, |chunk| {
                sink(collector.take(chunk))
            }),
            Layout::Full => jacobian::full_chunks(f, x.clone(), &self.config, |chunk| {
                sink(collector.take(chunk))
            }),
        };
        if let Err(e) = streamed {
            return Err(failure.take().unwrap_or_else(|| e.into()));
        }
        let elapsed = start.elapsed();
        collector.progress.finish();
        let off_diagonal = match self.layout {
            Layout::Full => (collector.magnitudes.clone(), batch),
            // Measured, not assumed: the full Jacobian of the first few samples.
            Layout::PerSample => {
                let probe = batch.min(OFF_DIAGONAL_PROBE);
                let mut magnitudes = Magnitudes::default();
                jacobian::full_chunks(f, x.narrow(0, 0, probe), &self.config, |chunk| {
                    magnitudes.merge(&Jacobian::from_chunk(chunk, &IMAGE_DIMS).magnitudes());
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
            layout: self.layout,
            shape,
            magnitudes: collector.magnitudes,
            off_diagonal,
            elapsed,
            norms: collector.norms,
            first: collector.first,
        })
    }
}

impl Request {
    /// The full layout is streamed, but offered only when the whole would fit in memory: past
    /// that, its B^2 x O rows take hours to days, and the per-sample layout holds the same
    /// information for LeNet-5.
    fn check_full_fits(&self, outputs: usize) -> Result<()> {
        let (batch, limit) = match (self.layout, self.config.max_bytes) {
            (Layout::Full, Some(limit)) => (self.batch.len, limit),
            _ => return Ok(()),
        };
        let bytes = Layout::Full.bytes(batch, outputs, &IMAGE_DIMS);
        if bytes <= u128::from(limit) {
            return Ok(());
        }
        let gib = |bytes: f64| bytes / (1u64 << 30) as f64;
        Err(AppError::Runtime(format!(
            "the full Jacobian {} needs {bytes} bytes ({:.1} GiB), more than the {:.1} GiB of memory available; \
             use --layout per-sample ({} bytes), the same information when samples are independent",
            jacobian::python_shape(&Layout::Full.shape(batch, outputs, &IMAGE_DIMS)),
            gib(bytes as f64),
            gib(limit as f64),
            Layout::PerSample.bytes(batch, outputs, &IMAGE_DIMS),
        )))
    }
}

/// Computes (and writes) the Jacobian a request asks for.
pub fn compute(request: &Request) -> Result<Outcome> {
    run_on(request.backend, request)
}
