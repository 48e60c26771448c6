//! `Autodiff<B>`: the plain Jacobian is a value, computed by the inner backend; the graph is
//! left alone.

use std::ops::Range;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use jacobian::{FullRows, PerSample};

use super::LeNet5Backend;
use crate::LeNet5;

impl<B: LeNet5Backend, C: CheckpointStrategy> LeNet5Backend for Autodiff<B, C> {
    fn lenet5_per_sample(model: &LeNet5<Self>, images: Tensor<Self, 4>) -> PerSample<Self> {
        let inner = B::lenet5_per_sample(&model.valid(), images.inner());
        PerSample {
            jacobian: Tensor::from_inner(inner.jacobian),
            outputs: Tensor::from_inner(inner.outputs),
        }
    }

    fn lenet5_full_rows(
        model: &LeNet5<Self>,
        images: Tensor<Self, 4>,
        rows: Range<usize>,
    ) -> FullRows<Self> {
        let inner = B::lenet5_full_rows(&model.valid(), images.inner(), rows);
        FullRows {
            jacobian: Tensor::from_inner(inner.jacobian),
            outputs: Tensor::from_inner(inner.outputs),
        }
    }
}
