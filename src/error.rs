//! Errors of the application and the exit code of each kind.

use std::process::ExitCode;

/// What went wrong, by whose fault; each kind has its own exit code (documented in the README).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The command line is wrong: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The input (`--input`, `--images`) is missing or not what LeNet-5 takes: exit code 3.
    #[error("{0}")]
    Input(String),
    /// The weights (`--weights`) are missing or do not fit: exit code 4.
    #[error("{0}")]
    Weights(String),
    /// The computation or the output failed (no wgpu adapter, a file that cannot be written,
    /// a Jacobian too large for memory): exit code 5.
    #[error("{0}")]
    Runtime(String),
}

impl AppError {
    /// The process exit code of this kind of error.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            AppError::Usage(_) => 2,
            AppError::Input(_) => 3,
            AppError::Weights(_) => 4,
            AppError::Runtime(_) => 5,
        })
    }
}

impl From<lenet5::import::ImportError> for AppError {
    fn from(e: lenet5::import::ImportError) -> Self {
        AppError::Weights(e.to_string())
    }
}

impl From<jacobian::JacobianError> for AppError {
    fn from(e: jacobian::JacobianError) -> Self {
        AppError::Runtime(e.to_string())
    }
}

/// Result of the application's functions.
pub type Result<T> = std::result::Result<T, AppError>;

/// Runs `f`, turning a panic into `Err` with its message, printing nothing for it: for
/// parsers of untrusted files that may panic on some inputs. The model crate's, shared.
pub use lenet5::import::catch_panic;
