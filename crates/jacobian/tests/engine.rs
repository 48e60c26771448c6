//! The engine against Jacobians known in closed form, on functions it knows nothing about:
//! reverse mode on closures, and a function that supplies its own Jacobian through the seam.

use std::cell::RefCell;
use std::ops::Range;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Tensor, TensorData, Tolerance};
use jacobian::{
    batch_diagonal, full, full_chunks, per_sample, per_sample_chunks, Chunk, Differentiable,
    FullRows, Jacobian, JacobianConfig, JacobianError, Layout, PerSample, ReverseMode, Strategy,
};

type Inner = NdArray;
type B = Autodiff<Inner>;

const STRATEGIES: [Strategy; 2] = [Strategy::PerOutput, Strategy::StackedOutputs];

/// A deterministic, irregular matrix: entries are not round numbers.
fn matrix(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| ((i * 7919 % 113) as f32 - 56.0) / 37.0)
        .collect()
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<Inner, D> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn values<const D: usize>(t: Tensor<Inner, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn assert_close<const D: usize>(got: Tensor<Inner, D>, expected: Tensor<Inner, D>) {
    got.into_data()
        .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
}

/// y = x A^T + c on inputs of shape [B, 2, 3] (flattened): every sample's Jacobian is A.
#[test]
fn affine_map_jacobian_is_its_matrix_in_every_rank_strategy_and_chunking() {
    let (batch, outputs, features) = (5, 4, 6);
    let a = matrix(outputs, features);
    let at = Tensor::<B, 2>::from_inner(tensor(a.clone(), [outputs, features])).transpose();
    let c = Tensor::<B, 2>::from_inner(tensor(vec![0.5, -1.0, 2.0, 3.0], [1, outputs]));
    let x = tensor(matrix(batch, features), [batch, 2, 3]);
    let expected_per_sample = tensor(a.repeat(batch), [batch, outputs, 2, 3]);
    for strategy in STRATEGIES {
        let f =
            ReverseMode::new(|x: Tensor<B, 3>| x.flatten::<2>(1, 2).matmul(at.clone()) + c.clone())
                .with_strategy(strategy);
        for chunk in [None, Some(1), Some(2), Some(7)] {
            let config = JacobianConfig::new().with_chunk_size(chunk);
            // Input dims kept (rank D + 1) or flattened (rank 3): the same values.
            let kept = per_sample::<_, _, 3, 4>(&f, x.clone(), &config)
                .unwrap()
                .jacobian;
            assert_close(kept, expected_per_sample.clone());
            let flat = per_sample::<_, _, 3, 3>(&f, x.clone(), &config)
                .unwrap()
                .jacobian;
            assert_eq!(flat.dims(), [batch, outputs, features]);

            let whole = full::<_, _, 3, 5>(&f, x.clone(), &config).unwrap().jacobian;
            assert_eq!(whole.dims(), [batch, outputs, batch, 2, 3]);
            let whole = values(whole);
            for row in 0..batch * outputs {
                let (b, k) = (row / outputs, row % outputs);
                for b2 in 0..batch {
                    let block = &whole[(row * batch + b2) * features..][..features];
                    if b2 == b {
                        assert_eq!(block, &a[k * features..(k + 1) * features]);
                    } else {
                        assert!(block.iter().all(|&v| v == 0.0), "{strategy:?} {chunk:?}");
                    }
                }
            }
        }
    }
}

/// y[b] = (sin(x0) x1, x0^2 + exp(x1)): the analytic per-sample Jacobian.
#[test]
fn nonlinear_function_matches_its_analytic_jacobian() {
    let points = [[0.3f32, -1.2], [2.0, 0.5], [-0.7, 1.1]];
    let x = tensor(points.concat(), [3, 2]);
    let expected: Vec<f32> = points
        .iter()
        .flat_map(|&[x0, x1]| [x0.cos() * x1, x0.sin(), 2.0 * x0, x1.exp()])
        .collect();
    for strategy in STRATEGIES {
        let f = ReverseMode::new(|x: Tensor<B, 2>| {
            let x0 = x.clone().narrow(1, 0, 1);
            let x1 = x.narrow(1, 1, 1);
            Tensor::cat(
                vec![x0.clone().sin() * x1.clone(), x0.clone() * x0 + x1.exp()],
                1,
            )
        })
        .with_strategy(strategy);
        let config = JacobianConfig::new().with_chunk_size(Some(2));
        let j = per_sample::<_, _, 2, 3>(&f, x.clone(), &config)
            .unwrap()
            .jacobian;
        assert_close(j, tensor(expected.clone(), [3, 2, 2]));
    }
}

/// y[b] = x[b] + sum over the batch: samples are not independent, and the full layout says
/// so: J[b, k, b', k'] = delta(b, b') delta(k, k') + delta(k, k').
#[test]
fn full_layout_measures_cross_sample_terms() {
    let x = tensor(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [3, 2]);
    let mut expected = Vec::new();
    for b in 0..3 {
        for k in 0..2 {
            for b2 in 0..3 {
                for k2 in 0..2 {
                    expected.push(if k != k2 {
                        0.0
                    } else if b == b2 {
                        2.0
                    } else {
                        1.0
                    });
                }
            }
        }
    }
    for strategy in STRATEGIES {
        let f =
            ReverseMode::new(|x: Tensor<B, 2>| x.clone() + x.sum_dim(0)).with_strategy(strategy);
        // One output sample per chunk: rows of the full layout in three pieces.
        let config = JacobianConfig::new().with_chunk_size(Some(3));
        let j = full::<_, _, 2, 4>(&f, x.clone(), &config).unwrap().jacobian;
        assert_eq!(values(j.clone()), expected, "{strategy:?}");
        let host = Jacobian::from_tensor(Layout::Full, 0, j.clone(), &[2]);
        let m = host.magnitudes();
        assert_eq!(m.max_abs_off_diagonal, Some(1.0));
        assert!(!m.off_diagonal_is_zero());
        // The batch diagonal keeps the b = b' blocks only.
        assert_eq!(values(batch_diagonal(j)), [2.0, 0.0, 0.0, 2.0].repeat(3));
    }
}

#[test]
fn chunks_arrive_in_order_with_their_outputs_and_sizes() {
    let f = ReverseMode::new(|x: Tensor<B, 2>| x.clone() * x);
    let x = tensor((1..=10).map(|v| v as f32).collect(), [5, 2]);
    let config = JacobianConfig::new()
        .with_chunk_size(Some(2))
        .with_with_outputs(true);
    let mut seen = Vec::new();
    let outputs = per_sample_chunks(&f, x.clone(), &config, |chunk: Chunk<Inner, 3>| {
        assert_eq!(chunk.layout, Layout::PerSample);
        let y = values(chunk.outputs.clone().expect("asked for"));
        seen.push((chunk.start, chunk.samples(), y));
        Ok(())
    })
    .unwrap();
    assert_eq!(outputs, 2);
    assert_eq!(
        seen,
        [
            (0, 2, vec![1.0, 4.0, 9.0, 16.0]),
            (2, 2, vec![25.0, 36.0, 49.0, 64.0]),
            (4, 1, vec![81.0, 100.0]),
        ]
    );
    // The full layout: chunk_size counts O x N blocks, 5 per output sample here, so 4 blocks
    // make chunks of one output sample; 10 blocks of two.
    for (chunk_size, expected) in [(4, [1, 1, 1, 1, 1].as_slice()), (10, &[2, 2, 1])] {
        let config = JacobianConfig::new().with_chunk_size(Some(chunk_size));
        let mut sizes = Vec::new();
        full_chunks(&f, x.clone(), &config, |chunk: Chunk<Inner, 4>| {
            assert_eq!(chunk.jacobian.dims()[1..], [2, 5, 2]);
            assert!(chunk.outputs.is_none(), "not asked for");
            sizes.push(chunk.samples());
            Ok(())
        })
        .unwrap();
        assert_eq!(sizes, expected);
    }
}

#[test]
fn outputs_come_with_the_jacobian_when_asked() {
    let x = tensor(vec![1.0, 2.0, 3.0, 4.0], [2, 2]);
    for strategy in STRATEGIES {
        let f = ReverseMode::new(|x: Tensor<B, 2>| x.clone() * x).with_strategy(strategy);
        let config = JacobianConfig::new()
            .with_chunk_size(Some(1))
            .with_with_outputs(true);
        let j = per_sample::<_, _, 2, 3>(&f, x.clone(), &config).unwrap();
        assert_eq!(values(j.outputs.unwrap()), [1.0, 4.0, 9.0, 16.0]);
        assert_eq!(values(j.jacobian), [2.0, 0.0, 0.0, 4.0, 6.0, 0.0, 0.0, 8.0]);
        let j = full::<_, _, 2, 4>(&f, x.clone(), &config).unwrap();
        assert_eq!(values(j.outputs.unwrap()), [1.0, 4.0, 9.0, 16.0]);
        let without = per_sample::<_, _, 2, 3>(&f, x.clone(), &JacobianConfig::new()).unwrap();
        assert!(without.outputs.is_none());
    }
}

#[test]
fn a_failing_sink_stops_the_run_with_its_error() {
    let f = ReverseMode::new(|x: Tensor<B, 2>| x.clone() * x);
    let x = tensor(vec![1.0; 8], [4, 2]);
    let config = JacobianConfig::new().with_chunk_size(Some(1));
    let mut calls = 0;
    let err = per_sample_chunks(&f, x, &config, |_| {
        calls += 1;
        Err("disk full".into())
    })
    .unwrap_err();
    assert!(matches!(err, JacobianError::Sink(_)), "{err:?}");
    assert_eq!(err.to_string(), "disk full");
    assert_eq!(calls, 1, "no chunk after a failure");
}

#[test]
fn strict_mode_rejects_an_output_independent_of_the_input() {
    // The outputs are constants: not connected to the input at all. (An output joined to
    // others by `cat` is connected through it, with zero gradients, as in torch.)
    let f = ReverseMode::new(|x: Tensor<B, 2>| Tensor::<B, 2>::ones([x.dims()[0], 2], &x.device()));
    let x = tensor(vec![1.0, 2.0, 3.0, 4.0], [2, 2]);
    let strict = JacobianConfig::new().with_strict(true);
    assert!(matches!(
        per_sample::<_, _, 2, 3>(&f, x.clone(), &strict),
        Err(JacobianError::Independent { output: 0 })
    ));
    assert!(matches!(
        full::<_, _, 2, 4>(&f, x.clone(), &strict),
        Err(JacobianError::Independent { output: 0 })
    ));
    let connected = ReverseMode::new(|x: Tensor<B, 2>| x.clone() * x);
    per_sample::<_, _, 2, 3>(&connected, x.clone(), &strict).unwrap();
    // Not strict: its rows are zero, like torch's strict=False.
    for strategy in STRATEGIES {
        let f =
            ReverseMode::new(|x: Tensor<B, 2>| Tensor::<B, 2>::ones([x.dims()[0], 2], &x.device()))
                .with_strategy(strategy);
        let j = per_sample::<_, _, 2, 3>(&f, x.clone(), &JacobianConfig::new()).unwrap();
        assert_eq!(values(j.jacobian), [0.0; 8]);
    }
}

#[test]
fn shapes_ranks_and_sizes_are_checked_before_anything_is_computed() {
    let x = tensor(vec![0.0; 8], [4, 2]);
    let transposed = ReverseMode::new(|x: Tensor<B, 2>| x.transpose());
    assert!(matches!(
        per_sample::<_, _, 2, 3>(&transposed, x.clone(), &JacobianConfig::new()),
        Err(JacobianError::OutputShape { .. })
    ));
    let identity = ReverseMode::new(|x: Tensor<B, 2>| x);
    assert!(matches!(
        per_sample::<_, _, 2, 3>(&identity, tensor(vec![], [0, 2]), &JacobianConfig::new()),
        Err(JacobianError::EmptyBatch)
    ));
    // The per-sample layout of a rank-2 input has rank 3; rank 4 is the full layout's.
    let err = per_sample::<_, _, 2, 4>(&identity, x.clone(), &JacobianConfig::new()).unwrap_err();
    assert!(
        matches!(
            err,
            JacobianError::Rank {
                asked: 4,
                flat: 3,
                ..
            }
        ),
        "{err}"
    );
    // [4, 2, 4, 2] f32 = 256 bytes: refused whole...
    let limited = JacobianConfig::new().with_max_bytes(Some(255));
    let err = full::<_, _, 2, 4>(&identity, x.clone(), &limited).unwrap_err();
    assert!(
        matches!(
            err,
            JacobianError::TooLarge {
                bytes: 256,
                limit: 255,
                ..
            }
        ),
        "{err}"
    );
    // ...but streamed in chunks of one output sample (64 bytes) it fits.
    let streamed = limited.clone().with_chunk_size(Some(4));
    full_chunks(&identity, x.clone(), &streamed, |_| Ok(())).unwrap();
    let too_small = streamed.with_max_bytes(Some(63));
    let err = full_chunks(&identity, x, &too_small, |_| Ok(())).unwrap_err();
    assert!(
        matches!(err, JacobianError::TooLarge { bytes: 64, .. }),
        "{err}"
    );
}

/// y = x M for a fixed matrix M, with its Jacobian supplied by hand through the seam (and a
/// count of what the engine asked for): the engine drives any implementation the same way.
struct HandWritten {
    m: Tensor<Inner, 2>, // [N, O]
    calls: RefCell<Vec<String>>,
}

impl Differentiable<Inner, 2> for HandWritten {
    fn forward(&self, x: Tensor<Inner, 2>) -> Tensor<Inner, 2> {
        x.matmul(self.m.clone())
    }

    fn per_sample(&self, x: Tensor<Inner, 2>) -> Result<PerSample<Inner>, JacobianError> {
        let n = x.dims()[0];
        self.calls.borrow_mut().push(format!("per_sample {n}"));
        let [inputs, outputs] = self.m.dims();
        let jacobian = self
            .m
            .clone()
            .transpose()
            .unsqueeze_dim::<3>(0)
            .expand([n, outputs, inputs]);
        Ok(PerSample {
            jacobian,
            outputs: self.forward(x),
        })
    }

    fn full_rows(
        &self,
        x: Tensor<Inner, 2>,
        rows: Range<usize>,
    ) -> Result<FullRows<Inner>, JacobianError> {
        self.calls.borrow_mut().push(format!("full_rows {rows:?}"));
        let n = x.dims()[0];
        let [inputs, outputs] = self.m.dims();
        let eye = Tensor::<Inner, 2>::eye(n, &x.device())
            .narrow(0, rows.start, rows.len())
            .reshape([rows.len(), 1, n, 1]);
        let m_t = self.m.clone().transpose().reshape([1, outputs, 1, inputs]);
        Ok(FullRows {
            jacobian: eye * m_t,
            outputs: self.forward(x).narrow(0, rows.start, rows.len()),
        })
    }
}

#[test]
fn a_hand_written_jacobian_goes_through_the_same_engine_as_reverse_mode() {
    let (inputs, outputs, batch) = (3, 2, 5);
    let m = tensor(matrix(inputs, outputs), [inputs, outputs]);
    let hand = HandWritten {
        m: m.clone(),
        calls: RefCell::new(Vec::new()),
    };
    let m_autodiff = Tensor::<B, 2>::from_inner(m);
    let reverse = ReverseMode::new(|x: Tensor<B, 2>| x.matmul(m_autodiff.clone()));
    let x = tensor(matrix(batch, inputs), [batch, inputs]);
    let config = JacobianConfig::new()
        .with_chunk_size(Some(2))
        .with_with_outputs(true);

    let by_hand = per_sample::<_, _, 2, 3>(&hand, x.clone(), &config).unwrap();
    let by_autodiff = per_sample::<_, _, 2, 3>(&reverse, x.clone(), &config).unwrap();
    assert_close(by_hand.jacobian, by_autodiff.jacobian);
    assert_close(by_hand.outputs.unwrap(), by_autodiff.outputs.unwrap());
    assert_eq!(
        hand.calls.take(),
        ["per_sample 2", "per_sample 2", "per_sample 1"],
        "the engine chunks the batch"
    );

    // Full layout: chunk_size 10 blocks of 5 per output sample: rows two at a time.
    let config = JacobianConfig::new().with_chunk_size(Some(10));
    let by_hand = full::<_, _, 2, 4>(&hand, x.clone(), &config)
        .unwrap()
        .jacobian;
    let by_autodiff = full::<_, _, 2, 4>(&reverse, x, &config).unwrap().jacobian;
    assert_close(by_hand, by_autodiff);
    assert_eq!(
        hand.calls.take(),
        ["full_rows 0..2", "full_rows 2..4", "full_rows 4..5"]
    );
}

/// An implementation that returns the wrong shape is caught by the engine.
struct Broken;

impl Differentiable<Inner, 2> for Broken {
    fn forward(&self, x: Tensor<Inner, 2>) -> Tensor<Inner, 2> {
        x
    }
    fn per_sample(&self, x: Tensor<Inner, 2>) -> Result<PerSample<Inner>, JacobianError> {
        let [n, d] = x.dims();
        Ok(PerSample {
            jacobian: Tensor::zeros([n, d + 1, d], &x.device()),
            outputs: x,
        })
    }
    fn full_rows(
        &self,
        x: Tensor<Inner, 2>,
        _: Range<usize>,
    ) -> Result<FullRows<Inner>, JacobianError> {
        Ok(FullRows {
            jacobian: Tensor::zeros([1, 1, 1, 1], &x.device()),
            outputs: x,
        })
    }
}

#[test]
fn a_jacobian_of_the_wrong_shape_is_an_error() {
    let x = tensor(vec![1.0; 6], [3, 2]);
    let err = per_sample::<_, _, 2, 3>(&Broken, x.clone(), &JacobianConfig::new()).unwrap_err();
    assert!(
        matches!(&err, JacobianError::JacobianShape { got, expected } if got == &[3, 3, 2] && expected == &[3, 2, 2]),
        "{err}"
    );
    let err = full::<_, _, 2, 4>(&Broken, x, &JacobianConfig::new()).unwrap_err();
    assert!(matches!(err, JacobianError::JacobianShape { .. }), "{err}");
}

/// The identity on `[n, 2]`, whose Jacobians are right but whose outputs carry a column too
/// many.
struct WrongOutputs;

impl Differentiable<Inner, 2> for WrongOutputs {
    fn forward(&self, x: Tensor<Inner, 2>) -> Tensor<Inner, 2> {
        x
    }
    fn per_sample(&self, x: Tensor<Inner, 2>) -> Result<PerSample<Inner>, JacobianError> {
        let n = x.dims()[0];
        let device = x.device();
        Ok(PerSample {
            jacobian: Tensor::eye(2, &device)
                .unsqueeze_dim::<3>(0)
                .expand([n, 2, 2]),
            outputs: Tensor::zeros([n, 3], &device),
        })
    }
    fn full_rows(
        &self,
        x: Tensor<Inner, 2>,
        rows: Range<usize>,
    ) -> Result<FullRows<Inner>, JacobianError> {
        let n = x.dims()[0];
        let device = x.device();
        Ok(FullRows {
            jacobian: Tensor::zeros([rows.len(), 2, n, 2], &device),
            outputs: Tensor::zeros([rows.len(), 3], &device),
        })
    }
}

#[test]
fn outputs_of_the_wrong_shape_are_an_error() {
    let x = tensor(vec![1.0; 6], [3, 2]);
    let config = JacobianConfig::new().with_with_outputs(true);
    for err in [
        per_sample::<_, _, 2, 3>(&WrongOutputs, x.clone(), &config).unwrap_err(),
        full::<_, _, 2, 4>(&WrongOutputs, x, &config).unwrap_err(),
    ] {
        assert!(
            matches!(&err, JacobianError::OutputShape { batch: 3, output } if output == &[3, 3]),
            "{err}"
        );
    }
}

#[test]
fn magnitudes_count_non_finite_entries_and_keep_them_out_of_the_maxima() {
    // Full layout of 2 samples, 1 output, 2 inputs: [b, k, b', i].
    let entries = vec![1.0, -3.0, f32::NAN, 0.0, 0.5, f32::INFINITY, 2.0, 0.0];
    let j = Jacobian::from_tensor(Layout::Full, 0, tensor(entries.clone(), [2, 1, 2, 2]), &[2]);
    let m = j.magnitudes();
    assert_eq!(m.max_abs, 3.0);
    assert_eq!(m.non_finite, 2);
    // NaN at [0, 0, 1, 0] and Inf at [1, 0, 0, 1]: both off the batch diagonal.
    assert_eq!(m.non_finite_off_diagonal, 2);
    assert_eq!(m.first_non_finite, Some(vec![0, 0, 1, 0]));
    assert_eq!(m.max_abs_off_diagonal, Some(0.5));
    assert!(!m.off_diagonal_is_zero());
    // Finite zeros off the diagonal, but a NaN beside them: no claim of zero blocks.
    let entries_zero_off = vec![1.0, 2.0, 0.0, f32::NAN, 0.0, 0.0, 3.0, 4.0];
    let j = Jacobian::from_tensor(
        Layout::Full,
        0,
        tensor(entries_zero_off, [2, 1, 2, 2]),
        &[2],
    );
    let m = j.magnitudes();
    assert_eq!(m.max_abs_off_diagonal, Some(0.0));
    assert!(!m.off_diagonal_is_zero(), "a NaN off the diagonal");
    // The diagonal of a full Jacobian gathers, it does not multiply: the NaN stays off it.
    let diagonal = batch_diagonal(tensor(entries, [2, 1, 2, 2]));
    assert_eq!(values(diagonal), [1.0, -3.0, 2.0, 0.0]);
    // A chunk that starts later knows its samples' place.
    let j = Jacobian::from_tensor(
        Layout::PerSample,
        7,
        tensor(vec![f32::NAN, 1.0], [1, 1, 2]),
        &[2],
    );
    assert_eq!(j.magnitudes().first_non_finite, Some(vec![7, 0, 0]));
}
