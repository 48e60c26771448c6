//! Input Jacobians of any Burn function, on the backend's device.
//!
//! For a batched function `y = f(x)` with `x: [B, input dims...]` and `y: [B, O]` (a model's
//! logits, say), this crate computes
//!
//! - the **per-sample** Jacobian `[B, O, input dims...]`, entry `[b, k, ...]` being
//!   `d y[b, k] / d x[b, ...]` ([`per_sample`], [`per_sample_chunks`]);
//! - the **full** Jacobian `[B, O, B, input dims...]`, entry `[b, k, b', ...]` being
//!   `d y[b, k] / d x[b', ...]`, the layout of `torch.autograd.functional.jacobian` ([`full`],
//!   [`full_chunks`]);
//! - the per-sample Jacobian from the full one ([`batch_diagonal`]), which is
//!   `torch.einsum("bibj->bij", full)`.
//!
//! Results are tensors on the backend's device; [`Jacobian`] reads them (or a chunk of them)
//! back to the host when a caller asks.
//!
//! # The seam
//!
//! The function is anything that implements [`Differentiable`]. [`ReverseMode`] implements it
//! for any closure or module on an autodiff backend, through Burn's reverse mode; a model that
//! knows a faster way to its Jacobian implements it itself, and every function of this crate
//! takes it the same way. The engine owns what is common: the chunks (and streaming them to a
//! consumer), strict mode, the outputs, the memory limit ([`JacobianConfig`]) and the checks
//! of every shape.
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::module::Module;
//! use burn::nn::LinearConfig;
//! use burn::tensor::{Distribution, Tensor, Tolerance};
//! use jacobian::{per_sample, JacobianConfig, ReverseMode};
//!
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! // An nn::Linear of 5 inputs and 3 outputs, y = x W + b with W of shape [5, 3]: every
//! // sample's Jacobian is W^T. no_grad: input Jacobians never need the weights' gradients.
//! let linear = LinearConfig::new(5, 3).init::<B>(&device).no_grad();
//! let f = ReverseMode::new(|x| linear.forward(x));
//! let x = Tensor::<NdArray, 2>::random([4, 5], Distribution::Default, &device);
//! let j = per_sample::<_, _, 2, 3>(&f, x, &JacobianConfig::new()).unwrap().jacobian;
//! assert_eq!(j.dims(), [4, 3, 5]);
//! let w_t = linear.weight.val().inner().transpose().unsqueeze_dim::<3>(0).expand([4, 3, 5]);
//! j.into_data().assert_approx_eq::<f32>(&w_t.into_data(), Tolerance::absolute(1e-6));
//! ```
//!
//! # How reverse mode computes it
//!
//! Burn's autodiff consumes its graph in each backward pass, so every backward pass has a
//! forward pass of its own. Reverse mode gives one row of the Jacobian (a vector-Jacobian
//! product) per cotangent, and the [`Strategy`] chooses how those are gathered:
//!
//! - [`Strategy::PerOutput`]: one forward and one backward pass per cotangent. For the
//!   per-sample layout the cotangent of output `k` is `e_k` at every sample, so the gradient of
//!   `sum_b y[b, k]` gives row `k` of every sample's Jacobian at once (`O` passes, not `B x O`);
//! - [`Strategy::StackedOutputs`]: the batch is repeated once per cotangent, copy `c` carrying
//!   cotangent `c`, so one forward and one backward pass over a larger batch give all rows
//!   (fewer, larger kernels; that many times the activation memory, bounded by the chunks).
//!   Per-sample layout only: a function whose samples interact is another function of a
//!   larger batch.
//!
//! The per-sample layout gathers `d y[b, k] / d x[b]` through `sum_b`, which is exact when
//! samples are independent (no batch normalisation in training mode, no attention across the
//! batch). The full layout assumes nothing: row `(b, k)` carries `e_k` at sample `b` and zero
//! at every other sample, one pass per row against the whole input, so the blocks with
//! `b != b'` are measured, not assumed zero.
//!
//! Parameters that require gradients cost a weight-gradient computation in every backward
//! pass that input Jacobians never use: call `module.no_grad()` on a model before handing it
//! over.
#![warn(missing_docs)]

pub mod attacks;
mod config;
mod differentiable;
mod engine;
mod host;
mod layout;
mod norms;
mod reverse;
mod standardized;

pub use config::{JacobianConfig, JacobianError};
pub use differentiable::{Differentiable, FullRows, PerSample};
pub use engine::{
    batch_diagonal, full, full_chunks, per_sample, per_sample_chunks, Chunk, Evaluation, SinkError,
};
pub use host::{Jacobian, Magnitudes};
pub use layout::{python_shape, Axis, Layout};
pub use norms::{frobenius_norm, frobenius_norms, spectral_norm, spectral_norms};
pub use reverse::{ReverseMode, Strategy};
pub use standardized::{StandardizeError, Standardized};
