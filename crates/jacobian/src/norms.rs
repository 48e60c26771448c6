//! Norms of each sample's Jacobian matrix: how strongly, at most and overall, a sample's
//! outputs respond to a change of its input.
//!
//! Sample `b`'s Jacobian is the `O x input_len` matrix `J_b` of [`Jacobian::sample_matrix`]:
//!
//! - its **Frobenius norm** `sqrt(sum J_b[k, i]^2)`, the root of the sum of every output's
//!   squared gradient norm;
//! - its **spectral norm**, the largest singular value `max |J_b v| / |v|`: the largest factor
//!   by which a small input perturbation is amplified (the local Lipschitz constant).
//!
//! The spectral norm never exceeds the Frobenius norm, and equals it when `J_b` has rank one.
//! Both are computed in `f64` from the `f32` entries.
//!
//! ```
//! use jacobian::{frobenius_norm, spectral_norm};
//!
//! // diag(3, -4): singular values 4 and 3.
//! let m = [3.0, 0.0, 0.0, -4.0];
//! assert!((spectral_norm(&m, 2) - 4.0).abs() < 1e-12);
//! assert!((frobenius_norm(&m) - 5.0).abs() < 1e-12);
//! ```

use nalgebra::DMatrix;

use crate::Jacobian;

/// The Frobenius norm of each sample's `O x input_len` Jacobian matrix, in sample order (of
/// the samples held).
///
/// Works for both layouts: a full Jacobian's off-diagonal blocks (`b != b'`) are not part of
/// sample `b`'s matrix.
pub fn frobenius_norms(jacobian: &Jacobian) -> Vec<f64> {
    (0..jacobian.samples())
        .map(|b| frobenius_norm(&jacobian.sample_matrix(b)))
        .collect()
}

/// The spectral norm (largest singular value) of each sample's `O x input_len` Jacobian
/// matrix, in sample order. Works for both layouts, like [`frobenius_norms`].
pub fn spectral_norms(jacobian: &Jacobian) -> Vec<f64> {
    let outputs = jacobian.num_outputs();
    (0..jacobian.samples())
        .map(|b| spectral_norm(&jacobian.sample_matrix(b), outputs))
        .collect()
}

/// The Frobenius norm of a matrix given by its entries (in any order), in `f64`.
pub fn frobenius_norm(matrix: &[f32]) -> f64 {
    matrix
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

/// The spectral norm (largest singular value) of the row-major matrix `matrix` of `rows`
/// rows, in `f64`; NaN when an entry is NaN or infinite (no singular value is defined).
///
/// Computed as the square root of the largest eigenvalue of the smaller Gram matrix,
/// `M M^T` or `M^T M` (`O x O` for a Jacobian with fewer outputs than inputs), by a
/// symmetric eigendecomposition.
///
/// # Panics
///
/// When `matrix.len()` is not a multiple of `rows`.
pub fn spectral_norm(matrix: &[f32], rows: usize) -> f64 {
    if rows == 0 || matrix.is_empty() {
        return 0.0;
    }
    if matrix.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    assert!(
        matrix.len().is_multiple_of(rows),
        "{} entries do not make a matrix of {rows} rows",
        matrix.len()
    );
    let cols = matrix.len() / rows;
    let m = DMatrix::from_row_iterator(rows, cols, matrix.iter().map(|&v| f64::from(v)));
    let gram = if rows <= cols {
        &m * m.transpose()
    } else {
        m.transpose() * &m
    };
    let largest = gram
        .symmetric_eigenvalues()
        .iter()
        .fold(0.0f64, |max, &v| max.max(v));
    largest.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Layout;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn rank_one_spectral_norm_is_its_frobenius_norm() {
        // u v^T with u = (1, -2, 2), v = (3, 0, 4, 0): |u| = 3, |v| = 5.
        let (u, v) = ([1.0f32, -2.0, 2.0], [3.0f32, 0.0, 4.0, 0.0]);
        let m: Vec<f32> = u
            .iter()
            .flat_map(|&a| v.iter().map(move |&b| a * b))
            .collect();
        assert!(close(spectral_norm(&m, 3), 15.0));
        assert!(close(frobenius_norm(&m), 15.0));
        // Transposed (more rows than columns): the other Gram matrix.
        let t: Vec<f32> = (0..4)
            .flat_map(|j| m.iter().skip(j).step_by(4).copied().collect::<Vec<_>>())
            .collect();
        assert!(close(spectral_norm(&t, 4), 15.0));
    }

    #[test]
    fn diagonal_spectral_norm_is_its_largest_absolute_entry() {
        // 3 x 4, diagonal (2, -7, 5): Frobenius sqrt(4 + 49 + 25).
        let mut m = vec![0.0f32; 12];
        m[0] = 2.0;
        m[5] = -7.0;
        m[10] = 5.0;
        assert!(close(spectral_norm(&m, 3), 7.0));
        assert!(close(frobenius_norm(&m), 78f64.sqrt()));
    }

    #[test]
    fn two_by_two_matches_the_closed_form() {
        // [[1, 2], [3, 4]]: sigma_max^2 = (30 + sqrt(30^2 - 4 * 4)) / 2 (trace and det of M^T M).
        let m = [1.0f32, 2.0, 3.0, 4.0];
        let expected = ((30.0 + (900.0f64 - 16.0).sqrt()) / 2.0).sqrt();
        assert!(close(spectral_norm(&m, 2), expected));
        assert!(close(frobenius_norm(&m), 30f64.sqrt()));
    }

    #[test]
    fn a_matrix_with_nan_or_inf_has_no_finite_norm() {
        assert!(spectral_norm(&[1.0, f32::NAN, 0.0, 2.0], 2).is_nan());
        assert!(spectral_norm(&[1.0, f32::INFINITY, 0.0, 2.0], 2).is_nan());
        assert!(frobenius_norm(&[1.0, f32::NAN]).is_nan());
    }

    #[test]
    fn zero_and_empty_matrices_have_norm_zero() {
        assert_eq!(spectral_norm(&[0.0; 6], 2), 0.0);
        assert_eq!(spectral_norm(&[], 0), 0.0);
        assert_eq!(frobenius_norm(&[]), 0.0);
    }

    /// Samples' matrices: sample 0 diag(3, 4) (spectral 4, Frobenius 5), sample 1 the rank-one
    /// (1, 1)^T (1, 1) (spectral 2 = Frobenius 2).
    fn samples() -> [[f32; 4]; 2] {
        [[3.0, 0.0, 0.0, 4.0], [1.0, 1.0, 1.0, 1.0]]
    }

    #[test]
    fn per_sample_layout_norms() {
        let j = Jacobian {
            layout: Layout::PerSample,
            shape: vec![2, 2, 2],
            start: 0,
            values: samples().concat(),
        };
        let (fro, spec) = (frobenius_norms(&j), spectral_norms(&j));
        assert!(close(fro[0], 5.0) && close(fro[1], 2.0), "{fro:?}");
        assert!(close(spec[0], 4.0) && close(spec[1], 2.0), "{spec:?}");
    }

    #[test]
    fn full_layout_norms_ignore_the_off_diagonal_blocks() {
        // [b, k, b', i]: the diagonal blocks hold samples(), the others a large value that
        // must not count.
        let mut values = vec![100.0f32; 2 * 2 * 2 * 2];
        for (b, matrix) in samples().iter().enumerate() {
            for k in 0..2 {
                let start = ((b * 2 + k) * 2 + b) * 2;
                values[start..start + 2].copy_from_slice(&matrix[k * 2..k * 2 + 2]);
            }
        }
        let j = Jacobian {
            layout: Layout::Full,
            shape: vec![2, 2, 2, 2],
            start: 0,
            values,
        };
        let (fro, spec) = (frobenius_norms(&j), spectral_norms(&j));
        assert!(close(fro[0], 5.0) && close(fro[1], 2.0), "{fro:?}");
        assert!(close(spec[0], 4.0) && close(spec[1], 2.0), "{spec:?}");
    }
}
