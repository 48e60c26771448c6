//! The engine on a model it has never heard of: a two-layer MLP with tanh, defined here with
//! `#[derive(Module)]`, whose Jacobian is known in closed form,
//!
//! `J(x) = W2 diag(1 - tanh^2(W1 x + b1)) W1`
//!
//! (`W1`, `W2` as matrices acting on column vectors; Burn's `Linear` stores their transposes).
//! The engine's per-sample and full Jacobians are checked against it, computed by hand on the
//! host in f64.
//!
//! ```sh
//! cargo run --release --example custom_model
//! ```

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{activation, Distribution, Tensor};
use jacobian::{
    batch_diagonal, full, per_sample, spectral_norms, Jacobian, JacobianConfig, Layout,
    ReverseMode, Strategy,
};

/// A user's model: `tanh(x W1 + b1) W2 + b2`.
#[derive(Module, Debug)]
struct Mlp<B: Backend> {
    hidden: Linear<B>,
    output: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    fn new(inputs: usize, hidden: usize, outputs: usize, device: &B::Device) -> Self {
        Mlp {
            hidden: LinearConfig::new(inputs, hidden).init(device),
            output: LinearConfig::new(hidden, outputs).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.output
            .forward(activation::tanh(self.hidden.forward(x)))
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("f64 values")
}

fn host_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().expect("f32 values")
}

type B = Autodiff<Flex>;

fn main() {
    let (batch, inputs, hidden, outputs) = (4, 6, 8, 3);
    let device = Default::default();
    B::seed(&device, 3);
    // no_grad: input Jacobians never need the weights' gradients.
    let model = Mlp::<B>::new(inputs, hidden, outputs, &device).no_grad();
    let x = Tensor::<B, 2>::random([batch, inputs], Distribution::Normal(0.0, 1.0), &device);

    // Burn's Linear: y = x W + b with W of shape [in, out], so W[i, j] is the math W_m[j, i].
    let w1 = host(model.hidden.weight.val()); // [inputs, hidden]
    let b1 = host(model.hidden.bias.as_ref().expect("bias").val()); // [hidden]
    let w2 = host(model.output.weight.val()); // [hidden, outputs]
    let xs = host(x.clone()); // [batch, inputs]

    // J[b, k, i] = sum_h W2m[k, h] (1 - tanh^2(a[b, h])) W1m[h, i], a = W1m x + b1.
    let mut analytic = vec![0.0f64; batch * outputs * inputs];
    for b in 0..batch {
        for h in 0..hidden {
            let a = b1[h]
                + (0..inputs)
                    .map(|i| w1[i * hidden + h] * xs[b * inputs + i])
                    .sum::<f64>();
            let slope = 1.0 - a.tanh().powi(2);
            for k in 0..outputs {
                for i in 0..inputs {
                    analytic[(b * outputs + k) * inputs + i] +=
                        w2[h * outputs + k] * slope * w1[i * hidden + h];
                }
            }
        }
    }
    let scale = analytic.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let relative_error = |values: &[f32]| {
        values
            .iter()
            .zip(&analytic)
            .fold(0.0f64, |m, (&got, &exact)| {
                m.max((f64::from(got) - exact).abs())
            })
            / scale
    };

    println!(
        "MLP {inputs} -> tanh({hidden}) -> {outputs} on {batch} samples, on Autodiff<Flex>; \
         Jacobian against W2 diag(1 - tanh^2(W1 x + b1)) W1 (largest |J| {scale:.4}):"
    );
    let x = x.inner();
    for strategy in [Strategy::PerOutput, Strategy::StackedOutputs] {
        let f = ReverseMode::new(|x| model.forward(x)).with_strategy(strategy);
        let config = JacobianConfig::new().with_chunk_size(Some(3));
        let j = per_sample::<_, _, 2, 3>(&f, x.clone(), &config).expect("per-sample Jacobian");
        assert_eq!(j.jacobian.dims(), [batch, outputs, inputs]);
        let error = relative_error(&host_f32(j.jacobian));
        println!("  per-sample, {strategy:?}, chunks of 3: max error / max |J| = {error:.2e}");
        assert!(error < 1e-5, "{strategy:?}: {error}");
    }

    let f = ReverseMode::new(|x| model.forward(x));
    let whole = full::<_, _, 2, 4>(&f, x, &JacobianConfig::new())
        .expect("full Jacobian")
        .jacobian;
    assert_eq!(whole.dims(), [batch, outputs, batch, inputs]);
    let magnitudes = Jacobian::from_tensor(Layout::Full, 0, whole.clone(), &[inputs]).magnitudes();
    let diagonal = Jacobian::from_tensor(Layout::PerSample, 0, batch_diagonal(whole), &[inputs]);
    let error = relative_error(&diagonal.values);
    let off = magnitudes.max_abs_off_diagonal.expect("full layout");
    println!("  full: diagonal blocks max error / max |J| = {error:.2e}, largest |J| off the diagonal = {off:e}");
    assert!(error < 1e-5, "full: {error}");
    assert!(
        magnitudes.off_diagonal_is_zero(),
        "the samples are independent"
    );

    let norms: Vec<String> = spectral_norms(&diagonal)
        .iter()
        .map(|n| format!("{n:.4}"))
        .collect();
    println!(
        "  spectral norm of each sample's {outputs} x {inputs} Jacobian: {}",
        norms.join(", ")
    );
}
