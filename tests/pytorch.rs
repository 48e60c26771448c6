//! Agreement with PyTorch: weights saved by `torch.save(model.state_dict())` (and as
//! SafeTensors), logits and both Jacobian layouts against `torch.autograd.functional.jacobian`.
//! The fixtures come from `scripts/make_torch_fixtures.py` (versions in tests/fixtures/VERSIONS.txt).

mod common;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use jacobian::{full, per_sample, JacobianConfig};
use lenet_jacobian::backend::{run_on, BackendJob};
use lenet_jacobian::error::Result;
use lenet_jacobian::model::{load_model, Batch};

use common::{backends, read_npy, relative_error, run_ok};

const CASES: [(&str, usize, usize); 2] = [("b3_c10", 3, 10), ("b2_c4", 2, 4)];
const WEIGHTS: [&str; 2] = ["lenet5.pt", "lenet5.safetensors"];

fn fixture(case: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case)
        .join(file)
}

/// Logits, per-sample and full Jacobians of a weights file on an input file.
struct FromFiles {
    weights: PathBuf,
    input: PathBuf,
}

impl BackendJob for &FromFiles {
    type Output = (Vec<f32>, Vec<f32>, Vec<f32>);
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Self::Output> {
        let model = load_model::<B>(Some(&self.weights), 0, &device)?.no_grad();
        let (shape, values) = read_npy(&self.input);
        let x = Batch::from_array(&self.input, &shape, values, false)?.to_tensor::<B>(&device);
        let logits = model
            .forward(x.clone())
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let config = JacobianConfig::default();
        let ps = per_sample(|x| model.forward(x), x.clone(), &config)?;
        let fl = full(|x| model.forward(x), x, &config, u128::MAX)?;
        Ok((logits, ps.values, fl.values))
    }
}

#[test]
fn logits_and_both_layouts_match_torch_on_every_backend() {
    for (case, batch, classes) in CASES {
        let (_, torch_logits) = read_npy(&fixture(case, "logits.npy"));
        let (ps_shape, torch_ps) = read_npy(&fixture(case, "jacobian_per_sample.npy"));
        let (full_shape, torch_full) = read_npy(&fixture(case, "jacobian_full.npy"));
        assert_eq!(ps_shape, [batch, classes, 1, 32, 32]);
        assert_eq!(full_shape, [batch, classes, batch, 1, 32, 32]);
        for backend in backends() {
            for weights in WEIGHTS {
                let job = FromFiles {
                    weights: fixture(case, weights),
                    input: fixture(case, "input.npy"),
                };
                let (logits, ps, fl) = run_on(backend, &job).unwrap();
                let errors = [
                    relative_error(&logits, &torch_logits),
                    relative_error(&ps, &torch_ps),
                    relative_error(&fl, &torch_full),
                ];
                eprintln!("{case} {weights} {backend}: logits, per-sample, full: {errors:?} x max |torch|");
                for (what, error) in ["logits", "per-sample", "full"].iter().zip(errors) {
                    assert!(
                        error <= 1e-4,
                        "{case} {weights} {backend} {what}: {error:e} x max |torch|"
                    );
                }
            }
        }
    }
}

#[test]
fn command_line_matches_torch_from_pt_and_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let (case, _, _) = CASES[0];
    let input = fixture(case, "input.npy");
    for (layout, reference) in [
        ("full", "jacobian_full.npy"),
        ("per-sample", "jacobian_per_sample.npy"),
    ] {
        let (_, torch) = read_npy(&fixture(case, reference));
        for weights in WEIGHTS {
            let out = dir.path().join(format!("{layout}-{weights}.npy"));
            run_ok(&[
                "--backend",
                "flex",
                "--weights",
                fixture(case, weights).to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--layout",
                layout,
                "--output",
                out.to_str().unwrap(),
            ]);
            let (_, ours) = read_npy(&out);
            let error = relative_error(&ours, &torch);
            assert!(
                error <= 1e-4,
                "{layout} from {weights}: {error:e} x max |torch|"
            );
        }
    }
}

#[test]
fn class_count_comes_from_the_last_layer() {
    let device = Default::default();
    for (case, _, classes) in CASES {
        for weights in WEIGHTS {
            let model =
                load_model::<burn::backend::NdArray>(Some(&fixture(case, weights)), 0, &device)
                    .unwrap();
            assert_eq!(model.num_classes(), classes, "{case} {weights}");
        }
    }
}
