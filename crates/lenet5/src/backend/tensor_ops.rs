//! LeNet-5's input Jacobians in Burn tensor ops: the default bodies of
//! [`LeNet5Backend`](crate::LeNet5Backend), which run on any backend's device.
//!
//! The general way is Burn's autodiff (the `jacobian` crate's `ReverseMode`), which records a
//! graph and, since Burn consumes the graph in each backward pass, repeats the forward pass
//! for every group of rows. Knowing the layers, one forward pass suffices: it runs through
//! the model's own layers and keeps, at each activation, its derivative (times the weights
//! the following pooling's adjoint gives each position: 1/4, or the argmax of the window);
//! then all cotangent rows are carried back at once, as one batch, through the layers'
//! adjoints (the transposed weight matrices, the transposed convolutions, the pooling's
//! adjoint), each scaled by the derivatives of the sample the row belongs to.
//!
//! Every step is a tensor op Burn can differentiate (matmuls, transposed convolutions,
//! reshapes and expansions, element-wise products; the argmax is a constant): on an autodiff
//! backend the Jacobian these functions return is itself in the graph, differentiable with
//! respect to the weights and the input.

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::Tensor;
use jacobian::{FullRows, PerSample};

use crate::model::config::{CONV2_CHANNELS, FC2_UNITS, POOL2_SIZE};
use crate::model::upsample;
use crate::LeNet5;

/// What one forward pass keeps: the derivative of each activation, with the following
/// pooling's adjoint weights folded into the convolution stages', and the logits.
struct Derivatives<B: Backend> {
    conv1: Tensor<B, 4>, // [n, 6, 28, 28]
    conv2: Tensor<B, 4>, // [n, 16, 10, 10]
    fc1: Tensor<B, 2>,   // [n, 120]
    fc2: Tensor<B, 2>,   // [n, 84]
    logits: Tensor<B, 2>,
}

impl<B: Backend> Derivatives<B> {
    /// [`LeNet5::forward`], keeping what the backward sweep needs.
    fn new(model: &LeNet5<B>, images: Tensor<B, 4>) -> Self {
        let conv1 = model.activate(model.conv1.forward(images));
        let conv2 = model.activate(model.conv2.forward(model.pool(conv1.clone())));
        let flat = model.pool(conv2.clone()).flatten::<2>(1, 3);
        let fc1 = model.activate(model.fc1.forward(flat));
        let fc2 = model.activate(model.fc2.forward(fc1.clone()));
        let logits = model.fc3.forward(fc2.clone());
        let stage = |t: Tensor<B, 4>| {
            model.activation_derivative(t.clone()) * model.pool_weights(t).detach()
        };
        Derivatives {
            conv1: stage(conv1),
            conv2: stage(conv2),
            fc1: model.activation_derivative(fc1),
            fc2: model.activation_derivative(fc2),
            logits,
        }
    }
}

/// Which sample's derivatives each cotangent row goes through: rows are laid out
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
/// `g` holds one row per cotangent, `d L / d fc2` (before the activation's derivative), laid
/// out as `rows` says; the result is `d L / d images` of each row, `[rows, input_len]`.
fn backward_sweep<B: Backend>(
    model: &LeNet5<B>,
    d: &Derivatives<B>,
    g: Tensor<B, 2>,
    rows: Rows,
) -> Tensor<B, 2> {
    let n = g.dims()[0];
    let config = model.config();
    // Burn's Linear weight is [in, out]: the adjoint of x W is g W^T.
    let g = g * rows.tile(d.fc2.clone()); // [n, 84]
    let g = g.matmul(model.fc2.weight.val().transpose()) * rows.tile(d.fc1.clone()); // [n, 120]
    let g = g.matmul(model.fc1.weight.val().transpose()); // [n, 400]
    let g = g.reshape([n, CONV2_CHANNELS, POOL2_SIZE, POOL2_SIZE]);
    let g = upsample(g) * rows.tile(d.conv2.clone()); // [n, 16, 10, 10]
    let g = conv_transpose2d(g, model.conv2.weight.val(), None, transposed(0)); // [n, 6, 14, 14]
    let g = upsample(g) * rows.tile(d.conv1.clone()); // [n, 6, 28, 28]
    let conv1 = transposed(config.padding);
    conv_transpose2d(g, model.conv1.weight.val(), None, conv1) // [n, in_channels, size, size]
        .reshape([n, config.input_len()])
}

/// The per-sample input Jacobian and the logits (see
/// [`LeNet5Backend::lenet5_per_sample`](crate::LeNet5Backend::lenet5_per_sample)).
pub fn per_sample<B: Backend>(model: &LeNet5<B>, images: Tensor<B, 4>) -> PerSample<B> {
    let n = images.dims()[0];
    let classes = model.num_classes();
    // Row k of every sample starts from e_k at its logits.
    let identity = Tensor::<B, 2>::eye(classes, &images.device())
        .unsqueeze_dim::<3>(0)
        .expand([n, classes, classes]);
    vector_jacobian_products(model, images, identity)
}

/// Vector-Jacobian products of the logits: for every sample `b` and each of its cotangents
/// `u = cotangents[b, r]`, the input gradient of `u . logits[b]`, that is
/// `sum_k u[k] d logits[b, k] / d images[b, ...]`; and the logits.
///
/// With the identity as every sample's cotangents this is the per-sample Jacobian
/// ([`per_sample`]); with one cotangent it is the input gradient of a loss whose gradient with
/// respect to the logits is `u` (cross-entropy: `softmax - one_hot`), or a random projection
/// of the Jacobian (Hoffman et al.'s estimator of its norm) at a tenth of the cost.
///
/// # Shapes
///
/// - images: `[n, in_channels, size, size]`
/// - cotangents: `[n, r, num_classes]`
/// - jacobian (the products): `[n, r, input_len]`
/// - outputs: `[n, num_classes]`
pub fn vector_jacobian_products<B: Backend>(
    model: &LeNet5<B>,
    images: Tensor<B, 4>,
    cotangents: Tensor<B, 3>,
) -> PerSample<B> {
    check_images(model, &images);
    let n = images.dims()[0];
    let [cotangent_samples, r, classes] = cotangents.dims();
    assert_eq!(
        [cotangent_samples, classes],
        [n, model.num_classes()],
        "cotangents [n, r, num_classes] for {n} images and {} classes",
        model.num_classes()
    );
    let d = Derivatives::new(model, images);
    // Through the last layer: u W3^T (Burn's Linear weight is [in, out]).
    let g = cotangents
        .reshape([n * r, classes])
        .matmul(model.fc3.weight.val().transpose()); // [n * r, 84]
    let rows = Rows { outer: 1, inner: r };
    let input_len = model.config().input_len();
    PerSample {
        jacobian: backward_sweep(model, &d, g, rows).reshape([n, r, input_len]),
        outputs: d.logits,
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
    check_images(model, &images);
    let n = images.dims()[0];
    let r = rows.len();
    let classes = model.num_classes();
    let device = images.device();
    let d = Derivatives::new(model, images);
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
    let outputs = d.logits.clone().narrow(0, rows.start, r);
    let rows = Rows {
        outer: r * classes,
        inner: 1,
    };
    let input_len = model.config().input_len();
    FullRows {
        jacobian: backward_sweep(model, &d, g, rows).reshape([r, classes, n, input_len]),
        outputs,
    }
}

/// The images must be what the model takes, `[n, in_channels, size, size]`.
pub(crate) fn check_images<B: Backend>(model: &LeNet5<B>, images: &Tensor<B, 4>) {
    let [_, c, h, w] = images.dims();
    let expected = model.config().input_dims();
    assert_eq!(
        [c, h, w],
        expected,
        "this LeNet-5 takes images [n, {}, {}, {}]",
        expected[0],
        expected[1],
        expected[2]
    );
}

/// The adjoint of a stride-1 convolution with zero padding `padding` is the transposed
/// convolution with the same weights and padding (which crops the padding off).
fn transposed(padding: usize) -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([1, 1], [padding, padding], [0, 0], [1, 1], 1)
}
