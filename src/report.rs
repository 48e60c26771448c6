//! What the application prints on stdout: a Jacobian's shape, each axis, its largest entries
//! and zero blocks; each sample's norms.

use std::fmt::Write;

use jacobian::{python_shape, Layout};
use lenet5::{IMAGE_DIMS, IMAGE_LEN};

use crate::run::{Outcome, SampleNorms};

/// Names of a sample's axes, for the axis table.
const SAMPLE_AXIS_NAMES: [&str; 3] = ["channel", "row", "column"];

/// The report of a run, as printed on stdout.
pub fn render(outcome: &Outcome, backend: &str, output: Option<&std::path::Path>) -> String {
    let (batch, outputs) = (outcome.shape[0], outcome.shape[1]);
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "{} Jacobian of LeNet-5 logits with respect to the input, on {backend}",
        match outcome.layout {
            Layout::Full => "Full (torch.autograd.functional.jacobian layout)",
            Layout::PerSample => "Per-sample",
        }
    );
    let _ = writeln!(w, "shape: {}", python_shape(&outcome.shape));
    let _ = writeln!(w);
    let _ = writeln!(w, "axis  size  meaning");
    for axis in outcome
        .layout
        .axes(batch, outputs, &IMAGE_DIMS, &SAMPLE_AXIS_NAMES)
    {
        let _ = writeln!(w, "{:>4}  {:>4}  {}", axis.index, axis.size, axis.meaning);
    }
    let _ = writeln!(w);
    write_magnitudes(w, outcome);
    let input = python_shape(&IMAGE_DIMS);
    let _ = match outcome.layout {
        Layout::Full => writeln!(
            w,
            "the other layout: --layout per-sample computes the batch diagonal directly, {} \
             (numpy: np.einsum('bibj->bij', J.reshape({batch}, {outputs}, {batch}, -1)).reshape({batch}, {outputs}, *{input}))",
            python_shape(&Layout::PerSample.shape(batch, outputs, &IMAGE_DIMS)),
        ),
        Layout::PerSample => writeln!(
            w,
            "the other layout: --layout full gives {}, torch's layout, whose entry [b, k, b', ...] is this [b, k, ...] when b' = b and zero otherwise",
            python_shape(&Layout::Full.shape(batch, outputs, &IMAGE_DIMS)),
        ),
    };
    let _ = writeln!(w, "computed in {:.3} s", outcome.elapsed.as_secs_f64());
    if let Some(path) = output {
        let _ = writeln!(w, "written to {} (float32, C order)", path.display());
    }
    out
}

/// The largest entries, on and off the batch diagonal: a maximum is stated only over finite
/// entries, and never when some are not finite without saying how many and where.
fn write_magnitudes(w: &mut String, outcome: &Outcome) {
    let m = &outcome.magnitudes;
    let first = m.first_non_finite.as_deref().unwrap_or_default();
    if m.non_finite == 0 {
        let _ = writeln!(w, "largest |J|: {:.6e}", m.max_abs);
    } else if m.non_finite == m.entries {
        let _ = writeln!(
            w,
            "every one of the Jacobian's {} entries is NaN or Inf (the first at index {first:?})",
            m.entries
        );
    } else {
        let _ = writeln!(
            w,
            "the Jacobian holds {} non-finite entries (NaN or Inf), the first at index {:?}; \
             largest finite |J|: {:.6e}",
            m.non_finite, first, m.max_abs
        );
    }
    let (off, over) = &outcome.off_diagonal;
    let measured = match outcome.layout {
        Layout::Full => format!("measured over all {over} samples"),
        Layout::PerSample => {
            format!("measured with the full Jacobian of the first {over} samples")
        }
    };
    if off.non_finite_off_diagonal > 0 {
        let _ = writeln!(
            w,
            "off the batch diagonal (b != b'): {} non-finite entries ({measured}): \
             nothing can be said of those blocks",
            off.non_finite_off_diagonal
        );
        return;
    }
    let largest = off.max_abs_off_diagonal.unwrap_or_default();
    let _ = writeln!(
        w,
        "largest |J| off the batch diagonal (b != b'): {largest:.6e} ({measured})"
    );
    if off.off_diagonal_is_zero() {
        let _ = writeln!(
            w,
            "  every output of sample b depends only on input sample b: the blocks with b != b' are zero"
        );
    }
}

/// The table printed by `--norms`; `names` labels the samples (the files of `--images`).
pub fn norms_table(norms: &[SampleNorms], outputs: usize, names: Option<&[String]>) -> String {
    let input_len = IMAGE_LEN;
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "norms of each sample's {outputs} x {input_len} Jacobian (logits by input pixels):"
    );
    let _ = writeln!(
        w,
        "sample  {:>13}  {:>13}{}",
        "Frobenius",
        "spectral",
        if names.is_some() { "  image" } else { "" }
    );
    for (b, n) in norms.iter().enumerate() {
        let name = names
            .and_then(|names| names.get(b))
            .map(|name| format!("  {name}"))
            .unwrap_or_default();
        let _ = writeln!(
            w,
            "{b:>6}  {:>13.6e}  {:>13.6e}{name}",
            n.frobenius, n.spectral
        );
    }
    let _ = writeln!(
        w,
        "spectral: the largest singular value, the most a small input change of unit length can move the logits (spectral <= Frobenius)"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_table_rows_are_samples_with_their_names() {
        // Two samples of a 2 x 2 Jacobian: diag(3, 4) and all ones.
        let norms = [
            SampleNorms::of(&[3.0, 0.0, 0.0, 4.0], 2),
            SampleNorms::of(&[1.0, 1.0, 1.0, 1.0], 2),
        ];
        assert!((norms[0].frobenius - 5.0).abs() < 1e-12);
        assert!((norms[0].spectral - 4.0).abs() < 1e-12);
        assert!((norms[1].frobenius - 2.0).abs() < 1e-12);
        assert!((norms[1].spectral - 2.0).abs() < 1e-12);
        let table = norms_table(&norms, 2, Some(&["a.png".into(), "b.png".into()]));
        assert!(
            table.contains("     0     5.000000e0     4.000000e0  a.png"),
            "{table}"
        );
    }
}
