//! A progress bar on stderr for runs that take more than a second.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shown only once the work has run for [`Progress::DELAY`] and only on a terminal, so short
/// runs and redirected output stay clean.
pub struct Progress {
    bar: ProgressBar,
    start: Instant,
    shown: bool,
}

impl Progress {
    /// How long the work runs before the bar appears.
    pub const DELAY: Duration = Duration::from_secs(1);

    /// A bar counting `total` units named `unit`.
    pub fn new(total: u64, unit: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}} left)"
            ))
            .expect("valid template")
            .progress_chars("=> "),
        );
        Progress {
            bar,
            start: Instant::now(),
            shown: false,
        }
    }

    /// Counts `n` more units done.
    pub fn advance(&mut self, n: u64) {
        if !self.shown && self.start.elapsed() >= Self::DELAY {
            // stderr(): drawn only when stderr is a terminal.
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.inc(n);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
