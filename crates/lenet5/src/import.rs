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
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::DType;
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
    /// Burn's burnpack record, as written by [`to_burnpack_bytes`]: `.bpk`.
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

    /// Every tensor of the file, by its LeNet5 path: dtype and shape as stored in the file.
    /// Reads the file's index, not (for PyTorch and SafeTensors) the tensors' data.
    fn tensors(&mut self) -> Result<Vec<(String, DType, Vec<usize>)>, String> {
        fn tensors_of<S: ModuleStore>(
            store: &mut S,
        ) -> Result<Vec<(String, DType, Vec<usize>)>, String>
        where
            S::Error: fmt::Display,
        {
            store
                .get_all_snapshots()
                .map(|snapshots| {
                    snapshots
                        .iter()
                        .map(|(key, s)| (key.clone(), s.dtype, s.shape.to_vec()))
                        .collect()
                })
                .map_err(|e| e.to_string())
        }
        match self {
            Self::PyTorch(s) => tensors_of(s),
            Self::SafeTensors(s) => tensors_of(s.as_mut()),
            Self::Burnpack(s) => tensors_of(s.as_mut()),
        }
    }

    /// Reads the data of the tensor at a LeNet5 path: its length in bytes.
    fn data_len(&mut self, key: &str) -> Result<usize, String> {
        fn data_len_of<S: ModuleStore>(store: &mut S, key: &str) -> Result<usize, String>
        where
            S::Error: fmt::Display,
        {
            match store.get_snapshot(key).map_err(|e| e.to_string())? {
                Some(snapshot) => snapshot
                    .to_data()
                    .map(|data| data.bytes.len())
                    .map_err(|e| e.to_string()),
                None => Err("no such tensor".into()),
            }
        }
        match self {
            Self::PyTorch(s) => data_len_of(s, key),
            Self::SafeTensors(s) => data_len_of(s.as_mut(), key),
            Self::Burnpack(s) => data_len_of(s.as_mut(), key),
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

/// The LeNet5 parameter paths (Burn's names) and their shapes as Burn holds them.
fn expected_tensors(num_classes: usize) -> [(&'static str, Vec<usize>); 10] {
    [
        ("conv1.weight", vec![6, 1, 5, 5]),
        ("conv1.bias", vec![6]),
        ("conv2.weight", vec![16, 6, 5, 5]),
        ("conv2.bias", vec![16]),
        ("fc1.weight", vec![400, 120]),
        ("fc1.bias", vec![120]),
        ("fc2.weight", vec![120, 84]),
        ("fc2.bias", vec![84]),
        ("fc3.weight", vec![84, num_classes]),
        ("fc3.bias", vec![num_classes]),
    ]
}

/// Loads LeNet-5 weights from `path`, its format told by the extension ([`WeightsFormat`]).
///
/// The number of classes is read from the last layer. Every tensor of the model must be in the
/// file with its shape and as float32, and the file must hold nothing else: otherwise the
/// error names the missing and unexpected keys, the shape and dtype mismatches, in the file's
/// own key names. A corrupt file is an error, never a panic: the file is checked before it is
/// applied to the model, and a reader that panics anyway is caught.
pub fn load<B: Backend>(path: &Path, device: &B::Device) -> Result<LeNet5<B>, ImportError> {
    let format = WeightsFormat::from_path(path)?;
    let read_error = |message: String| ImportError::Read {
        path: path.to_path_buf(),
        format,
        // burn-store's messages end in a period, some of them twice.
        message: message.replace(".. ", ". "),
    };
    let mismatch = |details: String| ImportError::Mismatch {
        path: path.to_path_buf(),
        details,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(read_error("no such file".into()))
        }
        Err(e) => return Err(read_error(e.to_string())),
        Ok(m) if m.is_dir() => return Err(read_error("is a directory, expected a file".into())),
        Ok(m) if m.len() == 0 => return Err(read_error("the file is empty".into())),
        Ok(_) => {}
    }
    let mut store = Store::open(path, format);
    let tensors = catch_panic(|| store.tensors())
        .map_err(|panic| read_error(format!("the file is corrupt ({panic})")))?
        .map_err(|message| {
            // torch.save writes a zip archive; burn-store reads one it cannot open as the
            // legacy pickle format, and names the pickle opcode 'P' of the zip's "PK".
            if format == WeightsFormat::PyTorch && starts_with_zip_magic(path) {
                if message.contains("Invalid pickle opcode: 0x50") {
                    read_error(
                        "truncated or corrupt: it starts as a zip archive (torch.save's format) \
                         but cannot be opened as one"
                            .into(),
                    )
                } else {
                    read_error(format!(
                        "a corrupt zip archive (torch.save's format): {message}"
                    ))
                }
            } else {
                read_error(message)
            }
        })?;

    let last = tensors
        .iter()
        .find(|(key, _, _)| key == "fc3.weight")
        .map(|(_, _, shape)| shape.as_slice());
    let num_classes = match (format, last) {
        // PyTorch layout [out, in]; burnpack holds Burn's [in, out].
        (WeightsFormat::PyTorch | WeightsFormat::SafeTensors, Some(&[classes, _])) => classes,
        (WeightsFormat::Burnpack, Some(&[_, classes])) => classes,
        (_, Some(shape)) => {
            return Err(mismatch(format!(
                "{} has shape {shape:?}, expected a matrix [classes, 84]",
                file_key("fc3.weight", format)
            )))
        }
        // Keep going with the default: the mismatch report names the missing key.
        (_, None) => LeNet5Config::new().num_classes,
    };
    if num_classes == 0 {
        return Err(mismatch(format!(
            "{} has no rows, expected one per class",
            file_key("fc3.weight", format)
        )));
    }

    // Before the model sees them: every tensor it takes is float32 with its data all there
    // (burn-store hands other dtypes on as they are, and the model would fail on them later).
    let mut problems = Vec::new();
    for (key, burn_shape) in expected_tensors(num_classes) {
        let Some((_, dtype, shape)) = tensors.iter().find(|(k, _, _)| k == key) else {
            continue; // reported as missing below
        };
        if *dtype != DType::F32 {
            problems.push(format!(
                "{} is {}, expected float32",
                file_key(key, format),
                dtype_name(*dtype)
            ));
            continue;
        }
        if *shape != file_shape(key, &burn_shape, format) {
            continue; // reported as a shape mismatch below
        }
        let expected_bytes = shape.iter().product::<usize>() * 4;
        match catch_panic(|| store.data_len(key)) {
            Ok(Ok(len)) if len == expected_bytes => {}
            Ok(Ok(len)) => problems.push(format!(
                "{} holds {len} bytes of data, its shape {:?} needs {expected_bytes}",
                file_key(key, format),
                file_shape(key, shape, format)
            )),
            Ok(Err(e)) | Err(e) => problems.push(format!(
                "cannot read the data of {}: {e}",
                file_key(key, format)
            )),
        }
    }
    if !problems.is_empty() {
        return Err(mismatch(problems.join("; ")));
    }

    // `load_from` moves the model out and back in place (burn-store's `apply`): if it panicked
    // half-way, dropping the model here would free its tensors twice. Never drop it then.
    let mut model = ManuallyDrop::new(
        LeNet5Config::new()
            .with_num_classes(num_classes)
            .init::<B>(device),
    );
    let result = match catch_panic(|| store.apply(&mut model)) {
        // The model is left as it is: leaked, not freed twice.
        Err(panic) => return Err(read_error(format!("the file is corrupt ({panic})"))),
        Ok(result) => result,
    };
    let model = ManuallyDrop::into_inner(model);
    let result = result.map_err(read_error)?;
    match mismatch_details(&result, format) {
        None => Ok(model),
        Some(details) => Err(mismatch(details)),
    }
}

/// Whether the file starts like a zip archive (`PK\x03\x04`).
fn starts_with_zip_magic(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut magic))
        .is_ok_and(|()| magic == *b"PK\x03\x04")
}

/// A dtype as PyTorch and numpy name it.
fn dtype_name(dtype: DType) -> String {
    match dtype {
        DType::F64 => "float64".into(),
        DType::F32 => "float32".into(),
        DType::F16 => "float16".into(),
        DType::BF16 => "bfloat16".into(),
        DType::I64 => "int64".into(),
        DType::I32 => "int32".into(),
        DType::I16 => "int16".into(),
        DType::I8 => "int8".into(),
        DType::U64 => "uint64".into(),
        DType::U32 => "uint32".into(),
        DType::U16 => "uint16".into(),
        DType::U8 => "uint8".into(),
        DType::Bool(_) => "bool".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Runs `f`, turning a panic into `Err` with its message on one line: burn-store's readers
/// panic on some corrupt files, and a corrupt file must be an error. (The panic itself still
/// reaches the process's panic hook; a program that wants it silent installs its own hook.)
fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    })
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
        let keys: Vec<String> = result
            .unused
            .iter()
            .map(|path| file_key(path, format))
            .collect();
        parts.push(format!("unexpected keys: {}", keys.join(", ")));
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
            ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => format!(
                "{} is {}, expected {}",
                file_key(path, format),
                dtype_name(*found),
                dtype_name(*expected)
            ),
            ApplyError::AdapterError { path, message }
            | ApplyError::LoadError { path, message } => {
                format!("cannot read {}: {message}", file_key(path, format))
            }
        });
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
