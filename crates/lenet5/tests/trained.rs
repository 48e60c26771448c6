//! The shipped weights, `models/lenet5-mnist.bpk` (trained by `examples/train.rs`, see
//! `models/README.md`), on the committed held-out MNIST digits, `data/mnist/t10k-*`.

use std::path::{Path, PathBuf};

use burn::backend::{Flex, NdArray};
use burn::tensor::backend::Backend;
use lenet5::import::{load, ImportConfig};
use lenet5::mnist::{accuracy, Mnist, Split};

/// Held-out digits (of 1000) the shipped weights classify correctly, as measured after
/// training and recorded in `models/README.md`.
const RECORDED_CORRECT: usize = 965;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn held_out_accuracy<B: Backend>() {
    let device = Default::default();
    let weights = repository().join("models/lenet5-mnist.bpk");
    let imported =
        load::<B>(&weights, &ImportConfig::new(), &device).unwrap_or_else(|e| panic!("{e}"));
    assert!(imported.notes.is_empty(), "{:?}", imported.notes);
    let model = imported.model;
    assert_eq!(model.num_classes(), 10);
    let test =
        Mnist::load(repository().join("data/mnist"), Split::Test).unwrap_or_else(|e| panic!("{e}"));
    let measured = accuracy(&model, &test, 250, &device).unwrap();
    assert_eq!(measured.total, 1000);
    assert!(measured.fraction() >= 0.95, "held-out accuracy {measured}");
    assert_eq!(
        measured.correct, RECORDED_CORRECT,
        "held-out accuracy {measured}, recorded {RECORDED_CORRECT}/1000"
    );
}

#[test]
fn the_shipped_weights_classify_the_held_out_digits_on_flex() {
    held_out_accuracy::<Flex>();
}

#[test]
fn the_shipped_weights_classify_the_held_out_digits_on_ndarray() {
    held_out_accuracy::<NdArray>();
}
