//! The engine: the checks, the chunks and what is handed back, for any [`Differentiable`].

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::{Differentiable, JacobianConfig, JacobianError, Layout};

/// A Jacobian on the backend's device, with `f(x)` when [`JacobianConfig::with_outputs`] is
/// set.
#[derive(Clone, Debug)]
pub struct Evaluation<B: Backend, const J: usize> {
    /// The Jacobian, of the rank asked for (see [`per_sample`] and [`full`]).
    pub jacobian: Tensor<B, J>,
    /// `f(x)`, `[batch, O]`.
    pub outputs: Option<Tensor<B, 2>>,
}

/// Consecutive output samples of a Jacobian, handed to the consumer of [`per_sample_chunks`]
/// or [`full_chunks`] on the backend's device.
#[derive(Clone, Debug)]
pub struct Chunk<B: Backend, const R: usize> {
    /// The layout the chunk belongs to.
    pub layout: Layout,
    /// Index of the chunk's first sample in the batch.
    pub start: usize,
    /// Per-sample: `[n, O, N]`; full: `[n, O, batch, N]`, the rows of its `n` output samples.
    pub jacobian: Tensor<B, R>,
    /// `f(x)` of the chunk's samples, `[n, O]`, when [`JacobianConfig::with_outputs`] is set.
    pub outputs: Option<Tensor<B, 2>>,
}

impl<B: Backend, const R: usize> Chunk<B, R> {
    /// Samples in the chunk.
    pub fn samples(&self) -> usize {
        self.jacobian.dims()[0]
    }
}

/// An error of the consumer of chunks, handed back as [`JacobianError::Sink`].
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// What every computation checks first: the batch, the outputs, strict mode, the chunks.
struct Plan {
    layout: Layout,
    batch: usize,
    outputs: usize,
    input_dims: Vec<usize>,
    chunk: usize,
}

impl Plan {
    fn new<B, F, const D: usize>(
        layout: Layout,
        f: &F,
        x: &Tensor<B, D>,
        config: &JacobianConfig,
    ) -> Result<Self, JacobianError>
    where
        B: Backend,
        F: Differentiable<B, D> + ?Sized,
    {
        let dims = x.dims();
        let batch = dims[0];
        if batch == 0 {
            return Err(JacobianError::EmptyBatch);
        }
        let first = x.clone().narrow(0, 0, 1);
        let outputs = match f.forward(first.clone()).dims() {
            [1, outputs] => outputs,
            output => {
                return Err(JacobianError::OutputShape {
                    batch: 1,
                    output: output.to_vec(),
                })
            }
        };
        if config.strict {
            if let Some(&output) = f.disconnected_outputs(first)?.first() {
                return Err(JacobianError::Independent { output });
            }
        }
        // A chunk holds chunk_size sample blocks of O x N: that many samples of the per-sample
        // layout, a batch-th as many output samples of the full one (each has a block per b').
        let blocks = config.chunk_size.unwrap_or(batch * batch);
        let chunk = match layout {
            Layout::PerSample => blocks,
            Layout::Full => blocks / batch,
        };
        Ok(Plan {
            layout,
            batch,
            outputs,
            input_dims: dims[1..].to_vec(),
            chunk: chunk.clamp(1, batch),
        })
    }

    fn input_len(&self) -> usize {
        self.input_dims.iter().product()
    }

    /// Refuses `samples` output samples of this layout when they exceed the limit.
    fn check_size(&self, samples: usize, config: &JacobianConfig) -> Result<(), JacobianError> {
        let Some(limit) = config.max_bytes else {
            return Ok(());
        };
        let mut shape = self
            .layout
            .shape(self.batch, self.outputs, &self.input_dims);
        shape[0] = samples;
        let bytes = shape.iter().map(|&d| d as u128).product::<u128>() * 4;
        if bytes > u128::from(limit) {
            return Err(JacobianError::TooLarge {
                layout: self.layout,
                shape,
                bytes,
                limit,
            });
        }
        Ok(())
    }

    /// The shape of `samples` output samples of this layout, the input flattened.
    fn flat_shape(&self, samples: usize) -> Vec<usize> {
        let mut shape = vec![samples, self.outputs];
        if self.layout == Layout::Full {
            shape.push(self.batch);
        }
        shape.push(self.input_len());
        shape
    }

    /// Runs `compute` on each chunk of output samples, in order, checks what it returns and
    /// hands it to `sink`.
    fn for_each_chunk<B: Backend, const R: usize>(
        &self,
        config: &JacobianConfig,
        mut compute: impl FnMut(Range<usize>) -> Result<Chunk<B, R>, JacobianError>,
        mut sink: impl FnMut(Chunk<B, R>) -> Result<(), SinkError>,
    ) -> Result<(), JacobianError> {
        self.check_size(self.chunk, config)?;
        for start in (0..self.batch).step_by(self.chunk) {
            let samples = self.chunk.min(self.batch - start);
            let mut chunk = compute(start..start + samples)?;
            let expected = self.flat_shape(samples);
            if chunk.jacobian.dims().as_slice() != expected {
                return Err(JacobianError::JacobianShape {
                    got: chunk.jacobian.dims().to_vec(),
                    expected,
                });
            }
            if let Some(outputs) = &chunk.outputs {
                if outputs.dims() != [samples, self.outputs] {
                    return Err(JacobianError::OutputShape {
                        batch: samples,
                        output: outputs.dims().to_vec(),
                    });
                }
            }
            if !config.with_outputs {
                chunk.outputs = None;
            }
            sink(chunk).map_err(JacobianError::Sink)?;
        }
        Ok(())
    }

    /// Checks that rank `J` is this layout's, flattened or with the input dims kept.
    fn check_rank<const D: usize, const J: usize>(&self) -> Result<(), JacobianError> {
        let flat = self.flat_shape(1).len();
        let kept = flat - 1 + D - 1;
        if J == flat || J == kept {
            Ok(())
        } else {
            Err(JacobianError::Rank {
                layout: self.layout,
                input_rank: D,
                flat,
                kept,
                asked: J,
            })
        }
    }

    /// `jacobian`, flattened, as rank `J` (checked by [`Plan::check_rank`]).
    fn reshape<B: Backend, const R: usize, const J: usize>(
        &self,
        jacobian: Tensor<B, R>,
    ) -> Tensor<B, J> {
        let shape = if J == R {
            self.flat_shape(self.batch)
        } else {
            self.layout
                .shape(self.batch, self.outputs, &self.input_dims)
        };
        let dims: [usize; J] = shape.try_into().expect("rank checked by check_rank");
        jacobian.reshape(dims)
    }
}

/// The per-sample Jacobian of `f` at `x`, chunk by chunk: `sink` receives each chunk of
/// [`JacobianConfig::chunk_size`] samples in order, on the backend's device, so that a batch
/// whose Jacobian does not fit in memory can be streamed to a file. The per-sample layout
/// holds all of the Jacobian only when samples are independent (see the
/// [crate documentation](crate)).
///
/// [`JacobianConfig::max_bytes`] bounds one chunk. Returns the number of outputs per sample.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use jacobian::{per_sample_chunks, JacobianConfig, ReverseMode};
///
/// type B = Autodiff<NdArray>;
/// let device = Default::default();
/// // y[b] = sum_i x[b, i]^2, one output: the Jacobian of sample b is 2 x[b].
/// let f = ReverseMode::new(|x: Tensor<B, 2>| (x.clone() * x).sum_dim(1));
/// let x = Tensor::<NdArray, 2>::from_floats(
///     [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]],
///     &device,
/// );
/// let config = JacobianConfig::new().with_chunk_size(Some(2)).with_with_outputs(true);
/// let mut seen = Vec::new();
/// let outputs = per_sample_chunks(&f, x, &config, |chunk| {
///     // A real consumer would write the chunk to a file here.
///     assert_eq!(chunk.outputs.as_ref().map(|y| y.dims()), Some([chunk.samples(), 1]));
///     seen.push((chunk.start, chunk.jacobian.into_data().to_vec::<f32>()?));
///     Ok(())
/// })
/// .unwrap();
/// assert_eq!(outputs, 1);
/// assert_eq!(
///     seen,
///     [
///         (0, vec![2.0, 4.0, 6.0, 8.0]),
///         (2, vec![10.0, 12.0, 14.0, 16.0]),
///         (4, vec![18.0, 20.0]),
///     ]
/// );
/// ```
pub fn per_sample_chunks<B, F, S, const D: usize>(
    f: &F,
    x: Tensor<B, D>,
    config: &JacobianConfig,
    sink: S,
) -> Result<usize, JacobianError>
where
    B: Backend,
    F: Differentiable<B, D> + ?Sized,
    S: FnMut(Chunk<B, 3>) -> Result<(), SinkError>,
{
    let plan = Plan::new(Layout::PerSample, f, &x, config)?;
    plan.for_each_chunk(
        config,
        |rows| {
            let samples = f.per_sample(x.clone().narrow(0, rows.start, rows.len()))?;
            Ok(Chunk {
                layout: Layout::PerSample,
                start: rows.start,
                jacobian: samples.jacobian,
                outputs: Some(samples.outputs),
            })
        },
        sink,
    )?;
    Ok(plan.outputs)
}

/// The full Jacobian of `f` at `x` (torch's layout), chunk by chunk: `sink` receives the rows
/// of [`JacobianConfig::chunk_size`] output samples at a time, `[n, O, batch, N]`, in order.
/// Every row is differentiated against the whole batch: nothing is assumed of how samples
/// interact.
///
/// [`JacobianConfig::max_bytes`] bounds one chunk. Returns the number of outputs per sample.
pub fn full_chunks<B, F, S, const D: usize>(
    f: &F,
    x: Tensor<B, D>,
    config: &JacobianConfig,
    sink: S,
) -> Result<usize, JacobianError>
where
    B: Backend,
    F: Differentiable<B, D> + ?Sized,
    S: FnMut(Chunk<B, 4>) -> Result<(), SinkError>,
{
    let plan = Plan::new(Layout::Full, f, &x, config)?;
    plan.for_each_chunk(
        config,
        |rows| {
            let start = rows.start;
            let rows = f.full_rows(x.clone(), rows)?;
            Ok(Chunk {
                layout: Layout::Full,
                start,
                jacobian: rows.jacobian,
                outputs: Some(rows.outputs),
            })
        },
        sink,
    )?;
    Ok(plan.outputs)
}

/// Gathers the chunks of one layout, checking the whole against the limit first.
fn collect<B, F, const D: usize, const R: usize, const J: usize>(
    layout: Layout,
    f: &F,
    x: Tensor<B, D>,
    config: &JacobianConfig,
    stream: impl FnOnce(
        &F,
        Tensor<B, D>,
        &JacobianConfig,
        &mut dyn FnMut(Chunk<B, R>) -> Result<(), SinkError>,
    ) -> Result<usize, JacobianError>,
) -> Result<Evaluation<B, J>, JacobianError>
where
    B: Backend,
    F: Differentiable<B, D> + ?Sized,
{
    let plan = Plan::new(layout, f, &x, config)?;
    plan.check_rank::<D, J>()?;
    plan.check_size(plan.batch, config)?;
    let (mut jacobians, mut outputs) = (Vec::new(), Vec::new());
    // The whole was checked against the limit: chunks need not be again.
    let chunks = config.clone().with_max_bytes(None);
    stream(f, x, &chunks, &mut |chunk| {
        jacobians.push(chunk.jacobian);
        outputs.extend(chunk.outputs);
        Ok(())
    })?;
    Ok(Evaluation {
        jacobian: plan.reshape(Tensor::cat(jacobians, 0)),
        outputs: config.with_outputs.then(|| Tensor::cat(outputs, 0)),
    })
}

/// The per-sample Jacobian of `f` at `x`: entry `[b, k, ...]` is `d y[b, k] / d x[b, ...]`.
/// Samples must be independent (see the [crate documentation](crate)).
///
/// `J` is the rank asked for: 3 for `[B, O, N]` (the input flattened) or `D + 1` for
/// `[B, O, input dims...]`. [`JacobianConfig::max_bytes`] bounds the whole result.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use jacobian::{per_sample, JacobianConfig, ReverseMode};
///
/// type B = Autodiff<NdArray>;
/// let device = Default::default();
/// // y[b] = (x[b, 0] * x[b, 1], 3 x[b, 0]): two outputs of two inputs per sample.
/// let f = ReverseMode::new(|x: Tensor<B, 2>| {
///     let a = x.clone().narrow(1, 0, 1);
///     let b = x.narrow(1, 1, 1);
///     Tensor::cat(vec![a.clone() * b, a * 3.0], 1)
/// });
/// let x = Tensor::<NdArray, 2>::from_floats([[1.0, 2.0], [4.0, 5.0]], &device);
/// let config = JacobianConfig::new().with_with_outputs(true);
/// let j = per_sample::<_, _, 2, 3>(&f, x, &config).unwrap();
/// assert_eq!(j.jacobian.dims(), [2, 2, 2]);
/// // Sample 1: d(x0 x1)/dx = (x1, x0) = (5, 4); d(3 x0)/dx = (3, 0).
/// let values = j.jacobian.into_data().to_vec::<f32>().unwrap();
/// assert_eq!(&values[4..], &[5.0, 4.0, 3.0, 0.0]);
/// let outputs = j.outputs.unwrap().into_data().to_vec::<f32>().unwrap();
/// assert_eq!(outputs, [2.0, 3.0, 20.0, 12.0]);
/// ```
pub fn per_sample<B, F, const D: usize, const J: usize>(
    f: &F,
    x: Tensor<B, D>,
    config: &JacobianConfig,
) -> Result<Evaluation<B, J>, JacobianError>
where
    B: Backend,
    F: Differentiable<B, D> + ?Sized,
{
    collect::<B, F, D, 3, J>(Layout::PerSample, f, x, config, |f, x, config, sink| {
        per_sample_chunks(f, x, config, sink)
    })
}

/// The full Jacobian of `f` at `x`, torch's layout: entry `[b, k, b', ...]` is
/// `d y[b, k] / d x[b', ...]`.
///
/// Each `y[b, k]` is differentiated against the whole batch, so nothing is assumed of how
/// samples interact. `J` is the rank asked for: 4 for `[B, O, B, N]` or `D + 2` for
/// `[B, O, B, input dims...]`. [`JacobianConfig::max_bytes`] bounds the whole result: a
/// larger one is refused before anything is computed.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use jacobian::{full, JacobianConfig, JacobianError, ReverseMode};
///
/// type B = Autodiff<NdArray>;
/// let device = Default::default();
/// // Centring over the batch mixes samples: d y[b, k] / d x[b', i] = [b = b'][k = i] - [k = i] / B.
/// let f = ReverseMode::new(|x: Tensor<B, 2>| x.clone() - x.mean_dim(0));
/// let x = Tensor::<NdArray, 2>::from_floats([[1.0, 2.0], [3.0, 5.0]], &device);
/// let j = full::<_, _, 2, 4>(&f, x.clone(), &JacobianConfig::new()).unwrap().jacobian;
/// assert_eq!(j.dims(), [2, 2, 2, 2]);
/// // Row [b = 0, k = 0]: over (b', i) = (0, 0), (0, 1), (1, 0), (1, 1).
/// let values = j.into_data().to_vec::<f32>().unwrap();
/// assert_eq!(&values[..4], &[0.5, 0.0, -0.5, 0.0]);
///
/// // 16 f32 entries are 64 bytes: refused under a smaller limit.
/// let config = JacobianConfig::new().with_max_bytes(Some(63));
/// let refused = full::<_, _, 2, 4>(&f, x, &config);
/// assert!(matches!(refused, Err(JacobianError::TooLarge { bytes: 64, .. })));
/// ```
pub fn full<B, F, const D: usize, const J: usize>(
    f: &F,
    x: Tensor<B, D>,
    config: &JacobianConfig,
) -> Result<Evaluation<B, J>, JacobianError>
where
    B: Backend,
    F: Differentiable<B, D> + ?Sized,
{
    collect::<B, F, D, 4, J>(Layout::Full, f, x, config, |f, x, config, sink| {
        full_chunks(f, x, config, sink)
    })
}

/// The per-sample Jacobian kept on the batch diagonal of a full one:
/// `torch.einsum("bibj->bij", full)`, entry `[b, k, i]` = `full[b, k, b, i]`, on the device.
///
/// # Shapes
///
/// - full: `[B, O, B, N]`
/// - output: `[B, O, N]`
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::{Tensor, Tolerance};
/// use jacobian::{batch_diagonal, full, per_sample, JacobianConfig, ReverseMode};
///
/// type B = Autodiff<NdArray>;
/// let device = Default::default();
/// // Samples are independent: y[b] = (x[b, 0] x[b, 1], x[b, 1]^2).
/// let f = ReverseMode::new(|x: Tensor<B, 2>| {
///     let (a, b) = (x.clone().narrow(1, 0, 1), x.narrow(1, 1, 1));
///     Tensor::cat(vec![a * b.clone(), b.clone() * b], 1)
/// });
/// let x = Tensor::<NdArray, 2>::from_floats([[1.0, 2.0], [3.0, -1.0], [0.5, 4.0]], &device);
/// let config = JacobianConfig::new();
/// let whole = full::<_, _, 2, 4>(&f, x.clone(), &config).unwrap().jacobian;
/// assert_eq!(whole.dims(), [3, 2, 3, 2]);
/// let diagonal = batch_diagonal(whole);
/// let direct = per_sample::<_, _, 2, 3>(&f, x, &config).unwrap().jacobian;
/// diagonal.into_data().assert_approx_eq::<f32>(&direct.into_data(), Tolerance::default());
/// ```
pub fn batch_diagonal<B: Backend>(full: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, outputs, batch_again, n] = full.dims();
    assert_eq!(
        batch, batch_again,
        "a full Jacobian [B, O, B, N] has the batch size twice"
    );
    let device = full.device();
    // Row (b, k) of the [B * O, B * N] matrix keeps its columns b * N .. (b + 1) * N: a
    // gather, not a product with a mask, so that a NaN off the diagonal stays there.
    let first = Tensor::<B, 1, Int>::arange(0..batch as i64, &device).mul_scalar(n as i64);
    let columns = first.reshape([batch, 1, 1])
        + Tensor::<B, 1, Int>::arange(0..n as i64, &device).reshape([1, 1, n]);
    let columns = columns
        .expand([batch, outputs, n])
        .reshape([batch * outputs, n]);
    full.reshape([batch * outputs, batch * n])
        .gather(1, columns)
        .reshape([batch, outputs, n])
}
