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
use lenet5::{tensor_ops, LeNet5Backend, LeNet5Config};

use common::{assert_close, images_of, variant, variants, wgpu_available};

/// Float rounding apart, the specialised Jacobians equal autodiff's: 1e-5 x max |J| (measured
/// differences are about 1e-6 of it); a wrong row, sample, sign or scale is of order 1.
const TOLERANCE: f32 = 1e-5;

/// Checks every variant of the family, both layouts, on backend `AD::InnerBackend`, against
/// reverse mode on `AD`, its `Autodiff`.
fn check_variants<AD>(device: AD::Device, batch: usize)
where
    AD: AutodiffBackend + LeNet5Backend,
    AD::InnerBackend: LeNet5Backend,
{
    for config in variants() {
        check_backend::<AD>(device.clone(), &config, batch);
    }
}

/// Checks both layouts of the LeNet-5 of `config` on backend `AD::InnerBackend`, against
/// reverse mode on `AD`, its `Autodiff`.
fn check_backend<AD>(device: AD::Device, config: &LeNet5Config, batch: usize)
where
    AD: AutodiffBackend + LeNet5Backend,
    AD::InnerBackend: LeNet5Backend,
{
    let name = format!("{} {}", AD::InnerBackend::name(&device), config.summary());
    let classes = config.num_classes;
    let model_ad = variant::<AD>(config, 1, &device).no_grad();
    let model = model_ad.valid();
    let dims = config.input_dims();
    let [c, h, w] = dims;
    let x = images_of::<AD::InnerBackend>(batch, dims, 2, &device);
    let engine = JacobianConfig::new()
        .with_chunk_size(Some(batch.div_ceil(2)))
        .with_with_outputs(true);

    // The reference: Burn's autodiff, through the engine.
    let reverse = ReverseMode::new(|x| model_ad.forward(x)).with_strategy(Strategy::PerOutput);
    let reference = per_sample::<_, _, 4, 5>(&reverse, x.clone(), &engine).unwrap();
    let reference_full = full::<_, _, 4, 6>(&reverse, x.clone(), &engine)
        .unwrap()
        .jacobian;

    // What the backend computes through the engine: per-sample, its logits, full.
    let specialised = per_sample::<_, _, 4, 5>(&model, x.clone(), &engine).unwrap();
    assert_eq!(specialised.jacobian.dims(), [batch, classes, c, h, w]);
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
    let specialised_full = full::<_, _, 4, 6>(&model, x.clone(), &engine).unwrap();
    assert_close(
        specialised_full.outputs.unwrap(),
        model.forward(x.clone()),
        TOLERANCE,
        &format!("{name}: logits beside the full Jacobian"),
    );
    let specialised_full = specialised_full.jacobian;
    assert_eq!(specialised_full.dims(), [batch, classes, batch, c, h, w]);
    assert_close(
        specialised_full.clone(),
        reference_full.clone(),
        TOLERANCE,
        &format!("{name}: full"),
    );
    assert_off_diagonal_zero(specialised_full, c * h * w, &name);

    // The tensor-op bodies, called directly (on the CPU backends the host kernels may
    // override them).
    let ops = tensor_ops::per_sample(&model, x.clone());
    assert_close(
        ops.jacobian.reshape([batch, classes, c, h, w]),
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
            .reshape([rows.len(), classes, batch, c, h, w]),
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
fn assert_off_diagonal_zero<B: Backend>(full: Tensor<B, 6>, input_len: usize, name: &str) {
    let [batch, classes, ..] = full.dims();
    let values = full.into_data().to_vec::<f32>().unwrap();
    for (block, entries) in values.chunks_exact(input_len).enumerate() {
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
    check_variants::<Autodiff<NdArray>>(Default::default(), 3);
}

#[test]
fn flex_matches_autodiff() {
    check_variants::<Autodiff<Flex>>(Default::default(), 3);
}

/// On wgpu, the question's LeNet5 and the max pooling's argmax on the device; the other
/// variants' ops are the CPU backends' (the same tensor ops), and the application's tests hold
/// every variant to PyTorch on wgpu too (tests/pytorch.rs). Each new shape costs a shader
/// compilation on a software Vulkan driver.
#[test]
fn wgpu_matches_autodiff() {
    if wgpu_available() {
        for config in &variants()[..2] {
            check_backend::<Autodiff<Wgpu>>(Default::default(), config, 3);
        }
    }
}

/// 23 classes: more rows than the host kernels carry back at once (blocks of 10), so several
/// blocks and a partial last one.
#[test]
fn many_classes_match_autodiff() {
    let config = LeNet5Config::new().with_num_classes(23);
    check_backend::<Autodiff<Flex>>(Default::default(), &config, 2);
    check_backend::<Autodiff<NdArray>>(Default::default(), &config, 2);
}

/// Central differences of the same model in float64 against the float32 Jacobian, for every
/// variant.
///
/// In float64 with h = 1e-5, truncation (h^2 / 6 times the third derivative) and rounding
/// (1e-16 |y| / h) errors are both below 1e-10 for logits of order 0.1, and a ReLU or a max
/// pooling's argmax flips within h of a pixel only by chance (the piecewise-linear variants
/// have kinks); what remains is float32 rounding in the Jacobian, about 1e-7 relative to the
/// largest entries. 1e-4 x max |J| leaves a wide margin while still catching a wrong row,
/// sample or sign (errors of order max |J|).
#[test]
fn per_sample_jacobian_matches_central_differences() {
    let device = Default::default();
    let batch = 3;
    for config in variants() {
        let name = config.summary();
        let model = variant::<NdArray>(&config, 7, &device);
        let dims = config.input_dims();
        let [c, h, w] = dims;
        let input_len = c * h * w;
        let classes = config.num_classes;
        let x = images_of::<NdArray>(batch, dims, 7, &device);
        let j = per_sample::<_, _, 4, 3>(&model, x.clone(), &JacobianConfig::new())
            .unwrap()
            .jacobian
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let model64 = model.map(&mut ToF64);
        let logits = |values: &[f64]| -> Vec<f64> {
            let input = Tensor::<NdArray, 4>::from_data(
                TensorData::new(values.to_vec(), [batch, c, h, w]),
                (&device, DType::F64),
            );
            model64.forward(input).into_data().to_vec::<f64>().unwrap()
        };
        let x64: Vec<f64> = x.into_data().iter::<f64>().collect();
        let step = 1e-5;
        let scale = j.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
        let mut worst = 0.0f64;
        // 24 pixels spread over the samples and the image, border and centre included.
        for i in 0..24 {
            let (b, pixel) = (i % batch, (i * 397 + 33) % input_len);
            let mut plus = x64.clone();
            let mut minus = x64.clone();
            plus[b * input_len + pixel] += step;
            minus[b * input_len + pixel] -= step;
            let (yp, ym) = (logits(&plus), logits(&minus));
            for k in 0..classes {
                let fd = (yp[b * classes + k] - ym[b * classes + k]) / (2.0 * step);
                let exact = f64::from(j[(b * classes + k) * input_len + pixel]);
                worst = worst.max((fd - exact).abs() / scale);
            }
        }
        assert!(
            worst < 1e-4,
            "{name}: finite differences differ by {worst:e} x max |J|"
        );
    }
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
#[should_panic(expected = "this LeNet-5 takes images [n, 1, 32, 32]")]
fn images_of_another_size_are_refused() {
    let device = Default::default();
    let model = common::model::<NdArray>(10, 1, &device);
    let x = Tensor::<NdArray, 4>::zeros([2, 1, 28, 28], &device);
    let _ = tensor_ops::per_sample(&model, x);
}
