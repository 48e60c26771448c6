//! The input batch: from a `.npy` file, an MNIST IDX file, a directory of images, or random,
//! with each sample's label when the source knows it; and the checks that it is what the
//! model takes.

pub mod idx;
pub mod images;
pub mod npy;

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::{Error, InputProblem, Result};

/// Where the batch comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `batch` images of uniform `[0, 1)` pixels from `seed`.
    Random {
        /// Samples.
        batch: usize,
        /// Seed of the generator.
        seed: u64,
    },
    /// A file: a float32 (or float64) `.npy` array `[N, C, H, W]`, or an MNIST IDX images
    /// file (told apart by their first bytes), with its labels: an IDX labels file (by default
    /// the one beside an IDX images file, when there is one) or a `.npy` array of `N`
    /// integers.
    File {
        /// The file.
        path: PathBuf,
        /// Its labels.
        labels: Option<PathBuf>,
    },
    /// The PNG and JPEG files of a directory (see [`images`]).
    Images(PathBuf),
}

/// A batch of images on the host, `[len, dims...]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Samples.
    pub len: usize,
    /// The shape of one sample, `[channels, height, width]`: the model's input.
    pub dims: [usize; 3],
    /// Pixel values, row-major.
    pub values: Vec<f32>,
    /// Each sample's name (its file), when it came from files.
    pub names: Option<Vec<String>>,
    /// Each sample's class, where the source says it (IDX labels, image file names, a labels
    /// file).
    pub labels: Vec<Option<usize>>,
}

/// Reads the batch `source` names, shaped as `dims` (the model's input), and checks it;
/// non-finite values are refused unless `allow_non_finite`. Returns the notes to show the
/// user once the input is accepted.
pub fn load(
    source: &Source,
    dims: [usize; 3],
    allow_non_finite: bool,
) -> Result<(Batch, Vec<String>)> {
    let (mut batch, mut notes) = match source {
        Source::Random { batch, seed } => (Batch::random(*batch, dims, *seed), Vec::new()),
        Source::File { path, labels } if idx::looks_like_idx(path) => {
            let mut notes = Vec::new();
            let labels = labels.clone().or_else(|| {
                let sibling = idx::sibling_labels(path)?;
                notes.push(format!(
                    "{}: labels from {}",
                    path.display(),
                    sibling.display()
                ));
                Some(sibling)
            });
            (idx::load(path, labels.as_deref(), dims)?, notes)
        }
        Source::File { path, .. } => {
            let array = npy::read(path)?;
            let shape = array.shape.clone();
            let (values, converted) = array.floats(path, "the input images")?;
            let batch = Batch::from_array(path, &shape, dims, values)?;
            let notes = converted
                .then(|| format!("{}: float64 values converted to float32", path.display()));
            (batch, notes.into_iter().collect())
        }
        Source::Images(dir) => {
            let batch = images::load_dir(dir, dims)?;
            let note = images::describe(dir, &batch);
            (batch, vec![note])
        }
    };
    if let Source::File {
        path,
        labels: Some(labels),
    } = source
    {
        if !idx::looks_like_idx(path) {
            batch.labels = npy_labels(labels, batch.len)?;
            notes.push(format!(
                "{}: labels from {}",
                path.display(),
                labels.display()
            ));
        }
    }
    if !allow_non_finite {
        let path = match source {
            Source::File { path, .. } | Source::Images(path) => path.as_path(),
            Source::Random { .. } => Path::new("the random input"),
        };
        batch.check_finite(path)?;
    }
    Ok((batch, notes))
}

/// The labels of a `.npy` input: an array of `len` integers, each a class index.
fn npy_labels(path: &Path, len: usize) -> Result<Vec<Option<usize>>> {
    let array = npy::read(path)?;
    let shape = array.shape.clone();
    let fail = |what: String| Error::input(path, InputProblem::Format(what));
    if shape != [len] {
        return Err(fail(format!(
            "labels of shape {shape:?}, expected [{len}]: one integer per sample of the input"
        )));
    }
    let labels = array.integers(path, "labels (class indices)")?;
    labels
        .iter()
        .enumerate()
        .map(|(i, &label)| {
            usize::try_from(label).map(Some).map_err(|_| {
                fail(format!(
                    "label {label} at index {i}, expected a class index >= 0"
                ))
            })
        })
        .collect()
}

/// The logits PyTorch gave for the batch (`--reference-logits`): `[len, classes]` floats.
pub fn reference_logits(path: &Path, len: usize, classes: usize) -> Result<Vec<f32>> {
    let array = npy::read(path)?;
    let shape = array.shape.clone();
    if shape != [len, classes] {
        return Err(Error::input(
            path,
            InputProblem::Format(format!(
                "logits of shape {shape:?}, expected [{len}, {classes}]: one row per sample of the \
                 input, one column per class of the model"
            )),
        ));
    }
    Ok(array.floats(path, "logits")?.0)
}

impl Batch {
    /// `batch` images of `dims` with uniform `[0, 1)` pixels (like `torch.rand`), the same for
    /// a seed on every backend and platform.
    pub fn random(batch: usize, dims: [usize; 3], seed: u64) -> Batch {
        let mut rng = StdRng::seed_from_u64(seed);
        let values = (0..batch * dims.iter().product::<usize>())
            .map(|_| rng.random::<f32>())
            .collect();
        Batch {
            len: batch,
            dims,
            values,
            names: None,
            labels: vec![None; batch],
        }
    }

    /// Values in one sample.
    pub fn sample_len(&self) -> usize {
        self.dims.iter().product()
    }

    /// The batch of an array of `shape` read from `source`: `[N, dims...]` with `N >= 1`.
    pub fn from_array(
        source: &Path,
        shape: &[usize],
        dims: [usize; 3],
        values: Vec<f32>,
    ) -> Result<Batch> {
        let fail = |problem| Error::input(source, problem);
        match shape {
            [n, rest @ ..] if rest == dims && *n > 0 => {}
            [0, rest @ ..] if rest == dims => {
                return Err(fail(InputProblem::Empty {
                    shape: shape.to_vec(),
                    expected: dims,
                }))
            }
            _ => {
                return Err(fail(InputProblem::Shape {
                    shape: shape.to_vec(),
                    expected: dims,
                    hint: shape_hint(shape, dims),
                }));
            }
        }
        let len = shape[0];
        if values.len() != len * dims.iter().product::<usize>() {
            return Err(fail(InputProblem::Format(format!(
                "{} values for shape {shape:?}, expected {}",
                values.len(),
                len * dims.iter().product::<usize>()
            ))));
        }
        Ok(Batch {
            len,
            dims,
            values,
            names: None,
            labels: vec![None; len],
        })
    }

    /// Refuses NaN and infinite pixels, naming how many and where the first is.
    fn check_finite(&self, source: &Path) -> Result<()> {
        let mut bad = self
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_finite());
        let Some((first, &value)) = bad.next() else {
            return Ok(());
        };
        let [_, height, width] = self.dims;
        let (n, pixel) = (first / self.sample_len(), first % self.sample_len());
        let plane = height * width;
        let (c, h, w) = (pixel / plane, pixel / width % height, pixel % width);
        Err(Error::input(
            source,
            InputProblem::NonFinite {
                count: 1 + bad.count(),
                value,
                index: vec![n, c, h, w],
            },
        ))
    }

    /// The batch as a tensor on `device`.
    ///
    /// # Shapes
    ///
    /// - output: `[len, channels, height, width]`
    pub fn to_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        let [c, h, w] = self.dims;
        Tensor::from_data(
            TensorData::new(self.values.clone(), [self.len, c, h, w]),
            device,
        )
    }

    /// The pixels of the first `samples` samples.
    pub fn first(&self, samples: usize) -> &[f32] {
        &self.values[..samples.min(self.len) * self.sample_len()]
    }
}

/// What to do when an input has the wrong shape, where something can be said.
fn shape_hint(shape: &[usize], dims: [usize; 3]) -> String {
    let [channels, size, _] = dims;
    match shape {
        [_, c, 28, 28] if size == 32 && *c == channels => {
            " (28 x 28 digits: pass them with --images, which pads them to 32 x 32, or state \
             --padding 2 for a LeNet-5 that pads them in its first convolution, as d2l's)"
                .into()
        }
        [_, c, 32, 32] if size == 28 && *c == channels => {
            " (a LeNet-5 with --padding 2 takes 28 x 28 images)".into()
        }
        [_, c, h, w] if *c != channels && [*h, *w] == [size, size] => {
            format!(" (the model's first convolution takes {channels} channel(s), its weights say)")
        }
        _ => String::new(),
    }
}
