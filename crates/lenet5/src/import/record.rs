//! Weights written by this crate, with the configuration beside them: Burn's burnpack record,
//! and SafeTensors in PyTorch's layout (what `model.load_state_dict` of the matching module
//! takes). Both carry the [`LeNet5Config`]'s JSON in their metadata under [`CONFIG_KEY`], so
//! that reading them back needs no statement of the architecture.

use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use burn::config::Config;
use burn::tensor::backend::Backend;
use burn::tensor::{Bytes, Shape, TensorData};
use burn_store::{
    BurnToPyTorchAdapter, BurnpackStore, ChainAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot,
    SafetensorsStore, TensorSnapshot,
};

use super::{ImportError, WeightsFormat};
use crate::model::config::{CONV2_CHANNELS, FC1_UNITS, POOL2_SIZE};
use crate::{LeNet5, LeNet5Config};

/// The metadata entry holding the configuration's JSON.
pub const CONFIG_KEY: &str = "lenet5_config";

/// The question's module's key prefixes (`feature_extractor`, `classifier`) of each layer:
/// with `Linear(400, 120)`, and with fc1 as the third convolution of `feature_extractor`.
fn pytorch_prefixes(conv3: bool) -> [(&'static str, &'static str); 5] {
    if conv3 {
        [
            ("conv1", "feature_extractor.0"),
            ("conv2", "feature_extractor.3"),
            ("fc1", "feature_extractor.6"),
            ("fc2", "classifier.0"),
            ("fc3", "classifier.2"),
        ]
    } else {
        [
            ("conv1", "feature_extractor.0"),
            ("conv2", "feature_extractor.3"),
            ("fc1", "classifier.0"),
            ("fc2", "classifier.2"),
            ("fc3", "classifier.4"),
        ]
    }
}

/// Encodes `model` as a burnpack record, Burn's native format, with its configuration; [`load`]
/// reads it back from a `.bpk` file.
///
/// [`load`]: super::load
pub fn to_burnpack_bytes<B: Backend>(model: &LeNet5<B>) -> Result<Vec<u8>, ImportError> {
    let mut store =
        BurnpackStore::from_bytes(None).metadata(CONFIG_KEY, model.config().to_string());
    model
        .save_into(&mut store)
        .map_err(|e| ImportError::Write(e.to_string()))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| ImportError::Write(e.to_string()))?;
    Ok(bytes.to_vec())
}

/// Loads a model from burnpack bytes made by [`to_burnpack_bytes`] (moves a model across
/// backends, or restores one kept in memory).
pub fn from_burnpack_bytes<B: Backend>(
    bytes: Vec<u8>,
    device: &B::Device,
) -> Result<LeNet5<B>, ImportError> {
    let error = |message: String| ImportError::Read {
        path: "<memory>".into(),
        format: WeightsFormat::Burnpack,
        message,
    };
    let config = burnpack_config(&bytes)
        .map_err(error)?
        .ok_or_else(|| error(format!("no '{CONFIG_KEY}' in the record's metadata")))?;
    let mut model = config.init::<B>(device);
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
    let result = model
        .load_from(&mut store)
        .map_err(|e| error(e.to_string()))?;
    if result.is_success() {
        Ok(model)
    } else {
        Err(error(format!(
            "the record does not fit its configuration: {result}"
        )))
    }
}

/// Encodes `model` as SafeTensors in PyTorch's layout: the question's module's keys
/// (`feature_extractor.0.weight`, ..., with fc1 as `feature_extractor.6` when the model was
/// read as a third convolution), Linear weights `[out, in]`, and the configuration in the
/// metadata. `model.load_state_dict(safetensors.torch.load_file(path))` takes it for the
/// PyTorch module of that configuration (`scripts/make_torch_fixtures.py`'s `LeNet5`).
pub fn to_pytorch_safetensors_bytes<B: Backend>(model: &LeNet5<B>) -> Result<Vec<u8>, ImportError> {
    let config = model.config();
    let patterns = pytorch_prefixes(config.conv3)
        .map(|(ours, theirs)| (format!("^{ours}\\."), format!("{theirs}.")))
        .to_vec();
    let remapper = KeyRemapper::from_patterns(patterns).expect("literal patterns");
    let adapter = ChainAdapter::new(BurnToPyTorchAdapter, FcAsConvolution(config.conv3));
    let mut store = SafetensorsStore::from_bytes(None)
        .metadata(CONFIG_KEY, config.to_string())
        .with_to_adapter(adapter)
        .remap(remapper);
    model
        .save_into(&mut store)
        .map_err(|e| ImportError::Write(e.to_string()))?;
    store
        .get_bytes()
        .map_err(|e| ImportError::Write(e.to_string()))
}

/// fc1's weight, once in PyTorch's `[120, 400]`, as the `[120, 16, 5, 5]` convolution it was
/// read from (the same values, row-major), when the model's fc1 is written as one.
#[derive(Clone, Debug)]
struct FcAsConvolution(bool);

impl ModuleAdapter for FcAsConvolution {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let path = snapshot.full_path();
        if !(self.0 && path.starts_with("fc1.") && path.ends_with(".weight")) {
            return snapshot.clone();
        }
        let shape = [FC1_UNITS, CONV2_CHANNELS, POOL2_SIZE, POOL2_SIZE];
        let data = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            Rc::new(move || {
                let data = data()?;
                Ok(TensorData::from_bytes_vec(
                    data.bytes.to_vec(),
                    shape,
                    data.dtype,
                ))
            }),
            snapshot.dtype,
            Shape::new(shape),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// The configuration in a SafeTensors file's metadata, if it has one.
pub(crate) fn read_safetensors_config(path: &Path) -> Result<Option<LeNet5Config>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (_, metadata) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| e.to_string())?;
    metadata
        .metadata()
        .as_ref()
        .and_then(|entries| entries.get(CONFIG_KEY))
        .map(|json| parse_config(json))
        .transpose()
}

/// The configuration in a burnpack file's metadata, if it has one.
pub(crate) fn read_burnpack_config(path: &Path) -> Result<Option<LeNet5Config>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    burnpack_config(&bytes)
}

/// The header of a burnpack record: magic (4 bytes), version (2), metadata size (4, little
/// endian), then the metadata in CBOR. burn-store writes `metadata` there but has no reader
/// of it; its layout is burn-store 0.21's (`burnpack/base.rs`).
const BURNPACK_MAGIC: &[u8; 4] = b"NRUB";
const BURNPACK_HEADER: usize = 10;

/// The part of burnpack's CBOR metadata this crate reads.
#[derive(burn::serde::Deserialize)]
#[serde(crate = "burn::serde")]
struct BurnpackMetadata {
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
}

fn burnpack_config(bytes: &[u8]) -> Result<Option<LeNet5Config>, String> {
    if bytes.len() < BURNPACK_HEADER || &bytes[..4] != BURNPACK_MAGIC {
        return Err("not a burnpack record (no 'BURN' magic number)".into());
    }
    let size = u32::from_le_bytes(bytes[6..10].try_into().expect("4 bytes")) as usize;
    let cbor = bytes
        .get(BURNPACK_HEADER..BURNPACK_HEADER + size)
        .ok_or("truncated: the metadata ends past the file")?;
    let metadata: BurnpackMetadata =
        ciborium::from_reader(cbor).map_err(|e| format!("corrupt metadata: {e}"))?;
    metadata
        .metadata
        .get(CONFIG_KEY)
        .map(|json| parse_config(json))
        .transpose()
}

fn parse_config(json: &str) -> Result<LeNet5Config, String> {
    let config = LeNet5Config::load_binary(json.as_bytes())
        .map_err(|e| format!("its '{CONFIG_KEY}' metadata is not a LeNet-5 configuration: {e}"))?;
    config
        .check()
        .map_err(|e| format!("its '{CONFIG_KEY}' metadata describes no network: {e}"))?;
    Ok(config)
}
