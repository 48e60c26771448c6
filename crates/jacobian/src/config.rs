//! The engine's options and errors.

use burn::config::Config;

use crate::Layout;

/// Options of the engine, as in `torch.func.jacrev` and `torch.autograd.functional.jacobian`.
///
/// ```
/// use jacobian::JacobianConfig;
///
/// let config = JacobianConfig::new().with_chunk_size(Some(64)).with_strict(true);
/// assert_eq!(config.chunk_size, Some(64));
/// assert_eq!(JacobianConfig::new().max_bytes, None);
/// ```
#[derive(Config, Debug, PartialEq, Eq)]
pub struct JacobianConfig {
    /// Per-sample blocks (`O x N`, one sample's outputs against one sample's input) per chunk:
    /// the per-sample Jacobian of this many samples is computed at a time and handed over
    /// together; for the full layout, whose output samples hold one block per input sample,
    /// `chunk_size / batch` output samples (at least one). Bounds the memory of a pass.
    /// `None`: the whole batch in one chunk.
    #[config(default = "Some(256)")]
    pub chunk_size: Option<usize>,
    /// Fail with [`JacobianError::Independent`] when an output is not connected to the input
    /// at all (torch's `strict=True`). Otherwise its rows are zero.
    #[config(default = false)]
    pub strict: bool,
    /// Also return `f(x)`, the outputs, with the Jacobian.
    #[config(default = false)]
    pub with_outputs: bool,
    /// Largest result, in bytes, the engine may materialise: the whole Jacobian for
    /// [`per_sample`](crate::per_sample) and [`full`](crate::full), one chunk for the streaming
    /// functions. Refused with [`JacobianError::TooLarge`] before anything is computed.
    /// `None`: no limit.
    pub max_bytes: Option<u64>,
}

/// Why a Jacobian could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum JacobianError {
    /// The input has no sample.
    #[error("the input batch is empty")]
    EmptyBatch,
    /// `f` does not map a batch of `n` samples to `[n, O]`.
    #[error("the function maps a batch of {batch} samples to shape {output:?}, expected [{batch}, outputs]")]
    OutputShape {
        /// Samples in the input.
        batch: usize,
        /// The output's shape.
        output: Vec<usize>,
    },
    /// A [`Differentiable`](crate::Differentiable) returned a Jacobian of the wrong shape.
    #[error("the Jacobian computed has shape {got:?}, expected {expected:?}")]
    JacobianShape {
        /// What it returned.
        got: Vec<usize>,
        /// What the layout needs.
        expected: Vec<usize>,
    },
    /// The caller asked for a tensor rank the layout does not have.
    #[error("the {layout} Jacobian of a rank-{input_rank} input has rank {flat} (input flattened) or {kept} (input dims kept), not {asked}")]
    Rank {
        /// Layout asked for.
        layout: Layout,
        /// Rank of the input.
        input_rank: usize,
        /// Rank with the input dims flattened.
        flat: usize,
        /// Rank with the input dims kept.
        kept: usize,
        /// Rank asked for.
        asked: usize,
    },
    /// Strict mode: output `output` is not connected to the input.
    #[error("output {output} does not depend on the input (strict mode)")]
    Independent {
        /// The output's index.
        output: usize,
    },
    /// The result would exceed [`JacobianConfig::max_bytes`].
    #[error("the {layout} Jacobian {shape:?} needs {bytes} bytes, more than the {limit} allowed")]
    TooLarge {
        /// Layout asked for.
        layout: Layout,
        /// The shape of what would be materialised (the whole result, or one chunk).
        shape: Vec<usize>,
        /// Its size in bytes.
        bytes: u128,
        /// The limit.
        limit: u64,
    },
    /// Per-channel values (a [`Standardized`](crate::Standardized) input's means or standard
    /// deviations) that are neither one nor one per channel of the input.
    #[error("{given} per-channel values for an input of {channels} channel(s), expected 1 or {channels}")]
    Channels {
        /// Values given.
        given: usize,
        /// Channels of the input (axis 1).
        channels: usize,
    },
    /// The consumer of chunks failed (writing to a file, say).
    #[error(transparent)]
    Sink(Box<dyn std::error::Error + Send + Sync>),
}
