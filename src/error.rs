//! Errors of the application and the exit code of each kind.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Once;

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

thread_local! {
    /// Set while [`catch_panic`] runs on this thread: its panics print nothing.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err` with the panic's message, on one line, and printing
/// nothing for it. For parsers of untrusted files that may panic on some inputs; the caller
/// turns the message into an error of the right kind. Panics of other threads print as usual.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was_quiet = QUIET.with(|q| q.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was_quiet));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    })
}
