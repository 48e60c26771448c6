//! What the model crate's tests share: a deterministic LeNet-5 and batch on any backend, the
//! backends to run on, and the comparison with a tolerance relative to the largest entry.
#![allow(dead_code)]

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use lenet5::{LeNet5, LeNet5Config};

/// Set (to anything but "0") in CI: a missing wgpu adapter fails the wgpu tests instead of
/// skipping them.
pub const REQUIRE_WGPU: &str = "LENET_JACOBIAN_REQUIRE_WGPU";

/// Whether wgpu can run here (a GPU, or Mesa's software Vulkan driver); panics when it is
/// required and cannot. burn-wgpu panics on its first operation when there is no adapter.
pub fn wgpu_available() -> bool {
    let probe = std::panic::catch_unwind(|| {
        let device = Default::default();
        Tensor::<burn::backend::Wgpu, 1>::ones([1], &device).into_data()
    });
    match probe {
        Ok(_) => true,
        Err(_) => {
            let required = std::env::var(REQUIRE_WGPU).is_ok_and(|v| v != "0");
            assert!(!required, "{REQUIRE_WGPU} is set but wgpu cannot run");
            eprintln!("notice: skipping the wgpu tests: no wgpu adapter");
            false
        }
    }
}

/// A number in [-1, 1) from an index: the same on every backend and platform.
fn uniform(seed: u64, i: u64) -> f32 {
    // splitmix64
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// Fills every parameter with values drawn like PyTorch's defaults (uniform within
/// 1/sqrt(fan_in)), the same for a seed on every backend.
struct Deterministic {
    seed: u64,
    params: u64,
}

impl<B: Backend> ModuleMapper<B> for Deterministic {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        // Conv2d weights are [out, in, k, k], Linear weights [in, out], biases [out].
        let fan_in = match D {
            4 => dims[1] * dims[2] * dims[3],
            2 => dims[0],
            _ => 25,
        };
        let scale = 1.0 / (fan_in as f32).sqrt();
        let seed = self.seed.wrapping_mul(1000).wrapping_add(self.params);
        self.params += 1;
        let values: Vec<f32> = (0..dims.iter().product::<usize>() as u64)
            .map(|i| uniform(seed, i) * scale)
            .collect();
        let tensor = Tensor::from_data(TensorData::new(values, dims), &tensor.device());
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// A LeNet-5 with `classes` outputs and deterministic weights on `device`.
pub fn model<B: Backend>(classes: usize, seed: u64, device: &B::Device) -> LeNet5<B> {
    variant(&LeNet5Config::new().with_num_classes(classes), seed, device)
}

/// The LeNet-5 of `config` with deterministic weights on `device`.
pub fn variant<B: Backend>(config: &LeNet5Config, seed: u64, device: &B::Device) -> LeNet5<B> {
    config
        .init::<B>(device)
        .map(&mut Deterministic { seed, params: 0 })
}

/// `batch` images of pixels in [0, 1), deterministic, `[batch, 1, 32, 32]`.
pub fn images<B: Backend>(batch: usize, seed: u64, device: &B::Device) -> Tensor<B, 4> {
    images_of(batch, [1, 32, 32], seed, device)
}

/// `batch` images of `dims` with pixels in [0, 1), deterministic.
pub fn images_of<B: Backend>(
    batch: usize,
    dims: [usize; 3],
    seed: u64,
    device: &B::Device,
) -> Tensor<B, 4> {
    let len = batch * dims.iter().product::<usize>();
    let values: Vec<f32> = (0..len as u64)
        .map(|i| (uniform(seed, i) + 1.0) / 2.0)
        .collect();
    let [c, h, w] = dims;
    Tensor::from_data(TensorData::new(values, [batch, c, h, w]), device)
}

/// The variants the family's tests run: the question's LeNet5, PyTorch's tutorial Net (ReLU,
/// max pooling), d2l's (sigmoid, padding 2 on 28 x 28), and a colour one with tanh and max
/// pooling whose fc1 is written as a third convolution.
pub fn variants() -> [LeNet5Config; 4] {
    use lenet5::{Activation, Pooling};
    [
        LeNet5Config::new(),
        LeNet5Config::new()
            .with_activation(Activation::Relu)
            .with_pooling(Pooling::Max),
        LeNet5Config::new()
            .with_activation(Activation::Sigmoid)
            .with_padding(2),
        LeNet5Config::new()
            .with_in_channels(3)
            .with_pooling(Pooling::Max)
            .with_num_classes(7)
            .with_conv3(true),
    ]
}

/// Asserts `got` equals `reference` within `relative` times the reference's largest |entry|,
/// entry by entry; returns that largest entry.
pub fn assert_close<B: Backend, B2: Backend, const D: usize>(
    got: Tensor<B, D>,
    reference: Tensor<B2, D>,
    relative: f32,
    what: &str,
) -> f32 {
    assert_eq!(got.dims(), reference.dims(), "{what}: shapes");
    let reference = reference
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap();
    let got = got.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: the reference is all zeros");
    let (worst, at) = got
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold(
            (0.0f32, 0),
            |(m, at), (i, d)| if d > m { (d, i) } else { (m, at) },
        );
    let error = worst / scale;
    eprintln!("{what}: {error:e} x max |J|");
    assert!(
        error <= relative,
        "{what}: {error:e} x max |J| = {scale:e} (at {at}: {} against {}), more than {relative:e}",
        got[at],
        reference[at]
    );
    scale
}
