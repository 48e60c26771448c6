//! The host kernels: one forward pass keeping the activation's derivative at every hidden
//! unit (and the logits), then cotangents of the logits carried back to the input through the
//! layers' adjoints, a block of rows at a time.
//!
//! Why a forward pass of its own rather than `LeNet5::forward` on the backend, and kernels
//! rather than tensor ops: per sample, both passes are a few small matrix
//! products (a convolution is a product with its kernel matrix on the patches, "im2col"; conv2's
//! adjoint the product the other way followed by a scatter of the patches, "col2im"; conv1's a
//! transposed convolution of its own, [`TransposedConv1`]) with element-wise steps in between.
//! With tensor ops each step is a kernel launch and a pass over memory, the pooling adjoint
//! and the per-row tiling of the activations are non-contiguous copies, and a CPU backend's
//! tanh may be scalar; a profile of that version spent most of its time there. Here a sample
//! stays in cache through each pass, the element-wise steps are fused
//! into the layout changes the products need, the products run on `gemm`'s kernels (the ones
//! Burn's flex backend uses), conv1's adjoint on the widest SIMD the CPU has (`pulp`'s run-time
//! dispatch, as `gemm`'s) and the activations on `wide`'s SIMD lanes.
//!
//! Every variant of the family runs here: the activation is a per-unit function whose
//! derivative the forward pass keeps, and the pooling's adjoint is folded into that derivative
//! (1/4 for the average, the window's argmax for the maximum), so the sweep is the same for
//! all. The first convolution's padding is applied by padding the image to 32 x 32 on the way
//! in, and cropped off the Jacobian on the way out.

use std::cell::RefCell;

use rayon::prelude::*;
use wide::f32x8;

use crate::model::config::{
    Activation, Pooling, CONV1_CHANNELS as C1, CONV1_SIZE as S1, CONV2_CHANNELS as C2,
    CONV2_SIZE as S2, FC1_UNITS as H1, FC2_UNITS as H2, KERNEL_SIZE as K, PADDED_SIZE as SIDE,
    POOL1_SIZE as P1, POOL2_SIZE as P2, POOL_SIZE,
};

/// Values of one padded input plane: 32 x 32.
const PLANE: usize = SIDE * SIDE;

/// Rows carried back together through the linear layers: all ten logits of a sample in one
/// block (blocks of 5, 10 and 20 rows measured the same at batch 1024).
const ROW_BLOCK: usize = 10;

/// Rows of a block carried on together through the convolutions' adjoints: few enough that
/// conv2's patches (173 KB for 2 rows) and the other buffers stay in a core's L2 cache (512 KB
/// on the project's machine) from the product that writes them to the steps that read them.
/// With a whole block's 10 rows, the patches alone took 845 KB, and col2im, the pooling
/// adjoint and conv1's transposed convolution waited on L3.
const CONV_ROWS: usize = 2;

/// The convolutions' adjoints multiply column-major matrices, one column per channel or
/// kernel tap; `gemm` copies (packs) such a matrix before multiplying unless its column length
/// is a multiple of its SIMD width (16 lanes with AVX-512, 8 with AVX2).
const GEMM_LANES: usize = 16;

/// The column length of conv2's output cotangent, `[rows, 10, 14]`: that of a whole block,
/// padded for `gemm`, whatever the block's rows (see [`Scratch`]).
const COLUMN2: usize = padded(ROW_BLOCK * S2 * P1);

/// The column length of conv2's patches: those of [`CONV_ROWS`] rows, padded for `gemm`.
const PATCH_COLUMN2: usize = padded(CONV_ROWS * S2 * P1);

/// Zeros before each row's conv1 output cotangent (5 rows of 32): the transposed convolution
/// ([`TransposedConv1`]) reads up to `4 * 32 + 4` values before an output position.
const CONV1_TOP: usize = 5 * SIDE;
/// One row's conv1 output cotangent with its zero border: 5 zero rows, the 28 rows of the
/// cotangent (32 wide, the last 4 columns zero), 4 zero rows; the transposed convolution reads
/// it at the 32 x 32 input's positions shifted back by up to `4 * 32 + 4`.
const CONV1_PITCH: usize = CONV1_TOP + PLANE;

/// `len` rounded up to whole SIMD lanes (see [`GEMM_LANES`]).
const fn padded(len: usize) -> usize {
    len.next_multiple_of(GEMM_LANES)
}

/// The average pooling's adjoint's factor, 1 / (window size): 1/4, a power of two, so folding
/// it into the activation's derivative rounds as applying it apart would.
const POOL_FACTOR: f32 = 1.0 / (POOL_SIZE * POOL_SIZE) as f32;
const _: () = assert!(POOL_SIZE == 2, "the kernels below pool windows of 2 x 2");

/// LeNet-5's parameters, row-major in Burn's layouts, and its variant.
pub(crate) struct Weights {
    /// `[6, in_channels, 5, 5]`
    pub conv1: Vec<f32>,
    /// `[6]`
    pub conv1_bias: Vec<f32>,
    /// `[16, 6, 5, 5]`
    pub conv2: Vec<f32>,
    /// `[16]`
    pub conv2_bias: Vec<f32>,
    /// `[400, 120]` (Burn's Linear weight is `[in, out]`)
    pub fc1: Vec<f32>,
    /// `[120, 400]`: `fc1` transposed, read by its adjoint as a column-major `[400, 120]`,
    /// the layout `gemm` multiplies without repacking it for every block of rows.
    pub fc1_t: Vec<f32>,
    /// `[120]`
    pub fc1_bias: Vec<f32>,
    /// `[120, 84]`
    pub fc2: Vec<f32>,
    /// `[84]`
    pub fc2_bias: Vec<f32>,
    /// `[84, classes]`
    pub fc3: Vec<f32>,
    /// `[classes]`
    pub fc3_bias: Vec<f32>,
    pub classes: usize,
    pub in_channels: usize,
    /// conv1's zero padding: the input side is `32 - 2 * padding`.
    pub padding: usize,
    pub activation: Activation,
    pub pooling: Pooling,
}

impl Weights {
    /// Side of the input images.
    pub fn input_size(&self) -> usize {
        SIDE - 2 * self.padding
    }

    /// Values in one input image.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.input_size() * self.input_size()
    }
}

/// What the forward pass keeps, per sample: the activation's derivative at each hidden unit,
/// and the logits.
///
/// The convolution stages hold the derivative times the following pooling's adjoint weight
/// at each position: `/ 4` for the average, `x 1` at each window's argmax and 0 elsewhere for
/// the maximum.
pub(crate) struct Forward {
    /// `[batch, 6, 28, 28]`
    pub conv1: Vec<f32>,
    /// `[batch, 16, 10, 10]`
    pub conv2: Vec<f32>,
    /// `[batch, 120]`
    pub fc1: Vec<f32>,
    /// `[batch, 84]`
    pub fc2: Vec<f32>,
    /// `[batch, classes]`
    pub logits: Vec<f32>,
}

impl Forward {
    /// The forward pass of every sample of `images` (`[batch, in_channels, size, size]`), in
    /// parallel.
    pub fn new(w: &Weights, images: &[f32]) -> Self {
        let batch = images.len() / w.input_len();
        let mut d = Forward {
            conv1: vec![0.0; batch * C1 * S1 * S1],
            conv2: vec![0.0; batch * C2 * S2 * S2],
            fc1: vec![0.0; batch * H1],
            fc2: vec![0.0; batch * H2],
            logits: vec![0.0; batch * w.classes],
        };
        (
            images.par_chunks(w.input_len()),
            d.conv1.par_chunks_mut(C1 * S1 * S1),
            d.conv2.par_chunks_mut(C2 * S2 * S2),
            d.fc1.par_chunks_mut(H1),
            (d.fc2.par_chunks_mut(H2), d.logits.par_chunks_mut(w.classes)),
        )
            .into_par_iter()
            .for_each(|(x, d1, d2, e1, (e2, logits))| {
                FORWARD_SCRATCH.with_borrow_mut(|s| {
                    s.fit(w.in_channels);
                    forward(w, x, s, [d1, d2, e1, e2], logits)
                });
            });
        d
    }
}

thread_local! {
    /// This thread's buffers for the passes, kept from call to call: rayon may run every
    /// sample as a job of its own, and fresh buffers for each (0.36 MB for the sweep, allocated
    /// and zeroed) cost more than a small batch's arithmetic.
    static FORWARD_SCRATCH: RefCell<ForwardScratch> = RefCell::new(ForwardScratch::new());
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// One worker's buffers for the forward pass of a sample.
struct ForwardScratch {
    image: Vec<f32>,      // [in_channels, 32, 32]: the input with conv1's padding
    conv1_cols: Vec<f32>, // [in_channels * 25, 784]: the image's patches, a row per kernel tap
    conv1: Vec<f32>,      // [6, 784]
    pool1: Vec<f32>,      // [6, 14, 14]
    conv2_cols: Vec<f32>, // [150, 100]
    conv2: Vec<f32>,      // [16, 100]
    pool2: Vec<f32>,      // [400]
    fc1: Vec<f32>,        // [120]
    fc2: Vec<f32>,        // [84]
}

impl ForwardScratch {
    fn new() -> Self {
        ForwardScratch {
            image: Vec::new(),
            conv1_cols: Vec::new(),
            conv1: vec![0.0; C1 * S1 * S1],
            pool1: vec![0.0; C1 * P1 * P1],
            conv2_cols: vec![0.0; C1 * K * K * S2 * S2],
            conv2: vec![0.0; C2 * S2 * S2],
            pool2: vec![0.0; C2 * P2 * P2],
            fc1: vec![0.0; H1],
            fc2: vec![0.0; H2],
        }
    }

    /// Sizes the buffers that depend on the input channels.
    fn fit(&mut self, in_channels: usize) {
        self.image.resize(in_channels * PLANE, 0.0);
        self.conv1_cols.resize(in_channels * K * K * S1 * S1, 0.0);
    }
}

/// One sample's forward pass, as `LeNet5::forward` computes it (a test holds them equal);
/// writes the derivatives (see [`Forward`]) to `[conv1, conv2, fc1, fc2]` and the logits.
fn forward(
    w: &Weights,
    x: &[f32],
    s: &mut ForwardScratch,
    [d1, d2, e1, e2]: [&mut [f32]; 4],
    logits: &mut [f32],
) {
    let image: &[f32] = if w.padding == 0 {
        x
    } else {
        pad(x, w.in_channels, w.padding, &mut s.image);
        &s.image
    };
    let conv1 = Conv {
        kernels: &w.conv1,
        bias: &w.conv1_bias,
        in_side: SIDE,
        activation: w.activation,
        pooling: w.pooling,
    };
    conv1.forward(image, &mut s.conv1_cols, &mut s.conv1, d1, &mut s.pool1);
    let conv2 = Conv {
        kernels: &w.conv2,
        bias: &w.conv2_bias,
        in_side: P1,
        ..conv1
    };
    conv2.forward(&s.pool1, &mut s.conv2_cols, &mut s.conv2, d2, &mut s.pool2);
    // pool2 is already the flattened [16, 5, 5] fc1 takes.
    let hidden = |x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32], d: &mut [f32]| {
        linear(x, weight, bias, out);
        activate(out, w.activation);
        derivatives(out, d, w.activation, 1.0);
    };
    hidden(&s.pool2, &w.fc1, &w.fc1_bias, &mut s.fc1, e1);
    hidden(&s.fc1, &w.fc2, &w.fc2_bias, &mut s.fc2, e2);
    linear(&s.fc2, &w.fc3, &w.fc3_bias, logits);
}

/// `x`, `[channels, size, size]`, in the middle of `image`, `[channels, 32, 32]`, with
/// `padding` zeros on every side.
fn pad(x: &[f32], channels: usize, padding: usize, image: &mut [f32]) {
    let size = SIDE - 2 * padding;
    image.fill(0.0);
    for c in 0..channels {
        for (y, row) in x[c * size * size..][..size * size]
            .chunks_exact(size)
            .enumerate()
        {
            image[c * PLANE + (y + padding) * SIDE + padding..][..size].copy_from_slice(row);
        }
    }
}

/// A stride-1, unpadded 5 x 5 convolution of one sample, its activation and its pooling.
#[derive(Clone, Copy)]
struct Conv<'a> {
    /// `[out_channels, in_channels, 5, 5]`
    kernels: &'a [f32],
    /// `[out_channels]`
    bias: &'a [f32],
    in_side: usize,
    activation: Activation,
    pooling: Pooling,
}

impl Conv<'_> {
    /// `conv = activation(kernels * x + bias)`, as the kernel matrix `[out, in * 25]` times
    /// the patches `cols`, `[in * 25, out_side^2]`; the activation's derivative with the
    /// pooling's adjoint weights into `derivative`; the 2 x 2 pooling of `conv` into `pooled`.
    fn forward(
        &self,
        x: &[f32],
        cols: &mut [f32],
        conv: &mut [f32],
        derivative: &mut [f32],
        pooled: &mut [f32],
    ) {
        let out_channels = self.bias.len();
        let taps = self.kernels.len() / out_channels; // in_channels * 25
        let out_side = self.in_side - K + 1;
        let m = out_side * out_side;
        let channels = taps / (K * K);
        match out_side {
            S1 => im2col::<S1>(x, self.in_side, channels, cols),
            S2 => im2col::<S2>(x, self.in_side, channels, cols),
            _ => unreachable!("LeNet-5's convolutions output {S1} x {S1} or {S2} x {S2}"),
        }
        matmul(
            conv,
            (m, 1),
            (self.kernels, taps, 1),
            (cols, m, 1),
            [out_channels, m, taps],
        );
        add_bias(conv, self.bias);
        activate(conv, self.activation);
        match self.pooling {
            Pooling::Avg => {
                derivatives(conv, derivative, self.activation, POOL_FACTOR);
                avg_pool(conv, pooled, out_channels, out_side);
            }
            Pooling::Max => {
                derivatives(conv, derivative, self.activation, 1.0);
                max_pool(conv, pooled, derivative, out_channels, out_side);
            }
        }
    }
}

/// `out = x W + b` for one sample, with Burn's `[in, out]` weight `W`.
fn linear(x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    let (inputs, outputs) = (x.len(), out.len());
    matmul(
        out,
        (outputs, 1),
        (x, inputs, 1),
        (weight, outputs, 1),
        [1, outputs, inputs],
    );
    add_bias(out, bias);
}

/// `x[c, ..] += bias[c]` for each channel (or unit) `c`.
fn add_bias(x: &mut [f32], bias: &[f32]) {
    for (row, b) in x.chunks_exact_mut(x.len() / bias.len()).zip(bias) {
        row.iter_mut().for_each(|v| *v += b);
    }
}

/// The activation of every value of `x`, in place, on SIMD lanes.
fn activate(x: &mut [f32], activation: Activation) {
    let f = |v: f32x8| match activation {
        Activation::Tanh => v.tanh(),
        Activation::Relu => v.fast_max(f32x8::ZERO),
        Activation::Sigmoid => f32x8::ONE / (f32x8::ONE + (-v).exp()),
    };
    let mut lanes = x.chunks_exact_mut(8);
    for lane in &mut lanes {
        lane.copy_from_slice(&f(f32x8::from(&*lane)).to_array());
    }
    let rest = lanes.into_remainder();
    let mut padded = [0.0f32; 8];
    padded[..rest.len()].copy_from_slice(rest);
    rest.copy_from_slice(&f(f32x8::from(padded)).to_array()[..rest.len()]);
}

/// The activation's derivative at each output `t`, times `scale`, into `derivative`.
fn derivatives(t: &[f32], derivative: &mut [f32], activation: Activation, scale: f32) {
    let pairs = derivative.iter_mut().zip(t);
    match activation {
        Activation::Tanh => pairs.for_each(|(d, t)| *d = (1.0 - t * t) * scale),
        Activation::Relu => pairs.for_each(|(d, &t)| *d = if t > 0.0 { scale } else { 0.0 }),
        Activation::Sigmoid => pairs.for_each(|(d, t)| *d = t * (1.0 - t) * scale),
    }
}

/// The patches of a stride-1, unpadded 5 x 5 convolution: `cols[(c, ky, kx), (y, x)]` is
/// `x[c, y + ky, x + kx]`, for `channels` input channels of `in_side x in_side` and outputs of
/// `OUT x OUT`. `OUT` is a constant so that each row's copy is a few vector moves rather than
/// a call to `memcpy` (700 calls of 28 values per sample for conv1).
fn im2col<const OUT: usize>(x: &[f32], in_side: usize, channels: usize, cols: &mut [f32]) {
    let m = OUT * OUT;
    for c in 0..channels {
        let x = &x[c * in_side * in_side..][..in_side * in_side];
        for ky in 0..K {
            for kx in 0..K {
                let row = &mut cols[((c * K + ky) * K + kx) * m..][..m];
                for (y, dst) in row.chunks_exact_mut(OUT).enumerate() {
                    let dst: &mut [f32; OUT] = dst.try_into().expect("OUT values");
                    *dst = x[(y + ky) * in_side + kx..][..OUT]
                        .try_into()
                        .expect("OUT values");
                }
            }
        }
    }
}

/// 2 x 2 average pooling with stride 2 of `channels` planes of `side x side`.
fn avg_pool(x: &[f32], out: &mut [f32], channels: usize, side: usize) {
    let half = side / 2;
    for c in 0..channels {
        let x = &x[c * side * side..][..side * side];
        let out = &mut out[c * half * half..][..half * half];
        for i in 0..half {
            let (top, bottom) = (&x[2 * i * side..][..side], &x[(2 * i + 1) * side..][..side]);
            for j in 0..half {
                let sum = top[2 * j] + top[2 * j + 1] + bottom[2 * j] + bottom[2 * j + 1];
                out[i * half + j] = sum * POOL_FACTOR;
            }
        }
    }
}

/// 2 x 2 max pooling with stride 2 of `channels` planes of `side x side`; `derivative` (of the
/// same shape as `x`) is kept at each window's argmax and zeroed elsewhere, the argmax being
/// the first largest value in row-major order, as PyTorch's (a NaN counts as the largest).
fn max_pool(x: &[f32], out: &mut [f32], derivative: &mut [f32], channels: usize, side: usize) {
    let half = side / 2;
    for c in 0..channels {
        let plane = c * side * side;
        for i in 0..half {
            for j in 0..half {
                let window = [
                    plane + 2 * i * side + 2 * j,
                    plane + 2 * i * side + 2 * j + 1,
                    plane + (2 * i + 1) * side + 2 * j,
                    plane + (2 * i + 1) * side + 2 * j + 1,
                ];
                let mut best = window[0];
                for &at in &window[1..] {
                    if x[at] > x[best] || (x[at].is_nan() && !x[best].is_nan()) {
                        best = at;
                    }
                }
                out[c * half * half + i * half + j] = x[best];
                for at in window {
                    if at != best {
                        derivative[at] = 0.0;
                    }
                }
            }
        }
    }
}

/// One worker's buffers for a block of up to [`ROW_BLOCK`] rows.
///
/// The convolutions' output cotangents are stored wider than they are (see [`sweep_block`]),
/// in columns of a fixed length ([`COLUMN2`], and `CONV_ROWS * CONV1_PITCH` for conv1's, with
/// zero rows around each row's): every block writes the same places, whatever its rows, and the
/// places past each row's width and in the borders are never written, so they keep the zeros
/// they are allocated with.
struct Scratch {
    fc2: Vec<f32>,        // [rows, 84]
    fc1: Vec<f32>,        // [rows, 120]
    pool2: Vec<f32>,      // [rows, 400]
    conv2: Vec<f32>,      // [16][rows, 10, 14]: conv2's output cotangent, channel-major
    conv2_cols: Vec<f32>, // [150][CONV_ROWS, 10, 14]: its patches, one column per kernel tap
    pool1: Vec<f32>,      // [CONV_ROWS, 6, 14, 14]
    conv1: Vec<f32>,      // [6][CONV_ROWS, CONV1_PITCH]: [5 + 28 + 4, 32] with zeros around
    image: Vec<f32>,      // [in_channels, 32, 32]: one row's padded input, when padded
}

impl Scratch {
    fn new() -> Self {
        let r = ROW_BLOCK;
        Scratch {
            fc2: vec![0.0; r * H2],
            fc1: vec![0.0; r * H1],
            pool2: vec![0.0; r * C2 * P2 * P2],
            conv2: vec![0.0; C2 * COLUMN2],
            conv2_cols: vec![0.0; C1 * K * K * PATCH_COLUMN2],
            pool1: vec![0.0; CONV_ROWS * C1 * P1 * P1],
            conv1: vec![0.0; C1 * CONV_ROWS * CONV1_PITCH],
            image: Vec::new(),
        }
    }

    /// Sizes the buffers that depend on the input channels.
    fn fit(&mut self, in_channels: usize) {
        self.image.resize(in_channels * PLANE, 0.0);
    }
}

/// Carries `rows` cotangents of sample `sample`'s logits back to its input, [`ROW_BLOCK`]
/// rows at a time.
///
/// `seeds` is `[rows, classes]`, `d L / d logits` of each row; row `i`'s `d L / d image`
/// (`[in_channels, size, size]`) is written to `out[i * out_stride..][..input_len]`.
pub(crate) fn sweep(
    w: &Weights,
    d: &Forward,
    sample: usize,
    seeds: &[f32],
    out: &mut [f32],
    out_stride: usize,
) {
    SCRATCH.with_borrow_mut(|s| {
        s.fit(w.in_channels);
        for (block, seeds) in seeds.chunks(ROW_BLOCK * w.classes).enumerate() {
            let out = &mut out[block * ROW_BLOCK * out_stride..];
            sweep_block(w, d, sample, seeds, out, out_stride, s);
        }
    });
}

/// [`sweep`] of at most [`ROW_BLOCK`] rows, the size of the scratch buffers.
fn sweep_block(
    w: &Weights,
    d: &Forward,
    sample: usize,
    seeds: &[f32],
    out: &mut [f32],
    out_stride: usize,
    s: &mut Scratch,
) {
    let rows = seeds.len() / w.classes;
    let input_len = w.input_len();
    assert!(rows <= ROW_BLOCK && rows * w.classes == seeds.len());
    assert!(rows == 0 || (rows - 1) * out_stride + input_len <= out.len());
    if rows == 0 {
        return;
    }

    // Linear layers: the adjoint of x W ([in, out] weight) is g W^T, then the activation's
    // derivative.
    let fc2 = &mut s.fc2[..rows * H2];
    let classes = w.classes;
    matmul(
        fc2,
        (H2, 1),
        (seeds, classes, 1),
        (&w.fc3, 1, classes),
        [rows, H2, classes],
    );
    scale_rows(fc2, &d.fc2[sample * H2..][..H2]);
    let fc1 = &mut s.fc1[..rows * H1];
    matmul(fc1, (H1, 1), (fc2, H2, 1), (&w.fc2, 1, H2), [rows, H1, H2]);
    scale_rows(fc1, &d.fc1[sample * H1..][..H1]);
    let flat = C2 * P2 * P2;
    let pool2 = &mut s.pool2[..rows * flat];
    // As pool2^T = W1 fc1^T ([400, rows]): a product with 400 rows rather than `rows`.
    matmul(
        pool2,
        (1, flat),
        (&w.fc1_t, 1, flat),
        (fc1, 1, H1),
        [flat, rows, H1],
    );

    // Pool2's adjoint and conv2's derivative, into the channel-major layout the product with
    // conv2's kernel matrix reads: [16][rows, 10, 14], a column per channel. Rows of conv2's
    // output are stored 14 wide, the width of its input, so that col2im is one contiguous add
    // per kernel tap; the 4 extra columns stay zero (as do their products).
    let d2 = &d.conv2[sample * C2 * S2 * S2..][..C2 * S2 * S2];
    pool_adjoint(pool2, d2, &mut s.conv2, rows, C2, S2, P1, (S2 * P1, 0));

    // The convolutions' adjoints, CONV_ROWS rows at a time.
    for first in (0..rows).step_by(CONV_ROWS) {
        let group = CONV_ROWS.min(rows - first);
        let out = &mut out[first * out_stride..];
        conv_adjoints(w, d, sample, first, group, out, out_stride, s);
    }
}

/// Rows `first..first + group` of a block from conv2's output cotangent (in `s.conv2`) back to
/// the input: row `first + i`'s into `out[i * out_stride..][..input_len]`.
#[allow(clippy::too_many_arguments)]
fn conv_adjoints(
    w: &Weights,
    d: &Forward,
    sample: usize,
    first: usize,
    group: usize,
    out: &mut [f32],
    out_stride: usize,
    s: &mut Scratch,
) {
    // Conv2's adjoint: every output position's cotangent times the kernel matrix [16, 150]
    // gives its patch's contribution, which col2im adds into the 14 x 14 input. The product
    // covers the group's rows, rounded up to whole SIMD lanes (the rounding reads the next
    // rows' cotangents, or the block's zero padding, into patches nobody reads).
    let cols2 = &mut s.conv2_cols;
    matmul(
        cols2,
        (1, PATCH_COLUMN2),
        (&s.conv2[first * S2 * P1..], 1, COLUMN2),
        (&w.conv2, C1 * K * K, 1),
        [padded(group * S2 * P1), C1 * K * K, C2],
    );
    let pool1 = &mut s.pool1[..group * C1 * P1 * P1];
    for ci in 0..C1 {
        for i in 0..group {
            let dst = &mut pool1[(i * C1 + ci) * P1 * P1..][..P1 * P1];
            col2im(dst, P1, cols2, ci * K * K, PATCH_COLUMN2, i * S2 * P1, S2);
        }
    }

    // Pool1's adjoint and conv1's derivative: [6][group, CONV1_PITCH], each row's 28 x 28
    // cotangent 32 wide with zero rows around it.
    let d1 = &d.conv1[sample * C1 * S1 * S1..][..C1 * S1 * S1];
    let block = (CONV1_PITCH, CONV1_TOP);
    pool_adjoint(pool1, d1, &mut s.conv1, group, C1, S1, SIDE, block);

    // Conv1's adjoint, a transposed convolution straight into each input channel's 32 x 32
    // plane of each row: into the output without padding, through `image` and cropped with it.
    let input_len = w.input_len();
    let arch = pulp::Arch::new();
    for i in 0..group {
        let dst = &mut out[i * out_stride..][..input_len];
        let image = if w.padding == 0 {
            &mut *dst
        } else {
            &mut s.image[..]
        };
        arch.dispatch(TransposedConv1 {
            cotangent: &s.conv1,
            offset: i * CONV1_PITCH,
            kernels: &w.conv1,
            image,
        });
        if w.padding > 0 {
            crop(&s.image, w.in_channels, w.padding, dst);
        }
    }
}

/// Rows of output positions of conv1's transposed convolution computed together, each row a
/// SIMD vector of consecutive positions in a register: enough independent accumulators to keep
/// the fused multiply-adds' pipeline full, few enough to leave registers for the 5 kernel taps
/// of a column and the value loaded (8 + 5 + 1 of AVX2's 16).
const ACCUMULATORS: usize = 8;

/// Conv1's adjoint for one row: `image[c, p, q] = sum over o, ky, kx of
/// g[o, p - ky, q - kx] * kernels[o, c, ky, kx]`, the 32 x 32 input's cotangent from the 28 x 28
/// output's `g`, every term a fused multiply-add on SIMD lanes of consecutive positions.
///
/// Why not the product with the kernel matrix and col2im, as conv2's adjoint: that product has
/// only 6 terms per value (conv1's output channels) and writes 25 patches of the input's size per
/// row that col2im reads back, so its time is the memory traffic. Here each output position
/// sums its 150 terms in a register. The cotangent's layout makes every term one unaligned
/// load: with rows 32 wide, `g[o, p - ky, q - kx]` is `ky * 32 + kx` values before position
/// `(p, q)`, and what falls outside the 28 x 28 output (negative `q - kx` wraps to the previous
/// row's last columns) lands on zeros (see [`CONV1_PITCH`]).
///
/// Why a block of [`ACCUMULATORS`] output rows at once: one vector of `g` at row `r` and shift
/// `kx` serves the 5 output rows `r + ky`, so loading it once for all of them makes the loads
/// fewer than half the multiply-adds (the version with one load per multiply-add waited on
/// its loads, half of which straddle cache lines).
struct TransposedConv1<'a> {
    /// `[6][CONV_ROWS, CONV1_PITCH]` (see [`Scratch`])
    cotangent: &'a [f32],
    /// Start of this row's cotangent in each channel's column.
    offset: usize,
    /// `[6, in_channels, 5, 5]`
    kernels: &'a [f32],
    /// `[in_channels, 32, 32]`, overwritten
    image: &'a mut [f32],
}

impl pulp::WithSimd for TransposedConv1<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        const R: usize = ACCUMULATORS;
        let lanes = std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>();
        let channels = self.image.len() / PLANE;
        let column = self.cotangent.len() / C1;
        assert!(SIDE.is_multiple_of(lanes) && SIDE.is_multiple_of(R));
        assert!(self.image.len() == channels * PLANE);
        assert!(self.kernels.len() == C1 * channels * K * K);
        // The loads below read `[offset + CONV1_TOP - (4 * 32 + 4), offset + CONV1_PITCH)` of
        // each channel's column.
        const { assert!(CONV1_TOP >= (K - 1) * SIDE + K - 1) };
        assert!(self.offset + CONV1_PITCH <= column);
        for c in 0..channels {
            for p0 in (0..SIDE).step_by(R) {
                for q0 in (0..SIDE).step_by(lanes) {
                    // acc[i]: output positions (p0 + i, q0..q0 + lanes).
                    let mut acc = [simd.splat_f32s(0.0); R];
                    for o in 0..C1 {
                        let taps = &self.kernels[(o * channels + c) * K * K..][..K * K];
                        // Position (p0 - 4, q0) of the cotangent: the first row any output
                        // row of the block reads.
                        let first =
                            o * column + self.offset + CONV1_TOP + q0 + p0 * SIDE - (K - 1) * SIDE;
                        for kx in 0..K {
                            let weights: [S::f32s; K] =
                                std::array::from_fn(|ky| simd.splat_f32s(taps[ky * K + kx]));
                            // Cotangent row p0 - 4 + j feeds output rows p0 + j - 4 + ky. The
                            // rows are written out (`unrolled!`) so that every accumulator's
                            // index is a constant and the accumulators stay in registers.
                            macro_rules! unrolled {
                                ($($j:literal)*) => {$({
                                    // SAFETY: the index is at least `offset + CONV1_TOP - (4 *
                                    // 32 + 4)` and the vector ends by `offset + CONV1_PITCH`
                                    // (rows up to 31, columns up to 31), within the column by
                                    // the asserts above; an unaligned read of plain floats.
                                    let g = unsafe {
                                        self.cotangent
                                            .as_ptr()
                                            .add(first + $j * SIDE - kx)
                                            .cast::<S::f32s>()
                                            .read_unaligned()
                                    };
                                    for (ky, &weight) in weights.iter().enumerate() {
                                        // None for output rows outside the block.
                                        let i = ($j + ky).wrapping_sub(K - 1);
                                        if let Some(acc) = acc.get_mut(i) {
                                            *acc = simd.mul_add_e_f32s(g, weight, *acc);
                                        }
                                    }
                                })*};
                            }
                            const { assert!(R + K - 1 == 12) };
                            unrolled!(0 1 2 3 4 5 6 7 8 9 10 11);
                        }
                    }
                    for (i, acc) in acc.into_iter().enumerate() {
                        let dst = &mut self.image[c * PLANE + (p0 + i) * SIDE + q0..][..lanes];
                        // SAFETY: `dst` holds one vector's lanes; an unaligned write of plain
                        // floats. (pulp's `partial_store_f32s` is a masked store through a call
                        // that is not inlined.)
                        unsafe { dst.as_mut_ptr().cast::<S::f32s>().write_unaligned(acc) };
                    }
                }
            }
        }
    }
}

/// The middle of `image`, `[channels, 32, 32]`, without `padding` values on every side, into
/// `out`, `[channels, size, size]`: the inverse of [`pad`].
fn crop(image: &[f32], channels: usize, padding: usize, out: &mut [f32]) {
    let size = SIDE - 2 * padding;
    for c in 0..channels {
        for (y, row) in out[c * size * size..][..size * size]
            .chunks_exact_mut(size)
            .enumerate()
        {
            row.copy_from_slice(&image[c * PLANE + (y + padding) * SIDE + padding..][..size]);
        }
    }
}

/// `dst = lhs · rhs` for `[m, n, k]`; each matrix is a slice with its (row, column) strides.
fn matmul(
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    (lhs, lhs_rs, lhs_cs): (&[f32], usize, usize),
    (rhs, rhs_rs, rhs_cs): (&[f32], usize, usize),
    [m, n, k]: [usize; 3],
) {
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(m > 0 && n > 0 && k > 0);
    assert!(last(dst_rs, dst_cs, m, n) < dst.len());
    assert!(last(lhs_rs, lhs_cs, m, k) < lhs.len());
    assert!(last(rhs_rs, rhs_cs, k, n) < rhs.len());
    // SAFETY: the asserts above keep every element gemm touches inside the three slices, and
    // `dst` is borrowed mutably, so it does not alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `x[i, j] *= scale[j]` for each row `i`.
fn scale_rows(x: &mut [f32], scale: &[f32]) {
    for row in x.chunks_exact_mut(scale.len()) {
        for (v, s) in row.iter_mut().zip(scale) {
            *v *= s;
        }
    }
}

/// The 2 x 2 pooling's adjoint times the derivative before it.
///
/// `pooled` is `[rows, channels, side / 2, side / 2]`; `derivative` (with the pooling's
/// adjoint weights folded in, see [`Forward`]) is `[channels, side, side]`; `dst` is
/// `[channels][rows, pitch]`, each channel a column of `dst.len() / channels` values, each
/// row's `[side, stride]` starting `offset` into its `pitch` values, of which only the first
/// `side` of each `stride` are written.
#[allow(clippy::too_many_arguments)]
fn pool_adjoint(
    pooled: &[f32],
    derivative: &[f32],
    dst: &mut [f32],
    rows: usize,
    channels: usize,
    side: usize,
    stride: usize,
    (pitch, offset): (usize, usize),
) {
    let half = side / 2;
    let column = dst.len() / channels;
    assert!(offset + side * stride <= pitch && rows * pitch <= column);
    for c in 0..channels {
        let d = &derivative[c * side * side..][..side * side];
        for i in 0..rows {
            let src = &pooled[(i * channels + c) * half * half..][..half * half];
            let out = &mut dst[c * column + i * pitch + offset..][..side * stride];
            for y in 0..side {
                let src = &src[(y / 2) * half..][..half];
                let d = &d[y * side..][..side];
                let out = &mut out[y * stride..][..side];
                for ((o, d), s) in out.chunks_exact_mut(2).zip(d.chunks_exact(2)).zip(src) {
                    o[0] = s * d[0];
                    o[1] = s * d[1];
                }
            }
        }
    }
}

/// A convolution's patches summed into its input: the col2im of a stride-1, unpadded 5 x 5
/// convolution with `out_side x out_side` outputs.
///
/// `cols` holds one column of `col_len` values per kernel tap, the taps of one input channel
/// starting at column `first_col`; this image's outputs start at `offset` in each column, in
/// rows `in_side` wide whose columns past `out_side` are zero. `dst`, one channel of the
/// input, `in_side x in_side`, is overwritten. With rows that wide, a tap's patch is one
/// contiguous run of `dst` (the zeros land on the columns between), so each tap is a single
/// vectorised add; the first tap's run is copied, and the rest of `dst` zeroed, instead.
fn col2im(
    dst: &mut [f32],
    in_side: usize,
    cols: &[f32],
    first_col: usize,
    col_len: usize,
    offset: usize,
    out_side: usize,
) {
    let len = (out_side - 1) * in_side + out_side;
    let tap = |t: usize| &cols[(first_col + t) * col_len + offset..][..len];
    let (first, rest) = dst[..in_side * in_side].split_at_mut(len);
    first.copy_from_slice(tap(0));
    rest.fill(0.0);
    for t in 1..K * K {
        let (ky, kx) = (t / K, t % K);
        add_assign(&mut dst[ky * in_side + kx..][..len], tap(t));
    }
}

/// `dst += src`, compiled for AVX2 when the CPU has it (the crate itself targets baseline
/// x86-64, SSE2): col2im's adds are a tenth of the sweep's time.
fn add_assign(dst: &mut [f32], src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { add_assign_avx2(dst, src) };
    }
    add_assign_any(dst, src)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_assign_avx2(dst: &mut [f32], src: &[f32]) {
    add_assign_any(dst, src)
}

#[inline(always)]
fn add_assign_any(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}
