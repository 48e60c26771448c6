//! LeNet-5 weights in and out: PyTorch state_dicts and checkpoints (`.pt`/`.pth`), SafeTensors
//! (`.safetensors`), ONNX exports (`.onnx`) and Burn's own burnpack records (`.bpk`), read
//! through `burn-store` and Burn's ONNX parser `onnx-ir`.
//!
//! A weights file says the layers' shapes, and so the input channels, the classes and whether
//! the first classifier layer is a third convolution; what it may not say is the activation,
//! the pooling and the first convolution's padding. Where they come from is part of what
//! [`load`] returns ([`Architecture`]):
//!
//! - an ONNX file has the graph: they are read from it ([`Origin::Graph`]);
//! - a file this crate wrote records them ([`Origin::Record`]): a `.bpk`, or a `.safetensors`
//!   saved in PyTorch's layout by [`to_pytorch_safetensors_bytes`];
//! - the user states them ([`ImportConfig`], [`Origin::Stated`]); a statement that contradicts
//!   the file is an error;
//! - else they are the question's LeNet5's, tanh and average pooling without padding, and
//!   marked [`Origin::Default`]: the caller must say so to its user.
//!
//! In a PyTorch `state_dict` the five weighted layers are recognised by their shapes, whatever
//! their keys (`feature_extractor.0`, `conv1`, `features.0`, `0`, ...), inside a training
//! checkpoint (`{"model_state_dict": ...}`, `{"net": ...}`) and under wrappers' prefixes
//! (`module.` of `DataParallel`, `_orig_mod.` of `torch.compile`); each of these gets an
//! [`ImportNote`]. So do tensors in float16, bfloat16 or float64 (converted to float32). A
//! pickled whole module (`torch.save(model)`) is refused with the hint to save its
//! `state_dict()`; so are non-finite weights, unless [`ImportConfig::allow_non_finite`].

mod layers;
mod onnx;
mod record;

use std::collections::BTreeMap;
use std::fmt;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::config::Config;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, TensorData};
use burn_store::{
    ApplyError, ApplyResult, BurnpackStore, IdentityAdapter, KeyRemapper, ModuleAdapter,
    ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
    TensorSnapshot,
};

pub use layers::{CHECKPOINT_KEYS, WRAPPER_PREFIXES};
pub use record::{from_burnpack_bytes, to_burnpack_bytes, to_pytorch_safetensors_bytes};

use crate::model::config::{FC1_UNITS, FLAT_FEATURES};
use crate::{Activation, LeNet5, LeNet5Config, Pooling};
use layers::{FileTensor, Layers, LAYERS};

/// How [`load`] treats what it finds, and what the user states of the architecture.
#[derive(Config, Debug)]
pub struct ImportConfig {
    /// Load weights that hold NaN or infinite values (refused otherwise: every Jacobian and
    /// logit would be NaN, or silently saturated).
    #[config(default = false)]
    pub allow_non_finite: bool,
    /// The activation, as the user states it.
    #[config(default = "None")]
    pub activation: Option<Activation>,
    /// The pooling, as the user states it.
    #[config(default = "None")]
    pub pooling: Option<Pooling>,
    /// The first convolution's padding, as the user states it.
    #[config(default = "None")]
    pub padding: Option<usize>,
}

/// Where an aspect of the architecture comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The file's ONNX graph.
    Graph,
    /// The file's own record of it (written by this crate).
    Record,
    /// The user stated it ([`ImportConfig`]).
    Stated,
    /// Nobody said: the question's LeNet5's (tanh, average pooling, no padding).
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Graph => "from the ONNX graph",
            Origin::Record => "from the file's record",
            Origin::Stated => "stated",
            Origin::Default => "default",
        })
    }
}

/// The network a file was loaded as, and where each of its choices came from. The input
/// channels, the classes and how fc1 is written always come from the weights' shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Architecture {
    /// The network.
    pub config: LeNet5Config,
    /// Where its activation comes from.
    pub activation: Origin,
    /// Where its pooling comes from.
    pub pooling: Origin,
    /// Where its padding comes from.
    pub padding: Origin,
}

impl Architecture {
    /// The aspects nobody stated, which were assumed: `["activation", "pooling"]`, say.
    pub fn assumed(&self) -> Vec<&'static str> {
        [
            ("activation", self.activation),
            ("pooling", self.pooling),
            ("padding", self.padding),
        ]
        .into_iter()
        .filter(|(_, origin)| *origin == Origin::Default)
        .map(|(aspect, _)| aspect)
        .collect()
    }

    /// The architecture of a model made here, every aspect from `origin`.
    pub fn of(config: LeNet5Config, origin: Origin) -> Self {
        Architecture {
            config,
            activation: origin,
            pooling: origin,
            padding: origin,
        }
    }
}

impl fmt::Display for Architecture {
    /// `relu activation (stated), max pooling (stated), 1 x 32 x 32 input (padding 0,
    /// assumed), 10 classes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let [channels, h, w] = c.input_dims();
        write!(
            f,
            "{} activation ({}), {} pooling ({}), {channels} x {h} x {w} input (conv1 padding {}, {}), \
             {} classes",
            c.activation, self.activation, c.pooling, self.pooling, c.padding, self.padding, c.num_classes
        )?;
        if c.conv3 {
            write!(f, ", fc1 as a 16 -> 120 convolution")?;
        }
        Ok(())
    }
}

/// A model read from a file, its architecture and what was done to load it.
#[derive(Debug)]
pub struct Imported<B: Backend> {
    /// The model.
    pub model: LeNet5<B>,
    /// Which LeNet-5 it is, and who said so.
    pub architecture: Architecture,
    /// What the file needed to load, for the user.
    pub notes: Vec<ImportNote>,
}

/// Something [`load`] did that the user should know of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportNote {
    /// The layers were found by their shapes under keys other than the question's module's.
    Layers(String),
    /// The model is under a top-level key of the file (a training checkpoint).
    Checkpoint {
        /// The key.
        key: String,
        /// The other top-level entries holding tensors, left alone.
        ignored: Vec<String>,
    },
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
    /// Something the ONNX graph does that the model does another, equivalent way.
    Graph(String),
}

impl fmt::Display for ImportNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layers(layers) => write!(f, "layers found by their shapes: {layers}"),
            Self::Checkpoint { key, ignored } if ignored.is_empty() => {
                write!(f, "the model's weights are under '{key}'")
            }
            Self::Checkpoint { key, ignored } => write!(
                f,
                "the model's weights are under '{key}' (a training checkpoint); {} left alone",
                ignored
                    .iter()
                    .map(|k| format!("'{k}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::StrippedPrefix { prefix, wrappers } => write!(
                f,
                "every key starts with '{prefix}' (added by {wrappers}): stripped"
            ),
            Self::Converted { dtype, tensors } => {
                write!(f, "{tensors} {dtype} tensor(s) converted to float32")
            }
            Self::NonFinite(n) => write!(f, "{n}: kept, as asked"),
            Self::Graph(note) => f.write_str(note),
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
    /// `torch.save(model.state_dict(), "lenet5.pt")`, or a checkpoint dict holding one:
    /// `.pt` or `.pth`.
    PyTorch,
    /// A state_dict's tensors and keys in a `.safetensors` file.
    SafeTensors,
    /// `torch.onnx.export(model, ...)`: the graph and the weights, `.onnx` (the weights
    /// possibly in a `.onnx.data` file beside it).
    Onnx,
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
            Some("onnx") => Ok(Self::Onnx),
            Some("bpk") => Ok(Self::Burnpack),
            _ => Err(ImportError::UnknownFormat(path.to_path_buf())),
        }
    }

    /// Whether the format holds Linear weights as PyTorch does, `[out, in]` (Burn: `[in, out]`).
    fn pytorch_layout(self) -> bool {
        self != Self::Burnpack
    }
}

impl fmt::Display for WeightsFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PyTorch => "PyTorch state_dict",
            Self::SafeTensors => "SafeTensors",
            Self::Onnx => "ONNX",
            Self::Burnpack => "burnpack",
        })
    }
}

/// Why weights could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The extension names no known format.
    #[error(
        "{}: unknown weights format (expected .pt/.pth for a PyTorch state_dict or checkpoint, \
         .safetensors, .onnx, or .bpk for a burnpack record)",
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
        /// What does not fit, in the file's own key names.
        details: String,
    },
    /// An ONNX graph that is not a LeNet-5 of the family.
    #[error("{}: the ONNX graph is not a LeNet-5: {details}", path.display())]
    NotLeNet5 {
        /// The file.
        path: PathBuf,
        /// The first node or shape that does not fit.
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
    /// What the user states contradicts what the file says.
    #[error(
        "{}: {aspect} {stated} was stated, but the file says {recorded} ({origin})",
        path.display()
    )]
    Contradiction {
        /// The file.
        path: PathBuf,
        /// `activation`, `pooling` or `padding`.
        aspect: &'static str,
        /// What the user said.
        stated: String,
        /// What the file says.
        recorded: String,
        /// Where in the file.
        origin: Origin,
    },
    /// The statement describes no network.
    #[error("{0}")]
    Config(#[from] crate::ConfigError),
    /// Writing a record failed.
    #[error("cannot encode the weights: {0}")]
    Write(String),
}

/// What a file holds once read: tensors by LeNet-5 parameter path, and what the file says of
/// the architecture.
struct Found {
    /// `conv1.weight`, ...: in PyTorch's layout unless the format is Burn's.
    snapshots: Vec<TensorSnapshot>,
    /// The file's key of each parameter path, for messages.
    file_keys: BTreeMap<String, String>,
    /// Input channels and classes from the weights; conv3; the rest as recorded (if at all).
    config: LeNet5Config,
    /// Where activation, pooling and padding come from: the graph or the record, `None` when
    /// the file does not say.
    recorded: Option<Origin>,
    notes: Vec<ImportNote>,
}

impl Found {
    fn file_key(&self, path: &str) -> String {
        self.file_keys
            .get(path)
            .cloned()
            .unwrap_or_else(|| path.to_string())
    }
}

/// Loads LeNet-5 weights from `path`, its format told by the extension ([`WeightsFormat`]).
///
/// Every tensor of the model must be in the file with its shape, of a floating-point type
/// (float16, bfloat16 and float64 are converted to float32) and finite (unless
/// [`ImportConfig::allow_non_finite`]), and the model's part of the file must hold nothing
/// else: otherwise the error names what does not fit, in the file's own key names. A corrupt
/// file is an error, never a panic: the file is checked before it is applied to the model, and
/// a reader that panics anyway is caught.
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
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(read_error("no such file".into()))
        }
        Err(e) => return Err(read_error(e.to_string())),
        Ok(m) if m.is_dir() => return Err(read_error("is a directory, expected a file".into())),
        Ok(m) if m.len() == 0 => return Err(read_error("the file is empty".into())),
        Ok(_) => {}
    }
    let found = match format {
        WeightsFormat::Onnx => onnx::read(path)?,
        WeightsFormat::Burnpack => read_burnpack(path, &read_error)?,
        WeightsFormat::PyTorch | WeightsFormat::SafeTensors => {
            read_state_dict(path, format, &read_error)?
        }
    };
    let architecture = resolve(path, &found, config)?;
    let (model, notes) = apply::<B>(path, format, found, &architecture.config, config, device)?;
    Ok(Imported {
        model,
        architecture,
        notes,
    })
}

/// A PyTorch state_dict or checkpoint, or a SafeTensors file: its layers found by shape.
fn read_state_dict(
    path: &Path,
    format: WeightsFormat,
    read_error: &dyn Fn(String) -> ImportError,
) -> Result<Found, ImportError> {
    let snapshots = catch_panic(|| read_snapshots(path, format))
        .map_err(|panic| read_error(format!("the file is corrupt ({panic})")))?
        .map_err(|message| read_error(explain_read_error(path, format, message)))?;
    let tensors: Vec<FileTensor> = snapshots
        .iter()
        .map(|s| FileTensor {
            key: s.full_path(),
            shape: s.shape.to_vec(),
        })
        .collect();
    let layers = layers::find(&tensors).map_err(|details| ImportError::Mismatch {
        path: path.to_path_buf(),
        details,
    })?;
    let recorded = match format {
        WeightsFormat::SafeTensors => record::read_safetensors_config(path).map_err(read_error)?,
        _ => None,
    };
    if let Some(recorded) = &recorded {
        check_record(path, recorded, &layers)?;
    }
    let mut notes = Vec::new();
    if !layers.root.is_empty() {
        notes.push(ImportNote::Checkpoint {
            key: layers.root.trim_end_matches('.').to_string(),
            ignored: layers.ignored.clone(),
        });
    }
    if !layers.wrapper.is_empty() {
        notes.push(ImportNote::StrippedPrefix {
            prefix: layers.wrapper.clone(),
            wrappers: layers.wrappers.clone(),
        });
    }
    if !layers.are_the_usual() && recorded.is_none() {
        notes.push(ImportNote::Layers(layers.to_string()));
    }
    let (snapshots, file_keys) = remap(snapshots, &layers);
    let config = recorded.clone().unwrap_or_else(|| {
        LeNet5Config::new()
            .with_in_channels(layers.in_channels)
            .with_num_classes(layers.num_classes)
            .with_conv3(layers.conv3)
    });
    Ok(Found {
        snapshots,
        file_keys,
        config,
        recorded: recorded.map(|_| Origin::Record),
        notes,
    })
}

/// A record of this crate's (what [`to_burnpack_bytes`] writes): Burn's parameter paths and
/// layouts, and the configuration in its metadata (files of older versions have none).
fn read_burnpack(
    path: &Path,
    read_error: &dyn Fn(String) -> ImportError,
) -> Result<Found, ImportError> {
    let snapshots = catch_panic(|| read_snapshots(path, WeightsFormat::Burnpack))
        .map_err(|panic| read_error(format!("the file is corrupt ({panic})")))?
        .map_err(read_error)?;
    let recorded = record::read_burnpack_config(path).map_err(read_error)?;
    let shape = |key: &str| {
        snapshots
            .iter()
            .find(|s| s.full_path() == key)
            .map(|s| s.shape.to_vec())
    };
    // Burn's layouts: conv1 [6, channels, 5, 5], fc3 [84, classes].
    let in_channels = match shape("conv1.weight").as_deref() {
        Some(&[_, channels, _, _]) => channels,
        _ => 1, // reported as missing or mismatched below
    };
    let num_classes = match shape("fc3.weight").as_deref() {
        Some(&[_, classes]) if classes > 0 => classes,
        _ => LeNet5Config::new().num_classes,
    };
    let config = recorded.clone().unwrap_or_else(LeNet5Config::new);
    let config = config
        .with_in_channels(in_channels)
        .with_num_classes(num_classes);
    let file_keys = snapshots
        .iter()
        .map(|s| (s.full_path(), s.full_path()))
        .collect();
    Ok(Found {
        snapshots,
        file_keys,
        config,
        recorded: recorded.map(|_| Origin::Record),
        notes: Vec::new(),
    })
}

/// A record's configuration must be what the weights' shapes say.
fn check_record(path: &Path, recorded: &LeNet5Config, layers: &Layers) -> Result<(), ImportError> {
    let found = (layers.in_channels, layers.num_classes, layers.conv3);
    let said = (recorded.in_channels, recorded.num_classes, recorded.conv3);
    if found == said {
        return Ok(());
    }
    Err(ImportError::Mismatch {
        path: path.to_path_buf(),
        details: format!(
            "its metadata describes {recorded}, but its weights have {} input channel(s), {} \
             classes{}",
            layers.in_channels,
            layers.num_classes,
            if layers.conv3 {
                ", fc1 as a convolution"
            } else {
                ""
            }
        ),
    })
}

/// The layers' tensors under LeNet-5's parameter paths (through burn-store's remapper), fc1
/// held as a convolution reshaped to the linear layer it is; everything else dropped.
fn remap(
    snapshots: Vec<TensorSnapshot>,
    layers: &Layers,
) -> (Vec<TensorSnapshot>, BTreeMap<String, String>) {
    let mut patterns = Vec::new();
    let mut file_keys = BTreeMap::new();
    for layer in LAYERS {
        for param in ["weight", "bias"] {
            let path = format!("{layer}.{param}");
            let key = layers.file_key(&path);
            patterns.push((format!("^{}$", regex_escape(&key)), path.clone()));
            file_keys.insert(path, key);
        }
    }
    let remapper = KeyRemapper::from_patterns(patterns).expect("escaped literal patterns");
    let (snapshots, _) = remapper.remap(snapshots);
    let snapshots = snapshots
        .into_iter()
        .filter(|s| file_keys.contains_key(&s.full_path()))
        .map(|s| {
            if s.full_path() == "fc1.weight" && s.shape.to_vec().len() == 4 {
                reshaped(&s, [FC1_UNITS, FLAT_FEATURES])
            } else {
                s
            }
        })
        .collect();
    (snapshots, file_keys)
}

/// The same tensor with another shape of as many values (its data as it is, row-major).
fn reshaped<const D: usize>(snapshot: &TensorSnapshot, shape: [usize; D]) -> TensorSnapshot {
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

/// The architecture from what the file says and what the user states; a statement that
/// contradicts the file is an error.
fn resolve(path: &Path, found: &Found, stated: &ImportConfig) -> Result<Architecture, ImportError> {
    fn pick<T: PartialEq + fmt::Display + Copy>(
        path: &Path,
        aspect: &'static str,
        stated: Option<T>,
        file: T,
        recorded: Option<Origin>,
    ) -> Result<(T, Origin), ImportError> {
        match (stated, recorded) {
            (Some(stated), Some(origin)) if stated != file => Err(ImportError::Contradiction {
                path: path.to_path_buf(),
                aspect,
                stated: stated.to_string(),
                recorded: file.to_string(),
                origin,
            }),
            (_, Some(origin)) => Ok((file, origin)),
            (Some(stated), None) => Ok((stated, Origin::Stated)),
            (None, None) => Ok((file, Origin::Default)),
        }
    }
    let c = &found.config;
    let (activation, a) = pick(
        path,
        "activation",
        stated.activation,
        c.activation,
        found.recorded,
    )?;
    let (pooling, p) = pick(path, "pooling", stated.pooling, c.pooling, found.recorded)?;
    let (padding, d) = pick(path, "padding", stated.padding, c.padding, found.recorded)?;
    let config = c
        .clone()
        .with_activation(activation)
        .with_pooling(pooling)
        .with_padding(padding);
    config.check()?;
    Ok(Architecture {
        config,
        activation: a,
        pooling: p,
        padding: d,
    })
}

/// Checks the found tensors (dtype, data, finiteness) and applies them to a new model of
/// `architecture`.
fn apply<B: Backend>(
    path: &Path,
    format: WeightsFormat,
    found: Found,
    architecture: &LeNet5Config,
    config: &ImportConfig,
    device: &B::Device,
) -> Result<(LeNet5<B>, Vec<ImportNote>), ImportError> {
    let mismatch = |details: String| ImportError::Mismatch {
        path: path.to_path_buf(),
        details,
    };
    let read_error = |message: String| ImportError::Read {
        path: path.to_path_buf(),
        format,
        message,
    };
    let mut notes = found.notes.clone();
    // Before the model sees them: every tensor it takes is of a floating-point type, with all
    // its data there, and finite (burn-store hands any dtype on as it is, and the model would
    // fail on it later).
    let mut problems = Vec::new();
    let mut converted: BTreeMap<String, usize> = BTreeMap::new();
    for snapshot in &found.snapshots {
        let key = found.file_key(&snapshot.full_path());
        let dtype = snapshot.dtype;
        if dtype != DType::F32 && !ToFloat32::converts(dtype) {
            problems.push(format!(
                "{key} is {}, expected float32 (float16, bfloat16 and float64 are converted)",
                dtype_name(dtype)
            ));
            continue;
        }
        let shape = snapshot.shape.to_vec();
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
    let mut model = ManuallyDrop::new(architecture.init::<B>(device));
    let snapshots: Vec<TensorSnapshot> =
        found.snapshots.iter().map(|s| ToFloat32.adapt(s)).collect();
    // PyTorch stores Linear weights as [out, in], Burn as [in, out]: the adapter transposes.
    let adapter: Box<dyn ModuleAdapter> = if format.pytorch_layout() {
        Box::new(PyTorchToBurnAdapter)
    } else {
        Box::new(IdentityAdapter)
    };
    let result = match catch_panic(|| model.apply(snapshots, None, Some(adapter), false)) {
        // The model is left as it is: leaked, not freed twice.
        Err(panic) => return Err(read_error(format!("the file is corrupt ({panic})"))),
        Ok(result) => result,
    };
    let model = ManuallyDrop::into_inner(model);
    match mismatch_details(&result, &found, format) {
        None => Ok((model, notes)),
        Some(details) => Err(mismatch(details)),
    }
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
        WeightsFormat::Onnx => unreachable!("ONNX files are read by the onnx module"),
    }
}

/// `literal` as a regular expression matching it alone.
fn regex_escape(literal: &str) -> String {
    let mut escaped = String::with_capacity(literal.len());
    for c in literal.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
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

/// The first non-finite value of a tensor, when it has one.
fn non_finite(key: &str, shape: &[usize], data: TensorData) -> Option<NonFinite> {
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

/// Runs `f`, turning a panic into `Err` with its message on one line: burn-store's and
/// onnx-ir's readers panic on some corrupt files, and a corrupt file must be an error. (The
/// panic itself still reaches the process's panic hook; a program that wants it silent
/// installs its own hook.)
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    })
}

/// One line naming everything that does not fit, or `None` when the file fits.
fn mismatch_details(result: &ApplyResult, found: &Found, format: WeightsFormat) -> Option<String> {
    // The shape as the file holds it: PyTorch Linear weights are [out, in], Burn's [in, out].
    let file_shape = |path: &str, dims: &[usize]| -> Vec<usize> {
        let linear_weight = path.starts_with("fc") && path.ends_with(".weight");
        if linear_weight && format.pytorch_layout() {
            dims.iter().rev().copied().collect()
        } else {
            dims.to_vec()
        }
    };
    let mut parts = Vec::new();
    if !result.missing.is_empty() {
        let keys: Vec<String> = result
            .missing
            .iter()
            .map(|(path, _)| found.file_key(path))
            .collect();
        parts.push(format!("missing keys: {}", keys.join(", ")));
    }
    if !result.unused.is_empty() {
        let keys: Vec<String> = result.unused.iter().map(|p| found.file_key(p)).collect();
        parts.push(format!("unexpected keys: {}", keys.join(", ")));
    }
    for error in &result.errors {
        parts.push(match error {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found: got,
            } => format!(
                "{} has shape {:?}, expected {:?}",
                found.file_key(path),
                file_shape(path, got.as_slice()),
                file_shape(path, expected.as_slice()),
            ),
            ApplyError::DTypeMismatch {
                path,
                expected,
                found: got,
            } => format!(
                "{} is {}, expected {}",
                found.file_key(path),
                dtype_name(*got),
                dtype_name(*expected)
            ),
            ApplyError::AdapterError { path, message }
            | ApplyError::LoadError { path, message } => {
                format!("cannot read {}: {message}", found.file_key(path))
            }
        });
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
