//! LeNet-5's input Jacobians by hand-written reverse mode.
//!
//! The general way is Burn's autodiff (the `jacobian` crate), which records a graph, and, since
//! Burn consumes the graph in each backward pass, repeats the forward pass for every group of
//! rows. Knowing the layers, one forward pass suffices, keeping tanh's derivative at every
//! hidden unit; then every cotangent row is carried back to the input by the layers' adjoints.
//! Both passes run on the host CPU whatever the backend (see `host.rs`), samples spread over
//! rayon's threads; the parameters and images are read from the backend and the Jacobian is
//! written back to it. No autodiff backend is involved. Tests check both layouts against the
//! autodiff engine on every backend, and against PyTorch.

use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::host::{self, Derivatives, Scratch, Weights, PIXELS};
use crate::{LeNet5, IMAGE_CHANNELS, IMAGE_SIZE};

impl<B: Backend> LeNet5<B> {
    /// The per-sample input Jacobian of the logits: entry `[b, k, c, h, w]` is
    /// `d logits[b, k] / d images[b, c, h, w]`.
    ///
    /// Equal (up to float rounding) to the per-sample layout of the `jacobian` crate, without
    /// autodiff: one forward pass, then one backward sweep per sample, on the host CPU whatever
    /// the backend (the result is moved to `B`'s device).
    ///
    /// # Shapes
    ///
    /// - images: `[batch, 1, 32, 32]`
    /// - output: `[batch, num_classes, 1, 32, 32]`
    pub fn input_jacobian(&self, images: Tensor<B, 4>) -> Tensor<B, 5> {
        let [batch, _, _, _] = images.dims();
        let device = images.device();
        let classes = self.num_classes();
        let weights = self.host_weights();
        let derivatives = Derivatives::new(&weights, &to_host(images));
        // Row k of sample b starts from e_k at b's logits.
        let seeds = identity(classes);
        let mut values = vec![0.0f32; batch * classes * PIXELS];
        values
            .par_chunks_mut(classes * PIXELS) // [classes, 1024]: one sample
            .enumerate()
            .for_each_init(Scratch::new, |scratch, (b, out)| {
                host::sweep(&weights, &derivatives, b, &seeds, out, PIXELS, scratch);
            });
        let shape = [batch, classes, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE];
        Tensor::from_data(TensorData::new(values, shape), &device)
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
        let device = images.device();
        let classes = self.num_classes();
        let weights = self.host_weights();
        let derivatives = Derivatives::new(&weights, &to_host(images));
        let identity = identity(classes);
        let zeros = vec![0.0f32; classes * classes];
        let mut values = vec![0.0f32; batch * classes * batch * PIXELS];
        values
            .par_chunks_mut(classes * batch * PIXELS) // [classes, batch, 1024]: rows of logits[b]
            .enumerate()
            .for_each_init(Scratch::new, |scratch, (b, out)| {
                for other in 0..batch {
                    // Sample b''s logits get the cotangent delta(b, b') e_k; row k lands at
                    // [k, b'].
                    let seeds = if other == b { &identity } else { &zeros };
                    let out = &mut out[other * PIXELS..];
                    let stride = batch * PIXELS;
                    host::sweep(&weights, &derivatives, other, seeds, out, stride, scratch);
                }
            });
        let shape = [
            batch,
            classes,
            batch,
            IMAGE_CHANNELS,
            IMAGE_SIZE,
            IMAGE_SIZE,
        ];
        Tensor::from_data(TensorData::new(values, shape), &device)
    }

    fn host_weights(&self) -> Weights {
        Weights {
            conv1: to_host(self.conv1.weight.val()),
            conv1_bias: bias(&self.conv1.bias, self.conv1.weight.dims()[0]),
            conv2: to_host(self.conv2.weight.val()),
            conv2_bias: bias(&self.conv2.bias, self.conv2.weight.dims()[0]),
            fc1: to_host(self.fc1.weight.val()),
            fc1_bias: bias(&self.fc1.bias, self.fc1.weight.dims()[1]),
            fc2: to_host(self.fc2.weight.val()),
            fc2_bias: bias(&self.fc2.bias, self.fc2.weight.dims()[1]),
            fc3: to_host(self.fc3.weight.val()),
            classes: self.num_classes(),
        }
    }
}

fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32")
}

/// A layer's bias on the host; `outputs` zeros when the layer has none.
fn bias<B: Backend>(bias: &Option<Param<Tensor<B, 1>>>, outputs: usize) -> Vec<f32> {
    bias.as_ref()
        .map_or_else(|| vec![0.0; outputs], |b| to_host(b.val()))
}

/// The `n x n` identity, row-major.
fn identity(n: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; n * n];
    m.iter_mut().step_by(n + 1).for_each(|v| *v = 1.0);
    m
}
