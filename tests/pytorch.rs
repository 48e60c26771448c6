//! Agreement with PyTorch: weights saved by `torch.save(model.state_dict())` (and as
//! SafeTensors, checkpoints and ONNX exports), logits and both Jacobian layouts against
//! `torch.autograd.functional.jacobian`, by both methods, on every backend. The fixtures come
//! from `scripts/make_torch_fixtures.py`, `scripts/make_weight_variants.py` and
//! `scripts/make_family_fixtures.py` (versions in each directory's VERSIONS.txt).

mod common;

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use jacobian::{full, per_sample, JacobianConfig, Strategy};
use lenet5::{Activation, LeNet5Backend, Pooling};
use lenet_jacobian::backend::{run_on, BackendJob};
use lenet_jacobian::error::Result;
use lenet_jacobian::input::Batch;
use lenet_jacobian::model::{Model, Stated};
use lenet_jacobian::run::{differentiable, Method};

use common::{backends, read_npy, relative_error, run_ok};

const CASES: [(&str, usize, usize); 2] = [("b3_c10", 3, 10), ("b2_c4", 2, 4)];
const WEIGHTS: [&str; 2] = ["lenet5.pt", "lenet5.safetensors"];

/// Largest difference from PyTorch's result allowed, over its largest entry: float32
/// computed in another order, on files made by PyTorch itself. (The agreement seen is about
/// 1e-7; a wrong activation or pooling is off by about 1.)
const TOLERANCE: f64 = 1e-5;

fn fixture(case: &str, file: &str) -> PathBuf {
    common::fixture(case).join(file)
}

/// Logits, and both Jacobian layouts by the autodiff engine and by LeNet-5's specialised
/// path, of a weights file (the architecture stated as given) on an input file; each named by
/// what it is and the torch file it is compared with.
struct FromFiles {
    weights: PathBuf,
    stated: Stated,
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
        let loaded = Model::load(Some(&self.weights), 0, self.stated, false)?;
        let model = loaded.on::<B>(&device)?.no_grad();
        let (shape, values) = read_npy(&self.input);
        let dims = loaded.config().input_dims();
        let batch = Batch::from_array(&self.input, &shape, dims, values)?;
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

/// Runs `job` on every backend and compares each result with PyTorch's file of the same
/// name in `references`.
fn assert_matches_torch(name: &str, job: &FromFiles, references: &Path) {
    for backend in backends() {
        let start = std::time::Instant::now();
        let computed = run_on(backend, job).unwrap_or_else(|e| panic!("{name}: {}", e.one_line()));
        eprintln!(
            "{name} {backend}: computed in {:.2} s",
            start.elapsed().as_secs_f64()
        );
        for (what, torch_file, ours) in computed {
            let (_, torch) = read_npy(&references.join(torch_file));
            let error = relative_error(&ours, &torch);
            eprintln!("{name} {backend} {what}: {error:e} x max |torch|");
            assert!(
                error <= TOLERANCE,
                "{name} {backend} {what}: {error:e} x max |torch|"
            );
        }
    }
}

#[test]
fn logits_and_both_layouts_match_torch_on_every_backend() {
    for (case, batch, classes) in CASES {
        let (ps_shape, _) = read_npy(&fixture(case, "jacobian_per_sample.npy"));
        let (full_shape, _) = read_npy(&fixture(case, "jacobian_full.npy"));
        assert_eq!(ps_shape, [batch, classes, 1, 32, 32]);
        assert_eq!(full_shape, [batch, classes, batch, 1, 32, 32]);
        for weights in WEIGHTS {
            let job = FromFiles {
                weights: fixture(case, weights),
                stated: Stated::default(),
                input: fixture(case, "input.npy"),
            };
            assert_matches_torch(&format!("{case} {weights}"), &job, &common::fixture(case));
        }
    }
}

/// The LeNet-5s people have (tests/fixtures/family/, each case.json saying what it is): the
/// weights file as its authors save it, with the flags stating what a state_dict does not
/// record, and each ONNX export without any flag.
#[test]
fn the_lenet5s_people_have_match_torch_on_every_backend() {
    let family = common::fixture("family");
    let mut cases = 0;
    for entry in std::fs::read_dir(&family).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("case.json")) else {
            continue; // bad/
        };
        let case: serde_json::Value = serde_json::from_str(&text).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let stated = stated(&case["flags"]);
        let mut files = vec![(case["weights"].as_str().unwrap().to_string(), stated)];
        for onnx in case["onnx"].as_array().unwrap() {
            files.push((onnx.as_str().unwrap().to_string(), Stated::default()));
        }
        for (file, stated) in files {
            let job = FromFiles {
                weights: dir.join(&file),
                stated,
                input: dir.join("input.npy"),
            };
            assert_matches_torch(&format!("{name}/{file}"), &job, &dir);
        }
        cases += 1;
    }
    assert_eq!(cases, 6, "every case of tests/fixtures/family/");
}

/// A case's `flags` (`["--activation", "relu", ...]`) as a statement.
fn stated(flags: &serde_json::Value) -> Stated {
    let flags: Vec<&str> = flags
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let mut stated = Stated::default();
    for pair in flags.chunks(2) {
        match pair {
            ["--activation", a] => stated.activation = Some(a.parse::<Activation>().unwrap()),
            ["--pooling", p] => stated.pooling = Some(p.parse::<Pooling>().unwrap()),
            ["--padding", n] => stated.padding = Some(n.parse().unwrap()),
            other => panic!("flags {other:?}"),
        }
    }
    stated
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
                stated: Stated::default(),
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
                    error <= TOLERANCE,
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
                error <= TOLERANCE,
                "{layout} from {weights}: {error:e} x max |torch|"
            );
        }
    }
}

/// The command line on the family: an ONNX export needs no flag, a state_dict states what it
/// does not record; the report names the architecture and where it came from.
#[test]
fn command_line_matches_torch_on_the_family() {
    let dir = tempfile::tempdir().unwrap();
    let runs: [(&str, &str, &[&str], &str, &str); 3] = [
        (
            "tutorial_net",
            "model_dynamo.onnx",
            &[],
            "full",
            "relu activation (from the ONNX graph), max pooling (from the ONNX graph)",
        ),
        (
            "d2l_sequential",
            "d2l.pt",
            &["--activation", "sigmoid", "--padding", "2"],
            "per-sample",
            "sigmoid activation (stated), avg pooling (default), 1 x 28 x 28 input (conv1 padding 2, stated)",
        ),
        (
            "cifar_net",
            "ckpt.pth",
            &["--activation", "relu", "--pooling", "max"],
            "full",
            "3 x 32 x 32 input",
        ),
    ];
    for (case, weights, flags, layout, architecture) in runs {
        let out = dir.path().join(format!("{case}.npy"));
        let case_dir = common::fixture("family").join(case);
        let weights = case_dir.join(weights);
        let input = case_dir.join("input.npy");
        let mut args = vec![
            "--backend",
            "flex",
            "--weights",
            weights.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--layout",
            layout,
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend(flags);
        let report = run_ok(&args);
        assert!(report.contains(architecture), "{case}: {report}");
        let (_, ours) = read_npy(&out);
        let (_, torch) =
            read_npy(&case_dir.join(format!("jacobian_{}.npy", layout.replace('-', "_"))));
        let error = relative_error(&ours, &torch);
        assert!(
            error <= TOLERANCE,
            "{case} {layout}: {error:e} x max |torch|"
        );
    }
}

#[test]
fn class_count_comes_from_the_last_layer() {
    for (case, _, classes) in CASES {
        for weights in WEIGHTS {
            let model =
                Model::load(Some(&fixture(case, weights)), 0, Stated::default(), false).unwrap();
            assert_eq!(model.config().num_classes, classes, "{case} {weights}");
        }
    }
}
