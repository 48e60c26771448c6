//! LeNet-5's input Jacobians by hand-written reverse mode, on any backend.
//!
//! The general way is Burn's autodiff (the `jacobian` crate), which records a graph, and, since
//! Burn consumes the graph in each backward pass, repeats the forward pass for every group of
//! rows. Knowing the layers, one forward pass suffices: the tanh outputs are kept, and many
//! cotangents are carried back through the layers at once, as one batch of rows, with the
//! transposed convolutions and the pooling's adjoint. No autodiff backend is involved. Tests
//! check both layouts against the autodiff engine.

use burn::tensor::backend::Backend;
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::Tensor;

use crate::{LeNet5, IMAGE_CHANNELS, IMAGE_SIZE};

/// Rows of cotangents a sweep of the full layout carries at most (memory bound).
const FULL_ROWS: usize = 4096;

/// The tanh outputs of one forward pass: `1 - t^2` is tanh's derivative there.
struct Activations<B: Backend> {
    t1: Tensor<B, 4>, // [batch, 6, 28, 28]
    t2: Tensor<B, 4>, // [batch, 16, 10, 10]
    h1: Tensor<B, 2>, // [batch, 120]
    h2: Tensor<B, 2>, // [batch, 84]
}

/// Which sample's activations each cotangent row goes through: rows are laid out
/// `[outer, batch, inner]`, row `(o, s, i)` belonging to sample `s`.
#[derive(Clone, Copy)]
struct Rows {
    outer: usize,
    inner: usize,
}

impl Rows {
    fn tile4<B: Backend>(self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, c, h, w] = x.dims();
        x.reshape([1, batch, 1, c * h * w])
            .expand([self.outer, batch, self.inner, c * h * w])
            .reshape([self.outer * batch * self.inner, c, h, w])
    }

    fn tile2<B: Backend>(self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [batch, n] = x.dims();
        x.reshape([1, batch, 1, n])
            .expand([self.outer, batch, self.inner, n])
            .reshape([self.outer * batch * self.inner, n])
    }
}

impl<B: Backend> LeNet5<B> {
    fn activations(&self, images: Tensor<B, 4>) -> Activations<B> {
        let t1 = self.conv1.forward(images).tanh(); // [batch, 6, 28, 28]
        let t2 = self.conv2.forward(self.pool.forward(t1.clone())).tanh(); // [batch, 16, 10, 10]
        let flat = self.pool.forward(t2.clone()).flatten::<2>(1, 3); // [batch, 400]
        let h1 = self.fc1.forward(flat).tanh(); // [batch, 120]
        let h2 = self.fc2.forward(h1.clone()).tanh(); // [batch, 84]
        Activations { t1, t2, h1, h2 }
    }

    /// Carries cotangents of the last hidden layer back to the input.
    ///
    /// `g` holds one row per cotangent, `d L / d h2` before tanh's derivative, laid out as
    /// `rows` says; the result is `d L / d images` of each row, `[rows, 1, 32, 32]`.
    fn backward_sweep(&self, a: &Activations<B>, g: Tensor<B, 2>, rows: Rows) -> Tensor<B, 4> {
        let n = g.dims()[0];
        // Burn's Linear weight is [in, out]: the adjoint of x W is g W^T.
        let g = g * rows.tile2(tanh_derivative(a.h2.clone())); // [n, 84]
        let g = g.matmul(self.fc2.weight.val().transpose()) // [n, 120]
            * rows.tile2(tanh_derivative(a.h1.clone()));
        let g = g.matmul(self.fc1.weight.val().transpose()); // [n, 400]
        let g = avg_pool_2x2_adjoint(g.reshape([n, 16, 5, 5])) // [n, 16, 10, 10]
            * rows.tile4(tanh_derivative(a.t2.clone()));
        let g = conv_transpose2d(g, self.conv2.weight.val(), None, stride_one()); // [n, 6, 14, 14]
        let g = avg_pool_2x2_adjoint(g) * rows.tile4(tanh_derivative(a.t1.clone())); // [n, 6, 28, 28]
        conv_transpose2d(g, self.conv1.weight.val(), None, stride_one()) // [n, 1, 32, 32]
    }

    /// The per-sample input Jacobian of the logits: entry `[b, k, c, h, w]` is
    /// `d logits[b, k] / d images[b, c, h, w]`.
    ///
    /// Equal (up to float rounding) to the per-sample layout of the `jacobian` crate, without
    /// autodiff: one forward pass, then one backward sweep for all outputs of all samples.
    ///
    /// # Shapes
    ///
    /// - images: `[batch, 1, 32, 32]`
    /// - output: `[batch, num_classes, 1, 32, 32]`
    pub fn input_jacobian(&self, images: Tensor<B, 4>) -> Tensor<B, 5> {
        let [batch, _, _, _] = images.dims();
        let classes = self.num_classes();
        let a = self.activations(images);
        // Row (b, k) starts from e_k at sample b's logits: row k of the last weight, W3^T[k].
        let w3t = self.fc3.weight.val().transpose(); // [classes, 84]
        let g = w3t
            .unsqueeze_dim::<3>(0)
            .expand([batch, classes, 84])
            .reshape([batch * classes, 84]);
        let rows = Rows {
            outer: 1,
            inner: classes,
        };
        self.backward_sweep(&a, g, rows) // [batch * classes, 1, 32, 32]
            .reshape([batch, classes, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE])
    }

    /// The full input Jacobian of the logits, torch's layout: entry `[b, k, b', c, h, w]` is
    /// `d logits[b, k] / d images[b', c, h, w]`.
    ///
    /// Each `logits[b, k]` is differentiated against the whole batch: its cotangent (one at
    /// `[b, k]`, zero elsewhere) is carried back through every sample `b'`, so the blocks with
    /// `b != b'` come out of the layers' adjoints rather than being assumed.
    ///
    /// # Shapes
    ///
    /// - images: `[batch, 1, 32, 32]`
    /// - output: `[batch, num_classes, batch, 1, 32, 32]`
    pub fn input_jacobian_full(&self, images: Tensor<B, 4>) -> Tensor<B, 6> {
        let [batch, _, _, _] = images.dims();
        let classes = self.num_classes();
        let device = images.device();
        let a = self.activations(images);
        let w3t = self.fc3.weight.val().transpose(); // [classes, 84]
                                                     // Output samples b are taken a few at a time, so that a sweep holds at most about
                                                     // FULL_ROWS rows (each row's largest cotangent is 6 x 28 x 28 floats).
        let chunk = (FULL_ROWS / (classes * batch)).clamp(1, batch);
        let blocks = (0..batch)
            .step_by(chunk)
            .map(|start| {
                let n = chunk.min(batch - start);
                // Cotangent of row (b, k) at sample b''s logits: delta(b, b') e_k, mapped by the
                // last layer to delta(b, b') W3^T[k].
                let one_hot = Tensor::<B, 2>::eye(batch, &device)
                    .narrow(0, start, n)
                    .reshape([n, 1, batch, 1]);
                let g = (one_hot * w3t.clone().reshape([1, classes, 1, 84])) // [n, classes, batch, 84]
                    .reshape([n * classes * batch, 84]);
                let rows = Rows {
                    outer: n * classes,
                    inner: 1,
                };
                self.backward_sweep(&a, g, rows).reshape([
                    n,
                    classes,
                    batch,
                    IMAGE_CHANNELS,
                    IMAGE_SIZE,
                    IMAGE_SIZE,
                ])
            })
            .collect();
        Tensor::cat(blocks, 0)
    }
}

/// d tanh(a) / da = 1 - tanh(a)^2, from t = tanh(a).
fn tanh_derivative<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    t.clone().mul(t).neg().add_scalar(1.0)
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
