//! A function of standardised input, differentiated with respect to the raw input.

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::{Differentiable, FullRows, JacobianError, PerSample};

/// `g(x) = f((x - mean[c]) / std[c])`, `c` the input's channel (axis 1): a model trained on
/// standardised input (torchvision's `Normalize(mean, std)`), seen from the raw input `x`.
///
/// Its Jacobian is `f`'s at the standardised input, divided by `std[c]` along the input's
/// channel: what `torch.autograd.functional.jacobian` gives of `model(normalize(x))` with
/// respect to `x`. `f` computes its Jacobian its own way (its own [`Differentiable`]); this
/// only maps the input on the way in and the rows on the way out.
///
/// ```
/// use burn::backend::{Autodiff, NdArray};
/// use burn::tensor::Tensor;
/// use jacobian::{per_sample, JacobianConfig, ReverseMode, Standardized};
///
/// type B = Autodiff<NdArray>;
/// let device = Default::default();
/// // f(z) = sum of z's entries per sample, on [n, 2 channels, 1]: every row is [1, 1].
/// let f = ReverseMode::new(|z: Tensor<B, 3>| z.sum_dim(2).sum_dim(1).reshape([-1, 1]));
/// let g = Standardized::new(&f, vec![0.5, 0.0], vec![2.0, 4.0]).unwrap();
/// let x = Tensor::<NdArray, 3>::from_floats([[[1.0], [2.0]]], &device);
/// let j = per_sample::<_, _, 3, 3>(&g, x, &JacobianConfig::new()).unwrap().jacobian;
/// assert_eq!(j.into_data().to_vec::<f32>().unwrap(), [0.5, 0.25]); // 1 / std
/// ```
pub struct Standardized<'a, F: ?Sized> {
    f: &'a F,
    mean: Vec<f32>,
    std: Vec<f32>,
}

/// Why a standardisation is refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StandardizeError {
    /// Means and standard deviations differ in number, or there are none.
    #[error(
        "{means} means and {stds} standard deviations, expected as many of each, at least one"
    )]
    Counts {
        /// Means given.
        means: usize,
        /// Standard deviations given.
        stds: usize,
    },
    /// A standard deviation that is not a positive finite number, or a mean that is not finite.
    #[error("standard deviation {0} is not a positive finite number")]
    Std(f32),
    /// A mean that is not finite.
    #[error("mean {0} is not a finite number")]
    Mean(f32),
}

impl<'a, F: ?Sized> Standardized<'a, F> {
    /// `f` of input standardised per channel; one mean and one standard deviation apply to
    /// every channel, else one of each per channel.
    pub fn new(f: &'a F, mean: Vec<f32>, std: Vec<f32>) -> Result<Self, StandardizeError> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(StandardizeError::Counts {
                means: mean.len(),
                stds: std.len(),
            });
        }
        if let Some(&s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(StandardizeError::Std(s));
        }
        if let Some(&m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(StandardizeError::Mean(m));
        }
        Ok(Standardized { f, mean, std })
    }

    /// A per-channel constant broadcast against `[n, channels, rest...]` of rank `D`, one
    /// value for every channel when there is one value.
    fn per_channel<B: Backend, const D: usize>(
        values: &[f32],
        channels: usize,
        device: &B::Device,
    ) -> Result<Tensor<B, D>, JacobianError> {
        let values = match values.len() {
            1 => vec![values[0]; channels],
            n if n == channels => values.to_vec(),
            n => return Err(JacobianError::Channels { given: n, channels }),
        };
        let mut shape = [1; D];
        shape[1] = channels;
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// `(x - mean) / std`.
    fn standardize<B: Backend, const D: usize>(
        &self,
        x: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, JacobianError> {
        let (channels, device) = (channel_count(&x.dims())?, x.device());
        let mean = Self::per_channel::<B, D>(&self.mean, channels, &device)?;
        let std = Self::per_channel::<B, D>(&self.std, channels, &device)?;
        Ok((x - mean) / std)
    }

    /// Rows of `f`'s Jacobian, `[..., input_len]` with the input flattened, divided by the
    /// standard deviation of each entry's channel.
    fn scale_rows<B: Backend, const R: usize>(
        &self,
        rows: Tensor<B, R>,
        channels: usize,
    ) -> Result<Tensor<B, R>, JacobianError> {
        let dims = rows.dims();
        let input_len = dims[R - 1];
        let leading: usize = dims[..R - 1].iter().product();
        let inverse: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        let inverse = Self::per_channel::<B, 3>(&inverse, channels, &rows.device())?;
        let scaled = rows.reshape([leading, channels, input_len / channels]) * inverse;
        Ok(scaled.reshape(dims))
    }
}

fn channel_count(dims: &[usize]) -> Result<usize, JacobianError> {
    match dims {
        [_, channels, ..] if *channels > 0 => Ok(*channels),
        _ => Err(JacobianError::Channels {
            given: 0,
            channels: 0,
        }),
    }
}

impl<B, F, const D: usize> Differentiable<B, D> for Standardized<'_, F>
where
    B: Backend,
    F: Differentiable<B, D> + ?Sized,
{
    fn forward(&self, x: Tensor<B, D>) -> Tensor<B, 2> {
        let z = self
            .standardize(x)
            .expect("standardisation checked by the engine's first call");
        self.f.forward(z)
    }

    fn per_sample(&self, x: Tensor<B, D>) -> Result<PerSample<B>, JacobianError> {
        let channels = channel_count(&x.dims())?;
        let result = self.f.per_sample(self.standardize(x)?)?;
        Ok(PerSample {
            jacobian: self.scale_rows(result.jacobian, channels)?,
            outputs: result.outputs,
        })
    }

    fn full_rows(&self, x: Tensor<B, D>, rows: Range<usize>) -> Result<FullRows<B>, JacobianError> {
        let channels = channel_count(&x.dims())?;
        let result = self.f.full_rows(self.standardize(x)?, rows)?;
        Ok(FullRows {
            jacobian: self.scale_rows(result.jacobian, channels)?,
            outputs: result.outputs,
        })
    }

    fn disconnected_outputs(&self, x: Tensor<B, D>) -> Result<Vec<usize>, JacobianError> {
        self.f.disconnected_outputs(self.standardize(x)?)
    }
}
