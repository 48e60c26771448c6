//! LeNet-5's input Jacobians, on ndarray, flex and wgpu: what each backend's
//! `LeNet5Backend` computes (the host kernels on the CPU backends when the `host` feature is
//! on, the tensor-op bodies otherwise and on wgpu), and the tensor-op bodies called directly,
//! against Burn's autodiff through the `jacobian` engine; float64 finite differences; the zero
//! blocks of the full layout.
//!
//! `cargo test -p lenet5` builds this crate without the `host` feature: every backend then
//! computes with tensor ops on its own device. In the workspace the application turns `host`
//! on, and the CPU backends are checked with the host kernels.

mod common;

use burn::backend::{Autodiff, Flex, NdArray, Wgpu};
use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorData};
use jacobian::{full, per_sample, JacobianConfig, ReverseMode, Strategy};
use lenet5::{tensor_ops, LeNet5Backend, IMAGE_LEN};

use common::{assert_close, images, model, wgpu_available};

/// Float rounding apart, the specialised Jacobians equal autodiff's: 1e-5 x max |J| (measured
/// differences are about 1e-6 of it); a wrong row, sample, sign or scale is of order 1.
const TOLERANCE: f32 = 1e-5;

/// Checks both layouts on backend `AD::InnerBackend`, against reverse mode on `AD`, its
/// `Autodiff`.
fn check_backend<AD>(device: AD::Device, classes: usize, batch: usize)
where
    AD: AutodiffBackend + LeNet5Backend,
    AD::InnerBackend: LeNet5Backend,
{
    let name = AD::InnerBackend::name(&device);
    let model_ad = model::<AD>(classes, 1, &device).no_grad();
    let model = model_ad.valid();
    let x = images::<AD::InnerBackend>(batch, 2, &device);
    let config = JacobianConfig::new()
        .with_chunk_size(Some(batch.div_ceil(2)))
        .with_with_outputs(true);

    // The reference: Burn's autodiff, through the engine.
    let reverse = ReverseMode::new(|x| model_ad.forward(x)).with_strategy(Strategy::PerOutput);
    let reference = per_sample::<_, _, 4, 5>(&reverse, x.clone(), &config).unwrap();
    let reference_full = full::<_, _, 4, 6>(&reverse, x.clone(), &config)
        .unwrap()
        .jacobian;

    // What the backend computes through the engine: per-sample, its logits, full.
    let specialised = per_sample::<_, _, 4, 5>(&model, x.clone(), &config).unwrap();
    assert_eq!(specialised.jacobian.dims(), [batch, classes, 1, 32, 32]);
    assert_close(
        specialised.jacobian.clone(),
        reference.jacobian.clone(),
        TOLERANCE,
        &format!("{name}: per-sample"),
    );
    assert_close(
        specialised.outputs.unwrap(),
        model.forward(x.clone()),
        TOLERANCE,
        &format!("{name}: logits beside the Jacobian"),
    );
    let specialised_full = full::<_, _, 4, 6>(&model, x.clone(), &config).unwrap();
    assert_close(
        specialised_full.outputs.unwrap(),
        model.forward(x.clone()),
        TOLERANCE,
        &format!("{name}: logits beside the full Jacobian"),
    );
    let specialised_full = specialised_full.jacobian;
    assert_eq!(specialised_full.dims(), [batch, classes, batch, 1, 32, 32]);
    assert_close(
        specialised_full.clone(),
        reference_full.clone(),
        TOLERANCE,
        &format!("{name}: full"),
    );
    assert_off_diagonal_zero(specialised_full, &name);

    // The tensor-op bodies, called directly (on the CPU backends the host kernels may
    // override them).
    let ops = tensor_ops::per_sample(&model, x.clone());
    assert_close(
        ops.jacobian.reshape([batch, classes, 1, 32, 32]),
        reference.jacobian.clone(),
        TOLERANCE,
        &format!("{name}: tensor ops, per-sample"),
    );
    // The rows of the second half of the samples, and their logits.
    let rows = batch / 2..batch;
    let ops_full = tensor_ops::full_rows(&model, x.clone(), rows.clone());
    assert_close(
        ops_full
            .jacobian
            .reshape([rows.len(), classes, batch, 1, 32, 32]),
        reference_full.narrow(0, rows.start, rows.len()),
        TOLERANCE,
        &format!("{name}: tensor ops, full"),
    );
    assert_close(
        ops_full.outputs,
        model.forward(x.clone()).narrow(0, rows.start, rows.len()),
        TOLERANCE,
        &format!("{name}: tensor ops, logits beside the full rows"),
    );

    // Autodiff delegates to its inner backend: the same values.
    let delegated = AD::lenet5_per_sample(&model_ad, Tensor::from_inner(x.clone()));
    assert_eq!(
        delegated.jacobian.inner().into_data(),
        AD::InnerBackend::lenet5_per_sample(&model, x)
            .jacobian
            .into_data(),
        "{name}: Autodiff delegates to its inner backend"
    );
}

/// Every block with `b != b'` of a full Jacobian `[B, O, B, ...]` is exactly zero, and the
/// diagonal blocks are not.
fn assert_off_diagonal_zero<B: Backend>(full: Tensor<B, 6>, name: &str) {
    let [batch, classes, ..] = full.dims();
    let values = full.into_data().to_vec::<f32>().unwrap();
    for (block, entries) in values.chunks_exact(IMAGE_LEN).enumerate() {
        let (b, b2) = (block / (classes * batch), block % batch);
        if b != b2 {
            assert!(
                entries.iter().all(|&v| v == 0.0),
                "{name}: block [{b}, {}, {b2}] is not zero",
                block / batch % classes
            );
        } else {
            assert!(
                entries.iter().any(|&v| v != 0.0),
                "{name}: a diagonal block is zero"
            );
        }
    }
}

#[test]
fn ndarray_matches_autodiff() {
    check_backend::<Autodiff<NdArray>>(Default::default(), 10, 3);
}

#[test]
fn flex_matches_autodiff() {
    check_backend::<Autodiff<Flex>>(Default::default(), 10, 3);
}

#[test]
fn wgpu_matches_autodiff() {
    if wgpu_available() {
        check_backend::<Autodiff<Wgpu>>(Default::default(), 10, 3);
    }
}

/// 23 classes: more rows than the host kernels carry back at once (blocks of 10), so several
/// blocks and a partial last one.
#[test]
fn many_classes_match_autodiff() {
    check_backend::<Autodiff<Flex>>(Default::default(), 23, 2);
    check_backend::<Autodiff<NdArray>>(Default::default(), 23, 2);
}

/// Central differences of the same model in float64 against the float32 Jacobian.
///
/// In float64 with h = 1e-3, truncation (h^2/6 * f''') and rounding (1e-16 |y| / h) errors are
/// both below 1e-9 for logits of order 0.1; what remains is float32 rounding in the Jacobian,
/// about 1e-7 relative to the largest entries. 1e-4 x max |J| leaves a wide margin while still
/// catching a wrong row, sample or sign (errors of order max |J|).
#[test]
fn per_sample_jacobian_matches_central_differences() {
    let device = Default::default();
    let batch = 3;
    let model = model::<NdArray>(10, 7, &device);
    let x = images::<NdArray>(batch, 7, &device);
    let j = per_sample::<_, _, 4, 3>(&model, x.clone(), &JacobianConfig::new())
        .unwrap()
        .jacobian
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let model64 = model.map(&mut ToF64);
    let logits = |values: &[f64]| -> Vec<f64> {
        let input = Tensor::<NdArray, 4>::from_data(
            TensorData::new(values.to_vec(), [batch, 1, 32, 32]),
            (&device, DType::F64),
        );
        model64.forward(input).into_data().to_vec::<f64>().unwrap()
    };
    let x64: Vec<f64> = x.into_data().iter::<f64>().collect();
    let h = 1e-3;
    let scale = j.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let mut worst = 0.0f64;
    // 24 pixels spread over the samples and the image, border and centre included.
    for i in 0..24 {
        let (b, pixel) = (i % batch, (i * 397 + 33) % IMAGE_LEN);
        let mut plus = x64.clone();
        let mut minus = x64.clone();
        plus[b * IMAGE_LEN + pixel] += h;
        minus[b * IMAGE_LEN + pixel] -= h;
        let (yp, ym) = (logits(&plus), logits(&minus));
        for k in 0..10 {
            let fd = (yp[b * 10 + k] - ym[b * 10 + k]) / (2.0 * h);
            let exact = f64::from(j[(b * 10 + k) * IMAGE_LEN + pixel]);
            worst = worst.max((fd - exact).abs() / scale);
        }
    }
    assert!(
        worst < 1e-4,
        "finite differences differ by {worst:e} x max |J|"
    );
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

#[test]
#[should_panic(expected = "LeNet-5 takes images [n, 1, 32, 32]")]
fn images_of_another_size_are_refused() {
    let device = Default::default();
    let model = model::<NdArray>(10, 1, &device);
    let x = Tensor::<NdArray, 4>::zeros([2, 1, 28, 28], &device);
    let _ = tensor_ops::per_sample(&model, x);
}
