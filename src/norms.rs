//! `--norms`: the Frobenius norm and the largest singular value of each sample's
//! `O x (C*H*W)` Jacobian, computed chunk by chunk so that any batch size works.

use std::fmt::Write;

use jacobian::{frobenius_norm, spectral_norm};

/// The norms of one sample's Jacobian matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleNorms {
    /// `sqrt(sum J[k, i]^2)`.
    pub frobenius: f64,
    /// The largest singular value: the largest amplification of a small input change.
    pub spectral: f64,
}

/// The norms of one sample's `outputs x input_len` Jacobian matrix, row-major.
pub fn of(matrix: &[f32], outputs: usize) -> SampleNorms {
    SampleNorms {
        frobenius: frobenius_norm(matrix),
        spectral: spectral_norm(matrix, outputs),
    }
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
    fn norms_of_each_sample_and_their_table() {
        // Two samples of a 2 x 2 Jacobian: diag(3, 4) and all ones.
        let norms = [of(&[3.0, 0.0, 0.0, 4.0], 2), of(&[1.0, 1.0, 1.0, 1.0], 2)];
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
