//! The input batch: from a `.npy` file, an MNIST IDX file, a directory of images, or random,
//! with each sample's label when the source knows it; and the checks that it is what LeNet-5
//! takes.

pub mod idx;
pub mod images;
pub mod npy;

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use lenet5::{IMAGE_DIMS, IMAGE_LEN, IMAGE_SIZE};
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
    /// A file: a float32 (or float64) `.npy` array `[N, 1, 32, 32]`, or an MNIST IDX images
    /// file (told apart by their first bytes), with the IDX labels file `labels` (by default
    /// the one beside it, when there is one).
    File {
        /// The file.
        path: PathBuf,
        /// Its labels.
        labels: Option<PathBuf>,
    },
    /// The PNG and JPEG files of a directory (see [`images`]).
    Images(PathBuf),
}

/// A batch of images on the host, `[len, 1, 32, 32]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Samples.
    pub len: usize,
    /// Pixel values, row-major.
    pub values: Vec<f32>,
    /// Each sample's name (its file), when it came from files.
    pub names: Option<Vec<String>>,
    /// Each sample's class, where the source says it (IDX labels, image file names).
    pub labels: Vec<Option<usize>>,
}

/// Reads the batch `source` names and checks it; non-finite values are refused unless
/// `allow_non_finite`. Returns the notes to show the user once the input is accepted.
pub fn load(source: &Source, allow_non_finite: bool) -> Result<(Batch, Vec<String>)> {
    let (batch, notes) = match source {
        Source::Random { batch, seed } => (Batch::random(*batch, *seed), Vec::new()),
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
            (idx::load(path, labels.as_deref())?, notes)
        }
        Source::File { path, labels } => {
            if let Some(labels) = labels {
                return Err(Error::Usage(format!(
                    "--labels {} goes with an MNIST IDX images file, not a .npy input",
                    labels.display()
                )));
            }
            let array = npy::read(path)?;
            let batch = Batch::from_array(path, &array.shape, array.values)?;
            let notes = array
                .converted_from_f64
                .then(|| format!("{}: float64 values converted to float32", path.display()));
            (batch, notes.into_iter().collect())
        }
        Source::Images(dir) => {
            let batch = images::load_dir(dir)?;
            let note = images::describe(dir, &batch);
            (batch, vec![note])
        }
    };
    if !allow_non_finite {
        let path = match source {
            Source::File { path, .. } | Source::Images(path) => path.as_path(),
            Source::Random { .. } => Path::new("the random input"),
        };
        batch.check_finite(path)?;
    }
    Ok((batch, notes))
}

impl Batch {
    /// `batch` images of uniform `[0, 1)` pixels (like `torch.rand`), the same for a seed on
    /// every backend and platform.
    pub fn random(batch: usize, seed: u64) -> Batch {
        let mut rng = StdRng::seed_from_u64(seed);
        let values = (0..batch * IMAGE_LEN)
            .map(|_| rng.random::<f32>())
            .collect();
        Batch {
            len: batch,
            values,
            names: None,
            labels: vec![None; batch],
        }
    }

    /// The batch of an array of `shape` read from `source`: `[N, 1, 32, 32]` with `N >= 1`.
    pub fn from_array(source: &Path, shape: &[usize], values: Vec<f32>) -> Result<Batch> {
        let fail = |problem| Error::input(source, problem);
        match shape {
            [n, rest @ ..] if rest == IMAGE_DIMS && *n > 0 => {}
            [0, rest @ ..] if rest == IMAGE_DIMS => {
                return Err(fail(InputProblem::Empty {
                    shape: shape.to_vec(),
                }))
            }
            _ => {
                let hint = match shape {
                    [.., 28, 28] => {
                        " (28 x 28 digits: pass them with --images, which pads them to 32 x 32)"
                    }
                    _ => "",
                };
                return Err(fail(InputProblem::Shape {
                    shape: shape.to_vec(),
                    hint,
                }));
            }
        }
        if values.len() != shape[0] * IMAGE_LEN {
            return Err(fail(InputProblem::Format(format!(
                "{} values for shape {shape:?}, expected {}",
                values.len(),
                shape[0] * IMAGE_LEN
            ))));
        }
        Ok(Batch {
            len: shape[0],
            values,
            names: None,
            labels: vec![None; shape[0]],
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
        let (n, pixel) = (first / IMAGE_LEN, first % IMAGE_LEN);
        let plane = IMAGE_SIZE * IMAGE_SIZE;
        let (c, h, w) = (
            pixel / plane,
            pixel / IMAGE_SIZE % IMAGE_SIZE,
            pixel % IMAGE_SIZE,
        );
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
    /// - output: `[len, 1, 32, 32]`
    pub fn to_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        let mut shape = vec![self.len];
        shape.extend(IMAGE_DIMS);
        Tensor::from_data(TensorData::new(self.values.clone(), shape), device)
    }

    /// The pixels of the first `samples` samples.
    pub fn first(&self, samples: usize) -> &[f32] {
        &self.values[..samples.min(self.len) * IMAGE_LEN]
    }
}
