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
//!
//! Files as people have them load too, each with an [`ImportNote`]: keys prefixed by a
//! wrapper (`module.` of `DataParallel` and `DistributedDataParallel`, `_orig_mod.` of
//! `torch.compile`), tensors in float16, bfloat16 or float64 (converted to float32), legacy
//! (pre-zip) `.pt` files. A pickled whole module (`torch.save(model)`) is refused with the hint
//! to save its `state_dict()`; so are non-finite weights, unless
//! [`ImportConfig::allow_non_finite`].

use std::collections::BTreeMap;
use std::fmt;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::config::Config;
use burn::tensor::backend::Backend;
use burn::tensor::DType;
use burn_store::{
    ApplyError, ApplyResult, BurnpackStore, IdentityAdapter, KeyRemapper, ModuleAdapter,
    ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
    TensorSnapshot,
};

use crate::{
    LeNet5, LeNet5Config, CONV1_CHANNELS, CONV2_CHANNELS, FC1_UNITS, FC2_UNITS, FLAT_FEATURES,
    IMAGE_CHANNELS, KERNEL_SIZE,
};

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

/// Prefixes that wrappers add to every key of a `state_dict`, and who adds them.
pub const WRAPPER_PREFIXES: [(&str, &str); 2] = [
    (
        "module.",
        "torch.nn.DataParallel or DistributedDataParallel",
    ),
    ("_orig_mod.", "torch.compile"),
];

/// How [`load`] treats what it finds.
#[derive(Config, Debug)]
pub struct ImportConfig {
    /// Load weights that hold NaN or infinite values (refused otherwise: every Jacobian and
    /// logit would be NaN, or silently saturated).
    #[config(default = false)]
    pub allow_non_finite: bool,
}

/// A model read from a file, and what was done to load it.
#[derive(Debug)]
pub struct Imported<B: Backend> {
    /// The model.
    pub model: LeNet5<B>,
    /// What the file needed to load, for the user.
    pub notes: Vec<ImportNote>,
}

/// Something [`load`] did that the user should know of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportNote {
    /// Every key started with a wrapper's prefix, removed.
    StrippedPrefix {
        /// The prefix, e.g. `module.` (several wrappers' prefixes may follow each other).
        prefix: String,
        /// Which wrappers add it.
        wrappers: String,
    },
    /// Tensors of another floating-point type were converted to float32.
    Converted {
        /// Their type, as PyTorch names it.
        dtype: String,
        /// How many.
        tensors: usize,
    },
    /// A tensor holds non-finite values, kept because [`ImportConfig::allow_non_finite`].
    NonFinite(NonFinite),
}

impl fmt::Display for ImportNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StrippedPrefix { prefix, wrappers } => write!(
                f,
                "every key starts with '{prefix}' (added by {wrappers}): stripped"
            ),
            Self::Converted { dtype, tensors } => {
                write!(f, "{tensors} {dtype} tensor(s) converted to float32")
            }
            Self::NonFinite(n) => write!(f, "{n}: kept, as asked"),
        }
    }
}

/// Where a tensor holds NaN or infinite values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonFinite {
    /// The tensor's key in the file.
    pub key: String,
    /// How many of its values are not finite.
    pub count: usize,
    /// The first of them, as text (`NaN`, `inf`, `-inf`).
    pub first: String,
    /// Its index in the tensor as the file holds it.
    pub index: Vec<usize>,
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} holds {} non-finite value(s) (NaN or Inf), the first {} at index {:?}",
            self.key, self.count, self.first, self.index
        )
    }
}

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
    /// A tensor holds NaN or infinite values (see [`ImportConfig::allow_non_finite`]).
    #[error("{}: {non_finite}", path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// Which tensor, and where.
        non_finite: NonFinite,
    },
    /// Writing a record failed.
    #[error("cannot encode the burnpack record: {0}")]
    Write(String),
}

/// The LeNet5 parameter paths (Burn's names) and their shapes as Burn holds them.
fn expected_tensors(num_classes: usize) -> [(&'static str, Vec<usize>); 10] {
    let kernel = [KERNEL_SIZE, KERNEL_SIZE];
    [
        (
            "conv1.weight",
            [&[CONV1_CHANNELS, IMAGE_CHANNELS][..], &kernel].concat(),
        ),
        ("conv1.bias", vec![CONV1_CHANNELS]),
        (
            "conv2.weight",
            [&[CONV2_CHANNELS, CONV1_CHANNELS][..], &kernel].concat(),
        ),
        ("conv2.bias", vec![CONV2_CHANNELS]),
        ("fc1.weight", vec![FLAT_FEATURES, FC1_UNITS]),
        ("fc1.bias", vec![FC1_UNITS]),
        ("fc2.weight", vec![FC1_UNITS, FC2_UNITS]),
        ("fc2.bias", vec![FC2_UNITS]),
        ("fc3.weight", vec![FC2_UNITS, num_classes]),
        ("fc3.bias", vec![num_classes]),
    ]
}

/// Every tensor of the file, by its key in the file, read through the store of its format
/// (the file's index; the data is read when asked).
fn read_snapshots(path: &Path, format: WeightsFormat) -> Result<Vec<TensorSnapshot>, String> {
    fn all<S: ModuleStore>(mut store: S) -> Result<Vec<TensorSnapshot>, String>
    where
        S::Error: fmt::Display,
    {
        let snapshots = store.get_all_snapshots().map_err(|e| e.to_string())?;
        Ok(snapshots.values().cloned().collect())
    }
    match format {
        WeightsFormat::PyTorch => all(PytorchStore::from_file(path).map_indices_contiguous(false)),
        WeightsFormat::SafeTensors => {
            all(SafetensorsStore::from_file(path).map_indices_contiguous(false))
        }
        WeightsFormat::Burnpack => all(BurnpackStore::from_file(path).auto_extension(false)),
    }
}

/// The prefix every key of the file starts with that wrappers add (several may follow each
/// other, e.g. `module._orig_mod.`), and the wrappers; `None` when there is none.
fn wrapper_prefix(keys: &[String]) -> Option<(String, String)> {
    let first = keys.first()?;
    let (mut prefix, mut wrappers) = (String::new(), Vec::new());
    'outer: loop {
        for (wrapper_prefix, wrapper) in WRAPPER_PREFIXES {
            let candidate = format!("{prefix}{wrapper_prefix}");
            if first.starts_with(&candidate) && keys.iter().all(|k| k.starts_with(&candidate)) {
                prefix = candidate;
                wrappers.push(wrapper);
                continue 'outer;
            }
        }
        break;
    }
    (!prefix.is_empty()).then(|| (prefix, wrappers.join(" and ")))
}

/// How a file's keys map to the LeNet5 paths and back.
struct Keys {
    format: WeightsFormat,
    /// The wrappers' prefix every key starts with ("" when none).
    wrapper: String,
}

impl Keys {
    /// burn-store's remapper from the file's keys to LeNet5's paths.
    fn remapper(&self) -> KeyRemapper {
        let pattern = |prefix: &str| format!("^{}", regex_escape(prefix));
        let mut patterns = Vec::new();
        if !self.wrapper.is_empty() {
            patterns.push((pattern(&self.wrapper), String::new()));
        }
        if self.format != WeightsFormat::Burnpack {
            for (torch, ours) in PYTORCH_PREFIXES {
                patterns.push((pattern(&format!("{torch}.")), format!("{ours}.")));
            }
        }
        KeyRemapper::from_patterns(patterns).expect("escaped literal patterns")
    }

    /// The key a LeNet5 path has in the file.
    fn file_key(&self, path: &str) -> String {
        let key = match self.format {
            WeightsFormat::Burnpack => None,
            _ => PYTORCH_PREFIXES.iter().find_map(|(torch, ours)| {
                path.strip_prefix(ours)
                    .filter(|rest| rest.starts_with('.'))
                    .map(|rest| format!("{torch}{rest}"))
            }),
        };
        format!("{}{}", self.wrapper, key.as_deref().unwrap_or(path))
    }

    /// The shape as the file holds it: PyTorch Linear weights are [out, in], Burn's [in, out].
    fn file_shape(&self, path: &str, dims: &[usize]) -> Vec<usize> {
        let linear_weight = path.starts_with("fc") && path.ends_with(".weight");
        if linear_weight && self.format != WeightsFormat::Burnpack {
            dims.iter().rev().copied().collect()
        } else {
            dims.to_vec()
        }
    }
}

fn regex_escape(literal: &str) -> String {
    literal.replace('.', "\\.")
}

/// Converts float16, bfloat16 and float64 tensors to float32, leaving the others as they are.
///
/// Not burn-store's `HalfPrecisionAdapter`: it turns float32 tensors into float16 (it serves
/// saving as well as loading), so a file mixing precisions would come out wrong, and it leaves
/// bfloat16 alone.
#[derive(Clone, Copy, Debug)]
struct ToFloat32;

impl ToFloat32 {
    fn converts(dtype: DType) -> bool {
        matches!(dtype, DType::F16 | DType::BF16 | DType::F64)
    }
}

impl ModuleAdapter for ToFloat32 {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        if !Self::converts(snapshot.dtype) {
            return snapshot.clone();
        }
        let data = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            Rc::new(move || Ok(data()?.convert_dtype(DType::F32))),
            DType::F32,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

/// Loads LeNet-5 weights from `path`, its format told by the extension ([`WeightsFormat`]).
///
/// The number of classes is read from the last layer. Every tensor of the model must be in the
/// file with its shape, of a floating-point type (float16, bfloat16 and float64 are converted
/// to float32) and finite (unless [`ImportConfig::allow_non_finite`]), and the file must hold
/// nothing else: otherwise the error names the missing and unexpected keys, the shape and
/// dtype mismatches, in the file's own key names. A corrupt file is an error, never a panic:
/// the file is checked before it is applied to the model, and a reader that panics anyway is
/// caught.
pub fn load<B: Backend>(
    path: &Path,
    config: &ImportConfig,
    device: &B::Device,
) -> Result<Imported<B>, ImportError> {
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
    let snapshots = catch_panic(|| read_snapshots(path, format))
        .map_err(|panic| read_error(format!("the file is corrupt ({panic})")))?
        .map_err(|message| read_error(explain_read_error(path, format, message)))?;

    let mut notes = Vec::new();
    let file_keys: Vec<String> = snapshots.iter().map(TensorSnapshot::full_path).collect();
    let (wrapper, wrappers) = wrapper_prefix(&file_keys).unwrap_or_default();
    if !wrapper.is_empty() {
        notes.push(ImportNote::StrippedPrefix {
            prefix: wrapper.clone(),
            wrappers,
        });
    }
    let keys = Keys { format, wrapper };
    let (snapshots, _) = keys.remapper().remap(snapshots);
    let tensors: BTreeMap<String, &TensorSnapshot> =
        snapshots.iter().map(|s| (s.full_path(), s)).collect();

    let last = tensors.get("fc3.weight").map(|s| s.shape.to_vec());
    let num_classes = match (format, last.as_deref()) {
        // PyTorch layout [out, in]; burnpack holds Burn's [in, out].
        (WeightsFormat::PyTorch | WeightsFormat::SafeTensors, Some(&[classes, _])) => classes,
        (WeightsFormat::Burnpack, Some(&[_, classes])) => classes,
        (_, Some(shape)) => {
            return Err(mismatch(format!(
                "{} has shape {shape:?}, expected a matrix [classes, {FC2_UNITS}]",
                keys.file_key("fc3.weight")
            )))
        }
        // Keep going with the default: the mismatch report names the missing key.
        (_, None) => LeNet5Config::new().num_classes,
    };
    if num_classes == 0 {
        return Err(mismatch(format!(
            "{} has no rows, expected one per class",
            keys.file_key("fc3.weight")
        )));
    }

    // Before the model sees them: every tensor it takes is of a floating-point type, with all
    // its data there, and finite (burn-store hands any dtype on as it is, and the model would
    // fail on it later).
    let mut problems = Vec::new();
    let mut converted: BTreeMap<String, usize> = BTreeMap::new();
    for (param, burn_shape) in expected_tensors(num_classes) {
        let Some(snapshot) = tensors.get(param) else {
            continue; // reported as missing below
        };
        let key = keys.file_key(param);
        let dtype = snapshot.dtype;
        if dtype != DType::F32 && !ToFloat32::converts(dtype) {
            problems.push(format!(
                "{key} is {}, expected float32 (float16, bfloat16 and float64 are converted)",
                dtype_name(dtype)
            ));
            continue;
        }
        let shape = snapshot.shape.to_vec();
        if shape != keys.file_shape(param, &burn_shape) {
            continue; // reported as a shape mismatch below
        }
        let expected_bytes = shape.iter().product::<usize>() * dtype.size();
        let data = match catch_panic(|| snapshot.to_data()) {
            Ok(Ok(data)) => data,
            Ok(Err(e)) => {
                problems.push(format!("cannot read the data of {key}: {e}"));
                continue;
            }
            Err(panic) => {
                problems.push(format!("cannot read the data of {key}: {panic}"));
                continue;
            }
        };
        if data.bytes.len() != expected_bytes {
            problems.push(format!(
                "{key} holds {} bytes of data, its shape {shape:?} needs {expected_bytes}",
                data.bytes.len()
            ));
            continue;
        }
        if dtype != DType::F32 {
            *converted.entry(dtype_name(dtype)).or_default() += 1;
        }
        if let Some(non_finite) = non_finite(&key, &shape, data.convert::<f32>()) {
            if !config.allow_non_finite {
                return Err(ImportError::NonFinite {
                    path: path.to_path_buf(),
                    non_finite,
                });
            }
            notes.push(ImportNote::NonFinite(non_finite));
        }
    }
    if !problems.is_empty() {
        return Err(mismatch(problems.join("; ")));
    }
    notes.extend(
        converted
            .into_iter()
            .map(|(dtype, tensors)| ImportNote::Converted { dtype, tensors }),
    );

    // `apply` moves the model out and back in place: if it panicked half-way, dropping the
    // model here would free its tensors twice. Never drop it then.
    let mut model = ManuallyDrop::new(
        LeNet5Config::new()
            .with_num_classes(num_classes)
            .init::<B>(device),
    );
    let snapshots: Vec<TensorSnapshot> = snapshots.iter().map(|s| ToFloat32.adapt(s)).collect();
    // PyTorch stores Linear weights as [out, in], Burn as [in, out]: the adapter transposes.
    let adapter: Box<dyn ModuleAdapter> = match format {
        WeightsFormat::Burnpack => Box::new(IdentityAdapter),
        WeightsFormat::PyTorch | WeightsFormat::SafeTensors => Box::new(PyTorchToBurnAdapter),
    };
    let result = match catch_panic(|| model.apply(snapshots, None, Some(adapter), false)) {
        // The model is left as it is: leaked, not freed twice.
        Err(panic) => return Err(read_error(format!("the file is corrupt ({panic})"))),
        Ok(result) => result,
    };
    let model = ManuallyDrop::into_inner(model);
    match mismatch_details(&result, &keys) {
        None => Ok(Imported { model, notes }),
        Some(details) => Err(mismatch(details)),
    }
}

/// The first non-finite value of a tensor, when it has one.
fn non_finite(key: &str, shape: &[usize], data: burn::tensor::TensorData) -> Option<NonFinite> {
    let values = data.to_vec::<f32>().ok()?;
    let mut bad = values.iter().enumerate().filter(|(_, v)| !v.is_finite());
    let (first, value) = bad.next()?;
    let mut index = vec![0; shape.len()];
    let mut rest = first;
    for (i, &d) in shape.iter().enumerate().rev() {
        index[i] = rest % d.max(1);
        rest /= d.max(1);
    }
    Some(NonFinite {
        key: key.to_string(),
        count: 1 + bad.count(),
        first: value.to_string(),
        index,
    })
}

/// A reader's error in the user's terms.
fn explain_read_error(path: &Path, format: WeightsFormat, message: String) -> String {
    if format != WeightsFormat::PyTorch {
        return message;
    }
    // torch.save(model) pickles the module's class and every attribute; a state_dict holds
    // tensors only. burn-store stops at the first Python object it does not take.
    if message.contains("Unsupported Python type") || message.contains("full model save") {
        return "it holds a pickled Python object (torch.save(model) saves the whole module), \
                not a state_dict of tensors: save model.state_dict() instead"
            .into();
    }
    // torch.save writes a zip archive; burn-store reads one it cannot open as the legacy
    // pickle format, and names the pickle opcode 'P' of the zip's "PK".
    if starts_with_zip_magic(path) {
        return if message.contains("Invalid pickle opcode: 0x50") {
            "truncated or corrupt: it starts as a zip archive (torch.save's format) but cannot be opened as one".into()
        } else {
            format!("a corrupt zip archive (torch.save's format): {message}")
        };
    }
    message
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
    let keys = Keys {
        format: WeightsFormat::Burnpack,
        wrapper: String::new(),
    };
    match mismatch_details(&result, &keys) {
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

/// One line naming everything that does not fit, or `None` when the file fits.
fn mismatch_details(result: &ApplyResult, keys: &Keys) -> Option<String> {
    let mut parts = Vec::new();
    if !result.missing.is_empty() {
        let keys: Vec<String> = result
            .missing
            .iter()
            .map(|(path, _)| keys.file_key(path))
            .collect();
        parts.push(format!("missing keys: {}", keys.join(", ")));
    }
    if !result.unused.is_empty() {
        let keys: Vec<String> = result
            .unused
            .iter()
            .map(|path| keys.file_key(path))
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
                keys.file_key(path),
                keys.file_shape(path, found.as_slice()),
                keys.file_shape(path, expected.as_slice()),
            ),
            ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => format!(
                "{} is {}, expected {}",
                keys.file_key(path),
                dtype_name(*found),
                dtype_name(*expected)
            ),
            ApplyError::AdapterError { path, message }
            | ApplyError::LoadError { path, message } => {
                format!("cannot read {}: {message}", keys.file_key(path))
            }
        });
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
