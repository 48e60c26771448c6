//! A Jacobian, or a chunk of one, read back to the host: what a writer or a report reads.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::{Chunk, Layout};

/// Consecutive output samples of a Jacobian on the host, `f32` values in row-major order.
///
/// Made from a [`Chunk`] or from a whole Jacobian on a device; the download happens here,
/// once, when a caller asks for the values on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Jacobian {
    /// The layout.
    pub layout: Layout,
    /// Index of the first output sample held, in the batch.
    pub start: usize,
    /// The shape of what is held: `[n, O, input dims...]` (per-sample) or
    /// `[n, O, batch, input dims...]` (full).
    pub shape: Vec<usize>,
    /// The entries, row-major (C order).
    pub values: Vec<f32>,
}

impl Jacobian {
    /// Reads `tensor`, a Jacobian of `layout` (flattened or not) whose first output sample is
    /// sample `start` of the batch, back to the host, as `f32`. `input_dims` is one sample's
    /// input shape.
    ///
    /// # Panics
    ///
    /// When the tensor's shape is not of that layout and input.
    pub fn from_tensor<B: Backend, const R: usize>(
        layout: Layout,
        start: usize,
        tensor: Tensor<B, R>,
        input_dims: &[usize],
    ) -> Self {
        let dims = tensor.dims();
        // [n, O] (per-sample) or [n, O, batch] (full), then the input's dims.
        let leading = match layout {
            Layout::Full => 3,
            Layout::PerSample => 2,
        };
        let mut shape = dims[..leading.min(R)].to_vec();
        shape.extend_from_slice(input_dims);
        let len = shape.iter().product::<usize>();
        assert_eq!(
            dims.iter().product::<usize>(),
            len,
            "a {layout} Jacobian {dims:?} of inputs {input_dims:?}"
        );
        let values = tensor
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("converted to f32 just before");
        Jacobian {
            layout,
            start,
            shape,
            values,
        }
    }

    /// Reads a chunk handed over by the engine back to the host.
    pub fn from_chunk<B: Backend, const R: usize>(
        chunk: Chunk<B, R>,
        input_dims: &[usize],
    ) -> Self {
        Self::from_tensor(chunk.layout, chunk.start, chunk.jacobian, input_dims)
    }

    /// Output samples held.
    pub fn samples(&self) -> usize {
        self.shape[0]
    }

    /// Outputs per sample.
    pub fn num_outputs(&self) -> usize {
        self.shape[1]
    }

    /// Shape of one sample's input (without the batch axis).
    pub fn input_dims(&self) -> &[usize] {
        match self.layout {
            Layout::Full => &self.shape[3..],
            Layout::PerSample => &self.shape[2..],
        }
    }

    /// Entries per sample's input.
    pub fn input_len(&self) -> usize {
        self.input_dims().iter().product()
    }

    /// The `O x input_len` matrix of the `i`-th sample held (sample `start + i` of the
    /// batch), row-major: `d y[b, k] / d x[b, ...]`.
    pub fn sample_matrix(&self, i: usize) -> Vec<f32> {
        let (outputs, n) = (self.num_outputs(), self.input_len());
        match self.layout {
            Layout::PerSample => self.values[i * outputs * n..(i + 1) * outputs * n].to_vec(),
            Layout::Full => {
                let batch = self.shape[2];
                (0..outputs)
                    .flat_map(|k| {
                        let row = ((i * outputs + k) * batch + self.start + i) * n;
                        self.values[row..row + n].iter().copied()
                    })
                    .collect()
            }
        }
    }

    /// The sizes of the entries (see [`Magnitudes`]).
    pub fn magnitudes(&self) -> Magnitudes {
        let n = self.input_len();
        let outputs = self.num_outputs();
        let mut m = Magnitudes {
            entries: self.values.len() as u64,
            max_abs_off_diagonal: (self.layout == Layout::Full).then_some(0.0),
            ..Magnitudes::default()
        };
        for (block, values) in self.values.chunks_exact(n.max(1)).enumerate() {
            // Full layout: block (i, k, b') is on the batch diagonal when b' = start + i.
            let off_diagonal = match self.layout {
                Layout::Full => {
                    let batch = self.shape[2];
                    block % batch != self.start + block / (outputs * batch)
                }
                Layout::PerSample => false,
            };
            for (j, &v) in values.iter().enumerate() {
                if !v.is_finite() {
                    m.non_finite += 1;
                    if off_diagonal {
                        m.non_finite_off_diagonal += 1;
                    }
                    if m.first_non_finite.is_none() {
                        m.first_non_finite = Some(self.index_of(block * n + j));
                    }
                    continue;
                }
                let a = v.abs();
                m.max_abs = m.max_abs.max(a);
                if off_diagonal {
                    m.max_abs_off_diagonal = m.max_abs_off_diagonal.map(|o| o.max(a));
                }
            }
        }
        m
    }

    /// The index in the whole Jacobian of entry `flat` of what is held.
    fn index_of(&self, flat: usize) -> Vec<usize> {
        let mut index = vec![0; self.shape.len()];
        let mut rest = flat;
        for (i, &d) in self.shape.iter().enumerate().rev() {
            index[i] = rest % d;
            rest /= d;
        }
        index[0] += self.start;
        index
    }
}

/// How large a Jacobian's entries are: the largest finite `|J|`, on and off the batch
/// diagonal, and the entries that are not finite (NaN or infinite), which no maximum hides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Magnitudes {
    /// Entries measured.
    pub entries: u64,
    /// The largest finite `|J|` (zero when none is finite).
    pub max_abs: f32,
    /// Full layout: the largest finite `|J[b, k, b', ...]|` with `b != b'`; `None` for the
    /// per-sample layout, which holds no such entry.
    pub max_abs_off_diagonal: Option<f32>,
    /// Entries that are NaN or infinite.
    pub non_finite: u64,
    /// Of those, the ones off the batch diagonal (full layout).
    pub non_finite_off_diagonal: u64,
    /// The index (in the whole Jacobian) of the first of them.
    pub first_non_finite: Option<Vec<usize>>,
}

impl Magnitudes {
    /// Folds the magnitudes of the next chunk in.
    pub fn merge(&mut self, next: &Magnitudes) {
        self.entries += next.entries;
        self.max_abs = self.max_abs.max(next.max_abs);
        self.max_abs_off_diagonal = match (self.max_abs_off_diagonal, next.max_abs_off_diagonal) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.non_finite += next.non_finite;
        self.non_finite_off_diagonal += next.non_finite_off_diagonal;
        if self.first_non_finite.is_none() {
            self.first_non_finite.clone_from(&next.first_non_finite);
        }
    }

    /// Whether every block with `b != b'` was measured and is exactly zero (full layout only):
    /// never claimed when one of those entries is not finite.
    pub fn off_diagonal_is_zero(&self) -> bool {
        self.max_abs_off_diagonal == Some(0.0) && self.non_finite_off_diagonal == 0
    }
}
