//! Flex and NdArray: the host kernels when the `host` feature is on, the tensor-op bodies
//! otherwise.

#[cfg(feature = "host")]
use std::ops::Range;

#[cfg(feature = "host")]
use burn::tensor::Tensor;
#[cfg(feature = "host")]
use jacobian::{FullRows, PerSample};

use super::LeNet5Backend;
#[cfg(feature = "host")]
use crate::LeNet5;

macro_rules! cpu_backend {
    ($backend:ty) => {
        impl LeNet5Backend for $backend {
            #[cfg(feature = "host")]
            fn lenet5_per_sample(model: &LeNet5<Self>, images: Tensor<Self, 4>) -> PerSample<Self> {
                super::host::per_sample(model, images)
            }

            #[cfg(feature = "host")]
            fn lenet5_full_rows(
                model: &LeNet5<Self>,
                images: Tensor<Self, 4>,
                rows: Range<usize>,
            ) -> FullRows<Self> {
                super::host::full_rows(model, images, rows)
            }
        }
    };
}

#[cfg(feature = "ndarray")]
cpu_backend!(burn::backend::NdArray);

#[cfg(feature = "flex")]
cpu_backend!(burn::backend::Flex);
