//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

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

/// Runs the application with `args`.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lenet-jacobian"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs the application and asserts it succeeded; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "lenet-jacobian {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
