//! What a LeNet-5 is made of: its sizes, stated once, and the choices that make the variants
//! people have.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use burn::serde::{Deserialize, Serialize};

// LeNet-5's sizes, the one place they are stated. Every variant shares them: what changes from
// one to another is in `LeNet5Config`.

/// Height and width of what the first convolution sees, its zero padding included: 32.
pub const PADDED_SIZE: usize = 32;
/// Side of every convolution's square kernel (stride 1): 5.
pub const KERNEL_SIZE: usize = 5;
/// Side of both poolings' windows, and their stride: 2.
pub const POOL_SIZE: usize = 2;
/// Output channels of the first convolution.
pub const CONV1_CHANNELS: usize = 6;
/// Output channels of the second convolution.
pub const CONV2_CHANNELS: usize = 16;
/// Side of the first convolution's output: 28.
pub const CONV1_SIZE: usize = PADDED_SIZE - KERNEL_SIZE + 1;
/// Side of the first pooling's output: 14.
pub const POOL1_SIZE: usize = CONV1_SIZE / POOL_SIZE;
/// Side of the second convolution's output: 10.
pub const CONV2_SIZE: usize = POOL1_SIZE - KERNEL_SIZE + 1;
/// Side of the second pooling's output: 5.
pub const POOL2_SIZE: usize = CONV2_SIZE / POOL_SIZE;
/// Features after the second pooling layer, flattened: 16 channels of 5 x 5.
pub const FLAT_FEATURES: usize = CONV2_CHANNELS * POOL2_SIZE * POOL2_SIZE;
/// Units of the first hidden layer (`Linear(400, 120)`, or the 16 -> 120 convolution).
pub const FC1_UNITS: usize = 120;
/// Units of the second hidden layer.
pub const FC2_UNITS: usize = 84;
/// The most zero padding the first convolution may have: the input is then 2 x 2.
pub const MAX_PADDING: usize = (PADDED_SIZE - 1) / 2;
/// Height and width of MNIST's digits.
pub const MNIST_SIZE: usize = 28;

/// The activation after each convolution and each hidden linear layer.
///
/// Each one's derivative is a function of its output `t` (what the backward sweep keeps):
/// `1 - t^2`, `t > 0`, `t (1 - t)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "burn::serde", rename_all = "lowercase")]
pub enum Activation {
    /// `tanh`: the classic paper's (a scaled tanh there), and the question's LeNet5.
    Tanh,
    /// `max(x, 0)`: PyTorch's tutorial `Net` and most CIFAR-10 LeNets.
    Relu,
    /// `1 / (1 + e^-x)`: d2l's LeNet.
    Sigmoid,
}

/// The 2 x 2, stride-2 pooling after each convolution's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(crate = "burn::serde", rename_all = "lowercase")]
pub enum Pooling {
    /// The mean of each window (`AvgPool2d(2)`).
    Avg,
    /// The largest value of each window (`MaxPool2d(2)`); its adjoint routes to the first
    /// largest, as PyTorch's does.
    Max,
}

impl Activation {
    /// Every activation, in the order the command line lists them.
    pub const ALL: [Activation; 3] = [Activation::Tanh, Activation::Relu, Activation::Sigmoid];

    /// The name used on the command line and in files: `tanh`, `relu`, `sigmoid`.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
        }
    }

    /// Whether the network is piecewise linear in its input with this activation (its input
    /// Hessian is zero almost everywhere) when pooling is too.
    pub fn is_piecewise_linear(self) -> bool {
        self == Activation::Relu
    }
}

impl Pooling {
    /// Every pooling, in the order the command line lists them.
    pub const ALL: [Pooling; 2] = [Pooling::Avg, Pooling::Max];

    /// The name used on the command line and in files: `avg`, `max`.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Avg => "avg",
            Pooling::Max => "max",
        }
    }
}

/// Names that are not an [`Activation`] or a [`Pooling`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{name}', expected one of {expected}")]
pub struct UnknownName {
    what: &'static str,
    name: String,
    expected: String,
}

fn parse_name<T: Copy>(
    name: &str,
    all: &[T],
    name_of: fn(T) -> &'static str,
    what: &'static str,
) -> Result<T, UnknownName> {
    all.iter()
        .copied()
        .find(|&v| name_of(v) == name.to_ascii_lowercase())
        .ok_or_else(|| UnknownName {
            what,
            name: name.to_string(),
            expected: all
                .iter()
                .map(|&v| name_of(v))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl FromStr for Activation {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        parse_name(name, &Activation::ALL, Activation::name, "activation")
    }
}

impl FromStr for Pooling {
    type Err = UnknownName;
    fn from_str(name: &str) -> Result<Self, UnknownName> {
        parse_name(name, &Pooling::ALL, Pooling::name, "pooling")
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Configuration of [`LeNet5`](crate::LeNet5): which LeNet-5.
///
/// `LeNet5Config::new()` is the classic network of the question: tanh, average pooling, one
/// input channel of 32 x 32, ten classes. The other fields make the variants people have:
/// PyTorch's tutorial `Net` (ReLU, max pooling), d2l's (sigmoid, padding 2 on 28 x 28
/// digits), CIFAR-10 LeNets (three input channels), the one written with a third convolution.
/// Its JSON (as [`Config::save`] writes it) is what weight files record of it.
#[derive(Config, Debug, PartialEq, Eq)]
pub struct LeNet5Config {
    /// Output classes (logits).
    #[config(default = 10)]
    pub num_classes: usize,
    /// Channels of the input images: 1 (grayscale) or 3 (RGB), say.
    #[config(default = 1)]
    pub in_channels: usize,
    /// The activation after each convolution and hidden linear layer.
    #[config(default = "Activation::Tanh")]
    pub activation: Activation,
    /// The pooling after each convolution's activation.
    #[config(default = "Pooling::Avg")]
    pub pooling: Pooling,
    /// Zero padding of the first convolution on every side: 0 for 32 x 32 input, 2 for
    /// 28 x 28 (what d2l's LeNet does). The input side is `32 - 2 * padding`.
    #[config(default = 0)]
    pub padding: usize,
    /// The first classifier layer written as a 16 -> 120 convolution with a 5 x 5 kernel
    /// rather than `Linear(400, 120)`. On the 5 x 5 input it gets, it is the same map; the
    /// model holds it as the linear layer, and this says how PyTorch files hold it.
    #[config(default = false)]
    pub conv3: bool,
}

/// Why a [`LeNet5Config`] describes no network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No classes.
    #[error("num_classes is 0, expected at least 1")]
    NoClasses,
    /// No input channels.
    #[error("in_channels is 0, expected at least 1")]
    NoChannels,
    /// More padding than a 32 x 32 convolution input has room for.
    #[error(
        "padding {0} leaves no input: at most {MAX_PADDING} (the input side is 32 - 2 x padding)"
    )]
    Padding(usize),
}

impl LeNet5Config {
    /// Whether this describes a network.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.num_classes == 0 {
            Err(ConfigError::NoClasses)
        } else if self.in_channels == 0 {
            Err(ConfigError::NoChannels)
        } else if self.padding > MAX_PADDING {
            Err(ConfigError::Padding(self.padding))
        } else {
            Ok(())
        }
    }

    /// Height and width of the input images: `32 - 2 * padding`.
    pub fn input_size(&self) -> usize {
        PADDED_SIZE - 2 * self.padding
    }

    /// The shape of one input image, `[in_channels, size, size]`.
    pub fn input_dims(&self) -> [usize; 3] {
        let size = self.input_size();
        [self.in_channels, size, size]
    }

    /// Values in one input image.
    pub fn input_len(&self) -> usize {
        self.input_dims().iter().product()
    }

    /// In words: `relu activation, max pooling, 1 x 32 x 32 input (conv1 padding 0), 10
    /// classes`. (Its `Display` is its JSON, as every Burn `Config`'s.)
    pub fn summary(&self) -> String {
        let [c, h, w] = self.input_dims();
        let mut summary = format!(
            "{} activation, {} pooling, {c} x {h} x {w} input (conv1 padding {}), {} classes",
            self.activation, self.pooling, self.padding, self.num_classes
        );
        if self.conv3 {
            summary.push_str(", fc1 as a 16 -> 120 convolution");
        }
        summary
    }
}
