//! LeNet-5 for [Burn](https://burn.dev), generic over the backend.
//!
//! The architecture is the one of the classic paper, with tanh activations and average pooling,
//! laid out like the PyTorch module
//!
//! ```text
//! feature_extractor = Sequential(Conv2d(1, 6, 5), Tanh(), AvgPool2d(2),
//!                                Conv2d(6, 16, 5), Tanh(), AvgPool2d(2))
//! classifier        = Sequential(Linear(400, 120), Tanh(), Linear(120, 84), Tanh(),
//!                                Linear(84, num_classes))
//! ```
//!
//! This crate depends on `burn` without any backend feature: the program that embeds it picks
//! the backend.
//!
//! Its input Jacobians ([`LeNet5`] implements [`jacobian::Differentiable`]) are computed by
//! the backend extension [`LeNet5Backend`]: written in tensor ops, on the backend's device, for
//! any backend; with the `host` feature, Flex and NdArray compute them with fused kernels on
//! the host CPU instead (see [`LeNet5Backend`]).
//!
//! With the `mnist` feature, [`mnist`] reads MNIST's IDX files and makes LeNet-5's input of
//! its 28 x 28 digits; with `train`, [`train`] trains the model on them with burn-train.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Distribution, Tensor};
//! use lenet5::LeNet5Config;
//!
//! let device = Default::default();
//! let model = LeNet5Config::new().init::<NdArray>(&device);
//! let images = Tensor::<NdArray, 4>::random([3, 1, 32, 32], Distribution::Default, &device);
//! let logits = model.forward(images);
//! assert_eq!(logits.dims(), [3, 10]);
//! ```

mod backend;
#[cfg(feature = "host")]
mod host;
#[cfg(feature = "import")]
pub mod import;
#[cfg(feature = "mnist")]
pub mod mnist;
pub mod tensor_ops;
#[cfg(feature = "train")]
pub mod train;

pub use backend::LeNet5Backend;

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig};
use burn::nn::{Linear, LinearConfig, Tanh};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

// LeNet-5's sizes, the one place they are stated.

/// Height and width of the images LeNet-5 takes.
pub const IMAGE_SIZE: usize = 32;
/// Channels of the images LeNet-5 takes (grayscale).
pub const IMAGE_CHANNELS: usize = 1;
/// The shape of one input image: `[1, 32, 32]`.
pub const IMAGE_DIMS: [usize; 3] = [IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE];
/// Values in one input image.
pub const IMAGE_LEN: usize = IMAGE_CHANNELS * IMAGE_SIZE * IMAGE_SIZE;
/// Side of both convolutions' square kernels (stride 1, no padding).
pub const KERNEL_SIZE: usize = 5;
/// Side of both average poolings' windows (and their stride).
pub const POOL_SIZE: usize = 2;
/// Output channels of the first convolution.
pub const CONV1_CHANNELS: usize = 6;
/// Output channels of the second convolution.
pub const CONV2_CHANNELS: usize = 16;
/// Side of the first convolution's output: 28.
pub const CONV1_SIZE: usize = IMAGE_SIZE - KERNEL_SIZE + 1;
/// Side of the first pooling's output: 14.
pub const POOL1_SIZE: usize = CONV1_SIZE / POOL_SIZE;
/// Side of the second convolution's output: 10.
pub const CONV2_SIZE: usize = POOL1_SIZE - KERNEL_SIZE + 1;
/// Side of the second pooling's output: 5.
pub const POOL2_SIZE: usize = CONV2_SIZE / POOL_SIZE;
/// Features after the second pooling layer, flattened: 16 channels of 5 x 5.
pub const FLAT_FEATURES: usize = CONV2_CHANNELS * POOL2_SIZE * POOL2_SIZE;
/// Units of the first hidden linear layer.
pub const FC1_UNITS: usize = 120;
/// Units of the second hidden linear layer.
pub const FC2_UNITS: usize = 84;
/// Height and width of MNIST's digits, which LeNet-5 takes padded to [`IMAGE_SIZE`].
pub const MNIST_SIZE: usize = 28;
/// Zero pixels added on each side of an MNIST digit to make LeNet-5's input: 2.
pub const MNIST_PADDING: usize = (IMAGE_SIZE - MNIST_SIZE) / 2;

/// Configuration of [`LeNet5`].
#[derive(Config, Debug)]
pub struct LeNet5Config {
    /// Number of output classes (logits).
    #[config(default = 10)]
    pub num_classes: usize,
}

/// LeNet-5: two convolution + tanh + average-pooling stages, then three linear layers.
///
/// Created with [`LeNet5Config::init`]. Each sample of the batch is processed independently
/// (no batch normalisation or any other layer mixing samples).
///
/// # Shapes
///
/// - input: `[batch, 1, 32, 32]`
/// - output: `[batch, num_classes]` (logits)
#[derive(Module, Debug)]
pub struct LeNet5<B: Backend> {
    /// Conv2d(1 -> 6, 5 x 5, stride 1): PyTorch's `feature_extractor.0`.
    pub conv1: Conv2d<B>,
    /// Conv2d(6 -> 16, 5 x 5, stride 1): PyTorch's `feature_extractor.3`.
    pub conv2: Conv2d<B>,
    /// Linear(400 -> 120): PyTorch's `classifier.0`.
    pub fc1: Linear<B>,
    /// Linear(120 -> 84): PyTorch's `classifier.2`.
    pub fc2: Linear<B>,
    /// Linear(84 -> num_classes): PyTorch's `classifier.4`.
    pub fc3: Linear<B>,
    pub(crate) pool: AvgPool2d,
    pub(crate) activation: Tanh,
}

const KERNEL: [usize; 2] = [KERNEL_SIZE, KERNEL_SIZE];

impl LeNet5Config {
    /// Creates a LeNet-5 with freshly initialised parameters on `device`.
    ///
    /// The initialisers are Burn's defaults, which draw from the same distributions as
    /// PyTorch's defaults for `Conv2d` and `Linear` (uniform in `±1/sqrt(fan_in)`). Call
    /// `B::seed(&device, seed)` first for reproducible weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LeNet5<B> {
        LeNet5 {
            conv1: Conv2dConfig::new([IMAGE_CHANNELS, CONV1_CHANNELS], KERNEL).init(device),
            conv2: Conv2dConfig::new([CONV1_CHANNELS, CONV2_CHANNELS], KERNEL).init(device),
            fc1: LinearConfig::new(FLAT_FEATURES, FC1_UNITS).init(device),
            fc2: LinearConfig::new(FC1_UNITS, FC2_UNITS).init(device),
            fc3: LinearConfig::new(FC2_UNITS, self.num_classes).init(device),
            pool: AvgPool2dConfig::new([POOL_SIZE, POOL_SIZE]).init(),
            activation: Tanh::new(),
        }
    }
}

impl<B: Backend> LeNet5<B> {
    /// Logits of a batch of images.
    ///
    /// # Shapes
    ///
    /// - images: `[batch, 1, 32, 32]`
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = self.conv1.forward(images); // [batch, 6, 28, 28]
        let x = self.pool.forward(self.activation.forward(x)); // [batch, 6, 14, 14]
        let x = self.conv2.forward(x); // [batch, 16, 10, 10]
        let x = self.pool.forward(self.activation.forward(x)); // [batch, 16, 5, 5]
        let x = x.flatten::<2>(1, 3); // [batch, 400]
        let x = self.activation.forward(self.fc1.forward(x)); // [batch, 120]
        let x = self.activation.forward(self.fc2.forward(x)); // [batch, 84]
        self.fc3.forward(x) // [batch, num_classes]
    }

    /// Class probabilities: the softmax of [`forward`](Self::forward)'s logits.
    ///
    /// # Shapes
    ///
    /// - images: `[batch, 1, 32, 32]`
    /// - output: `[batch, num_classes]`, each row summing to one
    pub fn probabilities(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        softmax(self.forward(images), 1)
    }

    /// Number of classes, read from the last layer's weights.
    pub fn num_classes(&self) -> usize {
        self.fc3.weight.dims()[1]
    }
}
