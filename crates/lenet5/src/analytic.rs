//! LeNet-5's per-sample input Jacobian by hand-written reverse mode, on any backend.
//!
//! The general way is Burn's autodiff (the `jacobian` crate), which records a graph, and, since
//! Burn consumes the graph in each backward pass, repeats the forward pass for every group of
//! rows. Knowing the layers, one forward pass suffices: the tanh derivatives are kept, and the
//! `O` cotangents of every sample (the rows of the last layer's weights) are carried back
//! through the layers at once, with the transposed convolutions and the pooling's adjoint.
//! It uses no autodiff backend at all. Tests check it against the autodiff engine.

use burn::tensor::backend::Backend;
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::Tensor;

use crate::{LeNet5, IMAGE_CHANNELS, IMAGE_SIZE};

impl<B: Backend> LeNet5<B> {
    /// The per-sample input Jacobian of the logits: entry `[b, k, c, h, w]` is
    /// `d logits[b, k] / d images[b, c, h, w]`.
    ///
    /// Equal (up to float rounding) to the per-sample layout of the `jacobian` crate, without
    /// autodiff: one forward pass, then one backward sweep for all outputs.
    ///
    /// # Shapes
    ///
    /// - images: `[batch, 1, 32, 32]`
    /// - output: `[batch, num_classes, 1, 32, 32]`
    pub fn input_jacobian(&self, images: Tensor<B, 4>) -> Tensor<B, 5> {
        let [batch, _, _, _] = images.dims();
        let classes = self.num_classes();
        let rows = batch * classes;

        // Forward, keeping what the backward sweep needs: the tanh outputs t, whose
        // derivative is 1 - t^2.
        let t1 = self.conv1.forward(images).tanh(); // [batch, 6, 28, 28]
        let t2 = self.conv2.forward(self.pool.forward(t1.clone())).tanh(); // [batch, 16, 10, 10]
        let flat = self.pool.forward(t2.clone()).flatten::<2>(1, 3); // [batch, 400]
        let h1 = self.fc1.forward(flat).tanh(); // [batch, 120]
        let h2 = self.fc2.forward(h1.clone()).tanh(); // [batch, 84]

        // Backward: row k of sample b starts as e_k, which the last layer maps to row k of
        // its weight. Burn's Linear weight is [in, out], so x W's adjoint is g W^T.
        let w3 = self.fc3.weight.val().transpose(); // [classes, 84]
        let g = w3.unsqueeze_dim::<3>(0) * tanh_derivative(h2).unsqueeze_dim::<3>(1); // [batch, classes, 84]
        let g = g.matmul(self.fc2.weight.val().transpose().unsqueeze_dim::<3>(0)) // [batch, classes, 120]
            * tanh_derivative(h1).unsqueeze_dim::<3>(1);
        let g = g.matmul(self.fc1.weight.val().transpose().unsqueeze_dim::<3>(0)); // [batch, classes, 400]
        let g = avg_pool_2x2_adjoint(g.reshape([rows, 16, 5, 5])) // [rows, 16, 10, 10]
            * per_row(tanh_derivative(t2), classes);
        let g = conv_transpose2d(g, self.conv2.weight.val(), None, stride_one()); // [rows, 6, 14, 14]
        let g = avg_pool_2x2_adjoint(g) * per_row(tanh_derivative(t1), classes); // [rows, 6, 28, 28]
        let g = conv_transpose2d(g, self.conv1.weight.val(), None, stride_one()); // [rows, 1, 32, 32]
        g.reshape([batch, classes, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE])
    }
}

/// d tanh(a) / da = 1 - tanh(a)^2, from t = tanh(a).
fn tanh_derivative<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    t.clone().mul(t).neg().add_scalar(1.0)
}

/// `[batch, C, H, W]` repeated for each of the `classes` rows of a sample:
/// `[batch * classes, C, H, W]`, row `b * classes + k` being sample `b`.
fn per_row<B: Backend>(x: Tensor<B, 4>, classes: usize) -> Tensor<B, 4> {
    let [batch, c, h, w] = x.dims();
    x.unsqueeze_dim::<5>(1)
        .expand([batch, classes, c, h, w])
        .reshape([batch * classes, c, h, w])
}

/// The adjoint of convolution with stride 1 and no padding is the transposed convolution with
/// the same weights.
fn stride_one() -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([1, 1], [0, 0], [0, 0], [1, 1], 1)
}

/// Adjoint of 2 x 2 average pooling with stride 2: each value spread over its window, / 4.
fn avg_pool_2x2_adjoint<B: Backend>(g: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = g.dims();
    g.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, 2, w, 2])
        .reshape([n, c, 2 * h, 2 * w])
        .mul_scalar(0.25)
}
