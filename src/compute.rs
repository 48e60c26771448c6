//! The main job: compute a LeNet-5 input Jacobian in the layout asked for, write it, explain it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use jacobian::{Chunk, Jacobian, JacobianConfig, Layout, Strategy};
use lenet5::LeNet5;

use crate::backend::{run_on, BackendJob, BackendKind};
use crate::error::{AppError, Result};
use crate::model::{load_model, Batch, SAMPLE_DIMS, SAMPLE_LEN};
use crate::norms::{self, SampleNorms};
use crate::npy::{self, NpyOutput};
use crate::progress::Progress;

/// Samples whose full Jacobian is measured to show the off-diagonal blocks in per-sample runs.
pub const OFF_DIAGONAL_PROBE: usize = 4;

/// How the Jacobian is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// The general engine: Burn's autodiff, per output or with stacked outputs.
    Autodiff,
    /// LeNet-5's specialised path: one forward pass and a hand-written backward sweep, on the
    /// host CPU whatever the backend.
    Analytic,
}

/// The per-sample Jacobian of `model` at `x` chunk by chunk, by `method`, handed to `sink`
/// as the engine's [`per_sample_chunks`](jacobian::per_sample_chunks) does.
pub fn per_sample_chunks<B, S>(
    model: &LeNet5<B>,
    x: Tensor<B, 4>,
    method: Method,
    config: &JacobianConfig,
    mut sink: S,
) -> Result<()>
where
    B: AutodiffBackend,
    S: FnMut(Chunk<'_>) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>,
{
    match method {
        Method::Autodiff => {
            jacobian::per_sample_chunks(|x| model.forward(x), x, config, sink)?;
        }
        Method::Analytic => {
            let model = model.valid();
            let x = x.inner();
            let batch = x.dims()[0];
            let chunk_size = config.chunk_size.unwrap_or(batch).clamp(1, batch);
            for start in (0..batch).step_by(chunk_size) {
                let samples = chunk_size.min(batch - start);
                let values = model
                    .input_jacobian(x.clone().narrow(0, start, samples))
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("converted to f32");
                sink(Chunk {
                    start,
                    samples,
                    outputs: model.num_classes(),
                    values: &values,
                    function_outputs: None,
                })
                .map_err(|e| AppError::Runtime(e.to_string()))?;
            }
        }
    }
    Ok(())
}

/// The full Jacobian of `model` at `x` by `method`; `max_bytes` bounds its size.
pub fn full_layout<B: AutodiffBackend>(
    model: &LeNet5<B>,
    x: Tensor<B, 4>,
    method: Method,
    config: &JacobianConfig,
    max_bytes: u128,
) -> Result<Jacobian> {
    match method {
        Method::Autodiff => Ok(jacobian::full(|x| model.forward(x), x, config, max_bytes)?),
        Method::Analytic => {
            let batch = x.dims()[0];
            let shape = Layout::Full.shape(batch, model.num_classes(), &SAMPLE_DIMS);
            let bytes = Layout::Full.bytes(batch, model.num_classes(), &SAMPLE_DIMS);
            if bytes > max_bytes {
                return Err(jacobian::JacobianError::TooLarge {
                    layout: Layout::Full,
                    shape,
                    bytes,
                    limit: max_bytes,
                }
                .into());
            }
            let values = model
                .valid()
                .input_jacobian_full(x.inner())
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .expect("converted to f32");
            Ok(Jacobian {
                layout: Layout::Full,
                shape,
                values,
                outputs: None,
            })
        }
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
    /// How the Jacobian is computed.
    pub method: Method,
    /// Largest full-layout Jacobian accepted, in bytes.
    pub max_full_bytes: u128,
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
    /// Largest |J| over all entries.
    pub max_abs: f32,
    /// Largest |J| off the batch diagonal, and how many samples it was measured over.
    pub off_diagonal: (f32, usize),
    /// Time spent computing the Jacobian (not loading or writing).
    pub elapsed: Duration,
    /// Each sample's norms, when [`Request::norms`] is set.
    pub norms: Option<Vec<SampleNorms>>,
    /// The per-sample Jacobian of the first [`Request::keep_first`] samples (`None` for zero).
    pub first: Option<Jacobian>,
}

impl BackendJob for &Request {
    type Output = Outcome;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Outcome> {
        let model = load_model::<B>(self.weights.as_deref(), self.seed, &device)?;
        // Encoded and its directory checked now, written only once everything else succeeded.
        let save_weights = match &self.save_weights {
            Some(path) => Some((
                npy::AtomicFile::create(path)?,
                lenet5::import::to_burnpack_bytes(&model)?,
            )),
            None => None,
        };
        // Input Jacobians never need the weights' gradients: skip computing them.
        let model = model.no_grad();
        let outcome = self.jacobian(&model, &device)?;
        if let Some((file, bytes)) = save_weights {
            file.write_all(&bytes)?;
            file.commit()?;
        }
        Ok(outcome)
    }
}

impl Request {
    /// Computes (and writes) the Jacobian with a loaded model.
    fn jacobian<B: AutodiffBackend>(
        &self,
        model: &LeNet5<B>,
        device: &B::Device,
    ) -> Result<Outcome> {
        let forward = |x| model.forward(x);
        let x = self.batch.to_tensor::<B>(device);
        let outputs = model.num_classes();
        let shape = self.layout.shape(self.batch.len, outputs, &SAMPLE_DIMS);
        match self.layout {
            Layout::Full => {
                let bytes = Layout::Full.bytes(self.batch.len, outputs, &SAMPLE_DIMS);
                if bytes > self.max_full_bytes {
                    return Err(AppError::Runtime(format!(
                        "the full Jacobian {} needs {bytes} bytes ({:.1} GiB), more than the {:.1} GiB of memory available; \
                         use --layout per-sample ({} bytes), the same information when samples are independent",
                        jacobian::python_shape(&shape),
                        bytes as f64 / (1u64 << 30) as f64,
                        self.max_full_bytes as f64 / (1u64 << 30) as f64,
                        Layout::PerSample.bytes(self.batch.len, outputs, &SAMPLE_DIMS),
                    )));
                }
                let output = match &self.output {
                    Some(path) => Some(NpyOutput::create(path, &shape)?),
                    None => None,
                };
                let start = Instant::now();
                let full = full_layout(model, x, self.method, &self.config, self.max_full_bytes)?;
                let elapsed = start.elapsed();
                if let Some(mut output) = output {
                    output.write(&full.values)?;
                    output.commit()?;
                }
                let off_diagonal = full.max_abs_off_diagonal().unwrap_or(0.0);
                let per_sample = jacobian::batch_diagonal(&full);
                Ok(Outcome {
                    layout: Layout::Full,
                    max_abs: full.max_abs(),
                    off_diagonal: (off_diagonal, self.batch.len),
                    elapsed,
                    norms: self.norms.then(|| norms::of_jacobian(&per_sample)),
                    first: self.first_samples(outputs, &per_sample.values),
                    shape,
                })
            }
            Layout::PerSample => {
                let mut output = match &self.output {
                    Some(path) => Some(NpyOutput::create(path, &shape)?),
                    None => None,
                };
                let mut sample_norms = self.norms.then(Vec::new);
                let mut first = Vec::new();
                let first_len = self.batch.len.min(self.keep_first) * outputs * SAMPLE_LEN;
                let mut max_abs = 0.0f32;
                let mut progress = Progress::new(self.batch.len as u64, "samples");
                let start = Instant::now();
                per_sample_chunks(model, x.clone(), self.method, &self.config, |chunk| {
                    max_abs = chunk.values.iter().fold(max_abs, |m, v| m.max(v.abs()));
                    if let Some(output) = output.as_mut() {
                        output.write(chunk.values)?;
                    }
                    if let Some(sample_norms) = sample_norms.as_mut() {
                        sample_norms.extend(norms::of_chunk(chunk.values, chunk.samples, outputs));
                    }
                    let wanted = (first_len - first.len()).min(chunk.values.len());
                    first.extend_from_slice(&chunk.values[..wanted]);
                    progress.advance(chunk.samples as u64);
                    Ok(())
                })?;
                let elapsed = start.elapsed();
                progress.finish();
                // Measured, not assumed: the full Jacobian of the first few samples.
                let probe = self.batch.len.min(OFF_DIAGONAL_PROBE);
                let probe_config = JacobianConfig {
                    strategy: Strategy::PerOutput,
                    ..self.config.clone()
                };
                let probe_full = jacobian::full(
                    forward,
                    x.narrow(0, 0, probe),
                    &probe_config,
                    self.max_full_bytes,
                )?;
                // Last, so that a failure above leaves no output behind.
                if let Some(output) = output {
                    output.commit()?;
                }
                Ok(Outcome {
                    layout: Layout::PerSample,
                    max_abs,
                    off_diagonal: (probe_full.max_abs_off_diagonal().unwrap_or(0.0), probe),
                    elapsed,
                    norms: sample_norms,
                    first: self.first_samples(outputs, &first),
                    shape,
                })
            }
        }
    }
}

impl Request {
    /// The per-sample Jacobian of the first [`Request::keep_first`] samples out of `values`,
    /// per-sample values that start with them.
    fn first_samples(&self, outputs: usize, values: &[f32]) -> Option<Jacobian> {
        let samples = self.batch.len.min(self.keep_first);
        if samples == 0 {
            return None;
        }
        Some(Jacobian {
            layout: Layout::PerSample,
            shape: Layout::PerSample.shape(samples, outputs, &SAMPLE_DIMS),
            values: values[..samples * outputs * SAMPLE_LEN].to_vec(),
            outputs: None,
        })
    }
}

/// Computes (and writes) the Jacobian a request asks for.
pub fn compute(request: &Request) -> Result<Outcome> {
    run_on(request.backend, request)
}
