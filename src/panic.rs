//! The panic guard: readers of untrusted files and backends may panic on what the checks
//! before them did not catch; the application turns every panic into a one-line error.

use std::panic::{self, AssertUnwindSafe};

/// Makes panics print nothing (the application reports each as one line), unless
/// `RUST_BACKTRACE` is set, for whoever debugs one. For the application's process only: a
/// library never installs a hook.
pub fn install_quiet_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        panic::set_hook(Box::new(|_| {}));
    }
}

/// Runs `f`, turning a panic into `Err` with its message on one line.
pub fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    })
}
