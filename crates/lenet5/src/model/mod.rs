//! The network: [`LeNet5`] and its [`LeNet5Config`].

pub mod config;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{relu, softmax, tanh};
use burn::tensor::backend::Backend;
use burn::tensor::module::{avg_pool2d, max_pool2d, max_pool2d_with_indices};
use burn::tensor::{Int, Tensor};

use config::{
    Activation, LeNet5Config, Pooling, CONV1_CHANNELS, CONV2_CHANNELS, FC1_UNITS, FC2_UNITS,
    FLAT_FEATURES, KERNEL_SIZE, POOL_SIZE,
};

/// LeNet-5: two stages of convolution, activation and pooling, then three linear layers.
///
/// Created with [`LeNet5Config::init`], which says which variant. Each sample of the batch is
/// processed on its own (no batch normalisation or any other layer mixing samples).
///
/// # Shapes
///
/// - input: `[batch, in_channels, 32 - 2 * padding, 32 - 2 * padding]` (`[batch, 1, 32, 32]` by
///   default; [`LeNet5Config::input_dims`])
/// - output: `[batch, num_classes]` (logits)
#[derive(Module, Debug)]
pub struct LeNet5<B: Backend> {
    /// Conv2d(in_channels -> 6, 5 x 5, stride 1, padding as configured).
    pub conv1: Conv2d<B>,
    /// Conv2d(6 -> 16, 5 x 5, stride 1).
    pub conv2: Conv2d<B>,
    /// Linear(400 -> 120) (or the 16 -> 120 convolution on 5 x 5, the same map).
    pub fc1: Linear<B>,
    /// Linear(120 -> 84).
    pub fc2: Linear<B>,
    /// Linear(84 -> num_classes).
    pub fc3: Linear<B>,
    /// What the parameters do not say: activation, pooling, padding, how fc1 is written.
    pub(crate) config: LeNet5Config,
}

const KERNEL: [usize; 2] = [KERNEL_SIZE, KERNEL_SIZE];
const POOL: [usize; 2] = [POOL_SIZE, POOL_SIZE];

impl LeNet5Config {
    /// Creates this LeNet-5 with freshly initialised parameters on `device`.
    ///
    /// The initialisers are Burn's defaults, which draw from the same distributions as
    /// PyTorch's defaults for `Conv2d` and `Linear` (uniform in `±1/sqrt(fan_in)`). Call
    /// `B::seed(&device, seed)` first for reproducible weights.
    ///
    /// # Panics
    ///
    /// When the configuration describes no network ([`LeNet5Config::check`]).
    pub fn init<B: Backend>(&self, device: &B::Device) -> LeNet5<B> {
        if let Err(e) = self.check() {
            panic!("invalid LeNet-5 configuration: {e}");
        }
        let p = self.padding;
        LeNet5 {
            conv1: Conv2dConfig::new([self.in_channels, CONV1_CHANNELS], KERNEL)
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(device),
            conv2: Conv2dConfig::new([CONV1_CHANNELS, CONV2_CHANNELS], KERNEL).init(device),
            fc1: LinearConfig::new(FLAT_FEATURES, FC1_UNITS).init(device),
            fc2: LinearConfig::new(FC1_UNITS, FC2_UNITS).init(device),
            fc3: LinearConfig::new(FC2_UNITS, self.num_classes).init(device),
            config: self.clone(),
        }
    }
}

impl<B: Backend> LeNet5<B> {
    /// Logits of a batch of images.
    ///
    /// # Shapes
    ///
    /// - images: `[batch, in_channels, size, size]` ([`LeNet5Config::input_dims`])
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = self.pool(self.activate(self.conv1.forward(images))); // [batch, 6, 14, 14]
        let x = self.pool(self.activate(self.conv2.forward(x))); // [batch, 16, 5, 5]
        let x = x.flatten::<2>(1, 3); // [batch, 400]
        let x = self.activate(self.fc1.forward(x)); // [batch, 120]
        let x = self.activate(self.fc2.forward(x)); // [batch, 84]
        self.fc3.forward(x) // [batch, num_classes]
    }

    /// Class probabilities: the softmax of [`forward`](Self::forward)'s logits.
    ///
    /// # Shapes
    ///
    /// - images: `[batch, in_channels, size, size]`
    /// - output: `[batch, num_classes]`, each row summing to one
    pub fn probabilities(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        softmax(self.forward(images), 1)
    }

    /// The configuration the model was made with, its classes and input channels as its
    /// weights have them.
    pub fn config(&self) -> LeNet5Config {
        self.config
            .clone()
            .with_num_classes(self.num_classes())
            .with_in_channels(self.conv1.weight.dims()[1])
    }

    /// Number of classes, read from the last layer's weights.
    pub fn num_classes(&self) -> usize {
        self.fc3.weight.dims()[1]
    }

    /// The same weights in the network of another activation and pooling: what a weights
    /// file without a graph does not say.
    pub fn with_layers(self, activation: Activation, pooling: Pooling) -> Self {
        let config = self
            .config
            .clone()
            .with_activation(activation)
            .with_pooling(pooling);
        LeNet5 { config, ..self }
    }

    /// The activation, applied element-wise.
    pub(crate) fn activate<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self.config.activation {
            Activation::Tanh => tanh(x),
            Activation::Relu => relu(x),
            // 1 / (1 + e^-x) as PyTorch computes it, in the tensor's own precision: Burn's
            // `sigmoid` goes through float32 and a logarithm (float64 models would lose their
            // precision), and NdArray's float32 `recip` is an approximate reciprocal (about
            // 12 bits): a true division instead.
            Activation::Sigmoid => {
                let denominator = x.neg().exp().add_scalar(1.0);
                denominator.ones_like().div(denominator)
            }
        }
    }

    /// The activation's derivative, from its output `t`.
    pub(crate) fn activation_derivative<const D: usize>(&self, t: Tensor<B, D>) -> Tensor<B, D> {
        match self.config.activation {
            Activation::Tanh => t.clone().mul(t).neg().add_scalar(1.0),
            Activation::Relu => t.greater_elem(0.0).float(),
            Activation::Sigmoid => t.clone().mul(t.neg().add_scalar(1.0)),
        }
    }

    /// The 2 x 2, stride-2 pooling.
    pub(crate) fn pool(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self.config.pooling {
            Pooling::Avg => avg_pool2d(x, POOL, POOL, [0, 0], true, false),
            Pooling::Max => max_pool2d(x, POOL, POOL, [0, 0], [1, 1], false),
        }
    }

    /// Where the pooling's adjoint sends each window's cotangent, as weights on the pooling's
    /// input: 1/4 everywhere for the average, 1 at each window's largest value (the first
    /// one, in row-major order, when several are equal) and 0 elsewhere for the maximum.
    ///
    /// # Shapes
    ///
    /// - x: `[n, c, h, w]`, the pooling's input
    /// - output: `[n, c, h, w]`
    pub(crate) fn pool_weights(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        match self.config.pooling {
            Pooling::Avg => x
                .zeros_like()
                .add_scalar(1.0 / (POOL_SIZE * POOL_SIZE) as f32),
            Pooling::Max => {
                let device = x.device();
                // The flat index (in the h x w plane) of each window's largest value, repeated
                // over the window, compared with each position's own index.
                let (_, argmax) = max_pool2d_with_indices(x, POOL, POOL, [0, 0], [1, 1], false);
                let argmax = upsample(argmax.float()); // [n, c, h, w]
                let positions = Tensor::<B, 1, Int>::arange(0..(h * w) as i64, &device)
                    .float()
                    .reshape([1, 1, h, w])
                    .expand([n, c, h, w]);
                argmax.equal(positions).float()
            }
        }
    }
}

/// Each value repeated over its 2 x 2 pooling window: the shape of the pooling's input.
///
/// # Shapes
///
/// - x: `[n, c, h, w]`
/// - output: `[n, c, 2h, 2w]`
pub(crate) fn upsample<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let p = POOL_SIZE;
    x.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, p, w, p])
        .reshape([n, c, p * h, p * w])
}
