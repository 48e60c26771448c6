//! The LeNet-5 the application differentiates, and its input batch, the same on every backend.

use std::path::Path;
use std::sync::Mutex;

use burn::backend::{ndarray::NdArrayDevice, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use lenet5::{import, LeNet5, LeNet5Config, IMAGE_CHANNELS, IMAGE_DIMS, IMAGE_LEN, IMAGE_SIZE};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::{AppError, Result};

/// Names of a sample's axes, for the axis table.
pub const SAMPLE_AXIS_NAMES: [&str; 3] = ["channel", "row", "column"];

/// A batch of images on the host, `[batch, 1, 32, 32]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Samples.
    pub len: usize,
    /// Pixel values, row-major.
    pub values: Vec<f32>,
}

impl Batch {
    /// `batch` images of uniform `[0, 1)` pixels (like `torch.rand`), the same for a seed on
    /// every backend and platform.
    pub fn random(batch: usize, seed: u64) -> Batch {
        let mut rng = StdRng::seed_from_u64(seed);
        let values = (0..batch * IMAGE_LEN)
            .map(|_| rng.random::<f32>())
            .collect();
        Batch { len: batch, values }
    }

    /// Checks an array's shape is `[N, 1, 32, 32]` with `N >= 1` and, unless
    /// `allow_non_finite`, that every value is finite.
    pub fn from_array(
        source: &Path,
        shape: &[usize],
        values: Vec<f32>,
        allow_non_finite: bool,
    ) -> Result<Batch> {
        let fail = |what: String| AppError::Input(format!("{}: {what}", source.display()));
        match shape {
            [n, rest @ ..] if rest == IMAGE_DIMS && *n > 0 => {}
            [0, rest @ ..] if rest == IMAGE_DIMS => {
                return Err(fail(format!(
                    "shape {shape:?} is an empty batch, expected [N, 1, 32, 32] with N >= 1"
                )))
            }
            _ => {
                let hint = match shape {
                    [.., 28, 28] => {
                        " (28 x 28 digits: pass them with --images, which pads them to 32 x 32)"
                    }
                    _ => "",
                };
                return Err(fail(format!(
                    "shape {shape:?}, expected [N, 1, 32, 32]{hint}"
                )));
            }
        }
        if values.len() != shape[0] * IMAGE_LEN {
            return Err(fail(format!(
                "{} values for shape {shape:?}, expected {}",
                values.len(),
                shape[0] * IMAGE_LEN
            )));
        }
        let batch = Batch {
            len: shape[0],
            values,
        };
        if !allow_non_finite {
            batch.check_finite().map_err(fail)?;
        }
        Ok(batch)
    }

    fn check_finite(&self) -> std::result::Result<(), String> {
        let mut bad = self
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_finite());
        let Some((first, value)) = bad.next() else {
            return Ok(());
        };
        let count = 1 + bad.count();
        let (n, rest) = (first / IMAGE_LEN, first % IMAGE_LEN);
        let (c, h, w) = (
            rest / (IMAGE_SIZE * IMAGE_SIZE),
            rest / IMAGE_SIZE % IMAGE_SIZE,
            rest % IMAGE_SIZE,
        );
        Err(format!(
            "{count} non-finite value(s) (NaN or Inf), the first {value} at index [{n}, {c}, {h}, {w}]; \
             pass --allow-non-finite to proceed anyway"
        ))
    }

    /// The batch as a tensor on `device`.
    pub fn to_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        let data = TensorData::new(
            self.values.clone(),
            [self.len, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE],
        );
        Tensor::from_data(data, device)
    }
}

/// The model: loaded from `weights`, or initialised from `seed`.
///
/// Seeded weights are drawn on the ndarray backend, whose seeded generator is deterministic,
/// then moved to `B` through a burnpack record: the same seed gives the same weights on every
/// backend.
pub fn load_model<B: Backend>(
    weights: Option<&Path>,
    seed: u64,
    device: &B::Device,
) -> Result<LeNet5<B>> {
    match weights {
        Some(path) => Ok(import::load::<B>(path, device)?),
        None => {
            // ndarray's seeded generator is process-wide: hold it from seeding to the last draw
            // (parameters are drawn lazily, when the record is encoded).
            static SEEDED_INIT: Mutex<()> = Mutex::new(());
            let config = LeNet5Config::new();
            let bytes = {
                let _guard = SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
                let cpu = NdArrayDevice::Cpu;
                NdArray::<f32>::seed(&cpu, seed);
                import::to_burnpack_bytes(&config.init::<NdArray>(&cpu))?
            };
            import::from_burnpack_bytes::<B>(bytes, config.num_classes, device)
                .map_err(|e| AppError::Runtime(e.to_string()))
        }
    }
}
