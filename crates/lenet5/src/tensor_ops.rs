//! LeNet-5's input Jacobians in Burn tensor ops: the default bodies of
//! [`LeNet5Backend`](crate::LeNet5Backend), which run on any backend's device.
//!
//! The general way is Burn's autodiff (the `jacobian` crate's `ReverseMode`), which records a
//! graph and, since Burn consumes the graph in each backward pass, repeats the forward pass
//! for every group of rows. Knowing the layers, one forward pass suffices: it runs through
//! the model's own layers and keeps the tanh outputs; then all cotangent rows are carried back
//! at once, as one batch, through the layers' adjoints (the transposed weight matrices, the
//! transposed convolutions, the pooling's adjoint), each scaled by tanh's derivative of the
//! sample the row belongs to.

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::Tensor;
use jacobian::{FullRows, PerSample};

use crate::{
    LeNet5, CONV2_CHANNELS, FC2_UNITS, IMAGE_CHANNELS, IMAGE_LEN, IMAGE_SIZE, POOL2_SIZE, POOL_SIZE,
};

/// What one forward pass keeps: the tanh outputs (`1 - t^2` is tanh's derivative there) and
/// the logits.
struct Activations<B: Backend> {
    conv1: Tensor<B, 4>, // [n, 6, 28, 28]
    conv2: Tensor<B, 4>, // [n, 16, 10, 10]
    fc1: Tensor<B, 2>,   // [n, 120]
    fc2: Tensor<B, 2>,   // [n, 84]
    logits: Tensor<B, 2>,
}

impl<B: Backend> Activations<B> {
    /// [`LeNet5::forward`], keeping what the backward sweep needs.
    fn new(model: &LeNet5<B>, images: Tensor<B, 4>) -> Self {
        let tanh = |x| model.activation.forward(x);
        let conv1 = tanh(model.conv1.forward(images));
        let conv2 = tanh(model.conv2.forward(model.pool.forward(conv1.clone())));
        let flat = model.pool.forward(conv2.clone()).flatten::<2>(1, 3);
        let fc1 = model.activation.forward(model.fc1.forward(flat));
        let fc2 = model.activation.forward(model.fc2.forward(fc1.clone()));
        let logits = model.fc3.forward(fc2.clone());
        Activations {
            conv1,
            conv2,
            fc1,
            fc2,
            logits,
        }
    }
}

/// Which sample's activations each cotangent row goes through: rows are laid out
/// `[outer, n, inner]`, row `(o, s, i)` belonging to sample `s`.
#[derive(Clone, Copy)]
struct Rows {
    outer: usize,
    inner: usize,
}

impl Rows {
    /// `x` (one entry per sample) repeated for every row, `[rows, ...]`.
    fn tile<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let (n, rest) = (dims[0], dims[1..].iter().product::<usize>());
        let mut tiled = dims;
        tiled[0] = self.outer * n * self.inner;
        x.reshape([1, n, 1, rest])
            .expand([self.outer, n, self.inner, rest])
            .reshape(tiled)
    }
}

/// Carries cotangents of the last hidden layer's output back to the input.
///
/// `g` holds one row per cotangent, `d L / d fc2` (before tanh's derivative), laid out as
/// `rows` says; the result is `d L / d images` of each row, `[rows, 1024]`.
fn backward_sweep<B: Backend>(
    model: &LeNet5<B>,
    a: &Activations<B>,
    g: Tensor<B, 2>,
    rows: Rows,
) -> Tensor<B, 2> {
    let n = g.dims()[0];
    // Burn's Linear weight is [in, out]: the adjoint of x W is g W^T.
    let g = g * rows.tile(tanh_derivative(a.fc2.clone())); // [n, 84]
    let g = g.matmul(model.fc2.weight.val().transpose()) // [n, 120]
        * rows.tile(tanh_derivative(a.fc1.clone()));
    let g = g.matmul(model.fc1.weight.val().transpose()); // [n, 400]
    let g = g.reshape([n, CONV2_CHANNELS, POOL2_SIZE, POOL2_SIZE]);
    let g = avg_pool_adjoint(g) * rows.tile(tanh_derivative(a.conv2.clone())); // [n, 16, 10, 10]
    let g = conv_transpose2d(g, model.conv2.weight.val(), None, stride_one()); // [n, 6, 14, 14]
    let g = avg_pool_adjoint(g) * rows.tile(tanh_derivative(a.conv1.clone())); // [n, 6, 28, 28]
    conv_transpose2d(g, model.conv1.weight.val(), None, stride_one()) // [n, 1, 32, 32]
        .reshape([n, IMAGE_LEN])
}

/// The per-sample input Jacobian and the logits (see
/// [`LeNet5Backend::lenet5_per_sample`](crate::LeNet5Backend::lenet5_per_sample)).
pub fn per_sample<B: Backend>(model: &LeNet5<B>, images: Tensor<B, 4>) -> PerSample<B> {
    check_images(&images);
    let n = images.dims()[0];
    let classes = model.num_classes();
    let a = Activations::new(model, images);
    // Row (b, k) starts from e_k at sample b's logits: through the last layer, row k of W3^T.
    let g = model
        .fc3
        .weight
        .val()
        .transpose() // [classes, 84]
        .unsqueeze_dim::<3>(0)
        .expand([n, classes, FC2_UNITS])
        .reshape([n * classes, FC2_UNITS]);
    let rows = Rows {
        outer: 1,
        inner: classes,
    };
    PerSample {
        jacobian: backward_sweep(model, &a, g, rows).reshape([n, classes, IMAGE_LEN]),
        outputs: a.logits,
    }
}

/// The rows of the full input Jacobian of the output samples `rows` (see
/// [`LeNet5Backend::lenet5_full_rows`](crate::LeNet5Backend::lenet5_full_rows)).
///
/// Row `(b, k)`'s cotangent, one at `[b, k]` and zero elsewhere, is carried back through every
/// sample `b'`: the blocks with `b != b'` come out of the layers' adjoints rather than being
/// assumed.
pub fn full_rows<B: Backend>(
    model: &LeNet5<B>,
    images: Tensor<B, 4>,
    rows: Range<usize>,
) -> FullRows<B> {
    check_images(&images);
    let n = images.dims()[0];
    let r = rows.len();
    let classes = model.num_classes();
    let device = images.device();
    let a = Activations::new(model, images);
    // Row (b, k, b'): delta(b, b') e_k at sample b''s logits, mapped by the last layer to
    // delta(b, b') W3^T[k].
    let one_hot = Tensor::<B, 2>::eye(n, &device)
        .narrow(0, rows.start, r)
        .reshape([r, 1, n, 1]);
    let w3t = model
        .fc3
        .weight
        .val()
        .transpose()
        .reshape([1, classes, 1, FC2_UNITS]);
    let g = (one_hot * w3t).reshape([r * classes * n, FC2_UNITS]);
    let outputs = a.logits.clone().narrow(0, rows.start, r);
    let rows = Rows {
        outer: r * classes,
        inner: 1,
    };
    FullRows {
        jacobian: backward_sweep(model, &a, g, rows).reshape([r, classes, n, IMAGE_LEN]),
        outputs,
    }
}

/// LeNet-5 takes `[n, 1, 32, 32]`.
pub(crate) fn check_images<B: Backend>(images: &Tensor<B, 4>) {
    let [_, c, h, w] = images.dims();
    assert_eq!(
        [c, h, w],
        [IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE],
        "LeNet-5 takes images [n, 1, 32, 32]"
    );
}

/// d tanh(a) / da = 1 - tanh(a)^2, from t = tanh(a).
fn tanh_derivative<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    t.clone().mul(t).neg().add_scalar(1.0)
}

/// The adjoint of a convolution with stride 1 and no padding is the transposed convolution
/// with the same weights.
fn stride_one() -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([1, 1], [0, 0], [0, 0], [1, 1], 1)
}

/// Adjoint of the average pooling (windows of `POOL_SIZE` x `POOL_SIZE`, same stride): each
/// value spread over its window, divided by the window's size.
fn avg_pool_adjoint<B: Backend>(g: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = g.dims();
    let p = POOL_SIZE;
    g.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, p, w, p])
        .reshape([n, c, p * h, p * w])
        .div_scalar((p * p) as f32)
}
