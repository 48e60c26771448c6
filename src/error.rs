//! Errors as typed values with their causes, and the one place that maps each kind to the exit
//! code the README documents.

use std::error::Error as _;
use std::path::PathBuf;

use jacobian::JacobianError;
use lenet5::import::ImportError;

/// What went wrong, by whose fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The input batch (`--input`, `--images`) is missing or not what LeNet-5 takes.
    #[error("{}", .path.display())]
    Input {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: InputProblem,
    },
    /// An MNIST IDX input file cannot be read.
    #[error(transparent)]
    Idx(#[from] lenet5::mnist::MnistError),
    /// The weights (`--weights`) are missing, do not fit LeNet-5, or are not finite.
    #[error("{}{}", .0, weights_hint(.0))]
    Weights(#[from] ImportError),
    /// An output file cannot be written.
    #[error("{}", .path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        problem: OutputProblem,
    },
    /// The engine refused or failed.
    #[error(transparent)]
    Jacobian(#[from] JacobianError),
    /// The full layout asked for would not fit in memory.
    #[error(
        "the full Jacobian {shape} needs {bytes} bytes ({:.1} GiB), more than the {:.1} GiB of memory available; \
         use --layout per-sample ({per_sample_bytes} bytes), the same information when samples are independent",
        gib(*.bytes), gib(*.available)
    )]
    FullTooLarge {
        /// Its shape, as Python prints it.
        shape: String,
        /// Its size.
        bytes: u128,
        /// The memory available.
        available: u128,
        /// The size of the per-sample layout.
        per_sample_bytes: u128,
    },
    /// The model's logits are not the ones `--reference-logits` holds.
    #[error(
        "{}: the model's logits differ from these by up to {worst:.4e} ({:.2e} of the largest) \
         with {computed}: {}",
        path.display(),
        relative,
        match matching.as_slice() {
            [] => "no variant of LeNet-5 the tool knows gives them (other weights, another \
                   input or its normalisation?)"
                .to_string(),
            variants => format!("the weights give them with {}", variants.join(", or with ")),
        }
    )]
    ReferenceMismatch {
        /// The reference file.
        path: PathBuf,
        /// The largest difference.
        worst: f64,
        /// That over the largest reference logit.
        relative: f64,
        /// The activation and pooling computed with.
        computed: String,
        /// The flags of the variants that match.
        matching: Vec<String>,
    },
    /// The chosen backend cannot run here.
    #[error(
        "no wgpu adapter found: install a GPU driver or Mesa's software Vulkan driver \
         (Debian: mesa-vulkan-drivers libvulkan1), or use --backend flex"
    )]
    NoWgpuAdapter,
    /// A dependency panicked on something the checks before it did not catch.
    #[error("internal error: {0}")]
    Panic(String),
}

/// What the user can do about an [`ImportError`], when the command line has a way.
fn weights_hint(e: &ImportError) -> &'static str {
    match e {
        ImportError::NonFinite { .. } => "; pass --allow-non-finite to proceed anyway",
        ImportError::Contradiction { .. } => {
            "; drop the flag, or pass weights without a record of the architecture"
        }
        _ => "",
    }
}

fn gib(bytes: u128) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

impl Error {
    /// The process exit code of this kind of error (the README's table).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Input { .. } | Error::Idx(_) => 3,
            // Flags that contradict what the file records are flags to change.
            Error::Weights(ImportError::Contradiction { .. }) => 2,
            Error::Weights(_) | Error::ReferenceMismatch { .. } => 4,
            Error::Output { .. }
            | Error::Jacobian(_)
            | Error::FullTooLarge { .. }
            | Error::NoWgpuAdapter
            | Error::Panic(_) => 5,
        }
    }

    /// The message and its causes on one line: `a: b: c`, whatever a dependency's message holds.
    pub fn one_line(&self) -> String {
        let mut line = self.to_string();
        let mut cause = self.source();
        while let Some(e) = cause {
            let text = e.to_string();
            // A cause whose text its parent already shows (a transparent wrapper) adds nothing.
            if !text.is_empty() && !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = e.source();
        }
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// An input error of `path`.
    pub fn input(path: impl Into<PathBuf>, problem: InputProblem) -> Self {
        Error::Input {
            path: path.into(),
            problem,
        }
    }

    /// An output error of `path`.
    pub fn output(path: impl Into<PathBuf>, problem: OutputProblem) -> Self {
        Error::Output {
            path: path.into(),
            problem,
        }
    }
}

/// What is wrong with an input file or directory.
#[derive(Debug, thiserror::Error)]
pub enum InputProblem {
    /// It does not exist.
    #[error("no such {kind}")]
    Missing {
        /// What was expected: "file, expected a .npy file", "directory"...
        kind: &'static str,
    },
    /// It cannot be opened or read.
    #[error("cannot read")]
    Unreadable(#[source] std::io::Error),
    /// It is not of the format expected.
    #[error("{0}")]
    Format(String),
    /// An image could not be decoded.
    #[error("not a readable PNG or JPEG image")]
    Image(#[source] image::ImageError),
    /// Its shape is not the model's input.
    #[error("shape {shape:?}, expected [N, {}, {}, {}]{hint}", expected[0], expected[1], expected[2])]
    Shape {
        /// The shape found.
        shape: Vec<usize>,
        /// The shape of one sample the model takes.
        expected: [usize; 3],
        /// What to do instead, when known.
        hint: String,
    },
    /// It holds no sample.
    #[error(
        "shape {shape:?} is an empty batch, expected [N, {}, {}, {}] with N >= 1",
        expected[0], expected[1], expected[2]
    )]
    Empty {
        /// The shape found.
        shape: Vec<usize>,
        /// The shape of one sample the model takes.
        expected: [usize; 3],
    },
    /// It holds NaN or infinite values.
    #[error(
        "{count} non-finite value(s) (NaN or Inf), the first {value} at index {index:?}; \
         pass --allow-non-finite to proceed anyway"
    )]
    NonFinite {
        /// How many.
        count: usize,
        /// The first.
        value: f32,
        /// Where the first is.
        index: Vec<usize>,
    },
}

/// Why an output file cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputProblem {
    /// The directory to write in is missing or not a directory.
    #[error("cannot write: {} {}, expected an existing directory", .dir.display(), .what)]
    NoDirectory {
        /// The directory.
        dir: PathBuf,
        /// "does not exist" or "is not a directory".
        what: &'static str,
    },
    /// The target is a directory.
    #[error("is a directory, expected a file name")]
    IsDirectory,
    /// The temporary file cannot be made in the target's directory.
    #[error("cannot write in directory {}", .dir.display())]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        cause: std::io::Error,
    },
    /// Writing failed.
    #[error("cannot write")]
    Write(#[source] std::io::Error),
    /// The PNG could not be encoded.
    #[error("cannot encode the PNG")]
    Png(#[source] image::ImageError),
    /// The chart could not be drawn.
    #[error("cannot draw the chart: {0}")]
    Chart(String),
}

/// Result of the application's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;
