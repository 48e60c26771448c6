//! What the application prints on stdout: a Jacobian's shape, each axis, its largest entries
//! and zero blocks; then, sample by sample, what the model says and the Jacobian's norms.

use std::fmt::Write;

use jacobian::{python_shape, Layout};

use crate::input::Batch;
use crate::model::Model;
use crate::run::{Method, Outcome, Request, REFERENCE_TOLERANCE};
use crate::saliency::MAX_ROWS;

/// Names of a sample's axes, for the axis table.
const SAMPLE_AXIS_NAMES: [&str; 3] = ["channel", "row", "column"];

/// The note on stderr when a weights file does not say parts of the architecture and nobody
/// stated them: what the computation assumes, and how to state or check it.
pub fn assumption_note(model: &Model) -> Option<String> {
    let assumed = model.assumed();
    let path = model.weights.as_ref()?;
    if assumed.is_empty() {
        return None;
    }
    let c = model.config();
    let values: Vec<String> = assumed
        .iter()
        .map(|aspect| match *aspect {
            "activation" => format!("{} activation", c.activation),
            "pooling" => format!("{} pooling", c.pooling),
            _ => format!("padding {}", c.padding),
        })
        .collect();
    let flags: Vec<&str> = assumed
        .iter()
        .map(|aspect| match *aspect {
            "activation" => "--activation tanh|relu|sigmoid",
            "pooling" => "--pooling avg|max",
            _ => "--padding N",
        })
        .collect();
    Some(format!(
        "{}: the file does not record the {}: computing with {} (the question's LeNet5), \
         which is wrong for another network (PyTorch's tutorial Net is --activation relu \
         --pooling max); state {} with {}, or check the model with --reference-logits FILE.npy",
        path.display(),
        list(&assumed),
        values.join(", "),
        if assumed.len() == 1 { "it" } else { "them" },
        flags.join(" ")
    ))
}

/// `a`, `a and b`, `a, b and c`.
fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The report of a run, as printed on stdout.
pub fn render(outcome: &Outcome, request: &Request, model: &Model) -> String {
    let (batch, outputs) = (outcome.shape[0], outcome.shape[1]);
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "{} Jacobian of LeNet-5 logits with respect to the input, on {}, by {}",
        match outcome.layout {
            Layout::Full => "Full (torch.autograd.functional.jacobian layout)",
            Layout::PerSample => "Per-sample",
        },
        request.backend,
        match request.method {
            Method::Analytic => "LeNet-5's own Jacobian",
            Method::Autodiff => "Burn's autodiff",
        }
    );
    let _ = match &model.weights {
        Some(path) => writeln!(w, "weights: {}", path.display()),
        None => writeln!(
            w,
            "weights: seeded (--seed {}), untrained; --weights models/lenet5-mnist.bpk for LeNet-5 trained on MNIST",
            model.seed
        ),
    };
    let _ = writeln!(w, "architecture: {}", model.architecture);
    let assumed = model.assumed();
    if !assumed.is_empty() {
        let checked = match outcome.reference {
            Some(_) => "; the logits agree with --reference-logits (below)",
            None => "",
        };
        let _ = writeln!(
            w,
            "  assumed, as the weights file does not record it: the {}{checked}",
            list(&assumed)
        );
    }
    if let (Some(path), Some(relative)) = (&request.reference_logits, outcome.reference) {
        let _ = writeln!(
            w,
            "forward pass checked against {}: the logits agree within {relative:.2e} of the largest (tolerance {REFERENCE_TOLERANCE:.0e})",
            path.display()
        );
    }
    if let Some(n) = &request.normalize {
        let _ = writeln!(
            w,
            "input: the model sees (x - mean) / std per channel, mean {:?}, std {:?}; the Jacobian is with respect to the pixels x",
            n.mean, n.std
        );
    }
    let _ = writeln!(w, "shape: {}", python_shape(&outcome.shape));
    let _ = writeln!(w);
    let _ = writeln!(w, "axis  size  meaning");
    for axis in outcome
        .layout
        .axes(batch, outputs, &outcome.input_dims, &SAMPLE_AXIS_NAMES)
    {
        let _ = writeln!(w, "{:>4}  {:>4}  {}", axis.index, axis.size, axis.meaning);
    }
    let _ = writeln!(w);
    write_magnitudes(w, outcome);
    let dims = outcome.input_dims;
    let input = python_shape(&dims);
    let _ = match outcome.layout {
        Layout::Full => writeln!(
            w,
            "the other layout: --layout per-sample computes the batch diagonal directly, {} \
             (numpy: np.einsum('bibj->bij', J.reshape({batch}, {outputs}, {batch}, -1)).reshape({batch}, {outputs}, *{input}))",
            python_shape(&Layout::PerSample.shape(batch, outputs, &dims)),
        ),
        Layout::PerSample => writeln!(
            w,
            "the other layout: --layout full gives {}, torch's layout, whose entry [b, k, b', ...] is this [b, k, ...] when b' = b and zero otherwise",
            python_shape(&Layout::Full.shape(batch, outputs, &dims)),
        ),
    };
    let _ = writeln!(w, "computed in {:.3} s", outcome.elapsed.as_secs_f64());
    if let Some(path) = &request.output {
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

/// Sample by sample: the predicted class and its probability, the label when known, the
/// Jacobian's norms (`--norms`) and the image's file (`--images`). Every sample with
/// `--norms`, else the first [`MAX_ROWS`].
pub fn samples_table(outcome: &Outcome, batch: &Batch) -> String {
    let mut out = String::new();
    let w = &mut out;
    let labels = batch.labels.iter().any(Option::is_some);
    let names = batch.names.as_deref();
    let rows = match outcome.norms {
        Some(_) => batch.len,
        None => batch.len.min(MAX_ROWS),
    };
    let _ = write!(w, "sample  class  probability");
    if labels {
        let _ = write!(w, "  label");
    }
    if outcome.norms.is_some() {
        let _ = write!(w, "  {:>13}  {:>13}", "Frobenius", "spectral");
    }
    if names.is_some() {
        let _ = write!(w, "  image");
    }
    let _ = writeln!(w);
    let predictions = outcome.predictions();
    for (b, &(class, probability)) in predictions.iter().enumerate().take(rows) {
        let _ = write!(w, "{b:>6}  {class:>5}  {probability:>11.4}");
        if labels {
            let label = batch.labels[b].map_or("-".to_string(), |l| l.to_string());
            let _ = write!(w, "  {label:>5}");
        }
        if let Some(norms) = &outcome.norms {
            let n = norms[b];
            let _ = write!(w, "  {:>13.6e}  {:>13.6e}", n.frobenius, n.spectral);
        }
        if let Some(name) = names.and_then(|names| names.get(b)) {
            let _ = write!(w, "  {name}");
        }
        let _ = writeln!(w);
    }
    if rows < batch.len {
        let _ = writeln!(
            w,
            "... {} more (--logits FILE.npy writes every sample's logits)",
            batch.len - rows
        );
    }
    if labels {
        let known: Vec<(usize, usize)> = batch
            .labels
            .iter()
            .zip(&predictions)
            .filter_map(|(label, &(class, _))| label.map(|l| (l, class)))
            .collect();
        let right = known.iter().filter(|(l, c)| l == c).count();
        let _ = writeln!(
            w,
            "accuracy on the {} labelled sample(s): {:.2}% ({right}/{})",
            known.len(),
            100.0 * right as f64 / known.len() as f64,
            known.len()
        );
    }
    if outcome.norms.is_some() {
        let _ = writeln!(
            w,
            "norms of each sample's {} x {} Jacobian (logits by input pixels); spectral: \
             the largest singular value, the most a small input change of unit length can move \
             the logits (spectral <= Frobenius)",
            outcome.classes(),
            outcome.input_dims.iter().product::<usize>()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jacobian::Magnitudes;

    use super::*;
    use crate::run::SampleNorms;

    fn outcome(logits: Vec<f32>, norms: Option<Vec<SampleNorms>>) -> Outcome {
        let batch = logits.len() / 2;
        Outcome {
            layout: Layout::PerSample,
            input_dims: [1, 32, 32],
            reference: None,
            shape: vec![batch, 2, 1, 32, 32],
            magnitudes: Magnitudes::default(),
            off_diagonal: (Magnitudes::default(), 1),
            elapsed: Duration::ZERO,
            norms,
            first: None,
            full: None,
            logits,
        }
    }

    fn batch(len: usize, labels: Vec<Option<usize>>, names: Option<Vec<String>>) -> Batch {
        Batch {
            len,
            dims: [1, 32, 32],
            values: vec![0.0; len * 1024],
            names,
            labels,
        }
    }

    #[test]
    fn samples_table_rows_say_class_probability_label_norms_and_image() {
        // Logits (0, ln 3): class 1 with probability 3/4; (2, 0): class 0, e^2 / (1 + e^2).
        let logits = vec![0.0, 3f32.ln(), 2.0, 0.0];
        let norms = vec![
            SampleNorms::of(&[3.0, 0.0, 0.0, 4.0], 2),
            SampleNorms::of(&[1.0, 1.0, 1.0, 1.0], 2),
        ];
        assert!(
            (norms[0].frobenius - 5.0).abs() < 1e-12 && (norms[0].spectral - 4.0).abs() < 1e-12
        );
        let names = Some(vec!["1_a.png".to_string(), "b.png".to_string()]);
        let table = samples_table(
            &outcome(logits, Some(norms)),
            &batch(2, vec![Some(1), None], names),
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "sample  class  probability  label      Frobenius       spectral  image"
        );
        assert_eq!(
            lines[1],
            "     0      1       0.7500      1     5.000000e0     4.000000e0  1_a.png"
        );
        assert!(
            lines[2].starts_with("     1      0       0.8808      -     2.000000e0"),
            "{table}"
        );
        assert!(
            table.contains("accuracy on the 1 labelled sample(s): 100.00% (1/1)"),
            "{table}"
        );
    }

    #[test]
    fn samples_table_shows_the_first_rows_unless_norms_are_asked() {
        let logits = vec![0.0; 2 * 40];
        let table = samples_table(&outcome(logits, None), &batch(40, vec![None; 40], None));
        assert_eq!(table.lines().count(), 1 + MAX_ROWS + 1, "{table}");
        assert!(table.contains("... 24 more"), "{table}");
        assert!(
            !table.contains("label"),
            "no labels, no label column: {table}"
        );
    }
}
