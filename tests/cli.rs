//! The application run as a user runs it.

mod common;

use common::{read_npy, relative_error, run_ok, wgpu_available};

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

#[test]
fn default_run_answers_the_question_with_torch_shape_and_axis_table() {
    let stdout = run_ok(&["--backend", "flex"]);
    assert!(
        stdout.contains("shape: (12, 10, 12, 1, 32, 32)"),
        "{stdout}"
    );
    for axis in [
        "   0    12  sample b of the output batch",
        "   1    10  output k",
        "   2    12  sample b' of the input batch",
        "   3     1  channel",
        "   4    32  row",
        "   5    32  column",
    ] {
        assert!(stdout.contains(axis), "missing {axis:?} in\n{stdout}");
    }
    assert!(
        stdout.contains("largest |J| off the batch diagonal (b != b'): 0.000000e0"),
        "{stdout}"
    );
}

#[test]
fn per_sample_output_is_the_einsum_of_the_full_output() {
    let dir = temp_dir();
    let full = dir.path().join("full.npy");
    let per_sample = dir.path().join("p.npy");
    let (f, p) = (full.to_str().unwrap(), per_sample.to_str().unwrap());
    run_ok(&[
        "--backend",
        "flex",
        "--batch",
        "4",
        "--seed",
        "3",
        "--output",
        f,
    ]);
    let stdout = run_ok(&[
        "--backend",
        "flex",
        "--batch",
        "4",
        "--seed",
        "3",
        "--layout",
        "per-sample",
        "--output",
        p,
    ]);
    assert!(stdout.contains("shape: (4, 10, 1, 32, 32)"), "{stdout}");
    let (full_shape, full_values) = read_npy(&full);
    let (ps_shape, ps_values) = read_npy(&per_sample);
    assert_eq!(full_shape, [4, 10, 4, 1, 32, 32]);
    assert_eq!(ps_shape, [4, 10, 1, 32, 32]);
    // einsum("bibj->bij") by hand.
    let n = 1024;
    let mut diagonal = Vec::new();
    for b in 0..4 {
        for k in 0..10 {
            let start = ((b * 10 + k) * 4 + b) * n;
            diagonal.extend_from_slice(&full_values[start..start + n]);
        }
    }
    assert!(relative_error(&ps_values, &diagonal) < 1e-5);
    assert!(full_values.iter().any(|&v| v != 0.0));
}

#[test]
fn wgpu_agrees_with_ndarray_through_the_command_line() {
    if !wgpu_available() {
        return;
    }
    let dir = temp_dir();
    let mut results = Vec::new();
    for backend in ["ndarray", "wgpu"] {
        let path = dir.path().join(format!("{backend}.npy"));
        let p = path.to_str().unwrap();
        run_ok(&[
            "--backend",
            backend,
            "--batch",
            "3",
            "--layout",
            "per-sample",
            "--output",
            p,
        ]);
        results.push(read_npy(&path).1);
    }
    let error = relative_error(&results[1], &results[0]);
    assert!(
        error <= 1e-4,
        "wgpu differs from ndarray by {error:e} x max |J|"
    );
}

#[test]
fn saved_weights_load_back_to_the_same_jacobian() {
    let dir = temp_dir();
    let weights = dir.path().join("model.bpk");
    let (a, b) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
    let w = weights.to_str().unwrap();
    let common = [
        "--backend",
        "flex",
        "--batch",
        "2",
        "--layout",
        "per-sample",
    ];
    run_ok(
        &[
            &common[..],
            &[
                "--seed",
                "5",
                "--save-weights",
                w,
                "--output",
                a.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    // Another seed for the input would change it: keep seed 5, but take the weights from the file.
    run_ok(
        &[
            &common[..],
            &[
                "--seed",
                "5",
                "--weights",
                w,
                "--output",
                b.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert_eq!(read_npy(&a), read_npy(&b));
}

#[test]
fn analytic_method_writes_what_autodiff_writes() {
    let dir = temp_dir();
    for layout in ["full", "per-sample"] {
        let mut results = Vec::new();
        for method in ["autodiff", "analytic"] {
            let path = dir.path().join(format!("{layout}-{method}.npy"));
            run_ok(&[
                "--backend",
                "flex",
                "--batch",
                "3",
                "--layout",
                layout,
                "--method",
                method,
                "--output",
                path.to_str().unwrap(),
            ]);
            results.push(read_npy(&path));
        }
        assert_eq!(results[0].0, results[1].0);
        let error = relative_error(&results[1].1, &results[0].1);
        assert!(error <= 1e-5, "{layout}: {error:e} x max |J|");
    }
}

/// A family case's file.
fn family(case: &str, file: &str) -> String {
    common::fixture("family")
        .join(case)
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// A state_dict does not record the activation and pooling: without flags the run says on
/// stderr what it assumed and how to state or check it, and the report says it too; with
/// the flags, or PyTorch's logits confirming, it says where each came from.
#[test]
fn the_architecture_is_stated_in_every_report_and_never_silently_assumed() {
    let weights = family("tutorial_net", "net.pt");
    let input = family("tutorial_net", "input.npy");
    let logits = family("tutorial_net", "logits.npy");
    let ran = common::run(&[
        "--backend",
        "flex",
        "--weights",
        &weights,
        "--input",
        &input,
    ]);
    assert!(ran.status.success(), "{}", ran.stderr);
    let note = ran
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("does not record"))
        .unwrap_or_else(|| panic!("no note of the assumption: {}", ran.stderr));
    for needle in [
        "--activation",
        "--pooling",
        "--reference-logits",
        "tanh activation, avg pooling",
    ] {
        assert!(note.contains(needle), "{needle} not in {note}");
    }
    assert!(
        ran.stdout
            .contains("architecture: tanh activation (default), avg pooling (default)"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("assumed, as the weights file does not record it"),
        "{}",
        ran.stdout
    );

    let stated = run_ok(&[
        "--backend",
        "flex",
        "--weights",
        &weights,
        "--input",
        &input,
        "--activation",
        "relu",
        "--pooling",
        "max",
        "--reference-logits",
        &logits,
    ]);
    assert!(
        stated.contains("architecture: relu activation (stated), max pooling (stated), 1 x 32 x 32 input (conv1 padding 0, default), 10 classes"),
        "{stated}"
    );
    assert!(stated.contains("forward pass checked against"), "{stated}");

    let onnx = common::run(&[
        "--backend",
        "flex",
        "--weights",
        &family("tutorial_net", "model.onnx"),
    ]);
    assert!(onnx.status.success(), "{}", onnx.stderr);
    assert!(!onnx.stderr.contains("does not record"), "{}", onnx.stderr);
    assert!(
        onnx.stdout.contains("relu activation (from the ONNX graph), max pooling (from the ONNX graph), 1 x 32 x 32 input (conv1 padding 0, from the ONNX graph)"),
        "{}",
        onnx.stdout
    );
    let seeded = run_ok(&["--backend", "flex", "--batch", "2"]);
    assert!(
        seeded.contains("architecture: tanh activation (default)"),
        "{seeded}"
    );
}

/// `--normalize MEAN,STD`: the model sees (x - mean) / std, the Jacobian is with respect to x.
/// With x = z std + mean for the fixture's input z, the logits are PyTorch's for z and the
/// Jacobian is PyTorch's divided by std.
#[test]
fn normalised_input_gives_the_jacobian_with_respect_to_the_pixels() {
    let dir = temp_dir();
    let case = common::fixture("b3_c10");
    let (shape, z) = read_npy(&case.join("input.npy"));
    let (mean, std) = (0.1307f32, 0.3081f32);
    let x: Vec<f32> = z.iter().map(|v| v * std + mean).collect();
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let data: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let input = dir.path().join("x.npy");
    std::fs::write(&input, common::npy_bytes("<f4", &shape, false, &data)).unwrap();
    let (out, logits) = (dir.path().join("j.npy"), dir.path().join("logits.npy"));
    let report = run_ok(&[
        "--backend",
        "flex",
        "--weights",
        case.join("lenet5.pt").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--normalize",
        &format!("{mean},{std}"),
        "--layout",
        "full",
        "--output",
        out.to_str().unwrap(),
        "--logits",
        logits.to_str().unwrap(),
        "--reference-logits",
        case.join("logits.npy").to_str().unwrap(),
    ]);
    assert!(
        report.contains("the Jacobian is with respect to the pixels x"),
        "{report}"
    );
    let (_, torch) = read_npy(&case.join("jacobian_full.npy"));
    let expected: Vec<f32> = torch.iter().map(|v| v / std).collect();
    let error = relative_error(&read_npy(&out).1, &expected);
    assert!(error <= 1e-5, "{error:e} x max |J|");
    let error = relative_error(&read_npy(&logits).1, &read_npy(&case.join("logits.npy")).1);
    assert!(error <= 1e-5, "logits: {error:e}");
}

/// Weights saved in PyTorch's layout and as a burnpack record load back as the same model,
/// its architecture with them: no flag needed, no assumption noted.
#[test]
fn saved_weights_keep_the_architecture() {
    let dir = temp_dir();
    let input = family("cifar_net", "input.npy");
    let first = dir.path().join("first.npy");
    run_ok(&[
        "--backend",
        "flex",
        "--weights",
        &family("cifar_net", "ckpt.pth"),
        "--activation",
        "relu",
        "--pooling",
        "max",
        "--input",
        &input,
        "--layout",
        "per-sample",
        "--output",
        first.to_str().unwrap(),
        "--save-weights",
        dir.path().join("cifar.safetensors").to_str().unwrap(),
    ]);
    for saved in ["cifar.safetensors", "cifar.bpk"] {
        let path = dir.path().join(saved);
        if saved.ends_with(".bpk") {
            run_ok(&[
                "--backend",
                "flex",
                "--weights",
                dir.path().join("cifar.safetensors").to_str().unwrap(),
                "--batch",
                "1",
                "--save-weights",
                path.to_str().unwrap(),
            ]);
        }
        let again = dir.path().join("again.npy");
        let ran = common::run(&[
            "--backend",
            "flex",
            "--weights",
            path.to_str().unwrap(),
            "--input",
            &input,
            "--layout",
            "per-sample",
            "--output",
            again.to_str().unwrap(),
        ]);
        assert!(ran.status.success(), "{saved}: {}", ran.stderr);
        assert!(
            !ran.stderr.contains("does not record"),
            "{saved}: {}",
            ran.stderr
        );
        assert!(
            ran.stdout.contains("relu activation (from the file's record), max pooling (from the file's record), 3 x 32 x 32 input"),
            "{saved}: {}",
            ran.stdout
        );
        assert_eq!(read_npy(&again), read_npy(&first), "{saved}");
    }
}
