//! `--norms`: the Frobenius norm and the largest singular value of each sample's
//! `O x (C*H*W)` Jacobian, computed chunk by chunk so that any batch size works.

use std::fmt::Write;

use jacobian::{frobenius_norm, spectral_norm, Jacobian};

/// The norms of one sample's Jacobian matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleNorms {
    /// `sqrt(sum J[k, i]^2)`.
    pub frobenius: f64,
    /// The largest singular value: the largest amplification of a small input change.
    pub spectral: f64,
}

/// The norms of each sample of a chunk of per-sample Jacobian values,
/// `[samples, outputs, input_len]` row-major.
pub fn of_chunk(values: &[f32], samples: usize, outputs: usize) -> Vec<SampleNorms> {
    if samples == 0 {
        return Vec::new();
    }
    values
        .chunks_exact(values.len() / samples)
        .map(|matrix| SampleNorms {
            frobenius: frobenius_norm(matrix),
            spectral: spectral_norm(matrix, outputs),
        })
        .collect()
}

/// The norms of each sample of a Jacobian (either layout).
pub fn of_jacobian(jacobian: &Jacobian) -> Vec<SampleNorms> {
    jacobian::frobenius_norms(jacobian)
        .into_iter()
        .zip(jacobian::spectral_norms(jacobian))
        .map(|(frobenius, spectral)| SampleNorms {
            frobenius,
            spectral,
        })
        .collect()
}

/// The table printed by `--norms`; `names` labels the samples (the files of `--images`).
pub fn table(
    norms: &[SampleNorms],
    outputs: usize,
    input_len: usize,
    names: Option<&[String]>,
) -> String {
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
    fn chunk_norms_are_per_sample() {
        // Two samples of a 2 x 2 Jacobian: diag(3, 4) and all ones.
        let values = [3.0, 0.0, 0.0, 4.0, 1.0, 1.0, 1.0, 1.0];
        let norms = of_chunk(&values, 2, 2);
        assert!((norms[0].frobenius - 5.0).abs() < 1e-12);
        assert!((norms[0].spectral - 4.0).abs() < 1e-12);
        assert!((norms[1].frobenius - 2.0).abs() < 1e-12);
        assert!((norms[1].spectral - 2.0).abs() < 1e-12);
        let table = table(&norms, 2, 2, Some(&["a.png".into(), "b.png".into()]));
        assert!(
            table.contains("     0     5.000000e0     4.000000e0  a.png"),
            "{table}"
        );
    }
}
