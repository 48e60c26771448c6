//! The LeNet-5 the application differentiates: from a weights file, or seeded, the same on
//! every backend.

use std::path::Path;
use std::sync::Mutex;

use burn::backend::{ndarray::NdArrayDevice, NdArray};
use burn::tensor::backend::Backend;
use lenet5::import::{self, ImportConfig};
use lenet5::{LeNet5, LeNet5Config};

use crate::error::Result;

/// The model: loaded from `weights` (printing on stderr what the file needed to load;
/// non-finite weights refused unless `allow_non_finite`), or initialised from `seed`.
///
/// Seeded weights are drawn on the ndarray backend, whose seeded generator is deterministic,
/// then moved to `B` through a burnpack record: the same seed gives the same weights on every
/// backend.
pub fn load<B: Backend>(
    weights: Option<&Path>,
    seed: u64,
    allow_non_finite: bool,
    device: &B::Device,
) -> Result<LeNet5<B>> {
    match weights {
        Some(path) => {
            let config = ImportConfig::new().with_allow_non_finite(allow_non_finite);
            let imported = import::load::<B>(path, &config, device)?;
            for note in imported.notes {
                eprintln!("note: {}: {note}", path.display());
            }
            Ok(imported.model)
        }
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
            Ok(import::from_burnpack_bytes::<B>(
                bytes,
                config.num_classes,
                device,
            )?)
        }
    }
}
