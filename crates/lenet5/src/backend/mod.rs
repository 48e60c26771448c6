//! LeNet-5's input Jacobian as a backend extension: one body in tensor ops for every backend,
//! overridden where a backend has a faster way (each in a file of its own), and the seam the
//! `jacobian` engine drives.

#[cfg(feature = "autodiff")]
mod autodiff;
#[cfg(any(feature = "ndarray", feature = "flex"))]
mod cpu;
#[cfg(feature = "host")]
mod host;
pub mod tensor_ops;
#[cfg(feature = "wgpu")]
mod wgpu;

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use jacobian::{Differentiable, FullRows, JacobianError, PerSample};

use crate::LeNet5;

/// A backend that computes LeNet-5's input Jacobians: Burn's [`Backend`] extended, as Burn's
/// custom kernels and `burn-vision` extend it.
///
/// The default bodies ([`tensor_ops`](crate::tensor_ops)) are written in Burn tensor ops and
/// run on the backend's device, for every variant of the family: one forward pass keeping the
/// activations' derivatives, then every cotangent carried back to the input through the
/// layers' adjoints as one batch of rows. With the crate's `host` feature, Flex and NdArray
/// override them with fused kernels on the host CPU, several times faster there;
/// `Autodiff<B>` delegates to its inner backend (the plain Jacobian is a value).
///
/// Implemented, each behind the crate feature of the same name, for Burn's `NdArray`, `Flex`
/// and `Wgpu` (`f32`), and for `Autodiff` of any of them. Another backend gets the tensor-op
/// bodies with an empty impl in a crate that owns the backend type or a wrapper of it.
///
/// Use it through the [`jacobian`] engine, which checks shapes and chunks the batch:
///
/// ```
/// use burn::backend::NdArray;
/// use burn::tensor::{Distribution, Tensor};
/// use jacobian::{full, per_sample, JacobianConfig};
/// use lenet5::LeNet5Config;
///
/// let device = Default::default();
/// let model = LeNet5Config::new().init::<NdArray>(&device);
/// let images = Tensor::<NdArray, 4>::random([3, 1, 32, 32], Distribution::Default, &device);
/// let config = JacobianConfig::new();
/// // [batch, classes, 1, 32, 32]: d logits[b, k] / d images[b, ...].
/// let j = per_sample::<_, _, 4, 5>(&model, images.clone(), &config).unwrap().jacobian;
/// assert_eq!(j.dims(), [3, 10, 1, 32, 32]);
/// // torch.autograd.functional.jacobian's layout: [batch, classes, batch, 1, 32, 32].
/// let j = full::<_, _, 4, 6>(&model, images, &config).unwrap().jacobian;
/// assert_eq!(j.dims(), [3, 10, 3, 1, 32, 32]);
/// ```
pub trait LeNet5Backend: Backend {
    /// The per-sample input Jacobian of the logits, `d logits[b, k] / d images[b, ...]`, and
    /// the logits.
    ///
    /// # Shapes
    ///
    /// - images: `[n, in_channels, size, size]` ([`LeNet5Config::input_dims`](crate::LeNet5Config::input_dims))
    /// - jacobian: `[n, num_classes, input_len]`
    /// - outputs: `[n, num_classes]`
    fn lenet5_per_sample(model: &LeNet5<Self>, images: Tensor<Self, 4>) -> PerSample<Self> {
        tensor_ops::per_sample(model, images)
    }

    /// The rows of the full input Jacobian of the output samples `rows`:
    /// `d logits[b, k] / d images[b', ...]` for `b` in `rows` and every `b'`, and those
    /// samples' logits.
    ///
    /// # Shapes
    ///
    /// - images: `[n, in_channels, size, size]`
    /// - jacobian: `[rows.len(), num_classes, n, input_len]`
    /// - outputs: `[rows.len(), num_classes]`
    fn lenet5_full_rows(
        model: &LeNet5<Self>,
        images: Tensor<Self, 4>,
        rows: Range<usize>,
    ) -> FullRows<Self> {
        tensor_ops::full_rows(model, images, rows)
    }
}

impl<B: LeNet5Backend> Differentiable<B, 4> for LeNet5<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        LeNet5::forward(self, x)
    }

    fn per_sample(&self, x: Tensor<B, 4>) -> Result<PerSample<B>, JacobianError> {
        Ok(B::lenet5_per_sample(self, x))
    }

    fn full_rows(&self, x: Tensor<B, 4>, rows: Range<usize>) -> Result<FullRows<B>, JacobianError> {
        Ok(B::lenet5_full_rows(self, x, rows))
    }
}
