//! Loading and saving LeNet-5 weights: PyTorch state_dicts (`.pt`/`.pth`), SafeTensors
//! (`.safetensors`) and Burn's own burnpack records (`.bpk`), all through `burn-store`.
//!
//! PyTorch files are expected to hold the `state_dict` of the module
//!
//! ```text
//! feature_extractor = Sequential(Conv2d(1, 6, 5), Tanh(), AvgPool2d(2),
//!                                Conv2d(6, 16, 5), Tanh(), AvgPool2d(2))
//! classifier        = Sequential(Linear(400, 120), Tanh(), Linear(120, 84), Tanh(),
//!                                Linear(84, n_classes))
//! ```
//!
//! so keys `feature_extractor.{0,3}.{weight,bias}` and `classifier.{0,2,4}.{weight,bias}`.
//! The number of classes is read from `classifier.4.weight`.

use std::fmt;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn_store::{
    ApplyError, ApplyResult, BurnpackStore, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};

use crate::{LeNet5, LeNet5Config};

/// PyTorch `state_dict` prefixes and the [`LeNet5`] fields they load into.
///
/// The Sequential indices skip the parameter-free Tanh and AvgPool2d layers.
pub const PYTORCH_PREFIXES: [(&str, &str); 5] = [
    ("feature_extractor.0", "conv1"),
    ("feature_extractor.3", "conv2"),
    ("classifier.0", "fc1"),
    ("classifier.2", "fc2"),
    ("classifier.4", "fc3"),
];

/// File formats holding LeNet-5 weights, told apart by the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsFormat {
    /// `torch.save(model.state_dict(), "lenet5.pt")`: `.pt` or `.pth`.
    PyTorch,
    /// The same tensors and keys in a `.safetensors` file.
    SafeTensors,
    /// Burn's burnpack record, as written by [`save_burnpack`]: `.bpk`.
    Burnpack,
}

impl WeightsFormat {
    /// The format a path's extension names.
    pub fn from_path(path: &Path) -> Result<Self, ImportError> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("pt" | "pth") => Ok(Self::PyTorch),
            Some("safetensors") => Ok(Self::SafeTensors),
            Some("bpk") => Ok(Self::Burnpack),
            _ => Err(ImportError::UnknownFormat(path.to_path_buf())),
        }
    }
}

impl fmt::Display for WeightsFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PyTorch => "PyTorch state_dict",
            Self::SafeTensors => "SafeTensors",
            Self::Burnpack => "burnpack",
        })
    }
}

/// Why weights could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The extension names no known format.
    #[error(
        "{}: unknown weights format (expected .pt/.pth for a PyTorch state_dict, .safetensors, or .bpk for a burnpack record)",
        .0.display()
    )]
    UnknownFormat(PathBuf),
    /// The file is missing, unreadable or not of its format.
    #[error("{}: cannot read {format} weights: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: WeightsFormat,
        /// What the reader said.
        message: String,
    },
    /// The file's tensors do not fit LeNet-5.
    #[error("{}: the weights do not fit LeNet-5: {details}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Missing and unexpected keys and shape mismatches, in the file's own key names.
        details: String,
    },
    /// Writing a record failed.
    #[error("cannot encode the burnpack record: {0}")]
    Write(String),
}

/// A store of any supported format, configured to load into [`LeNet5`].
enum Store {
    PyTorch(PytorchStore),
    SafeTensors(Box<SafetensorsStore>),
    Burnpack(Box<BurnpackStore>),
}

impl Store {
    fn open(path: &Path, format: WeightsFormat) -> Self {
        match format {
            WeightsFormat::PyTorch => {
                let store = PYTORCH_PREFIXES
                    .iter()
                    .fold(PytorchStore::from_file(path), |store, (from, to)| {
                        store.with_key_remapping(prefix_pattern(from), format!("{to}."))
                    })
                    .map_indices_contiguous(false)
                    .allow_partial(true)
                    .validate(false);
                Self::PyTorch(store)
            }
            WeightsFormat::SafeTensors => {
                let store = PYTORCH_PREFIXES
                    .iter()
                    .fold(SafetensorsStore::from_file(path), |store, (from, to)| {
                        store.with_key_remapping(prefix_pattern(from), format!("{to}."))
                    })
                    .map_indices_contiguous(false)
                    // PyTorch stores Linear weights as [out, in], Burn as [in, out]: the adapter
                    // transposes them (PytorchStore always applies it).
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .allow_partial(true)
                    .validate(false);
                Self::SafeTensors(Box::new(store))
            }
            WeightsFormat::Burnpack => Self::Burnpack(Box::new(
                BurnpackStore::from_file(path)
                    .auto_extension(false)
                    .allow_partial(true)
                    .validate(false),
            )),
        }
    }

    /// The shape of a tensor, by its LeNet5 path, as stored in the file.
    fn shape(&mut self, key: &str) -> Result<Option<Vec<usize>>, String> {
        fn shape_of<S: ModuleStore>(store: &mut S, key: &str) -> Result<Option<Vec<usize>>, String>
        where
            S::Error: fmt::Display,
        {
            store
                .get_snapshot(key)
                .map(|snapshot| snapshot.map(|s| s.shape.to_vec()))
                .map_err(|e| e.to_string())
        }
        match self {
            Self::PyTorch(s) => shape_of(s, key),
            Self::SafeTensors(s) => shape_of(s.as_mut(), key),
            Self::Burnpack(s) => shape_of(s.as_mut(), key),
        }
    }

    fn apply<B: Backend>(&mut self, model: &mut LeNet5<B>) -> Result<ApplyResult, String> {
        match self {
            Self::PyTorch(s) => model.load_from(s).map_err(|e| e.to_string()),
            Self::SafeTensors(s) => model.load_from(s.as_mut()).map_err(|e| e.to_string()),
            Self::Burnpack(s) => model.load_from(s.as_mut()).map_err(|e| e.to_string()),
        }
    }
}

fn prefix_pattern(prefix: &str) -> String {
    format!("^{}\\.", prefix.replace('.', "\\."))
}

/// Loads LeNet-5 weights from `path`, its format told by the extension ([`WeightsFormat`]).
///
/// The number of classes is read from the last layer. Every tensor of the model must be in the
/// file with its shape, and the file must hold nothing else: otherwise the error names the
/// missing and unexpected keys and the shape mismatches, in the file's own key names.
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<LeNet5<B>, ImportError> {
    let format = WeightsFormat::from_path(path)?;
    let read_error = |message: String| ImportError::Read {
        path: path.to_path_buf(),
        format,
        message,
    };
    if !path.is_file() {
        return Err(read_error("no such file".into()));
    }
    let mut store = Store::open(path, format);
    let last = store.shape("fc3.weight").map_err(read_error)?;
    let num_classes = match (format, last.as_deref()) {
        // PyTorch layout [out, in]; burnpack holds Burn's [in, out].
        (WeightsFormat::PyTorch | WeightsFormat::SafeTensors, Some([classes, _])) => *classes,
        (WeightsFormat::Burnpack, Some([_, classes])) => *classes,
        (_, Some(shape)) => {
            return Err(ImportError::Mismatch {
                path: path.to_path_buf(),
                details: format!(
                    "{} has shape {shape:?}, expected a matrix",
                    file_key("fc3.weight", format)
                ),
            })
        }
        // Keep going with the default: the mismatch report names the missing key.
        (_, None) => LeNet5Config::new().num_classes,
    };
    let mut model = LeNet5Config::new()
        .with_num_classes(num_classes)
        .init::<B>(device);
    let result = store.apply(&mut model).map_err(read_error)?;
    match mismatch_details(&result, format) {
        None => Ok(model),
        Some(details) => Err(ImportError::Mismatch {
            path: path.to_path_buf(),
            details,
        }),
    }
}

/// Loads a model from burnpack bytes made by [`to_burnpack_bytes`] (moves a model across
/// backends, or restores one kept in memory).
pub fn from_burnpack_bytes<B: Backend>(
    bytes: Vec<u8>,
    num_classes: usize,
    device: &B::Device,
) -> Result<LeNet5<B>, ImportError> {
    let mut model = LeNet5Config::new()
        .with_num_classes(num_classes)
        .init::<B>(device);
    let mut store = BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)));
    let result = model.load_from(&mut store).map_err(|e| ImportError::Read {
        path: PathBuf::from("<memory>"),
        format: WeightsFormat::Burnpack,
        message: e.to_string(),
    })?;
    match mismatch_details(&result, WeightsFormat::Burnpack) {
        None => Ok(model),
        Some(details) => Err(ImportError::Mismatch {
            path: PathBuf::from("<memory>"),
            details,
        }),
    }
}

/// Encodes `model` as a burnpack record, Burn's native format, which [`load`] reads back from
/// a `.bpk` file.
pub fn to_burnpack_bytes<B: Backend>(model: &LeNet5<B>) -> Result<Vec<u8>, ImportError> {
    let mut store = BurnpackStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| ImportError::Write(e.to_string()))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| ImportError::Write(e.to_string()))?;
    Ok(bytes.to_vec())
}

/// The key a LeNet5 tensor path has in a file of `format`.
fn file_key(path: &str, format: WeightsFormat) -> String {
    if format == WeightsFormat::Burnpack {
        return path.to_string();
    }
    PYTORCH_PREFIXES
        .iter()
        .find_map(|(torch, ours)| {
            path.strip_prefix(ours)
                .filter(|rest| rest.starts_with('.'))
                .map(|rest| format!("{torch}{rest}"))
        })
        .unwrap_or_else(|| path.to_string())
}

/// Shapes as the file holds them: PyTorch Linear weights are [out, in], Burn's [in, out].
fn file_shape(path: &str, dims: &[usize], format: WeightsFormat) -> Vec<usize> {
    let linear_weight = path.starts_with("fc") && path.ends_with(".weight");
    if linear_weight && format != WeightsFormat::Burnpack {
        dims.iter().rev().copied().collect()
    } else {
        dims.to_vec()
    }
}

/// One line naming everything that does not fit, or `None` when the file fits.
fn mismatch_details(result: &ApplyResult, format: WeightsFormat) -> Option<String> {
    let mut parts = Vec::new();
    if !result.missing.is_empty() {
        let keys: Vec<String> = result
            .missing
            .iter()
            .map(|(path, _)| file_key(path, format))
            .collect();
        parts.push(format!("missing keys: {}", keys.join(", ")));
    }
    if !result.unused.is_empty() {
        parts.push(format!("unexpected keys: {}", result.unused.join(", ")));
    }
    for error in &result.errors {
        parts.push(match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => format!(
                "{} has shape {:?}, expected {:?}",
                file_key(path, format),
                file_shape(path, found.as_slice(), format),
                file_shape(path, expected.as_slice(), format),
            ),
            other => other.to_string(),
        });
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
