//! Agreement with PyTorch: weights saved by `torch.save(model.state_dict())` (and as
//! SafeTensors), logits and both Jacobian layouts against `torch.autograd.functional.jacobian`.
//! The fixtures come from `scripts/make_torch_fixtures.py` (versions in tests/fixtures/VERSIONS.txt).

mod common;

use std::path::PathBuf;

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use jacobian::{full, per_sample, JacobianConfig, Strategy};
use lenet5::LeNet5Backend;
use lenet_jacobian::backend::{run_on, BackendJob};
use lenet_jacobian::error::Result;
use lenet_jacobian::input::Batch;
use lenet_jacobian::model;
use lenet_jacobian::run::{differentiable, Method};

use common::{backends, read_npy, relative_error, run_ok};

const CASES: [(&str, usize, usize); 2] = [("b3_c10", 3, 10), ("b2_c4", 2, 4)];
const WEIGHTS: [&str; 2] = ["lenet5.pt", "lenet5.safetensors"];

fn fixture(case: &str, file: &str) -> PathBuf {
    common::fixture(case).join(file)
}

/// Logits, and both Jacobian layouts by the autodiff engine and by LeNet-5's specialised
/// path, of a weights file on an input file; each named by what it is and the torch file it
/// is compared with.
struct FromFiles {
    weights: PathBuf,
    input: PathBuf,
}

type Computed = Vec<(&'static str, &'static str, Vec<f32>)>;

impl BackendJob for &FromFiles {
    type Output = Computed;
    fn run<B>(self, device: B::Device) -> Result<Computed>
    where
        B: AutodiffBackend,
        B::InnerBackend: LeNet5Backend,
    {
        let model = model::load::<B>(Some(&self.weights), 0, false, &device)?.no_grad();
        let (shape, values) = read_npy(&self.input);
        let batch = Batch::from_array(&self.input, &shape, values)?;
        let x = batch.to_tensor::<B::InnerBackend>(&device);
        let host = |data: burn::tensor::TensorData| data.to_vec::<f32>().unwrap();
        let logits = host(model.valid().forward(x.clone()).into_data());
        let config = JacobianConfig::new();
        let mut computed = vec![("logits", "logits.npy", logits)];
        for (method, per_sample_name, full_name) in [
            (Method::Autodiff, "autodiff per-sample", "autodiff full"),
            (Method::Analytic, "analytic per-sample", "analytic full"),
        ] {
            let f = differentiable(&model, method, Strategy::default());
            let ps = per_sample::<_, _, 4, 5>(f.as_ref(), x.clone(), &config)?.jacobian;
            let fl = full::<_, _, 4, 6>(f.as_ref(), x.clone(), &config)?.jacobian;
            computed.push((
                per_sample_name,
                "jacobian_per_sample.npy",
                host(ps.into_data()),
            ));
            computed.push((full_name, "jacobian_full.npy", host(fl.into_data())));
        }
        Ok(computed)
    }
}

#[test]
fn logits_and_both_layouts_match_torch_on_every_backend() {
    for (case, batch, classes) in CASES {
        let (ps_shape, _) = read_npy(&fixture(case, "jacobian_per_sample.npy"));
        let (full_shape, _) = read_npy(&fixture(case, "jacobian_full.npy"));
        assert_eq!(ps_shape, [batch, classes, 1, 32, 32]);
        assert_eq!(full_shape, [batch, classes, batch, 1, 32, 32]);
        for backend in backends() {
            for weights in WEIGHTS {
                let job = FromFiles {
                    weights: fixture(case, weights),
                    input: fixture(case, "input.npy"),
                };
                for (what, torch_file, ours) in run_on(backend, &job).unwrap() {
                    let (_, torch) = read_npy(&fixture(case, torch_file));
                    let error = relative_error(&ours, &torch);
                    eprintln!("{case} {weights} {backend} {what}: {error:e} x max |torch|");
                    assert!(
                        error <= 1e-4,
                        "{case} {weights} {backend} {what}: {error:e} x max |torch|"
                    );
                }
            }
        }
    }
}

/// Weight files as people have them (tests/fixtures/variants/, made by
/// `scripts/make_weight_variants.py`), against PyTorch run on the same weights: b3_c10's for
/// the full-precision files, the rounded weights' Jacobians for the half-precision ones.
#[test]
fn weight_files_as_people_have_them_match_torch_on_every_backend() {
    let variants = [
        ("dataparallel.pt", None),
        ("compiled.pt", None),
        ("legacy.pt", None),
        ("float16.safetensors", Some("float16")),
        ("float16.pt", Some("float16")),
        ("bfloat16.safetensors", Some("bfloat16")),
    ];
    for backend in backends() {
        for (file, rounded) in variants {
            let job = FromFiles {
                weights: fixture("variants", file),
                input: fixture("b3_c10", "input.npy"),
            };
            for (what, torch_file, ours) in run_on(backend, &job).unwrap() {
                let reference = match (rounded, torch_file) {
                    (None, _) => fixture("b3_c10", torch_file),
                    // No logits were saved for the rounded weights.
                    (Some(_), "logits.npy") => continue,
                    (Some(dtype), _) => {
                        let name = torch_file.replace(".npy", &format!("_{dtype}.npy"));
                        fixture("variants", &name)
                    }
                };
                let (_, torch) = read_npy(&reference);
                let error = relative_error(&ours, &torch);
                eprintln!("{file} {backend} {what}: {error:e} x max |torch|");
                assert!(
                    error <= 1e-4,
                    "{file} {backend} {what}: {error:e} x max |torch|"
                );
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
            let model = model::load::<burn::backend::NdArray>(
                Some(&fixture(case, weights)),
                0,
                false,
                &device,
            )
            .unwrap();
            assert_eq!(model.num_classes(), classes, "{case} {weights}");
        }
    }
}
