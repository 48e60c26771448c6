//! Wgpu: on a GPU the tensor-op bodies run on the device.

use super::LeNet5Backend;

impl LeNet5Backend for burn::backend::Wgpu {}
