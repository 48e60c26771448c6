//! The Jacobian of LeNet-5: shapes, the zero blocks, finite differences, backend agreement.

mod common;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{AutodiffModule, Module};
use burn::module::{ModuleMapper, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use burn::tensor::{Tensor, TensorData};
use jacobian::{batch_diagonal, full, per_sample, Jacobian, JacobianConfig, Layout, Strategy};
use lenet_jacobian::backend::{run_on, BackendJob};
use lenet_jacobian::error::Result;
use lenet_jacobian::model::{load_model, Batch, SAMPLE_LEN};

use common::{backends, relative_error};

const SEED: u64 = 7;

/// Both layouts of a seeded LeNet-5 on a seeded batch, on some backend.
struct BothLayouts {
    batch: usize,
    strategy: Strategy,
}

impl BackendJob for &BothLayouts {
    type Output = (Jacobian, Jacobian);
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<(Jacobian, Jacobian)> {
        let model = load_model::<B>(None, SEED, &device)?.no_grad();
        let x = Batch::random(self.batch, SEED).to_tensor::<B>(&device);
        let config = JacobianConfig {
            strategy: self.strategy,
            chunk_size: Some(2),
            ..JacobianConfig::default()
        };
        let ps = per_sample(|x| model.forward(x), x.clone(), &config)?;
        let fl = full(|x| model.forward(x), x, &config, u128::MAX)?;
        Ok((ps, fl))
    }
}

#[test]
fn layouts_have_torch_shapes_and_per_sample_is_the_batch_diagonal() {
    for strategy in [Strategy::PerOutput, Strategy::StackedOutputs] {
        let job = BothLayouts { batch: 3, strategy };
        let (ps, fl) = run_on(lenet_jacobian::backend::BackendKind::Ndarray, &job).unwrap();
        assert_eq!(ps.shape, [3, 10, 1, 32, 32]);
        assert_eq!(fl.shape, [3, 10, 3, 1, 32, 32]);
        assert_eq!(ps.layout, Layout::PerSample);
        // Same passes, same arithmetic per sample: equal up to float reassociation in a batch.
        let diagonal = batch_diagonal(&fl);
        assert!(
            relative_error(&ps.values, &diagonal.values) < 1e-5,
            "{strategy:?}"
        );
        // LeNet-5 never mixes samples: the off-diagonal blocks are exactly zero.
        assert_eq!(fl.max_abs_off_diagonal(), Some(0.0));
        assert!(fl.max_abs() > 1e-4, "a real Jacobian, not zeros");
    }
}

/// Central differences of the same model in float64 against the float32 autodiff Jacobian.
///
/// In float64 with h = 1e-3, truncation (h^2/6 * f''') and rounding (1e-16 |y| / h) errors are
/// both below 1e-9 for logits of order 0.1; what remains is float32 rounding in the autodiff
/// result, about 1e-7 relative to the largest entries. 1e-4 x max |J| leaves a wide margin
/// while still catching a wrong row, sample or sign (those are errors of order max |J|).
#[test]
fn per_sample_jacobian_matches_central_differences() {
    type B = Autodiff<NdArray>;
    type B64 = NdArray;
    let device = Default::default();
    let batch = 3;
    let model = load_model::<B>(None, SEED, &device).unwrap().no_grad();
    let x = Batch::random(batch, SEED);
    let j = per_sample(
        |x| model.forward(x),
        x.to_tensor::<B>(&device),
        &JacobianConfig::default(),
    )
    .unwrap();
    // The same weights in float64.
    let bytes = lenet5::import::to_burnpack_bytes(&model).unwrap();
    let model64 = lenet5::import::from_burnpack_bytes::<NdArray>(bytes, 10, &device)
        .unwrap()
        .map(&mut ToF64);
    let logits = |values: &[f64]| -> Vec<f64> {
        let input = Tensor::<B64, 4>::from_data(
            TensorData::new(values.to_vec(), [batch, 1, 32, 32]),
            (&device, DType::F64),
        );
        model64.forward(input).into_data().to_vec::<f64>().unwrap()
    };
    let x64: Vec<f64> = x.values.iter().map(|&v| v as f64).collect();
    let h = 1e-3;
    let scale = j.max_abs() as f64;
    let mut worst = 0.0f64;
    // 24 pixels spread over the samples and the image, border and centre included.
    for i in 0..24 {
        let (b, pixel) = (i % batch, (i * 397 + 33) % SAMPLE_LEN);
        let mut plus = x64.clone();
        let mut minus = x64.clone();
        plus[b * SAMPLE_LEN + pixel] += h;
        minus[b * SAMPLE_LEN + pixel] -= h;
        let (yp, ym) = (logits(&plus), logits(&minus));
        for k in 0..10 {
            let fd = (yp[b * 10 + k] - ym[b * 10 + k]) / (2.0 * h);
            let ad = j.values[(b * 10 + k) * SAMPLE_LEN + pixel] as f64;
            worst = worst.max((fd - ad).abs() / scale);
        }
    }
    assert!(
        worst < 1e-4,
        "finite differences differ by {worst:e} x max |J|"
    );
}

#[test]
fn backends_agree_within_1e4_of_the_largest_entry() {
    let job = BothLayouts {
        batch: 3,
        strategy: Strategy::StackedOutputs,
    };
    let (reference_ps, reference_full) =
        run_on(lenet_jacobian::backend::BackendKind::Ndarray, &job).unwrap();
    for backend in backends() {
        let (ps, fl) = run_on(backend, &job).unwrap();
        let e_ps = relative_error(&ps.values, &reference_ps.values);
        let e_full = relative_error(&fl.values, &reference_full.values);
        eprintln!("{backend}: per-sample {e_ps:e}, full {e_full:e} x max |J| from ndarray");
        assert!(
            e_ps <= 1e-4,
            "{backend} per-sample differs by {e_ps:e} x max |J|"
        );
        assert!(
            e_full <= 1e-4,
            "{backend} full differs by {e_full:e} x max |J|"
        );
    }
}

#[test]
fn seeded_weights_are_the_same_on_every_backend() {
    // Flex's own generator is not reproducible; the application draws on ndarray and moves
    // the weights. Same logits on ndarray and flex for a seed.
    let device = Default::default();
    let x = Batch::random(2, 3);
    let a = load_model::<NdArray>(None, 11, &device)
        .unwrap()
        .forward(x.to_tensor(&device))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let b = load_model::<Flex>(None, 11, &Default::default())
        .unwrap()
        .forward(x.to_tensor(&Default::default()))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(relative_error(&b, &a) < 1e-5);
    let c = load_model::<NdArray>(None, 12, &device)
        .unwrap()
        .forward(x.to_tensor(&device))
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(relative_error(&c, &a) > 1e-2, "another seed, other weights");
}

/// Casts every parameter to float64.
struct ToF64;

impl ModuleMapper<NdArray> for ToF64 {
    fn map_float<const D: usize>(
        &mut self,
        param: Param<Tensor<NdArray, D>>,
    ) -> Param<Tensor<NdArray, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(DType::F64), mapper)
    }
}

/// The specialised path (one forward pass, hand-written backward sweep, no autodiff) against the
/// autodiff engine, on every backend.
struct AnalyticAndAutodiff;

impl BackendJob for &AnalyticAndAutodiff {
    type Output = [(Vec<f32>, Vec<f32>); 2];
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<Self::Output> {
        let model = load_model::<B>(None, SEED, &device)?.no_grad();
        let x = Batch::random(5, SEED + 1).to_tensor::<B>(&device);
        let config = JacobianConfig::default();
        let autodiff = per_sample(|x| model.forward(x), x.clone(), &config)?;
        let autodiff_full = full(|x| model.forward(x), x.clone(), &config, u128::MAX)?;
        let analytic = model.valid().input_jacobian(x.clone().inner());
        let analytic_full = model.valid().input_jacobian_full(x.inner());
        assert_eq!(analytic.dims(), [5, 10, 1, 32, 32]);
        assert_eq!(analytic_full.dims(), [5, 10, 5, 1, 32, 32]);
        Ok([
            (
                analytic.into_data().to_vec::<f32>().unwrap(),
                autodiff.values,
            ),
            (
                analytic_full.into_data().to_vec::<f32>().unwrap(),
                autodiff_full.values,
            ),
        ])
    }
}

#[test]
fn analytic_path_equals_the_autodiff_engine() {
    for backend in backends() {
        let [(ps, ps_autodiff), (fl, fl_autodiff)] = run_on(backend, &AnalyticAndAutodiff).unwrap();
        for (layout, analytic, autodiff) in
            [("per-sample", ps, ps_autodiff), ("full", fl, fl_autodiff)]
        {
            let error = relative_error(&analytic, &autodiff);
            eprintln!("{backend} {layout}: analytic vs autodiff {error:e} x max |J|");
            assert!(error <= 1e-5, "{backend} {layout}: {error:e} x max |J|");
        }
    }
}

/// More classes than the specialised path carries back in one block of rows (10), and a last
/// block that is not full: every row must still land on its own logit.
#[test]
fn analytic_path_with_many_classes_equals_the_autodiff_engine() {
    type B = Autodiff<Flex>;
    let device = Default::default();
    let model = lenet5::LeNet5Config::new()
        .with_num_classes(23)
        .init::<B>(&device)
        .no_grad();
    let x = Batch::random(3, SEED).to_tensor::<B>(&device);
    let config = JacobianConfig::default();
    let autodiff = per_sample(|x| model.forward(x), x.clone(), &config).unwrap();
    let autodiff_full = full(|x| model.forward(x), x.clone(), &config, u128::MAX).unwrap();
    let analytic = model.valid().input_jacobian(x.clone().inner());
    let analytic_full = model.valid().input_jacobian_full(x.inner());
    assert_eq!(analytic.dims(), [3, 23, 1, 32, 32]);
    for (layout, analytic, autodiff) in [
        ("per-sample", analytic.into_data(), autodiff.values),
        ("full", analytic_full.into_data(), autodiff_full.values),
    ] {
        let error = relative_error(&analytic.to_vec::<f32>().unwrap(), &autodiff);
        assert!(error <= 1e-5, "{layout}: {error:e} x max |J|");
    }
}
