//! What input Jacobians say of a classifier's robustness: the input gradient of its
//! cross-entropy from the per-sample Jacobian, and the attacks built on it, FGSM and PGD
//! (L-infinity), for any [`Differentiable`] classifier whose outputs are logits.
//!
//! Every image stays on the backend's device; perturbed images are clipped to `[0, 1]`, the
//! range of pixels. Each function panics when there is not one label per sample, or a label
//! is not a class of `f`: check labels where they are read.
//!
//! ```
//! use burn::backend::{Autodiff, NdArray};
//! use burn::module::Module;
//! use burn::nn::LinearConfig;
//! use burn::tensor::{Distribution, Tensor};
//! use jacobian::attacks::{accuracy, cross_entropy_gradient, fgsm};
//! use jacobian::{JacobianConfig, ReverseMode};
//!
//! type B = Autodiff<NdArray>;
//! let device = Default::default();
//! let linear = LinearConfig::new(4, 3).init::<B>(&device).no_grad();
//! let f = ReverseMode::new(|x| linear.forward(x));
//! let x = Tensor::<NdArray, 2>::random([5, 4], Distribution::Default, &device);
//! let labels = [0, 1, 2, 0, 1];
//! let config = JacobianConfig::new().with_with_outputs(true);
//! let (gradient, _) = cross_entropy_gradient(&f, x.clone(), &labels, &config).unwrap();
//! let adversarial = fgsm(x.clone(), gradient, 0.1);
//! // Each pixel moved by at most 0.1.
//! let moved = (adversarial.clone() - x).abs().max().into_scalar();
//! assert!(moved <= 0.1 + 1e-6);
//! let correct = accuracy(&f, adversarial, &labels, &config).unwrap();
//! assert!(correct <= 5);
//! ```

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::{per_sample_chunks, Differentiable, JacobianConfig, JacobianError};

/// The input gradient of each sample's cross-entropy `-log softmax(y)[label]`, and the logits:
/// the per-sample Jacobian contracted with `softmax(y) - one_hot(label)`, chunk by chunk.
///
/// # Shapes
///
/// - x: `[n, input dims...]`, `labels`: `n` class indices
/// - gradient: as `x`; logits: `[n, O]`
pub fn cross_entropy_gradient<B, F, const D: usize>(
    f: &F,
    x: Tensor<B, D>,
    labels: &[usize],
    config: &JacobianConfig,
) -> Result<(Tensor<B, D>, Tensor<B, 2>), JacobianError>
where
    B: Backend,
    F: Differentiable<B, D> + ?Sized,
{
    let dims = x.dims();
    check_labels(dims[0], labels);
    let device = x.device();
    let mut gradients = Vec::new();
    let mut logits = Vec::new();
    per_sample_chunks(f, x, config, |chunk| {
        let outputs = chunk.outputs.expect("the engine hands the outputs over");
        let [n, classes] = outputs.dims();
        let start = chunk.start;
        let one_hot = one_hot::<B>(&labels[start..start + n], classes, &device);
        let cotangent = softmax(outputs.clone(), 1) - one_hot; // [n, O]
                                                               // sum_k cotangent[b, k] J[b, k, :]
        let gradient = (chunk.jacobian * cotangent.unsqueeze_dim::<3>(2)).sum_dim(1);
        gradients.push(gradient.squeeze_dim::<2>(1));
        logits.push(outputs);
        Ok(())
    })?;
    let gradient = Tensor::cat(gradients, 0).reshape(dims);
    Ok((gradient, Tensor::cat(logits, 0)))
}

/// The fast gradient sign method (Goodfellow et al., 2015): `clip(x + eps sign(g), 0, 1)`, `g`
/// the input gradient of the loss ([`cross_entropy_gradient`]), computed once for any number of
/// budgets.
///
/// # Shapes
///
/// - x, gradient, output: `[n, input dims...]`
pub fn fgsm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gradient: Tensor<B, D>,
    eps: f32,
) -> Tensor<B, D> {
    (x + gradient.sign().mul_scalar(eps)).clamp(0.0, 1.0)
}

/// Projected gradient descent on the loss, L-infinity (Madry et al., 2018), started at the
/// clean image (no random start, so the result is deterministic): `steps` times
/// `x' = clip(project_eps(x' + step sign(g(x'))), 0, 1)`, the projection onto the
/// L-infinity ball of radius `eps` around `x`. `on_step` is called after each step.
///
/// # Shapes
///
/// - x, output: `[n, input dims...]`; `labels`: `n` class indices
pub fn pgd<B, F, const D: usize>(
    f: &F,
    x: Tensor<B, D>,
    labels: &[usize],
    attack: Pgd,
    config: &JacobianConfig,
    mut on_step: impl FnMut(),
) -> Result<Tensor<B, D>, JacobianError>
where
    B: Backend,
    F: Differentiable<B, D> + ?Sized,
{
    let (low, high) = (
        x.clone().sub_scalar(attack.eps).clamp_min(0.0),
        x.clone().add_scalar(attack.eps).clamp_max(1.0),
    );
    let mut adversarial = x;
    for _ in 0..attack.steps {
        let (gradient, _) = cross_entropy_gradient(f, adversarial.clone(), labels, config)?;
        let moved = adversarial + gradient.sign().mul_scalar(attack.step);
        // Inside the ball and inside [0, 1] at once: the ball's bounds clipped to [0, 1].
        adversarial = moved.max_pair(low.clone()).min_pair(high.clone());
        on_step();
    }
    Ok(adversarial)
}

/// A PGD attack's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pgd {
    /// Radius of the L-infinity ball.
    pub eps: f32,
    /// Size of each signed-gradient step.
    pub step: f32,
    /// Number of steps.
    pub steps: usize,
}

/// How many samples `f` classifies as their label: its largest output is the label's.
pub fn accuracy<B, F, const D: usize>(
    f: &F,
    x: Tensor<B, D>,
    labels: &[usize],
    config: &JacobianConfig,
) -> Result<usize, JacobianError>
where
    B: Backend,
    F: Differentiable<B, D> + ?Sized,
{
    let n = x.dims()[0];
    check_labels(n, labels);
    let chunk = config.chunk_size.unwrap_or(n).max(1);
    let mut correct = 0;
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        let predicted = f.forward(x.clone().narrow(0, start, len)).argmax(1);
        let predicted = predicted
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("converted to i64");
        correct += predicted
            .iter()
            .zip(&labels[start..start + len])
            .filter(|(&p, &l)| p == l as i64)
            .count();
    }
    Ok(correct)
}

fn check_labels(n: usize, labels: &[usize]) {
    assert_eq!(labels.len(), n, "one label per sample");
}

/// `[n, classes]`, one at each label.
fn one_hot<B: Backend>(labels: &[usize], classes: usize, device: &B::Device) -> Tensor<B, 2> {
    let mut values = vec![0.0f32; labels.len() * classes];
    for (row, &label) in labels.iter().enumerate() {
        assert!(label < classes, "label {label} of {classes} classes");
        values[row * classes + label] = 1.0;
    }
    Tensor::from_data(TensorData::new(values, [labels.len(), classes]), device)
}
