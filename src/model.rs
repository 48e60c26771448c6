//! The LeNet-5 the application differentiates: from a weights file, its architecture read
//! from the file, stated on the command line or assumed (and said so); or seeded, the same on
//! every backend.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::backend::{ndarray::NdArrayDevice, NdArray};
use burn::tensor::backend::Backend;
use lenet5::import::{self, Architecture, ImportConfig, Origin};
use lenet5::{Activation, LeNet5, LeNet5Config, Pooling};

use crate::error::Result;

/// What the command line states of the architecture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stated {
    /// `--activation`.
    pub activation: Option<Activation>,
    /// `--pooling`.
    pub pooling: Option<Pooling>,
    /// `--padding`.
    pub padding: Option<usize>,
}

/// The model, on the host until a backend asks for it.
#[derive(Clone, Debug)]
pub struct Model {
    /// Which LeNet-5, and who said so.
    pub architecture: Architecture,
    /// The file the weights came from; `None` when seeded.
    pub weights: Option<PathBuf>,
    /// The seed of seeded weights.
    pub seed: u64,
    /// What loading the file did, for the user.
    pub notes: Vec<String>,
    /// The weights as a burnpack record: how they move to the backend chosen at run time.
    record: Vec<u8>,
}

impl Model {
    /// The model of `weights` (non-finite weights refused unless `allow_non_finite`), or a
    /// LeNet-5 initialised from `seed`, of the architecture `stated` (the question's where
    /// nothing is stated).
    ///
    /// Seeded weights are drawn on the ndarray backend, whose seeded generator is
    /// deterministic, and moved to other backends through a burnpack record: the same seed
    /// gives the same weights on every backend.
    pub fn load(
        weights: Option<&Path>,
        seed: u64,
        stated: Stated,
        allow_non_finite: bool,
    ) -> Result<Model> {
        let cpu = NdArrayDevice::Cpu;
        match weights {
            Some(path) => {
                let config = ImportConfig::new()
                    .with_allow_non_finite(allow_non_finite)
                    .with_activation(stated.activation)
                    .with_pooling(stated.pooling)
                    .with_padding(stated.padding);
                let imported = import::load::<NdArray>(path, &config, &cpu)?;
                let notes = imported
                    .notes
                    .iter()
                    .map(|note| format!("{}: {note}", path.display()))
                    .collect();
                Ok(Model {
                    record: import::to_burnpack_bytes(&imported.model)?,
                    architecture: imported.architecture,
                    weights: Some(path.to_path_buf()),
                    seed,
                    notes,
                })
            }
            None => {
                let origin = |stated: bool| {
                    if stated {
                        Origin::Stated
                    } else {
                        Origin::Default
                    }
                };
                let default = LeNet5Config::new();
                let config = default
                    .clone()
                    .with_activation(stated.activation.unwrap_or(default.activation))
                    .with_pooling(stated.pooling.unwrap_or(default.pooling))
                    .with_padding(stated.padding.unwrap_or(default.padding));
                config.check().map_err(import::ImportError::from)?;
                // ndarray's seeded generator is process-wide: hold it from seeding to the last
                // draw (parameters are drawn lazily, when the record is encoded).
                static SEEDED_INIT: Mutex<()> = Mutex::new(());
                let record = {
                    let _guard = SEEDED_INIT.lock().unwrap_or_else(|e| e.into_inner());
                    NdArray::<f32>::seed(&cpu, seed);
                    import::to_burnpack_bytes(&config.init::<NdArray>(&cpu))?
                };
                Ok(Model {
                    architecture: Architecture {
                        config,
                        activation: origin(stated.activation.is_some()),
                        pooling: origin(stated.pooling.is_some()),
                        padding: origin(stated.padding.is_some()),
                    },
                    weights: None,
                    seed,
                    notes: Vec::new(),
                    record,
                })
            }
        }
    }

    /// The network's configuration.
    pub fn config(&self) -> &LeNet5Config {
        &self.architecture.config
    }

    /// The model on `device` of backend `B`.
    pub fn on<B: Backend>(&self, device: &B::Device) -> Result<LeNet5<B>> {
        Ok(import::from_burnpack_bytes::<B>(
            self.record.clone(),
            device,
        )?)
    }

    /// The aspects of the architecture a weights file did not say and nobody stated: what the
    /// computation assumes.
    pub fn assumed(&self) -> Vec<&'static str> {
        match self.weights {
            Some(_) => self.architecture.assumed(),
            None => Vec::new(),
        }
    }

    /// The weights in the format `path`'s extension names: a burnpack record (`.bpk`, with
    /// the configuration) or SafeTensors in PyTorch's layout (`.safetensors`).
    pub fn encode_as(&self, path: &Path) -> Result<Vec<u8>> {
        let model = self.on::<NdArray>(&NdArrayDevice::Cpu)?;
        let extension = path.extension().and_then(|e| e.to_str());
        Ok(match extension.map(str::to_ascii_lowercase).as_deref() {
            Some("safetensors") => import::to_pytorch_safetensors_bytes(&model)?,
            _ => import::to_burnpack_bytes(&model)?,
        })
    }
}
