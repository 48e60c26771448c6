//! LeNet-5 for [Burn](https://burn.dev), generic over the backend, as a family: the variants
//! people have.
//!
//! The default ([`LeNet5Config::new`]) is the network of the classic paper, with tanh
//! activations and average pooling, laid out like the PyTorch module
//!
//! ```text
//! feature_extractor = Sequential(Conv2d(1, 6, 5), Tanh(), AvgPool2d(2),
//!                                Conv2d(6, 16, 5), Tanh(), AvgPool2d(2))
//! classifier        = Sequential(Linear(400, 120), Tanh(), Linear(120, 84), Tanh(),
//!                                Linear(84, num_classes))
//! ```
//!
//! [`LeNet5Config`] names the others: the activation (tanh, ReLU, sigmoid), the pooling
//! (average, max), the input channels, the first convolution's padding, and whether the first
//! classifier layer is written as a third convolution.
//!
//! - [`model`]: the network, its configuration and its sizes;
//! - [`LeNet5Backend`]: its input Jacobians, which the `jacobian` engine drives ([`LeNet5`]
//!   implements [`jacobian::Differentiable`]): written in tensor ops ([`tensor_ops`]) for any
//!   backend; with the `host` feature, Flex and NdArray compute them with fused kernels on the
//!   host CPU instead;
//! - [`differentiable`]: the Jacobian kept in the autodiff graph, for a Jacobian penalty in
//!   training (double backpropagation) and input Hessians, which Burn alone cannot compute;
//! - [`import`] (feature `import`): weights from PyTorch state_dicts and checkpoints (any key
//!   names), SafeTensors, ONNX exports and Burn's own records;
//! - [`mnist`] (feature `mnist`): MNIST's IDX files and LeNet-5's input of their digits;
//! - [`train`] (feature `train`): training on them with burn-train.
//!
//! This crate depends on `burn` without any backend feature: the program that embeds it picks
//! the backend.
//!
//! ```
//! use burn::backend::NdArray;
//! use burn::tensor::{Distribution, Tensor};
//! use lenet5::{Activation, LeNet5Config, Pooling};
//!
//! let device = Default::default();
//! let model = LeNet5Config::new().init::<NdArray>(&device);
//! let images = Tensor::<NdArray, 4>::random([3, 1, 32, 32], Distribution::Default, &device);
//! assert_eq!(model.forward(images).dims(), [3, 10]);
//!
//! // PyTorch's tutorial `Net`: ReLU and max pooling.
//! let config = LeNet5Config::new().with_activation(Activation::Relu).with_pooling(Pooling::Max);
//! let model = config.init::<NdArray>(&device);
//! ```

mod backend;
pub mod differentiable;
#[cfg(feature = "import")]
pub mod import;
#[cfg(feature = "mnist")]
pub mod mnist;
pub mod model;
#[cfg(feature = "train")]
pub mod train;

pub use backend::{tensor_ops, LeNet5Backend};
pub use model::config::{Activation, ConfigError, LeNet5Config, Pooling};
pub use model::LeNet5;
