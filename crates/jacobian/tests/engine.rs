//! The engine against Jacobians known in closed form, on functions it knows nothing about.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Tensor, TensorData};
use jacobian::{batch_diagonal, full, per_sample, JacobianConfig, JacobianError, Layout, Strategy};

type B = Autodiff<NdArray>;

const STRATEGIES: [Strategy; 2] = [Strategy::PerOutput, Strategy::StackedOutputs];

fn config(strategy: Strategy, chunk_size: Option<usize>) -> JacobianConfig {
    JacobianConfig {
        strategy,
        chunk_size,
        ..JacobianConfig::default()
    }
}

/// A deterministic, irregular matrix: entries are not round numbers.
fn matrix(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| ((i * 7919 % 113) as f32 - 56.0) / 37.0)
        .collect()
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// y = x A^T + c on inputs of shape [B, 2, 3] (rank 3, flattened): J[b, k, ...] = A[k, ...].
#[test]
fn affine_map_jacobian_is_its_matrix_exactly() {
    let (batch, outputs, features) = (5, 4, 6);
    let a = matrix(outputs, features);
    let at = tensor(a.clone(), [outputs, features]).transpose();
    let c = tensor(vec![0.5, -1.0, 2.0, 3.0], [1, outputs]);
    let f = |x: Tensor<B, 3>| x.flatten::<2>(1, 2).matmul(at.clone()) + c.clone();
    let x = tensor(matrix(batch, features), [batch, 2, 3]);
    for strategy in STRATEGIES {
        for chunk in [None, Some(2)] {
            let j = per_sample(f, x.clone(), &config(strategy, chunk)).unwrap();
            assert_eq!(j.shape, [batch, outputs, 2, 3]);
            for b in 0..batch {
                assert_eq!(
                    j.sample_matrix(b),
                    a,
                    "{strategy:?} chunk {chunk:?} sample {b}"
                );
            }
        }
    }
    let f_full = full(f, x, &JacobianConfig::default(), u128::MAX).unwrap();
    assert_eq!(f_full.shape, [batch, outputs, batch, 2, 3]);
    for b in 0..batch {
        for k in 0..outputs {
            for b2 in 0..batch {
                let start = ((b * outputs + k) * batch + b2) * features;
                let block = &f_full.values[start..start + features];
                if b2 == b {
                    assert_eq!(block, &a[k * features..(k + 1) * features]);
                } else {
                    assert!(block.iter().all(|&v| v == 0.0));
                }
            }
        }
    }
    assert_eq!(f_full.max_abs_off_diagonal(), Some(0.0));
}

/// y[b] = (sin(x0) x1, x0^2 + exp(x1)): analytic per-sample Jacobian.
#[test]
fn nonlinear_function_matches_its_analytic_jacobian() {
    let f = |x: Tensor<B, 2>| {
        let x0 = x.clone().narrow(1, 0, 1);
        let x1 = x.narrow(1, 1, 1);
        Tensor::cat(
            vec![x0.clone().sin() * x1.clone(), x0.clone() * x0 + x1.exp()],
            1,
        )
    };
    let points = [[0.3f32, -1.2], [2.0, 0.5], [-0.7, 1.1]];
    let x = tensor(points.concat(), [3, 2]);
    for strategy in STRATEGIES {
        let j = per_sample(f, x.clone(), &config(strategy, Some(2))).unwrap();
        for (b, [x0, x1]) in points.iter().enumerate() {
            let expected = [x0.cos() * x1, x0.sin(), 2.0 * x0, x1.exp()];
            for (got, want) in j.sample_matrix(b).iter().zip(expected) {
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{got} vs {want}"
                );
            }
        }
    }
}

/// y[b] = x[b] + sum over the batch: samples are not independent, and the full layout must say
/// so: J[b, k, b', k'] = delta(b, b') delta(k, k') + 1 (two features, two outputs).
#[test]
fn full_layout_measures_cross_sample_terms() {
    let f = |x: Tensor<B, 2>| x.clone() + x.sum_dim(0);
    let x = tensor(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [3, 2]);
    let j = full(f, x, &JacobianConfig::default(), u128::MAX).unwrap();
    assert_eq!(j.shape, [3, 2, 3, 2]);
    for b in 0..3 {
        for k in 0..2 {
            for b2 in 0..3 {
                for k2 in 0..2 {
                    let expected = if b == b2 && k == k2 {
                        2.0
                    } else if k == k2 {
                        1.0
                    } else {
                        0.0
                    };
                    assert_eq!(j.values[((b * 2 + k) * 3 + b2) * 2 + k2], expected);
                }
            }
        }
    }
    assert_eq!(j.max_abs_off_diagonal(), Some(1.0));
    // The batch diagonal keeps the b = b' blocks only.
    let d = batch_diagonal(&j);
    assert_eq!(d.layout, Layout::PerSample);
    assert_eq!(d.shape, [3, 2, 2]);
    assert_eq!(d.values, [2.0, 0.0, 0.0, 2.0].repeat(3));
}

#[test]
fn outputs_are_returned_with_the_jacobian() {
    let f = |x: Tensor<B, 2>| x.clone() * x;
    let x = tensor(vec![1.0, 2.0, 3.0, 4.0], [2, 2]);
    for strategy in STRATEGIES {
        let cfg = JacobianConfig {
            with_outputs: true,
            ..config(strategy, Some(1))
        };
        let j = per_sample(f, x.clone(), &cfg).unwrap();
        assert_eq!(j.outputs.as_deref(), Some(&[1.0, 4.0, 9.0, 16.0][..]));
        assert_eq!(j.values, [2.0, 0.0, 0.0, 4.0, 6.0, 0.0, 0.0, 8.0]);
    }
}

#[test]
fn strict_mode_rejects_an_output_independent_of_the_input() {
    // The outputs are constants: not connected to the input at all.
    let f = |x: Tensor<B, 2>| Tensor::<B, 2>::ones([x.dims()[0], 2], &x.device());
    let x = tensor(vec![1.0, 2.0, 3.0, 4.0], [2, 2]);
    let strict = JacobianConfig {
        strict: true,
        ..JacobianConfig::default()
    };
    assert!(matches!(
        per_sample(f, x.clone(), &strict),
        Err(JacobianError::Independent { output: 0 })
    ));
    assert!(matches!(
        full(f, x.clone(), &strict, u128::MAX),
        Err(JacobianError::Independent { output: 0 })
    ));
    // Not strict: zero rows, like torch's strict=False.
    for strategy in STRATEGIES {
        let j = per_sample(f, x.clone(), &config(strategy, None)).unwrap();
        assert_eq!(j.values, [0.0; 8]);
    }
}

#[test]
fn wrong_output_shape_and_empty_batch_are_errors() {
    let x = tensor(vec![1.0, 2.0, 3.0, 4.0], [2, 2]);
    let transposed = |x: Tensor<B, 2>| x.transpose().narrow(0, 0, 1);
    assert!(matches!(
        per_sample(transposed, x.clone(), &JacobianConfig::default()),
        Err(JacobianError::OutputShape { .. })
    ));
    let empty = tensor(vec![], [0, 2]);
    assert!(matches!(
        per_sample(|x: Tensor<B, 2>| x, empty, &JacobianConfig::default()),
        Err(JacobianError::EmptyBatch)
    ));
}

#[test]
fn full_layout_too_large_is_refused_before_computing() {
    let x = tensor(vec![0.0; 8], [4, 2]);
    let err = full(|x: Tensor<B, 2>| x, x, &JacobianConfig::default(), 100).unwrap_err();
    // [4, 2, 4, 2] f32 = 256 bytes.
    assert!(
        matches!(
            err,
            JacobianError::TooLarge {
                bytes: 256,
                limit: 100,
                ..
            }
        ),
        "{err}"
    );
}
