//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use burn::backend::{ndarray::NdArrayDevice, NdArray};
use lenet5::LeNet5Config;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tempfile::TempDir;

use lenet_jacobian::backend::{wgpu_adapter, BackendKind};

/// Set (to anything but "0") in CI: a missing wgpu adapter fails the wgpu tests instead of
/// skipping them.
pub const REQUIRE_WGPU: &str = "LENET_JACOBIAN_REQUIRE_WGPU";

/// The backends to test: wgpu only where an adapter exists, unless required.
pub fn backends() -> Vec<BackendKind> {
    let mut backends = vec![BackendKind::Ndarray, BackendKind::Flex];
    if wgpu_available() {
        backends.push(BackendKind::Wgpu);
    }
    backends
}

/// Whether to run the wgpu tests: panics when wgpu is required and missing.
pub fn wgpu_available() -> bool {
    match wgpu_adapter() {
        Ok(_) => true,
        Err(e) => {
            let required = std::env::var(REQUIRE_WGPU).is_ok_and(|v| v != "0");
            assert!(!required, "{REQUIRE_WGPU} is set but wgpu cannot run: {e}");
            eprintln!("notice: skipping the wgpu tests: {e}");
            false
        }
    }
}

/// Max |a - b| / max |reference|: the error relative to the largest entry.
pub fn relative_error(got: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(got.len(), reference.len(), "lengths differ");
    let scale = reference.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    assert!(scale > 0.0, "the reference is all zeros");
    let err = got
        .iter()
        .zip(reference)
        .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    err / scale
}

/// Reads a float32 .npy file: (shape, values).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Running the application as a user does

/// Longest a run may take: these runs fail before any real work.
const TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// Running the application

/// What a run left behind.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Ran {
    /// The exit code; panics on a signal (an abort is never a clean error).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| {
            panic!(
                "killed by a signal ({:?}); stderr:\n{}",
                self.status, self.stderr
            )
        })
    }

    /// The stderr lines that matter: not Mesa's harmless XDG_RUNTIME_DIR complaints.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect()
    }
}

/// Runs the application in `dir` with `args` and extra environment `envs`, stdout and stderr
/// to files (no pipe to fill), killed after [`TIMEOUT`].
pub fn run_in<S: AsRef<OsStr>>(dir: &Path, args: &[S], envs: &[(&str, &str)]) -> Ran {
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lenet-jacobian"))
        .args(args)
        .envs(envs.iter().copied())
        // Panics are recognised by "panicked", not by a backtrace.
        .env_remove("RUST_BACKTRACE")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("the binary runs");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "lenet-jacobian {:?} still running after {TIMEOUT:?}",
                args.iter().map(|a| a.as_ref()).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ran {
        status,
        stdout: fs::read_to_string(&out_path).unwrap(),
        stderr: fs::read_to_string(&err_path).unwrap(),
        elapsed: start.elapsed(),
    }
}

/// Asserts the run failed with `code` and said so in one line, `error: ...`, that holds every
/// `needle`; returns the line.
pub fn assert_error(ran: &Ran, code: i32, needles: &[&str]) -> String {
    assert!(
        !ran.stderr.contains("panicked"),
        "a panic, not an error:\n{}",
        ran.stderr
    );
    assert_eq!(ran.code(), code, "exit code; stderr:\n{}", ran.stderr);
    let lines = ran.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{}",
        ran.stderr
    );
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.len() > "error: ".len() + 10, "{line}");
    for needle in needles {
        assert!(line.contains(needle), "{needle:?} is not in {line:?}");
    }
    line.to_string()
}

/// Asserts `dir` holds no temporary output file.
pub fn assert_no_partial(dir: &Path) {
    let partial: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".partial"))
        .collect();
    assert!(
        partial.is_empty(),
        "temporary files left in {}: {partial:?}",
        dir.display()
    );
}

/// Runs the application in the current directory with `args`.
pub fn run(args: &[&str]) -> Ran {
    run_in(Path::new("."), args, &[])
}

/// Runs the application and asserts it succeeded; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let ran = run(args);
    assert!(
        ran.status.success(),
        "lenet-jacobian {args:?} failed: {}",
        ran.stderr
    );
    ran.stdout
}

// ---------------------------------------------------------------------------------------------
// Files made here

pub fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

// ---------------------------------------------------------------------------------------------
// Files made here

/// A version 1.0 `.npy` file: header for `descr`, `shape` and order, then `data` as given
/// (so it may be short, or of another dtype than announced).
pub fn npy_bytes(descr: &str, shape: &[u64], fortran: bool, data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let order = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    // numpy pads the header with spaces to align the data on 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    bytes
}

/// A float32 `.npy` file of `shape`, values in [0, 1).
pub fn npy_f32(shape: &[u64], seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let len: u64 = shape.iter().product();
    let data: Vec<u8> = (0..len)
        .flat_map(|_| rng.random::<f32>().to_le_bytes())
        .collect();
    npy_bytes("<f4", shape, false, &data)
}

/// `shape` zeros of `size`-byte items.
pub fn zeros(shape: &[u64], size: usize) -> Vec<u8> {
    vec![0; shape.iter().product::<u64>() as usize * size]
}

/// A tensor for [`safetensors`]: key, SafeTensors dtype, shape.
pub type Tensor = (String, &'static str, Vec<usize>);

/// The tensors of LeNet5's PyTorch state_dict (10 classes), float32.
pub fn lenet_state_dict() -> Vec<Tensor> {
    [
        ("feature_extractor.0.weight", vec![6, 1, 5, 5]),
        ("feature_extractor.0.bias", vec![6]),
        ("feature_extractor.3.weight", vec![16, 6, 5, 5]),
        ("feature_extractor.3.bias", vec![16]),
        ("classifier.0.weight", vec![120, 400]),
        ("classifier.0.bias", vec![120]),
        ("classifier.2.weight", vec![84, 120]),
        ("classifier.2.bias", vec![84]),
        ("classifier.4.weight", vec![10, 84]),
        ("classifier.4.bias", vec![10]),
    ]
    .into_iter()
    .map(|(key, shape)| (key.to_string(), "F32", shape))
    .collect()
}

/// A SafeTensors file: an 8-byte little-endian header length, the JSON header, then the
/// tensors' little-endian bytes (small values, all 0.01 in their dtype).
pub fn safetensors(tensors: &[Tensor]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (key, dtype, shape) in tensors {
        let count: usize = shape.iter().product();
        let value: Vec<u8> = match *dtype {
            "F32" => 0.01f32.to_le_bytes().to_vec(),
            "F64" => 0.01f64.to_le_bytes().to_vec(),
            "F16" => vec![0x1f, 0x21], // 0.01 in float16
            "I64" => 1i64.to_le_bytes().to_vec(),
            other => panic!("no test data for dtype {other}"),
        };
        let start = data.len();
        for _ in 0..count {
            data.extend(&value);
        }
        header.insert(
            key.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut json = serde_json::Value::Object(header).to_string();
    while !json.len().is_multiple_of(8) {
        json.push(' ');
    }
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json.as_bytes());
    bytes.extend(data);
    bytes
}

/// LeNet5's state_dict changed by `change`, as a SafeTensors file.
pub fn lenet_safetensors(change: impl FnOnce(&mut Vec<Tensor>)) -> Vec<u8> {
    let mut tensors = lenet_state_dict();
    change(&mut tensors);
    safetensors(&tensors)
}

/// A valid burnpack record of a seeded LeNet5 (10 classes).
pub fn lenet_burnpack() -> Vec<u8> {
    let model = LeNet5Config::new().init::<NdArray>(&NdArrayDevice::Cpu);
    lenet5::import::to_burnpack_bytes(&model).unwrap()
}
