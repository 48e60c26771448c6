//! MNIST's IDX files as the input batch: the images file (plain or gzip) and its labels.

use std::path::{Path, PathBuf};

use lenet5::mnist::{self, IdxImages};
use lenet5::{IMAGE_LEN, IMAGE_SIZE, MNIST_SIZE};

use crate::error::{Error, InputProblem, Result};
use crate::input::Batch;

/// Whether the file starts like an IDX file: gzip (MNIST is distributed compressed) or the
/// first two bytes of IDX's magic number, which are zero (`.npy` starts with `\x93NUMPY`).
pub fn looks_like_idx(path: &Path) -> bool {
    let mut start = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut start))
        .is_ok_and(|()| start == [0x1f, 0x8b] || start == [0, 0])
}

/// The labels file beside an images file, by MNIST's naming (`t10k-images-idx3-ubyte.gz`
/// beside `t10k-labels-idx1-ubyte.gz`), compressed or not; `None` when there is none.
pub fn sibling_labels(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    let labels = stem.replace("images-idx3", "labels-idx1");
    if labels == stem {
        return None;
    }
    [labels.clone(), format!("{labels}.gz")]
        .into_iter()
        .map(|name| images.with_file_name(name))
        .find(|path| path.is_file())
}

/// Reads an IDX images file as a batch: 28 x 28 digits are centred in 32 x 32 as LeNet-5
/// expects for MNIST ([`mnist::digit_to_input`]), 32 x 32 images are taken as they are; each
/// pixel `v` becomes `v / 255`. With `labels`, an IDX labels file of as many labels.
pub fn load(images: &Path, labels: Option<&Path>) -> Result<Batch> {
    let idx = mnist::read_images(images)?;
    let values = to_inputs(images, &idx)?;
    let len = idx.len();
    let labels = match labels {
        Some(path) => {
            let labels = mnist::read_labels(path)?;
            if labels.len() != len {
                return Err(Error::input(
                    path,
                    InputProblem::Format(format!(
                        "{} labels for the {len} images of {}",
                        labels.len(),
                        images.display()
                    )),
                ));
            }
            labels.into_iter().map(|l| Some(usize::from(l))).collect()
        }
        None => vec![None; len],
    };
    Ok(Batch {
        len,
        values,
        names: None,
        labels,
    })
}

fn to_inputs(path: &Path, idx: &IdxImages) -> Result<Vec<f32>> {
    match (idx.rows(), idx.cols()) {
        (MNIST_SIZE, MNIST_SIZE) => Ok(idx
            .pixels()
            .chunks_exact(MNIST_SIZE * MNIST_SIZE)
            .flat_map(|digit| mnist::digit_to_input(digit.try_into().expect("28 x 28 pixels")))
            .collect()),
        (IMAGE_SIZE, IMAGE_SIZE) => {
            Ok(idx.pixels().iter().map(|&v| f32::from(v) / 255.0).collect())
        }
        (rows, cols) => Err(Error::input(
            path,
            InputProblem::Format(format!(
                "images of {rows} x {cols} pixels, expected 28 x 28 (MNIST's digits) or 32 x 32"
            )),
        )),
    }
    .inspect(|values: &Vec<f32>| debug_assert_eq!(values.len(), idx.len() * IMAGE_LEN))
}
