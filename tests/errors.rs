//! Bad input gets a clear error, and nothing is lost.
//!
//! Every case runs the application as a user does and checks: the exit code of the kind of
//! error (2 usage, 3 input, 4 weights, 5 runtime), one line on stderr that names the problem
//! and what was expected, no panic, no output file (neither a new one nor a clobbered old one)
//! and no hidden `.NAME.*.partial` temporary file left in the output directory.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};

use common::{
    assert_error, assert_no_partial, fixture, lenet_burnpack, lenet_safetensors, npy_bytes,
    npy_f32, read_npy, run_in, temp_dir, zeros,
};

/// Exit codes, as documented in src/error.rs.
const USAGE: i32 = 2;
const INPUT: i32 = 3;
const WEIGHTS: i32 = 4;
const RUNTIME: i32 = 5;

/// Runs `args` (paths relative to `dir`) twice with `--output`: once to a new file, which
/// must not appear, once over an existing file, which must be left byte-identical. Both runs
/// must fail with `code` and a one-line error holding every `needle`; returns the first.
fn fails_and_writes_nothing(
    dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    code: i32,
    needles: &[&str],
) -> String {
    let out_dir = dir.join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let output = out_dir.join("jacobian.npy");
    let output_arg = output.to_str().unwrap();

    let mut with_output = args.to_vec();
    with_output.extend(["--output", output_arg]);
    let ran = run_in(dir, &with_output, envs);
    let line = assert_error(&ran, code, needles);
    assert!(!output.exists(), "a failed run wrote {}", output.display());
    assert_no_partial(&out_dir);

    let old: Vec<u8> = b"an older result, to be kept".to_vec();
    fs::write(&output, &old).unwrap();
    let ran = run_in(dir, &with_output, envs);
    assert_error(&ran, code, needles);
    assert_eq!(
        fs::read(&output).unwrap(),
        old,
        "a failed run changed the existing {}",
        output.display()
    );
    assert_no_partial(&out_dir);
    line
}

/// [`fails_and_writes_nothing`] in a fresh directory, without extra environment.
fn fails_in_empty_dir(args: &[&str], code: i32, needles: &[&str]) -> String {
    fails_and_writes_nothing(temp_dir().path(), args, &[], code, needles)
}

/// Writes `bytes` to `dir/name`, returns `name` (runs start in `dir`).
fn put<'a>(dir: &Path, name: &'a str, bytes: &[u8]) -> &'a str {
    fs::write(dir.join(name), bytes).unwrap();
    name
}

/// A failing run with `--input FILE` (the bytes given) and nothing written.
fn bad_input(bytes: &[u8], code: i32, needles: &[&str]) -> String {
    let dir = temp_dir();
    let input = put(dir.path(), "input.npy", bytes);
    fails_and_writes_nothing(
        dir.path(),
        &["--backend", "flex", "--input", input],
        &[],
        code,
        &[&[input][..], needles].concat(),
    )
}

/// A failing run with `--weights NAME` (the bytes given) and nothing written.
fn bad_weights(name: &str, bytes: &[u8], needles: &[&str]) -> String {
    let dir = temp_dir();
    let weights = put(dir.path(), name, bytes);
    fails_and_writes_nothing(
        dir.path(),
        &["--backend", "flex", "--batch", "2", "--weights", weights],
        &[],
        WEIGHTS,
        &[&[weights][..], needles].concat(),
    )
}

// ---------------------------------------------------------------------------------------------
// --input

#[test]
fn input_of_rank_3_names_the_shape_and_the_expected_one() {
    bad_input(
        &npy_f32(&[1, 32, 32], 0),
        INPUT,
        &["shape [1, 32, 32]", "expected [N, 1, 32, 32]"],
    );
}

#[test]
fn input_of_28_by_28_digits_names_the_shape_and_the_expected_one() {
    bad_input(
        &npy_f32(&[2, 1, 28, 28], 0),
        INPUT,
        &["shape [2, 1, 28, 28]", "expected [N, 1, 32, 32]"],
    );
}

#[test]
fn input_of_3_channels_names_the_shape_and_the_expected_one() {
    bad_input(
        &npy_f32(&[2, 3, 32, 32], 0),
        INPUT,
        &["shape [2, 3, 32, 32]", "expected [N, 1, 32, 32]"],
    );
}

#[test]
fn input_of_an_empty_batch_is_refused() {
    bad_input(
        &npy_f32(&[0, 1, 32, 32], 0),
        INPUT,
        &["[0, 1, 32, 32]", "empty batch", "N >= 1"],
    );
}

#[test]
fn input_of_int32_float16_or_bool_names_the_dtype_and_float32() {
    let shape = [2, 1, 32, 32];
    for (descr, size, name) in [
        ("<i4", 4, "int32"),
        ("<f2", 2, "float16"),
        ("|b1", 1, "bool"),
        ("<i8", 8, "int64"),
        ("<c8", 8, "complex64"),
    ] {
        bad_input(
            &npy_bytes(descr, &shape, false, &zeros(&shape, size)),
            INPUT,
            &[&format!("dtype {name} ('{descr}')"), "expected float32"],
        );
    }
}

#[test]
fn input_of_float64_is_converted_with_a_note() {
    let dir = temp_dir();
    let values: Vec<u8> = (0..2 * 1024)
        .flat_map(|i| (i as f64 / 2048.0).to_le_bytes())
        .collect();
    let input = put(
        dir.path(),
        "input.npy",
        &npy_bytes("<f8", &[2, 1, 32, 32], false, &values),
    );
    let ran = run_in(
        dir.path(),
        &["--backend", "flex", "--input", input, "--output", "j.npy"],
        &[],
    );
    assert_eq!(ran.code(), 0, "{}", ran.stderr);
    assert_eq!(
        ran.stderr_lines(),
        ["note: input.npy: float64 values converted to float32"]
    );
    let (shape, _) = read_npy(&dir.path().join("j.npy"));
    assert_eq!(shape, [2, 10, 2, 1, 32, 32]);
    assert_no_partial(dir.path());
}

#[test]
fn input_with_nan_or_inf_names_how_many_and_the_first() {
    let shape = [2, 1, 32, 32];
    let mut values = vec![0.5f32; 2 * 1024];
    values[1024 + 3 * 32 + 4] = f32::NAN; // [1, 0, 3, 4]
    values[1024 + 5 * 32 + 5] = f32::INFINITY;
    values[2047] = f32::NEG_INFINITY;
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    bad_input(
        &npy_bytes("<f4", &shape, false, &data),
        INPUT,
        &[
            "3 non-finite value(s)",
            "the first NaN at index [1, 0, 3, 4]",
            "--allow-non-finite",
        ],
    );

    let mut values = vec![0.5f32; 2 * 1024];
    values[7] = f32::INFINITY; // [0, 0, 0, 7]
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    bad_input(
        &npy_bytes("<f4", &shape, false, &data),
        INPUT,
        &["1 non-finite value(s)", "inf at index [0, 0, 0, 7]"],
    );
}

#[test]
fn allow_non_finite_proceeds() {
    let dir = temp_dir();
    let mut values = vec![0.5f32; 2 * 1024];
    values[1024 + 3 * 32 + 4] = f32::NAN;
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let input = put(
        dir.path(),
        "input.npy",
        &npy_bytes("<f4", &[2, 1, 32, 32], false, &data),
    );
    let ran = run_in(
        dir.path(),
        &[
            "--backend",
            "flex",
            "--input",
            input,
            "--allow-non-finite",
            "--output",
            "j.npy",
        ],
        &[],
    );
    assert_eq!(ran.code(), 0, "{}", ran.stderr);
    assert!(ran.stderr_lines().is_empty(), "{}", ran.stderr);
    assert!(
        ran.stdout.contains("(2, 10, 2, 1, 32, 32)"),
        "{}",
        ran.stdout
    );
    let (shape, values) = read_npy(&dir.path().join("j.npy"));
    assert_eq!(shape, [2, 10, 2, 1, 32, 32]);
    // Samples are independent: the clean sample's own block is finite, the NaN sample's is
    // not (the blocks across samples hold 0 * NaN = NaN from the backward pass).
    let block = |b: usize, k: usize, b2: usize| {
        let start = ((b * 10 + k) * 2 + b2) * 1024;
        &values[start..start + 1024]
    };
    assert!((0..10).all(|k| block(0, k, 0).iter().all(|v| v.is_finite())));
    assert!((0..10).any(|k| block(1, k, 1).iter().any(|v| v.is_nan())));
}

#[test]
fn input_that_is_not_npy_is_refused() {
    bad_input(b"index,value\n0,0.5\n1,0.25\n", INPUT, &["not a .npy file"]);
    bad_input(&[], INPUT, &["empty", "expected a .npy file"]);
    bad_input(
        b"\x93NUMPY\x09\x00rest",
        INPUT,
        &["not a .npy file", "version 9.0"],
    );
    // A valid prelude, then a header that is no Python dict.
    let mut bytes = npy_f32(&[1, 1, 32, 32], 0);
    bytes[10..20].copy_from_slice(b"not a dict");
    bad_input(&bytes, INPUT, &["not a .npy file"]);
}

#[test]
fn input_in_fortran_order_is_refused() {
    let shape = [2, 1, 32, 32];
    bad_input(
        &npy_bytes("<f4", &shape, true, &zeros(&shape, 4)),
        INPUT,
        &["Fortran-order", "C order"],
    );
}

#[test]
fn missing_input_file() {
    fails_in_empty_dir(
        &["--backend", "flex", "--input", "nowhere.npy"],
        INPUT,
        &["nowhere.npy", "no such file", ".npy"],
    );
}

#[test]
fn input_that_is_a_directory() {
    let dir = temp_dir();
    fs::create_dir(dir.path().join("images.npy")).unwrap();
    fails_and_writes_nothing(
        dir.path(),
        &["--backend", "flex", "--input", "images.npy"],
        &[],
        INPUT,
        &["images.npy", "is a directory", "expected a .npy file"],
    );
}

#[test]
fn truncated_input_names_the_bytes_needed_and_held() {
    // A valid header for [3, 1, 32, 32] float32 (12288 bytes), then 1000 bytes.
    let full = npy_f32(&[3, 1, 32, 32], 0);
    let header_len = full.len() - 3 * 1024 * 4;
    bad_input(
        &full[..header_len + 1000],
        INPUT,
        &[
            "truncated",
            "[3, 1, 32, 32]",
            "needs 12288 bytes",
            "holds 1000",
        ],
    );
    // Cut inside the header.
    bad_input(
        &full[..40],
        INPUT,
        &["not a .npy file", "header is truncated"],
    );
    // The real fixture, cut.
    let real = fs::read(fixture("b3_c10/input.npy")).unwrap();
    bad_input(&real[..real.len() - 1], INPUT, &["truncated"]);
}

#[test]
fn input_announcing_more_data_than_memory_fails_without_allocating() {
    // 10^12 samples announced, none there: refused from the file size, nothing allocated.
    bad_input(
        &npy_bytes("<f4", &[1_000_000_000_000, 1, 32, 32], false, &[0; 64]),
        INPUT,
        &["truncated", "[1000000000000, 1, 32, 32]"],
    );
    // A shape whose size overflows 64 bits.
    bad_input(
        &npy_bytes("<f4", &[1 << 40, 1 << 40, 1 << 40, 1], false, &[0; 64]),
        INPUT,
        &["shape"],
    );
}

// ---------------------------------------------------------------------------------------------
// --weights

#[test]
fn missing_weights_file() {
    fails_in_empty_dir(
        &["--backend", "flex", "--weights", "lenet5.pt"],
        WEIGHTS,
        &["lenet5.pt", "PyTorch state_dict", "no such file"],
    );
}

#[test]
fn weights_of_an_unknown_format_name_the_known_ones() {
    bad_weights(
        "lenet5.h5",
        b"\x89HDF\r\n\x1a\n",
        &["unknown weights format", ".pt", ".safetensors", ".bpk"],
    );
    bad_weights("lenet5", b"", &["unknown weights format"]);
}

#[test]
fn corrupt_weights_of_each_format() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut noise = vec![0u8; 4096];
    rng.fill_bytes(&mut noise);
    bad_weights(
        "noise.pt",
        &noise,
        &["cannot read PyTorch state_dict weights"],
    );
    bad_weights(
        "noise.safetensors",
        &noise,
        &["cannot read SafeTensors weights"],
    );
    bad_weights("noise.bpk", &noise, &["cannot read burnpack weights"]);
    bad_weights("empty.pt", &[], &["the file is empty"]);
}

#[test]
fn weights_that_are_a_directory() {
    let dir = temp_dir();
    fs::create_dir(dir.path().join("lenet5.safetensors")).unwrap();
    fails_and_writes_nothing(
        dir.path(),
        &["--backend", "flex", "--weights", "lenet5.safetensors"],
        &[],
        WEIGHTS,
        &["lenet5.safetensors", "is a directory"],
    );
}

#[test]
fn weights_that_are_no_lenet5_name_what_does_not_fit_in_the_files_own_names() {
    // One layer without its bias, one tensor of no layer's shape.
    let st = lenet_safetensors(|tensors| {
        tensors.retain(|(key, _, _)| key != "classifier.4.bias");
        tensors.push(("classifier.6.weight".into(), "F32", vec![10, 10]));
    });
    bad_weights(
        "lenet5.safetensors",
        &st,
        &[
            "do not fit LeNet-5",
            "classifier.4.bias is missing",
            "classifier.6.weight [10, 10] fit no LeNet-5 layer",
        ],
    );
    // Two tensors of the same layer's shape: which is it?
    let st = lenet_safetensors(|tensors| {
        tensors.push(("extra.weight".into(), "F32", vec![84, 120]));
        tensors.push(("extra.bias".into(), "F32", vec![84]));
    });
    bad_weights(
        "lenet5.safetensors",
        &st,
        &["two tensors of fc2's shape: classifier.2.weight and extra.weight"],
    );
}

#[test]
fn weights_with_wrong_shapes_name_key_shape_and_expected_shape() {
    let needles = [
        "do not fit LeNet-5",
        "no tensor of the shape of conv1 [6, channels, 5, 5]",
        "feature_extractor.0.weight [8, 1, 5, 5], feature_extractor.0.bias [8] fit no LeNet-5 layer",
    ];
    let pt = fs::read(fixture("bad/conv1_8.pt")).unwrap();
    bad_weights("conv1_8.pt", &pt, &needles);
    let st = lenet_safetensors(|tensors| {
        tensors[0].2 = vec![8, 1, 5, 5];
        tensors[1].2 = vec![8];
    });
    bad_weights("conv1_8.safetensors", &st, &needles);
    // Linear weights in the file's [out, in] layout, not Burn's [in, out].
    let st = lenet_safetensors(|tensors| tensors[4].2 = vec![120, 401]);
    bad_weights(
        "fc1.safetensors",
        &st,
        &[
            "no tensor of the shape of fc1 [120, 400]",
            "classifier.0.weight [120, 401]",
        ],
    );
    let st = lenet_safetensors(|tensors| tensors[8].2 = vec![10]);
    bad_weights(
        "fc3.safetensors",
        &st,
        &[
            "no tensor of the shape of fc3 [classes, 84]",
            "classifier.4.weight [10]",
        ],
    );
}

#[test]
fn weights_of_a_type_that_is_not_floating_point_name_it() {
    // float16, bfloat16 and float64 convert; integers and booleans do not.
    let st = lenet_safetensors(|tensors| {
        tensors[0].1 = "F16";
        tensors[1].1 = "I64";
    });
    bad_weights(
        "mixed.safetensors",
        &st,
        &["feature_extractor.0.bias is int64, expected float32"],
    );
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    for (file, needles) in [
        (
            "nan_weight.safetensors",
            ["classifier.2.weight", "NaN at index [3, 5]"],
        ),
        (
            "inf_bias.pt",
            ["feature_extractor.3.bias", "inf at index [2]"],
        ),
    ] {
        let dir = temp_dir();
        let weights = fixture("variants").join(file);
        let weights = weights.to_str().unwrap();
        fails_and_writes_nothing(
            dir.path(),
            &["--backend", "flex", "--batch", "2", "--weights", weights],
            &[],
            WEIGHTS,
            &[
                &[file, "1 non-finite value(s)", "--allow-non-finite"][..],
                &needles,
            ]
            .concat(),
        );
    }
}

#[test]
fn weights_whose_data_do_not_match_their_shape() {
    // The header says [6] float32 (24 bytes) but gives the tensor 20.
    let mut st = lenet_safetensors(|_| {});
    let header_len = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(st[8..8 + header_len].to_vec()).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&header).unwrap();
    json["feature_extractor.0.bias"]["shape"] = serde_json::json!([5]);
    let mut text = json.to_string();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let data = st.split_off(8 + header_len);
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend(text.as_bytes());
    bytes.extend(data);
    bad_weights(
        "short.safetensors",
        &bytes,
        &["cannot read SafeTensors weights"],
    );
}

// ---------------------------------------------------------------------------------------------
// The command line

#[test]
fn batch_of_zero_is_a_usage_error() {
    fails_in_empty_dir(
        &["--backend", "flex", "--batch", "0"],
        USAGE,
        &["'0'", "--batch", "1.."],
    );
}

#[test]
fn unknown_backend_names_the_known_ones() {
    fails_in_empty_dir(
        &["--backend", "foo"],
        USAGE,
        &["'foo'", "--backend", "ndarray", "wgpu", "flex"],
    );
}

// ---------------------------------------------------------------------------------------------
// Runtime

/// With no Vulkan driver (an empty driver list for the Vulkan loader), wgpu has no adapter
/// for burn-wgpu, which runs on Vulkan on Linux, even where an OpenGL adapter exists.
#[cfg(target_os = "linux")]
#[test]
fn no_wgpu_adapter_is_one_line_suggesting_flex() {
    let dir = temp_dir();
    let no_vulkan = [
        ("VK_ICD_FILENAMES", "/nonexistent/icd.json"),
        ("VK_DRIVER_FILES", "/nonexistent/icd.json"),
    ];
    fails_and_writes_nothing(
        dir.path(),
        &["--backend", "wgpu", "--batch", "2"],
        &no_vulkan,
        RUNTIME,
        &["no wgpu adapter", "--backend flex"],
    );
}

#[test]
fn full_layout_too_large_for_memory_is_refused_before_computing() {
    let dir = temp_dir();
    // 20000 * 10 * 20000 * 1024 * 4 bytes.
    let line = fails_and_writes_nothing(
        dir.path(),
        &["--backend", "flex", "--layout", "full", "--batch", "20000"],
        &[],
        RUNTIME,
        &[
            "(20000, 10, 20000, 1, 32, 32)",
            "needs 16384000000000 bytes",
            "--layout per-sample",
        ],
    );
    assert!(line.contains("GiB"), "{line}");
    // Fast: the refusal comes before any computation (computing it would take hours).
    let ran = run_in(
        dir.path(),
        &["--backend", "flex", "--layout", "full", "--batch", "20000"],
        &[],
    );
    assert_eq!(ran.code(), RUNTIME);
    assert!(ran.elapsed < Duration::from_secs(60), "{:?}", ran.elapsed);
}

#[test]
fn output_in_a_missing_directory() {
    let dir = temp_dir();
    let ran = run_in(
        dir.path(),
        &[
            "--backend",
            "flex",
            "--batch",
            "2",
            "--output",
            "nowhere/j.npy",
        ],
        &[],
    );
    assert_error(
        &ran,
        RUNTIME,
        &["nowhere/j.npy", "nowhere does not exist", "directory"],
    );
    assert!(!dir.path().join("nowhere").exists());
    assert_no_partial(dir.path());
}

/// Tests may run as root, for whom a read-only directory is still writable: the unwritable
/// output here is one under a regular file, which nobody can create.
#[test]
fn output_under_a_regular_file() {
    let dir = temp_dir();
    fs::write(dir.path().join("notes.txt"), "notes").unwrap();
    let ran = run_in(
        dir.path(),
        &[
            "--backend",
            "flex",
            "--batch",
            "2",
            "--output",
            "notes.txt/j.npy",
        ],
        &[],
    );
    assert_error(
        &ran,
        RUNTIME,
        &["notes.txt/j.npy", "notes.txt is not a directory"],
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "notes"
    );
    assert_no_partial(dir.path());
}

/// /proc takes no new files, even from root.
#[cfg(target_os = "linux")]
#[test]
fn output_in_a_directory_that_takes_no_files() {
    if !Path::new("/proc/self").exists() {
        eprintln!("notice: no /proc, skipping");
        return;
    }
    let dir = temp_dir();
    let ran = run_in(
        dir.path(),
        &[
            "--backend",
            "flex",
            "--batch",
            "2",
            "--output",
            "/proc/j.npy",
        ],
        &[],
    );
    assert_error(
        &ran,
        RUNTIME,
        &["/proc/j.npy", "cannot write in directory /proc"],
    );
    assert!(!Path::new("/proc/j.npy").exists());
}

#[test]
fn output_that_is_a_directory() {
    let dir = temp_dir();
    fs::create_dir(dir.path().join("j.npy")).unwrap();
    let ran = run_in(
        dir.path(),
        &["--backend", "flex", "--batch", "2", "--output", "j.npy"],
        &[],
    );
    assert_error(&ran, RUNTIME, &["j.npy", "is a directory"]);
    assert!(dir.path().join("j.npy").is_dir());
    assert_no_partial(dir.path());
}

// ---------------------------------------------------------------------------------------------
// Random and truncated files never panic

/// One file fed to the application and what it may answer.
struct Case {
    what: String,
    /// `.npy` (as --input) or a weights extension.
    extension: &'static str,
    bytes: Vec<u8>,
    /// The file may happen to be valid (a byte changed in the data): exit 0 accepted.
    may_be_valid: bool,
}

fn fuzz_cases() -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(0x5eed_2024);
    let mut cases = Vec::new();
    let mut push = |what: String, extension, bytes, may_be_valid| {
        cases.push(Case {
            what,
            extension,
            bytes,
            may_be_valid,
        })
    };
    let extensions = ["npy", "pt", "safetensors", "bpk"];

    // Random bytes of random lengths, as each kind of file.
    for extension in extensions {
        for i in 0..6 {
            let len = if i == 0 { 1 } else { rng.random_range(2..6000) };
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            push(format!("{len} random bytes"), extension, bytes, false);
        }
    }
    // A valid .npy prelude, then random bytes (a random header length and text).
    for _ in 0..4 {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let mut rest = vec![0u8; rng.random_range(2..600)];
        rng.fill_bytes(&mut rest);
        bytes.extend(rest);
        push(
            "the .npy magic, then random bytes".into(),
            "npy",
            bytes,
            false,
        );
    }

    // Truncations of the real files, at fixed and random lengths.
    let real = [
        (
            "b3_c10/input.npy",
            "npy",
            fs::read(fixture("b3_c10/input.npy")).unwrap(),
        ),
        (
            "b3_c10/lenet5.pt",
            "pt",
            fs::read(fixture("b3_c10/lenet5.pt")).unwrap(),
        ),
        (
            "b3_c10/lenet5.safetensors",
            "safetensors",
            fs::read(fixture("b3_c10/lenet5.safetensors")).unwrap(),
        ),
        ("a burnpack record", "bpk", lenet_burnpack()),
    ];
    for (name, extension, bytes) in &real {
        let n = bytes.len();
        let mut lengths = vec![0, 1, 8, 10, 64, 128, 129, n / 2, n - 4, n - 1];
        for _ in 0..3 {
            lengths.push(rng.random_range(1..n));
        }
        for len in lengths {
            push(
                format!("{name} cut to {len} of {n} bytes"),
                extension,
                bytes[..len].to_vec(),
                false,
            );
        }
    }
    // The real files with a few random bytes overwritten (in the header or the data: the
    // file may stay valid).
    for (name, extension, bytes) in &real {
        for _ in 0..4 {
            let mut bytes = bytes.clone();
            let n = bytes.len();
            // The .npy header is 128 bytes; the others' index is at the start (SafeTensors,
            // burnpack) or at the end (the zip directory of torch.save).
            let head = if *extension == "npy" { 128 } else { 1024 };
            for _ in 0..rng.random_range(1..6) {
                let at = match rng.random_range(0..10) {
                    0..=5 => rng.random_range(0..head),
                    6..=7 => rng.random_range(n - 1024..n),
                    _ => rng.random_range(0..n),
                };
                bytes[at] = rng.random();
            }
            push(
                format!("{name} with random bytes overwritten"),
                extension,
                bytes,
                true,
            );
        }
    }
    // A valid header for [2, 1, 32, 32] float32, then too few bytes.
    for len in [0, 4, 4095, 8188] {
        let full = npy_f32(&[2, 1, 32, 32], 7);
        let header = full.len() - 8192;
        push(
            format!("a [2, 1, 32, 32] float32 header, then {len} bytes of data"),
            "npy",
            full[..header + len].to_vec(),
            false,
        );
    }
    cases
}

#[test]
fn random_and_truncated_files_never_panic() {
    let cases = fuzz_cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let dir = temp_dir();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(8);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let cases = &cases;
                let dir = dir.path();
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for (i, case) in cases.iter().enumerate().skip(t).step_by(threads) {
                        if let Err(e) = check_case(dir, i, case) {
                            failures.push(format!(
                                "case {i} ({}, .{}): {e}",
                                case.what, case.extension
                            ));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_no_partial(dir.path());
}

/// Feeds one case to the application in its own directory.
fn check_case(root: &Path, i: usize, case: &Case) -> Result<(), String> {
    let dir = root.join(format!("case{i}"));
    fs::create_dir(&dir).unwrap();
    let name = format!("file.{}", case.extension);
    fs::write(dir.join(&name), &case.bytes).unwrap();
    let (option, code) = match case.extension {
        "npy" => ("--input", INPUT),
        _ => ("--weights", WEIGHTS),
    };
    let mut args = vec!["--backend", "flex", option, &name, "--output", "j.npy"];
    if option == "--weights" {
        args.extend(["--batch", "1"]);
    }
    let ran = run_in(&dir, &args, &[]);
    if ran.stderr.contains("panicked") {
        return Err(format!("panicked:\n{}", ran.stderr));
    }
    let got = ran
        .status
        .code()
        .ok_or_else(|| format!("killed by {:?}:\n{}", ran.status, ran.stderr))?;
    let lines = ran.stderr_lines();
    // Shown with --nocapture: what each case answered.
    eprintln!(
        "case {i} ({}, .{}): exit {got}, {lines:?}",
        case.what, case.extension
    );
    let output = dir.join("j.npy");
    if got == 0 && case.may_be_valid {
        // A valid file: a full run, nothing on stderr but a note.
        if !lines.iter().all(|l| l.starts_with("note: ")) || !output.is_file() {
            return Err(format!("succeeded with stderr:\n{}", ran.stderr));
        }
    } else {
        if got != code {
            return Err(format!("exit code {got}, expected {code}:\n{}", ran.stderr));
        }
        if lines.len() != 1 || !lines[0].starts_with("error: ") || !lines[0].contains(&name) {
            return Err(format!(
                "expected one error line naming the file:\n{}",
                ran.stderr
            ));
        }
        if output.exists() {
            return Err("a failed run wrote its output".into());
        }
    }
    assert_no_partial(&dir);
    Ok(())
}

#[test]
fn saved_weights_are_written_only_when_the_whole_run_succeeds() {
    let dir = temp_dir();
    let weights = dir.path().join("w.bpk");
    // The Jacobian's output cannot be written: the weights must not be saved either.
    let ran = run_in(
        dir.path(),
        &[
            "--backend",
            "flex",
            "--batch",
            "2",
            "--save-weights",
            "w.bpk",
            "--output",
            "nowhere/j.npy",
        ],
        &[],
    );
    assert_error(&ran, 5, &["nowhere"]);
    assert!(!weights.exists(), "a failed run saved the weights");
    // A full layout refused for its size: likewise.
    let ran = run_in(
        dir.path(),
        &[
            "--backend",
            "flex",
            "--batch",
            "20000",
            "--save-weights",
            "w.bpk",
        ],
        &[],
    );
    assert_error(&ran, 5, &["per-sample"]);
    assert!(!weights.exists(), "a failed run saved the weights");
    assert_no_partial(dir.path());
    // A run that succeeds saves them.
    let ran = run_in(
        dir.path(),
        &[
            "--backend",
            "flex",
            "--batch",
            "2",
            "--save-weights",
            "w.bpk",
        ],
        &[],
    );
    assert_eq!(ran.code(), 0, "{}", ran.stderr);
    assert!(weights.exists());
}

// ---------------------------------------------------------------------------------------------
// The family: ONNX files, statements of the architecture, reference logits, normalisation

/// A family case's file, as a path the runs can take.
fn family(case: &str, file: &str) -> String {
    fixture("family")
        .join(case)
        .join(file)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn onnx_files_that_are_not_lenet5_or_cannot_be_read() {
    let whole = fs::read(family("tutorial_net", "model.onnx")).unwrap();
    bad_weights(
        "truncated.onnx",
        &whole[..whole.len() / 2],
        &["cannot read ONNX weights"],
    );
    bad_weights("empty.onnx", &[], &["the file is empty"]);
    // The dynamo exporter's weights are in the .data file beside the graph.
    let graph = fs::read(family("tutorial_net", "model_dynamo.onnx")).unwrap();
    bad_weights(
        "model_dynamo.onnx",
        &graph,
        &["model_dynamo.onnx.data", "missing"],
    );
    for (file, needles) in [
        (
            "mlp.onnx",
            &["the ONNX graph is not a LeNet-5", "Flatten"][..],
        ),
        ("softmax_head.onnx", &["Softmax", "without its softmax"][..]),
    ] {
        let bytes = fs::read(fixture("family/bad").join(file)).unwrap();
        bad_weights(file, &bytes, needles);
    }
}

#[test]
fn flags_that_contradict_the_file_are_usage_errors() {
    let onnx = family("tutorial_net", "model.onnx");
    fails_in_empty_dir(
        &[
            "--backend",
            "flex",
            "--batch",
            "2",
            "--weights",
            &onnx,
            "--activation",
            "tanh",
        ],
        USAGE,
        &[
            "activation tanh was stated",
            "the file says relu (from the ONNX graph)",
        ],
    );
    // The input must be what the stated architecture takes.
    let input = family("tutorial_net", "input.npy");
    fails_in_empty_dir(
        &["--backend", "flex", "--input", &input, "--padding", "2"],
        INPUT,
        &["shape [2, 1, 32, 32]", "expected [N, 1, 28, 28]"],
    );
    fails_in_empty_dir(
        &["--backend", "flex", "--padding", "16"],
        USAGE,
        &["--padding", "16"],
    );
    fails_in_empty_dir(
        &["--backend", "flex", "--activation", "gelu"],
        USAGE,
        &["gelu", "tanh, relu, sigmoid"],
    );
}

#[test]
fn reference_logits_that_disagree_name_the_variant_that_would_match() {
    let dir = temp_dir();
    let weights = family("tutorial_net", "net.pt");
    let input = family("tutorial_net", "input.npy");
    let logits = family("tutorial_net", "logits.npy");
    // The tutorial Net computed as the question's LeNet5 (nothing stated): exit 4, the
    // variant that gives PyTorch's logits named.
    fails_and_writes_nothing(
        dir.path(),
        &[
            "--backend",
            "flex",
            "--weights",
            &weights,
            "--input",
            &input,
            "--reference-logits",
            &logits,
        ],
        &[],
        WEIGHTS,
        &[
            "logits.npy: the model's logits differ from these",
            "with tanh activation, avg pooling",
            "the weights give them with --activation relu --pooling max",
        ],
    );
    // Logits of another shape: an input error, before anything is computed.
    let dir = temp_dir();
    let wrong = put(dir.path(), "wrong.npy", &npy_f32(&[2, 7], 1));
    fails_and_writes_nothing(
        dir.path(),
        &[
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
            wrong,
        ],
        &[],
        INPUT,
        &["wrong.npy", "logits of shape [2, 7], expected [2, 10]"],
    );
    // Logits no variant gives.
    let dir = temp_dir();
    let other = put(dir.path(), "other.npy", &npy_f32(&[2, 10], 3));
    fails_and_writes_nothing(
        dir.path(),
        &[
            "--backend",
            "flex",
            "--weights",
            &weights,
            "--input",
            &input,
            "--reference-logits",
            other,
        ],
        &[],
        WEIGHTS,
        &[
            "other.npy",
            "no variant of LeNet-5 the tool knows gives them",
        ],
    );
}

#[test]
fn normalisation_and_saved_weights_options_that_do_not_fit() {
    fails_in_empty_dir(
        &["--backend", "flex", "--normalize", "0.5,0.2,0.1"],
        USAGE,
        &["--normalize", "3 value(s) given"],
    );
    fails_in_empty_dir(
        &["--backend", "flex", "--normalize", "0.5,0"],
        USAGE,
        &["standard deviation 0 is not a positive number"],
    );
    fails_in_empty_dir(
        &[
            "--backend",
            "flex",
            "--normalize",
            "0.4,0.4,0.4,0.2,0.2,0.2",
        ],
        USAGE,
        &["3 means and standard deviations", "1 channel(s)"],
    );
    fails_in_empty_dir(
        &["--backend", "flex", "--save-weights", "model.pt"],
        USAGE,
        &["--save-weights model.pt", ".bpk", ".safetensors"],
    );
}

#[test]
fn npy_labels_that_do_not_fit_the_input() {
    let three: Vec<u8> = [1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let negative: Vec<u8> = [1i64, -2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    for (name, bytes, needle) in [
        (
            "two.npy",
            npy_bytes("<i8", &[2], false, &three[..16]),
            "labels of shape [2], expected [3]",
        ),
        (
            "negative.npy",
            npy_bytes("<i8", &[3], false, &negative),
            "label -2 at index 1",
        ),
        (
            "floats.npy",
            npy_f32(&[3], 2),
            "dtype float32 ('<f4') for labels",
        ),
    ] {
        let dir = temp_dir();
        let input = put(dir.path(), "x.npy", &npy_f32(&[3, 1, 32, 32], 1));
        let labels = put(dir.path(), name, &bytes);
        fails_and_writes_nothing(
            dir.path(),
            &["--backend", "flex", "--input", input, "--labels", labels],
            &[],
            INPUT,
            &[name, needle],
        );
    }
}
