//! Weights as the application loads them: seeded, or from files.

mod common;

use burn::backend::{Flex, NdArray};
use lenet_jacobian::input::Batch;
use lenet_jacobian::model::{Model, Stated};

use common::{fixture, relative_error, run_in, temp_dir};

#[test]
fn seeded_weights_are_the_same_on_every_backend() {
    // Flex's own generator is not reproducible; the application draws on ndarray and moves
    // the weights. Same logits on ndarray and flex for a seed.
    let device = Default::default();
    let x = Batch::random(2, [1, 32, 32], 3);
    let a = Model::load(None, 11, Stated::default(), false)
        .unwrap()
        .on::<NdArray>(&device)
        .unwrap()
        .forward(x.to_tensor(&device))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let b = Model::load(None, 11, Stated::default(), false)
        .unwrap()
        .on::<Flex>(&Default::default())
        .unwrap()
        .forward(x.to_tensor(&Default::default()))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(relative_error(&b, &a) < 1e-5);
    let c = Model::load(None, 12, Stated::default(), false)
        .unwrap()
        .on::<NdArray>(&device)
        .unwrap()
        .forward(x.to_tensor(&device))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(relative_error(&c, &a) > 1e-2, "another seed, other weights");
}

/// A Jacobian computed from NaN weights, as asked, is reported as holding NaN: no line states
/// a finite maximum, nor zero blocks, from it.
#[test]
fn non_finite_weights_allowed_give_a_report_that_says_so() {
    let weights = fixture("variants").join("nan_weight.safetensors");
    for layout in ["full", "per-sample"] {
        let dir = temp_dir();
        let ran = run_in(
            dir.path(),
            &[
                "--backend",
                "flex",
                "--batch",
                "3",
                "--layout",
                layout,
                "--weights",
                weights.to_str().unwrap(),
                "--allow-non-finite",
            ],
            &[],
        );
        assert_eq!(ran.code(), 0, "{}", ran.stderr);
        assert!(
            ran.stderr
                .contains("classifier.2.weight holds 1 non-finite value(s)"),
            "{}",
            ran.stderr
        );
        let report = &ran.stdout;
        // NaN in fc2 reaches every logit: every entry is NaN.
        assert!(
            report.contains("entries is NaN or Inf (the first at index [0, 0,"),
            "{report}"
        );
        for line in report.lines() {
            assert!(
                !line.starts_with("largest |J|:"),
                "a finite maximum: {line}"
            );
            assert!(!line.contains("are zero"), "a claim of zero blocks: {line}");
            assert!(
                !line.starts_with("largest |J| off the batch diagonal"),
                "a finite maximum off the diagonal: {line}"
            );
        }
    }
}
