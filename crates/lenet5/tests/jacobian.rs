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

// ---------------------------------------------------------------------------------------------
// The Jacobian in the graph (`lenet5::differentiable`), against PyTorch's double backward
// (tests/fixtures/penalty/, made by scripts/make_penalty_fixtures.py).

mod penalty {
    use std::path::{Path, PathBuf};

    use burn::backend::{Autodiff, Flex, NdArray};
    use burn::module::Module;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::prelude::ToElement;
    use burn::tensor::backend::{AutodiffBackend, Backend};
    use burn::tensor::{Int, Tensor, TensorData};
    use lenet5::differentiable::{
        hessian, jacobian_penalty, squared_jacobian_norms, NormEstimator,
    };
    use lenet5::import::{self, ImportConfig};
    use lenet5::{tensor_ops, LeNet5};

    /// The weight gradients PyTorch and Burn compute, each in float32 in its own order: the
    /// issue's bar, 1e-4 of each tensor's largest entry (seen: about 1e-6).
    const TOLERANCE: f32 = 1e-4;

    fn case(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/penalty")
            .join(name)
    }

    fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let array = npyz::NpyFile::new(&bytes[..]).unwrap();
        let shape = array.shape().iter().map(|&d| d as usize).collect();
        (shape, array.into_vec::<f32>().unwrap())
    }

    fn tensor<B: Backend, const D: usize>(path: &Path, device: &B::Device) -> Tensor<B, D> {
        let (shape, values) = npy(path);
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    fn labels<B: Backend>(path: &Path, device: &B::Device) -> Tensor<B, 1, Int> {
        let bytes = std::fs::read(path).unwrap();
        let values = npyz::NpyFile::new(&bytes[..])
            .unwrap()
            .into_vec::<i64>()
            .unwrap();
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [n]), device)
    }

    fn json(case: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(case.join("case.json")).unwrap()).unwrap()
    }

    /// The case's model on `B`, its architecture from case.json.
    fn model<B: Backend>(case: &Path, device: &B::Device) -> LeNet5<B> {
        let config = &json(case)["config"];
        let stated = ImportConfig::new()
            .with_activation(Some(
                config["activation"].as_str().unwrap().parse().unwrap(),
            ))
            .with_pooling(Some(config["pooling"].as_str().unwrap().parse().unwrap()));
        import::load::<B>(&case.join("lenet5.pt"), &stated, device)
            .unwrap()
            .model
    }

    /// Each parameter's gradient against PyTorch's file of it (PyTorch's names and layouts).
    fn assert_gradients_match<B: AutodiffBackend>(
        model: &LeNet5<B>,
        grads: &B::Gradients,
        dir: &Path,
        what: &str,
    ) {
        let device = model.devices()[0].clone();
        let conv = |name: &str, w: &burn::module::Param<Tensor<B, 4>>| {
            let torch = tensor::<B::InnerBackend, 4>(&dir.join(format!("{name}.npy")), &device);
            super::assert_close(
                w.grad(grads).unwrap(),
                torch,
                TOLERANCE,
                &format!("{what} {name}"),
            );
        };
        // Burn's Linear weight is [in, out], PyTorch's [out, in].
        let linear = |name: &str, w: &burn::module::Param<Tensor<B, 2>>| {
            let torch = tensor::<B::InnerBackend, 2>(&dir.join(format!("{name}.npy")), &device);
            let ours = w.grad(grads).unwrap().transpose();
            super::assert_close(ours, torch, TOLERANCE, &format!("{what} {name}"));
        };
        let bias = |name: &str, b: &Option<burn::module::Param<Tensor<B, 1>>>| {
            let torch = tensor::<B::InnerBackend, 1>(&dir.join(format!("{name}.npy")), &device);
            let b = b.as_ref().unwrap();
            // A bias the loss does not reach has no gradient in Burn, zeros in PyTorch.
            let ours = b
                .grad(grads)
                .unwrap_or_else(|| Tensor::zeros(b.dims(), &device));
            let scale = torch.clone().abs().max().into_scalar().to_f32();
            if scale == 0.0 {
                let worst = ours.abs().max().into_scalar().to_f32();
                assert_eq!(worst, 0.0, "{what} {name}: PyTorch's gradient is zero");
            } else {
                super::assert_close(ours, torch, TOLERANCE, &format!("{what} {name}"));
            }
        };
        conv("feature_extractor.0.weight", &model.conv1.weight);
        bias("feature_extractor.0.bias", &model.conv1.bias);
        conv("feature_extractor.3.weight", &model.conv2.weight);
        bias("feature_extractor.3.bias", &model.conv2.bias);
        linear("classifier.0.weight", &model.fc1.weight);
        bias("classifier.0.bias", &model.fc1.bias);
        linear("classifier.2.weight", &model.fc2.weight);
        bias("classifier.2.bias", &model.fc2.bias);
        linear("classifier.4.weight", &model.fc3.weight);
        bias("classifier.4.bias", &model.fc3.bias);
    }

    /// The penalty, the penalised loss and a contraction of the Jacobian backpropagated, for
    /// the tanh / average and the ReLU / max variants.
    fn check_penalty<B: AutodiffBackend>(device: B::Device) {
        for name in ["tanh_avg", "relu_max"] {
            let dir = case(name);
            let values = json(&dir);
            let lambda = values["lam"].as_f64().unwrap();
            let what = format!("{name} {}", B::name(&device));
            let model = model::<B>(&dir, &device);
            let x = tensor::<B, 4>(&dir.join("input.npy"), &device);

            let penalty = jacobian_penalty(&model, x.clone(), lambda, NormEstimator::Exact);
            let p = penalty.penalty.clone().into_scalar().to_f64();
            let torch_p = values["penalty"].as_f64().unwrap();
            assert!(
                (p - torch_p).abs() <= 1e-5 * torch_p,
                "{what}: penalty {p} against {torch_p}"
            );
            let grads = penalty.penalty.backward();
            assert_gradients_match(
                &model,
                &grads,
                &dir.join("grad_penalty"),
                &format!("{what} penalty"),
            );

            let penalty = jacobian_penalty(&model, x.clone(), lambda, NormEstimator::Exact);
            let targets = labels::<B>(&dir.join("labels.npy"), &device);
            let ce = CrossEntropyLossConfig::new()
                .init(&device)
                .forward(penalty.logits, targets);
            let grads = (ce + penalty.penalty).backward();
            assert_gradients_match(
                &model,
                &grads,
                &dir.join("grad_total"),
                &format!("{what} total"),
            );

            // d/dx sum(J * V): the Jacobian is differentiable with respect to its input too.
            let x = x.require_grad();
            let j = tensor_ops::per_sample(&model.clone().no_grad(), x.clone()).jacobian;
            let v = tensor::<B, 5>(&dir.join("contraction_v.npy"), &device);
            let [n, k, c, h, w] = v.dims();
            let grads = (j * v.reshape([n, k, c * h * w])).sum().backward();
            let torch =
                tensor::<B::InnerBackend, 4>(&dir.join("grad_input_contraction.npy"), &device);
            let torch_scale = torch.clone().abs().max().into_scalar().to_f32();
            match x.grad(&grads) {
                Some(ours) if torch_scale > 0.0 => {
                    super::assert_close(ours, torch, TOLERANCE, &format!("{what} input"));
                }
                // ReLU / max is piecewise linear: PyTorch's gradient is zero, and ours too
                // (the input does not reach the Jacobian in the graph).
                ours => {
                    assert_eq!(torch_scale, 0.0, "{what}: no input gradient");
                    let worst = ours.map_or(0.0, |g| g.abs().max().into_scalar().to_f32());
                    assert_eq!(worst, 0.0, "{what}: input gradient");
                }
            }
        }
    }

    #[test]
    fn penalty_gradients_match_torch_double_backward_on_ndarray() {
        check_penalty::<Autodiff<NdArray>>(Default::default());
    }

    #[test]
    fn penalty_gradients_match_torch_double_backward_on_flex() {
        check_penalty::<Autodiff<Flex>>(Default::default());
    }

    /// Hoffman et al.'s estimator is unbiased: over 1000 random projections, its mean is the
    /// exact squared norm.
    #[test]
    fn projection_estimate_averages_to_the_exact_penalty() {
        type B = Autodiff<Flex>;
        let device = Default::default();
        let dir = case("tanh_avg");
        let model = model::<B>(&dir, &device).no_grad();
        let x = tensor::<B, 4>(&dir.join("input.npy"), &device);
        B::seed(&device, 7);
        let exact = squared_jacobian_norms(&model, x.clone(), NormEstimator::Exact).0;
        let estimate = squared_jacobian_norms(&model, x, NormEstimator::Projections(1000)).0;
        let exact = exact.mean().into_scalar().to_f64();
        let estimate = estimate.mean().into_scalar().to_f64();
        let error = (estimate - exact).abs() / exact;
        eprintln!(
            "1000 projections: {estimate:e} against {exact:e}, {:.2}%",
            100.0 * error
        );
        assert!(error <= 0.02, "{:.2}% off the exact penalty", 100.0 * error);
    }

    fn check_hessian<B: AutodiffBackend>(device: B::Device) {
        let dir = case("hessian_tanh");
        let class = json(&dir)["class"].as_u64().unwrap() as usize;
        let model = model::<B>(&dir, &device);
        let x = tensor::<B::InnerBackend, 4>(&dir.join("input.npy"), &device);
        let ours = hessian(&model, x, class, 256);
        let torch = tensor::<B::InnerBackend, 7>(&dir.join("hessian.npy"), &device);
        let torch = torch.reshape([1, 1024, 1024]);
        super::assert_close(
            ours,
            torch,
            TOLERANCE,
            &format!("hessian {}", B::name(&device)),
        );
    }

    #[test]
    fn hessian_matches_torch_on_ndarray_and_flex() {
        check_hessian::<Autodiff<NdArray>>(Default::default());
        check_hessian::<Autodiff<Flex>>(Default::default());
    }
}
