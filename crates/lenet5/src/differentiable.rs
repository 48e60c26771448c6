//! LeNet-5's input Jacobian as a differentiable function of the weights and the input: what
//! Burn alone cannot give, since it has no double backward.
//!
//! Burn 0.21's `Tensor::grad` returns a detached tensor, and the backward ops of its pooling and
//! linear layers cannot themselves be differentiated. LeNet-5's Jacobian in
//! [`tensor_ops`](crate::tensor_ops) is not a backward pass but a chain of ordinary tensor ops
//! (matmuls with transposed weights, transposed convolutions, the pooling's adjoint by
//! reshape and expansion, element-wise products with the activations' derivatives). Run on an
//! `Autodiff` backend, Burn records that chain like any forward pass: the Jacobian stays in the
//! graph, and a loss made of it backpropagates to the weights and to the input. Hence:
//!
//! - [`jacobian_penalty`]: `lambda / 2 * mean_b ||J_b||_F^2`, Drucker and LeCun's double
//!   backpropagation, exact or by Hoffman et al.'s random projections ([`NormEstimator`]), to
//!   add to a training loss (see [`train`](crate::train));
//! - [`hessian_vector_products`] and [`hessian`]: the input Hessian of one logit, by
//!   differentiating a row of the Jacobian once more with respect to the input.
//!
//! For a plain Jacobian, the value without the graph, use the [`jacobian`] engine or
//! [`LeNet5Backend`](crate::LeNet5Backend): faster, with the host kernels on the CPU backends.
//!
//! ReLU's derivative (a mask) and max pooling's routing (an argmax) are constants of the graph:
//! their own derivatives are zero almost everywhere, as in PyTorch's double backward.
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::tensor::{Distribution, Tensor};
//! use lenet5::differentiable::{jacobian_penalty, NormEstimator};
//! use lenet5::LeNet5Config;
//!
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! let model = LeNet5Config::new().init::<B>(&device);
//! let images = Tensor::<B, 4>::random([4, 1, 32, 32], Distribution::Default, &device);
//! let penalty = jacobian_penalty(&model, images, 0.01, NormEstimator::Exact);
//! let grads = penalty.penalty.backward(); // d penalty / d weights
//! assert!(model.fc1.weight.grad(&grads).is_some());
//! ```

use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Tensor};

use crate::tensor_ops::{per_sample, vector_jacobian_products};
use crate::LeNet5;

/// How [`squared_jacobian_norms`] gets `||J_b||_F^2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormEstimator {
    /// Every row of the Jacobian: `C` rows per sample for `C` classes.
    Exact,
    /// Hoffman, Roberts and Yaida (2019): `C / n * sum_p ||v_p^T J||^2` over `n` directions
    /// `v_p` drawn uniformly on the unit sphere of the logits (from the backend's generator):
    /// an unbiased estimate at the cost of `n` rows instead of `C`.
    Projections(usize),
}

/// What [`jacobian_penalty`] returns, all in the graph.
#[derive(Debug)]
pub struct JacobianPenalty<B: Backend> {
    /// `lambda / 2 * mean_b ||J_b||_F^2`, `[1]`: add it to the loss.
    pub penalty: Tensor<B, 1>,
    /// `||J_b||_F^2` (or its estimate) of each sample, `[n]`.
    pub squared_norms: Tensor<B, 1>,
    /// The logits, `[n, num_classes]`, from the same forward pass.
    pub logits: Tensor<B, 2>,
}

/// The squared Frobenius norm of each sample's input Jacobian (or its estimate), `[n]`, and
/// the logits, `[n, num_classes]`: both in the graph on an autodiff backend.
///
/// # Panics
///
/// When the images are not what the model takes, or `Projections(0)`.
pub fn squared_jacobian_norms<B: Backend>(
    model: &LeNet5<B>,
    images: Tensor<B, 4>,
    estimator: NormEstimator,
) -> (Tensor<B, 1>, Tensor<B, 2>) {
    let n = images.dims()[0];
    let classes = model.num_classes();
    let (rows, scale) = match estimator {
        NormEstimator::Exact => (per_sample(model, images), 1.0),
        NormEstimator::Projections(p) => {
            assert!(p > 0, "at least one projection");
            let directions = Tensor::<B, 3>::random(
                [n, p, classes],
                Distribution::Normal(0.0, 1.0),
                &images.device(),
            );
            let lengths = directions.clone().powi_scalar(2).sum_dim(2).sqrt();
            let directions = directions / lengths;
            let rows = vector_jacobian_products(model, images, directions.detach());
            (rows, classes as f64 / p as f64)
        }
    };
    let squared = rows
        .jacobian
        .powi_scalar(2)
        .sum_dim(2)
        .sum_dim(1)
        .reshape([n])
        .mul_scalar(scale);
    (squared, rows.outputs)
}

/// The Jacobian penalty `lambda / 2 * mean_b ||J_b||_F^2` of a batch, in the graph: its
/// gradient with respect to the weights is double backpropagation's (PyTorch:
/// `torch.autograd.grad(logits[:, k].sum(), x, create_graph=True)` for every class, then the
/// penalty's `backward`).
///
/// # Shapes
///
/// - images: `[n, in_channels, size, size]`
pub fn jacobian_penalty<B: Backend>(
    model: &LeNet5<B>,
    images: Tensor<B, 4>,
    lambda: f64,
    estimator: NormEstimator,
) -> JacobianPenalty<B> {
    let (squared_norms, logits) = squared_jacobian_norms(model, images, estimator);
    JacobianPenalty {
        penalty: squared_norms.clone().mean().mul_scalar(lambda / 2.0),
        squared_norms,
        logits,
    }
}

/// Hessian-vector products of one logit with respect to the input: `H_b v_b` for every sample
/// `b`, where `H_b` is the Hessian of `logits[b, class]` with respect to `images[b]`.
///
/// Row `class` of the Jacobian, computed in the graph, contracted with `v` and differentiated
/// once more. Where the variant is piecewise linear in its input (ReLU), the products are zero.
///
/// # Shapes
///
/// - images, vectors, output: `[n, in_channels, size, size]`
pub fn hessian_vector_products<B: AutodiffBackend>(
    model: &LeNet5<B>,
    images: Tensor<B::InnerBackend, 4>,
    class: usize,
    vectors: Tensor<B::InnerBackend, 4>,
) -> Tensor<B::InnerBackend, 4> {
    let dims = images.dims();
    let [n, _, _, _] = dims;
    let classes = model.num_classes();
    assert!(class < classes, "class {class} of {classes}");
    assert_eq!(vectors.dims(), dims, "one vector per image");
    let device = images.device();
    // Input gradients only: no weight gradient is computed.
    let model = model.clone().no_grad();
    let x = Tensor::<B, 4>::from_inner(images).require_grad();
    let cotangent = Tensor::<B, 2>::eye(classes, &device)
        .narrow(0, class, 1)
        .unsqueeze_dim::<3>(0)
        .expand([n, 1, classes]);
    let row = vector_jacobian_products(&model, x.clone(), cotangent).jacobian; // [n, 1, input_len]
    let contraction =
        (row.flatten::<2>(1, 2) * Tensor::from_inner(vectors).flatten::<2>(1, 3)).sum();
    let grads = contraction.backward();
    // No gradient: the row does not depend on the input (a piecewise-linear variant).
    x.grad(&grads)
        .unwrap_or_else(|| Tensor::zeros(dims, &device))
}

/// The input Hessian of `logits[b, class]` for every sample `b`, `[n, input_len, input_len]`,
/// by Hessian-vector products with the unit vectors, `chunk` of them at a time (each against a
/// copy of the sample: one backward pass gives `chunk` rows).
///
/// # Panics
///
/// When `chunk` is 0, or as [`hessian_vector_products`].
pub fn hessian<B: AutodiffBackend>(
    model: &LeNet5<B>,
    images: Tensor<B::InnerBackend, 4>,
    class: usize,
    chunk: usize,
) -> Tensor<B::InnerBackend, 3> {
    assert!(chunk > 0, "a chunk of at least one row");
    let [n, c, h, w] = images.dims();
    let len = c * h * w;
    let units = Tensor::<B::InnerBackend, 2>::eye(len, &images.device());
    let samples = (0..n)
        .map(|b| {
            let sample = images.clone().narrow(0, b, 1);
            let rows = (0..len)
                .step_by(chunk)
                .map(|start| {
                    let m = chunk.min(len - start);
                    let copies = sample.clone().expand([m, c, h, w]);
                    let units = units.clone().narrow(0, start, m).reshape([m, c, h, w]);
                    hessian_vector_products(model, copies, class, units).reshape([m, len])
                })
                .collect();
            Tensor::cat(rows, 0).unsqueeze_dim::<3>(0)
        })
        .collect();
    Tensor::cat(samples, 0)
}
