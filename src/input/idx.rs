//! MNIST's IDX files as the input batch: the images file (plain or gzip) and its labels.

use std::path::{Path, PathBuf};

use lenet5::mnist::{self, DigitFrame, IdxImages};
use lenet5::model::config::MNIST_SIZE;

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

/// Reads an IDX images file as a batch of `dims` (the model's input, one channel): 28 x 28
/// digits are centred in it as LeNet-5 expects for MNIST ([`DigitFrame`]: in 32 x 32, or as
/// they are for a model that pads them itself), images of the model's size are taken as they
/// are; each pixel `v` becomes `v / 255`. With `labels`, an IDX labels file of as many labels.
pub fn load(images: &Path, labels: Option<&Path>, dims: [usize; 3]) -> Result<Batch> {
    let idx = mnist::read_images(images)?;
    let values = to_inputs(images, &idx, dims)?;
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
        dims,
        values,
        names: None,
        labels,
    })
}

fn to_inputs(path: &Path, idx: &IdxImages, dims: [usize; 3]) -> Result<Vec<f32>> {
    let [channels, size, _] = dims;
    let fail = |what: String| Error::input(path, InputProblem::Format(what));
    if channels != 1 {
        return Err(fail(format!(
            "grayscale images, and the model takes {channels} channels (its conv1 weight says)"
        )));
    }
    match (idx.rows(), idx.cols()) {
        (rows, cols) if (rows, cols) == (size, size) => {
            Ok(idx.pixels().iter().map(|&v| f32::from(v) / 255.0).collect())
        }
        (MNIST_SIZE, MNIST_SIZE) => {
            let frame = DigitFrame::for_input(dims).map_err(|e| fail(e.to_string()))?;
            Ok(idx
                .pixels()
                .chunks_exact(MNIST_SIZE * MNIST_SIZE)
                .flat_map(|digit| frame.input(digit.try_into().expect("28 x 28 pixels")))
                .collect())
        }
        (rows, cols) => Err(fail(format!(
            "images of {rows} x {cols} pixels, expected 28 x 28 (MNIST's digits) or the model's \
             {size} x {size}"
        ))),
    }
}
