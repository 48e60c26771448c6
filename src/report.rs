//! What the application prints about a Jacobian: its shape, each axis, and the zero blocks.

use std::fmt::Write;

use jacobian::{python_shape, Layout};

use crate::compute::Outcome;
use lenet5::IMAGE_DIMS;

use crate::model::SAMPLE_AXIS_NAMES;

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
    if m.non_finite == 0 {
        let _ = writeln!(w, "largest |J|: {:.6e}", m.max_abs);
    } else {
        let _ = writeln!(
            w,
            "the Jacobian holds {} non-finite entries (NaN or Inf), the first at index {:?}; \
             largest finite |J|: {:.6e}",
            m.non_finite,
            m.first_non_finite.as_deref().unwrap_or_default(),
            m.max_abs
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
