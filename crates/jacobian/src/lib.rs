//! Input Jacobians of any Burn function, computed by Burn's autodiff backend.
//!
//! For a batched function `y = f(x)` with `x: [B, input dims...]` and `y: [B, O]` (a model's
//! logits, say), this crate computes
//!
//! - the **per-sample** Jacobian `[B, O, input dims...]`, entry `[b, k, ...]` being
//!   `d y[b, k] / d x[b, ...]` ([`per_sample`], [`per_sample_chunks`]);
//! - the **full** Jacobian `[B, O, B, input dims...]`, entry `[b, k, b', ...]` being
//!   `d y[b, k] / d x[b', ...]`, the layout of `torch.autograd.functional.jacobian` ([`full`]);
//! - the per-sample Jacobian from the full one ([`batch_diagonal`]), which is
//!   `torch.einsum("bibj->bij", full)`.
//!
//! The engine knows nothing of the function: any closure or module from `Tensor<B, D>` to
//! `Tensor<B, 2>` on an autodiff backend works.
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::tensor::Tensor;
//! use jacobian::{per_sample, JacobianConfig};
//!
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! // y[b] = (x[b, 0] * x[b, 1], 3 x[b, 0]): two outputs of two inputs per sample.
//! let f = |x: Tensor<B, 2>| {
//!     let a = x.clone().narrow(1, 0, 1);
//!     let b = x.narrow(1, 1, 1);
//!     Tensor::cat(vec![a.clone() * b, a * 3.0], 1)
//! };
//! let x = Tensor::<B, 2>::from_floats([[1.0, 2.0], [4.0, 5.0]], &device);
//! let j = per_sample(f, x, &JacobianConfig::default()).unwrap();
//! assert_eq!(j.shape, [2, 2, 2]);
//! // Sample 1: d(x0 x1)/dx = (x1, x0) = (5, 4); d(3 x0)/dx = (3, 0).
//! assert_eq!(&j.values[4..], &[5.0, 4.0, 3.0, 0.0]);
//! ```
//!
//! # How it is computed
//!
//! Burn's autodiff consumes its graph in each backward pass, so every pass starts with a
//! forward pass. Reverse mode gives one row of the Jacobian per backward pass, and the
//! [`Strategy`] chooses how those rows are gathered:
//!
//! - [`Strategy::PerOutput`]: for each output `k`, one forward and one backward pass of
//!   `sum_b y[b, k]`, which yields row `k` of every sample's Jacobian at once (`O` passes,
//!   not `B x O`);
//! - [`Strategy::StackedOutputs`]: the batch is repeated `O` times, copy `k` carrying the
//!   cotangent of output `k`, so one forward and one backward pass over a batch `O` times
//!   larger give all rows (fewer, larger kernels; `O` times the activation memory).
//!
//! Both gather `d y[b, k] / d x[b]` through `sum_b`, which is exact when samples are
//! independent (no batch normalisation in training mode, no attention across the batch).
//! The full layout assumes nothing: it differentiates each `y[b, k]` on its own against the
//! whole input, `B x O` passes, so the blocks with `b != b'` are measured, not assumed zero.
//!
//! Parameters that require gradients cost a weight-gradient computation in every backward
//! pass that input Jacobians never use: call `module.no_grad()` on a model before handing it
//! over.
//!
//! # With a Burn module
//!
//! A module's `forward` is such a function. For an `nn::Linear`, `y = x W + b` with `W` of
//! shape `[inputs, outputs]`, so every sample's Jacobian is `W^T`:
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::module::Module;
//! use burn::nn::LinearConfig;
//! use burn::tensor::{Distribution, Tensor};
//! use jacobian::{per_sample, JacobianConfig};
//!
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! // 5 inputs, 3 outputs; no_grad: the weights' gradients are not needed.
//! let linear = LinearConfig::new(5, 3).init::<B>(&device).no_grad();
//! let x = Tensor::<B, 2>::random([4, 5], Distribution::Default, &device);
//! let j = per_sample(|x| linear.forward(x), x, &JacobianConfig::default()).unwrap();
//! assert_eq!(j.shape, [4, 3, 5]);
//!
//! let w = linear.weight.val().into_data().to_vec::<f32>().unwrap(); // [5, 3] row-major
//! for b in 0..4 {
//!     let matrix = j.sample_matrix(b); // [3, 5] row-major
//!     for k in 0..3 {
//!         for i in 0..5 {
//!             assert!((matrix[k * 5 + i] - w[i * 3 + k]).abs() < 1e-6);
//!         }
//!     }
//! }
//! ```
#![warn(missing_docs)]

mod layout;
mod norms;

pub use layout::{python_shape, Axis, Layout};
pub use norms::{frobenius_norm, frobenius_norms, spectral_norm, spectral_norms};

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};

/// How the rows of the per-sample Jacobian are gathered (see the [crate documentation](crate)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// One forward and one backward pass per output.
    PerOutput,
    /// The batch repeated once per output: one forward and one backward pass for all outputs.
    #[default]
    StackedOutputs,
}

/// Options, as in `torch.func.jacrev` and `torch.autograd.functional.jacobian`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JacobianConfig {
    /// Samples per chunk for the per-sample layout: bounds the memory of a pass (with
    /// [`Strategy::StackedOutputs`], a pass holds `chunk_size x O` samples' activations).
    /// `None`: the whole batch in one chunk.
    pub chunk_size: Option<usize>,
    /// Fail with [`JacobianError::Independent`] when an output is not connected to the input
    /// at all (torch's `strict=True`). Otherwise its rows are zero.
    pub strict: bool,
    /// How per-sample rows are gathered.
    pub strategy: Strategy,
    /// Also return `f(x)`, the outputs, with the Jacobian.
    pub with_outputs: bool,
}

impl Default for JacobianConfig {
    fn default() -> Self {
        JacobianConfig {
            chunk_size: Some(256),
            strict: false,
            strategy: Strategy::default(),
            with_outputs: false,
        }
    }
}

/// Why a Jacobian could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum JacobianError {
    /// The input has no sample.
    #[error("the input batch is empty")]
    EmptyBatch,
    /// `f` does not map a batch of `B` samples to `[B, O]`.
    #[error("the function maps a batch of {batch} samples to shape {output:?}, expected [{batch}, outputs]")]
    OutputShape {
        /// Samples in the input.
        batch: usize,
        /// The output's shape.
        output: Vec<usize>,
    },
    /// Strict mode: output `output` is not connected to the input.
    #[error("output {output} does not depend on the input (strict mode)")]
    Independent {
        /// The output's index.
        output: usize,
    },
    /// The requested layout would not fit in memory.
    #[error("the {layout} Jacobian {shape:?} needs {bytes} bytes, more than the {limit} allowed")]
    TooLarge {
        /// Layout asked for.
        layout: Layout,
        /// Its shape.
        shape: Vec<usize>,
        /// Its size in bytes.
        bytes: u128,
        /// The limit.
        limit: u128,
    },
    /// The consumer of chunks failed (writing to a file, say).
    #[error("{0}")]
    Sink(Box<dyn std::error::Error + Send + Sync>),
}

/// A Jacobian on the host: `f32` values in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Jacobian {
    /// The layout.
    pub layout: Layout,
    /// The shape: `[B, O, B, input dims...]` (full) or `[B, O, input dims...]` (per-sample).
    pub shape: Vec<usize>,
    /// The entries, row-major (C order).
    pub values: Vec<f32>,
    /// `f(x)`, `[B, O]` row-major, when [`JacobianConfig::with_outputs`] was set.
    pub outputs: Option<Vec<f32>>,
}

impl Jacobian {
    /// Samples in the batch.
    pub fn batch(&self) -> usize {
        self.shape[0]
    }

    /// Outputs per sample.
    pub fn num_outputs(&self) -> usize {
        self.shape[1]
    }

    /// Shape of one sample's input (without the batch axis).
    pub fn input_dims(&self) -> &[usize] {
        match self.layout {
            Layout::Full => &self.shape[3..],
            Layout::PerSample => &self.shape[2..],
        }
    }

    /// Entries per sample's input.
    pub fn input_len(&self) -> usize {
        self.input_dims().iter().product()
    }

    /// The `O x input_len` matrix of sample `b`, row-major: `d y[b, k] / d x[b, ...]`.
    pub fn sample_matrix(&self, b: usize) -> Vec<f32> {
        let (outputs, n) = (self.num_outputs(), self.input_len());
        match self.layout {
            Layout::PerSample => self.values[b * outputs * n..(b + 1) * outputs * n].to_vec(),
            Layout::Full => (0..outputs)
                .flat_map(|k| {
                    let start = ((b * outputs + k) * self.batch() + b) * n;
                    self.values[start..start + n].iter().copied()
                })
                .collect(),
        }
    }

    /// Largest `|J|` over all entries.
    pub fn max_abs(&self) -> f32 {
        self.values.iter().fold(0.0, |m, v| m.max(v.abs()))
    }

    /// Largest `|J[b, k, b', ...]|` with `b != b'` (full layout only; `None` for per-sample,
    /// which holds no such entry). Zero when samples are independent.
    pub fn max_abs_off_diagonal(&self) -> Option<f32> {
        if self.layout != Layout::Full {
            return None;
        }
        let (batch, n) = (self.batch(), self.input_len());
        let max = self
            .values
            .chunks_exact(n)
            .enumerate()
            .filter(|(row, _)| row / (self.num_outputs() * batch) != row % batch)
            .flat_map(|(_, block)| block.iter())
            .fold(0.0f32, |m, v| m.max(v.abs()));
        Some(max)
    }

    /// The values as Burn [`TensorData`], to make a tensor of them on any backend.
    pub fn to_tensor_data(&self) -> TensorData {
        TensorData::new(self.values.clone(), self.shape.clone())
    }
}

/// The per-sample Jacobian kept on the batch diagonal of a full one:
/// `torch.einsum("bibj->bij", full)`, entry `[b, k, ...]` = `full[b, k, b, ...]`.
///
/// A per-sample Jacobian is returned as it is.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use jacobian::{batch_diagonal, full, per_sample, JacobianConfig, Layout};
///
/// type B = Autodiff<NdArray>;
/// let device = Default::default();
/// // Samples are independent: y[b] = (x[b, 0] x[b, 1], x[b, 1]^2).
/// let f = |x: Tensor<B, 2>| {
///     let (a, b) = (x.clone().narrow(1, 0, 1), x.narrow(1, 1, 1));
///     Tensor::cat(vec![a * b.clone(), b.clone() * b], 1)
/// };
/// let x = Tensor::<B, 2>::from_floats([[1.0, 2.0], [3.0, -1.0], [0.5, 4.0]], &device);
/// let config = JacobianConfig::default();
/// let whole = full(f, x.clone(), &config, u128::MAX).unwrap();
/// assert_eq!(whole.shape, [3, 2, 3, 2]);
/// let diagonal = batch_diagonal(&whole);
/// assert_eq!(diagonal.layout, Layout::PerSample);
/// assert_eq!(diagonal.shape, [3, 2, 2]);
/// assert_eq!(diagonal, per_sample(f, x, &config).unwrap());
/// // Sample 1, x = (3, -1): rows (x1, x0) = (-1, 3) and (0, 2 x1) = (0, -2).
/// assert_eq!(diagonal.sample_matrix(1), [-1.0, 3.0, 0.0, -2.0]);
/// ```
pub fn batch_diagonal(full: &Jacobian) -> Jacobian {
    if full.layout == Layout::PerSample {
        return full.clone();
    }
    let (batch, outputs, n) = (full.batch(), full.num_outputs(), full.input_len());
    let values = (0..batch * outputs)
        .flat_map(|row| {
            let b = row / outputs;
            let start = (row * batch + b) * n;
            full.values[start..start + n].iter().copied()
        })
        .collect();
    Jacobian {
        layout: Layout::PerSample,
        shape: Layout::PerSample.shape(batch, outputs, full.input_dims()),
        values,
        outputs: full.outputs.clone(),
    }
}

/// A chunk of consecutive samples of a per-sample Jacobian, handed to the consumer of
/// [`per_sample_chunks`].
#[derive(Debug)]
pub struct Chunk<'a> {
    /// Index of the chunk's first sample in the batch.
    pub start: usize,
    /// Samples in the chunk.
    pub samples: usize,
    /// Outputs per sample.
    pub outputs: usize,
    /// `[samples, outputs, input dims...]`, row-major.
    pub values: &'a [f32],
    /// `f(x)` of the chunk's samples, `[samples, outputs]`, when asked for.
    pub function_outputs: Option<&'a [f32]>,
}

/// Number of outputs `f` gives per sample: runs `f` once on the first sample.
pub fn probe<B, const D: usize, F>(f: &F, x: &Tensor<B, D>) -> Result<usize, JacobianError>
where
    B: AutodiffBackend,
    F: Fn(Tensor<B, D>) -> Tensor<B, 2>,
{
    let batch = x.dims()[0];
    if batch == 0 {
        return Err(JacobianError::EmptyBatch);
    }
    let y = f(x.clone().narrow(0, 0, 1).detach());
    output_width(&y, 1)
}

fn output_width<B: AutodiffBackend>(
    y: &Tensor<B, 2>,
    batch: usize,
) -> Result<usize, JacobianError> {
    match y.dims() {
        [b, outputs] if b == batch => Ok(outputs),
        output => Err(JacobianError::OutputShape {
            batch,
            output: output.to_vec(),
        }),
    }
}

/// Strict mode: every output must be connected to the input. Checked on the first sample, one
/// backward pass per output, independently of the strategy.
fn check_connected<B, const D: usize, F>(
    f: &F,
    x: &Tensor<B, D>,
    outputs: usize,
) -> Result<(), JacobianError>
where
    B: AutodiffBackend,
    F: Fn(Tensor<B, D>) -> Tensor<B, 2>,
{
    for k in 0..outputs {
        let x1 = x.clone().narrow(0, 0, 1).detach().require_grad();
        let y = f(x1.clone());
        let grads = backward(y.narrow(1, k, 1).sum());
        if x1.grad(&grads).is_none() {
            return Err(JacobianError::Independent { output: k });
        }
    }
    Ok(())
}

/// Gradients of the scalar `root`. A tracked zero is added first: Burn panics on the backward
/// pass of a tensor outside any graph (an output that does not depend on the input), while
/// this way such an input simply gets no gradient.
fn backward<B: AutodiffBackend>(root: Tensor<B, 1>) -> B::Gradients {
    let anchor = Tensor::<B, 1>::zeros([1], &root.device()).require_grad();
    (root + anchor).backward()
}

fn to_f32(data: TensorData) -> Vec<f32> {
    data.convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32 just before")
}

/// Per-sample rows for the samples of `x`: `[n, O, input_len]` values and `f(x)` if asked.
fn per_sample_rows<B, const D: usize, F>(
    f: &F,
    x: Tensor<B::InnerBackend, D>,
    outputs: usize,
    config: &JacobianConfig,
) -> Result<(Vec<f32>, Option<Vec<f32>>), JacobianError>
where
    B: AutodiffBackend,
    F: Fn(Tensor<B, D>) -> Tensor<B, 2>,
{
    let dims = x.dims();
    let (n, input_len) = (dims[0], dims[1..].iter().product::<usize>());
    let device = x.device();
    match config.strategy {
        Strategy::PerOutput => {
            let mut rows = Vec::with_capacity(outputs);
            let mut function_outputs = None;
            for k in 0..outputs {
                let xk = Tensor::<B, D>::from_inner(x.clone()).require_grad();
                let y = f(xk.clone());
                if output_width(&y, n)? != outputs {
                    return Err(JacobianError::OutputShape {
                        batch: n,
                        output: y.dims().to_vec(),
                    });
                }
                if k == 0 && config.with_outputs {
                    function_outputs = Some(to_f32(y.clone().inner().into_data()));
                }
                let grads = backward(y.narrow(1, k, 1).sum());
                let row = match xk.grad(&grads) {
                    Some(g) => g.reshape([n, 1, input_len]),
                    None => Tensor::zeros([n, 1, input_len], &device),
                };
                rows.push(row);
            }
            let values = to_f32(Tensor::cat(rows, 1).into_data()); // [n, O, input_len]
            Ok((values, function_outputs))
        }
        Strategy::StackedOutputs => {
            // Copy k of the batch (rows k*n .. (k+1)*n) carries the cotangent of output k.
            let stacked = Tensor::cat(vec![x; outputs], 0); // [O*n, input dims...]
            let xs = Tensor::<B, D>::from_inner(stacked).require_grad();
            let y = f(xs.clone()); // [O*n, O]
            if output_width(&y, outputs * n)? != outputs {
                return Err(JacobianError::OutputShape {
                    batch: outputs * n,
                    output: y.dims().to_vec(),
                });
            }
            let selector = Tensor::<B::InnerBackend, 2>::eye(outputs, &device) // [O, O]
                .reshape([outputs, 1, outputs])
                .expand([outputs, n, outputs])
                .reshape([outputs * n, outputs]); // row k*n + b is e_k
            let function_outputs = config
                .with_outputs
                .then(|| to_f32(y.clone().inner().narrow(0, 0, n).into_data()));
            let grads = backward((y * Tensor::from_inner(selector)).sum());
            let values = match xs.grad(&grads) {
                Some(g) => to_f32(
                    g.reshape([outputs, n, input_len]) // [O, n, input_len]
                        .swap_dims(0, 1) // [n, O, input_len]
                        .into_data(),
                ),
                None => vec![0.0; n * outputs * input_len],
            };
            Ok((values, function_outputs))
        }
    }
}

/// The per-sample Jacobian `[B, O, input dims...]` of `f` at `x`, chunk by chunk: `sink`
/// receives each chunk of [`JacobianConfig::chunk_size`] samples in order, so that a batch
/// whose Jacobian does not fit in memory can be streamed to a file.
///
/// Returns the number of outputs per sample.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use jacobian::{per_sample_chunks, JacobianConfig};
///
/// type B = Autodiff<NdArray>;
/// let device = Default::default();
/// // y[b] = sum_i x[b, i]^2, one output: the Jacobian of sample b is 2 x[b].
/// let f = |x: Tensor<B, 2>| (x.clone() * x).sum_dim(1);
/// let x = Tensor::<B, 2>::from_floats(
///     [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]],
///     &device,
/// );
/// let config = JacobianConfig { chunk_size: Some(2), with_outputs: true, ..Default::default() };
/// let mut seen = Vec::new();
/// let outputs = per_sample_chunks(f, x, &config, |chunk| {
///     // A real consumer would write chunk.values to a file here.
///     seen.push((chunk.start, chunk.samples, chunk.values.to_vec()));
///     assert_eq!(chunk.function_outputs.map(<[f32]>::len), Some(chunk.samples));
///     Ok(())
/// })
/// .unwrap();
/// assert_eq!(outputs, 1);
/// assert_eq!(
///     seen,
///     [
///         (0, 2, vec![2.0, 4.0, 6.0, 8.0]),
///         (2, 2, vec![10.0, 12.0, 14.0, 16.0]),
///         (4, 1, vec![18.0, 20.0]),
///     ]
/// );
/// ```
pub fn per_sample_chunks<B, const D: usize, F, S>(
    f: F,
    x: Tensor<B, D>,
    config: &JacobianConfig,
    mut sink: S,
) -> Result<usize, JacobianError>
where
    B: AutodiffBackend,
    F: Fn(Tensor<B, D>) -> Tensor<B, 2>,
    S: FnMut(Chunk<'_>) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
{
    let outputs = probe(&f, &x)?;
    if config.strict {
        check_connected(&f, &x, outputs)?;
    }
    let batch = x.dims()[0];
    let chunk_size = config.chunk_size.unwrap_or(batch).clamp(1, batch);
    let x = x.inner();
    for start in (0..batch).step_by(chunk_size) {
        let samples = chunk_size.min(batch - start);
        let (values, function_outputs) =
            per_sample_rows(&f, x.clone().narrow(0, start, samples), outputs, config)?;
        sink(Chunk {
            start,
            samples,
            outputs,
            values: &values,
            function_outputs: function_outputs.as_deref(),
        })
        .map_err(JacobianError::Sink)?;
    }
    Ok(outputs)
}

/// The per-sample Jacobian `[B, O, input dims...]` of `f` at `x`: entry `[b, k, ...]` is
/// `d y[b, k] / d x[b, ...]`. Samples must be independent (see the [crate documentation](crate)).
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use jacobian::{per_sample, JacobianConfig, Strategy};
///
/// type B = Autodiff<NdArray>;
/// let device = Default::default();
/// // Element-wise square of 3 features: each sample's Jacobian is diag(2 x[b]).
/// let f = |x: Tensor<B, 2>| x.clone() * x;
/// let x = Tensor::<B, 2>::from_floats([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], &device);
/// let config = JacobianConfig {
///     chunk_size: Some(1),
///     strategy: Strategy::PerOutput,
///     with_outputs: true,
///     ..JacobianConfig::default()
/// };
/// let j = per_sample(f, x, &config).unwrap();
/// assert_eq!(j.shape, [2, 3, 3]);
/// assert_eq!(j.sample_matrix(0), [2.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 6.0]);
/// assert_eq!(j.sample_matrix(1), [-2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
/// assert_eq!(j.outputs.unwrap(), [1.0, 4.0, 9.0, 1.0, 0.25, 0.0]);
/// ```
pub fn per_sample<B, const D: usize, F>(
    f: F,
    x: Tensor<B, D>,
    config: &JacobianConfig,
) -> Result<Jacobian, JacobianError>
where
    B: AutodiffBackend,
    F: Fn(Tensor<B, D>) -> Tensor<B, 2>,
{
    let dims = x.dims();
    let mut values = Vec::new();
    let mut outputs_values = config.with_outputs.then(Vec::new);
    let outputs = per_sample_chunks(f, x, config, |chunk| {
        values.extend_from_slice(chunk.values);
        if let (Some(all), Some(part)) = (outputs_values.as_mut(), chunk.function_outputs) {
            all.extend_from_slice(part);
        }
        Ok(())
    })?;
    Ok(Jacobian {
        layout: Layout::PerSample,
        shape: Layout::PerSample.shape(dims[0], outputs, &dims[1..]),
        values,
        outputs: outputs_values,
    })
}

/// The full Jacobian `[B, O, B, input dims...]` of `f` at `x`, torch's layout: entry
/// `[b, k, b', ...]` is `d y[b, k] / d x[b', ...]`.
///
/// Each `y[b, k]` is differentiated on its own against the whole batch (`B x O` passes), so
/// nothing is assumed of how samples interact. `max_bytes` bounds the result: a larger one
/// is refused before anything is computed or allocated.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use jacobian::{full, JacobianConfig, JacobianError};
///
/// type B = Autodiff<NdArray>;
/// let device = Default::default();
/// // Centring over the batch mixes samples: d y[b, k] / d x[b', i] = [b = b'][k = i] - [k = i] / B.
/// let f = |x: Tensor<B, 2>| x.clone() - x.mean_dim(0);
/// let x = Tensor::<B, 2>::from_floats([[1.0, 2.0], [3.0, 5.0]], &device);
/// let config = JacobianConfig::default();
/// let j = full(f, x.clone(), &config, u128::MAX).unwrap();
/// assert_eq!(j.shape, [2, 2, 2, 2]);
/// // Row [b = 0, k = 0]: over (b', i) = (0, 0), (0, 1), (1, 0), (1, 1).
/// assert_eq!(&j.values[..4], &[0.5, 0.0, -0.5, 0.0]);
/// assert_eq!(j.max_abs_off_diagonal(), Some(0.5));
///
/// // 16 f32 entries are 64 bytes: refused under a smaller limit.
/// let refused = full(f, x, &config, 63);
/// assert!(matches!(refused, Err(JacobianError::TooLarge { bytes: 64, .. })));
/// ```
pub fn full<B, const D: usize, F>(
    f: F,
    x: Tensor<B, D>,
    config: &JacobianConfig,
    max_bytes: u128,
) -> Result<Jacobian, JacobianError>
where
    B: AutodiffBackend,
    F: Fn(Tensor<B, D>) -> Tensor<B, 2>,
{
    let dims = x.dims();
    let batch = dims[0];
    if batch == 0 {
        return Err(JacobianError::EmptyBatch);
    }
    let outputs = probe(&f, &x)?;
    let bytes = Layout::Full.bytes(batch, outputs, &dims[1..]);
    if bytes > max_bytes {
        return Err(JacobianError::TooLarge {
            layout: Layout::Full,
            shape: Layout::Full.shape(batch, outputs, &dims[1..]),
            bytes,
            limit: max_bytes,
        });
    }
    if config.strict {
        check_connected(&f, &x, outputs)?;
    }
    let input_len: usize = dims[1..].iter().product();
    let x = x.inner();
    let device = x.device();
    let mut values = Vec::with_capacity(batch * outputs * batch * input_len);
    let mut function_outputs = None;
    for b in 0..batch {
        let mut rows = Vec::with_capacity(outputs);
        for k in 0..outputs {
            let xg = Tensor::<B, D>::from_inner(x.clone()).require_grad();
            let y = f(xg.clone());
            if b == 0 && k == 0 {
                output_width(&y, batch)?;
                if config.with_outputs {
                    function_outputs = Some(to_f32(y.clone().inner().into_data()));
                }
            }
            let grads = backward(y.slice([b..b + 1, k..k + 1]).sum());
            rows.push(match xg.grad(&grads) {
                Some(g) => g.reshape([1, batch * input_len]),
                None => Tensor::zeros([1, batch * input_len], &device),
            });
        }
        values.extend(to_f32(Tensor::cat(rows, 0).into_data())); // [O, B * input_len]
    }
    Ok(Jacobian {
        layout: Layout::Full,
        shape: Layout::Full.shape(batch, outputs, &dims[1..]),
        values,
        outputs: function_outputs,
    })
}
