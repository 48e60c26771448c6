//! The seam: a batched function whose input Jacobian can be computed.

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::JacobianError;

/// A batched function `y = f(x)`, `x: [n, input dims...]` to `y: [n, O]`, whose input
/// Jacobian can be computed on backend `B`, where its results stay.
///
/// [`ReverseMode`](crate::ReverseMode) implements it for any function on an autodiff
/// backend; a model that knows a faster way implements it itself. The engine's functions
/// ([`per_sample`](crate::per_sample), [`full`](crate::full) and their streaming forms) own
/// everything else: the chunking, the checks of shapes and sizes, strict mode, what is
/// handed back. `N` below is the number of entries of one sample's input (the product of
/// the input dims).
pub trait Differentiable<B: Backend, const D: usize> {
    /// `f(x)`.
    ///
    /// # Shapes
    ///
    /// - x: `[n, input dims...]`
    /// - output: `[n, O]`
    fn forward(&self, x: Tensor<B, D>) -> Tensor<B, 2>;

    /// The per-sample Jacobian of `x`'s samples, `d y[b, k] / d x[b, ...]`, and `f(x)`.
    ///
    /// # Shapes
    ///
    /// - x: `[n, input dims...]`
    /// - jacobian: `[n, O, N]`
    /// - outputs: `[n, O]`
    fn per_sample(&self, x: Tensor<B, D>) -> Result<PerSample<B>, JacobianError>;

    /// The rows of the full Jacobian that belong to the output samples `rows`:
    /// `d y[b, k] / d x[b', ...]` for `b` in `rows` and every `b'` of `x`, and those samples'
    /// outputs.
    ///
    /// # Shapes
    ///
    /// - x: `[n, input dims...]`
    /// - jacobian: `[rows.len(), O, n, N]`
    /// - outputs: `[rows.len(), O]`
    fn full_rows(&self, x: Tensor<B, D>, rows: Range<usize>) -> Result<FullRows<B>, JacobianError>;

    /// The outputs that are not connected to the input at all, for strict mode (torch's
    /// `strict=True`), at `x`. A function whose every output depends on its input, as a
    /// hand-written Jacobian knows, keeps the default: none.
    ///
    /// # Shapes
    ///
    /// - x: `[1, input dims...]`
    fn disconnected_outputs(&self, x: Tensor<B, D>) -> Result<Vec<usize>, JacobianError> {
        let _ = x;
        Ok(Vec::new())
    }
}

/// The per-sample Jacobian of some samples and their outputs, which every way of computing
/// it has on the way.
#[derive(Clone, Debug)]
pub struct PerSample<B: Backend> {
    /// `[n, O, N]`: `d y[b, k] / d x[b, ...]`, the input flattened.
    pub jacobian: Tensor<B, 3>,
    /// `[n, O]`: `f(x)`.
    pub outputs: Tensor<B, 2>,
}

/// The rows of the full Jacobian that belong to some output samples, and those samples'
/// outputs, which every way of computing the rows has on the way.
#[derive(Clone, Debug)]
pub struct FullRows<B: Backend> {
    /// `[rows, O, n, N]`: `d y[b, k] / d x[b', ...]` for `b` in the rows and every `b'` of
    /// the batch, the input flattened.
    pub jacobian: Tensor<B, 4>,
    /// `[rows, O]`: `f(x)` of the rows' samples.
    pub outputs: Tensor<B, 2>,
}
