//! `--images DIR`: a directory of PNG and JPEG files as the input batch.
//!
//! The rule, the same as in `--images`'s help:
//!
//! - the files ending in `.png`, `.jpg` or `.jpeg` (any case) are read, in the order of their
//!   file names; other files and subdirectories are ignored, and a directory without any
//!   image is an error;
//! - for a model of one input channel each image is converted to grayscale (its luminance; an
//!   alpha channel is dropped), for a model of three to RGB, with pixel values scaled to
//!   `[0, 1]` (an 8-bit value `v` becomes `v / 255`);
//! - a grayscale 28 x 28 image (an MNIST digit) is centred in the model's input: padded with
//!   2 zero pixels on every side to 32 x 32, as LeNet-5 expects for MNIST, or taken as it is
//!   by a model that pads it in its first convolution (`--padding 2`); an image of the
//!   model's size is taken as it is; any other size is resized to it with a triangle
//!   (bilinear) filter, without keeping the aspect ratio.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{DynamicImage, GenericImageView, ImageBuffer, ImageReader, Luma, Rgb};
use lenet5::mnist::DigitFrame;
use lenet5::model::config::MNIST_SIZE;

use crate::error::{Error, InputProblem, Result};
use crate::input::Batch;

/// File names the note of [`describe`] lists at most.
const NAMES_SHOWN: usize = 16;

/// Whether a path names a PNG or JPEG file, by its extension.
fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
}

/// The PNG and JPEG files of `dir`, sorted by file name.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let fail = |problem| Error::input(dir, problem);
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail(InputProblem::Missing { kind: "directory" }),
        _ => fail(InputProblem::Unreadable(e)),
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| fail(InputProblem::Unreadable(e)))?.path();
        if is_image(&path) && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(fail(InputProblem::Format(
            "no PNG or JPEG file (*.png, *.jpg, *.jpeg) in the directory".into(),
        )));
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Reads the images of `dir` as a batch (see the [module documentation](self) for the rule).
pub fn load_dir(dir: &Path, dims: [usize; 3]) -> Result<Batch> {
    let files = list(dir)?;
    if ![1, 3].contains(&dims[0]) {
        return Err(Error::input(
            dir,
            InputProblem::Format(format!(
                "images are grayscale or RGB, and the model takes {} channels",
                dims[0]
            )),
        ));
    }
    let mut values = Vec::with_capacity(files.len() * dims.iter().product::<usize>());
    let mut names = Vec::with_capacity(files.len());
    for path in &files {
        values.extend(to_sample(&read(path)?, dims));
        names.push(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    let labels = names.iter().map(|name| label_of(name)).collect();
    Ok(Batch {
        len: files.len(),
        dims,
        values,
        names: Some(names),
        labels,
    })
}

/// The class a file name gives its image: the number before the first underscore, as in MNIST
/// exports (`7_0003.png` is a 7); `None` for other names.
pub fn label_of(name: &str) -> Option<usize> {
    let (first, _) = name.split_once('_')?;
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    first.parse().ok()
}

/// The note that says which file became which sample.
pub fn describe(dir: &Path, batch: &Batch) -> String {
    let names = batch.names.as_deref().unwrap_or_default();
    let shown: Vec<&str> = names.iter().take(NAMES_SHOWN).map(String::as_str).collect();
    format!(
        "{}: {} image(s) as samples 0.. in file-name order: {}{}",
        dir.display(),
        batch.len,
        shown.join(", "),
        if names.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    )
}

/// Decodes one image file (its format guessed from its content, then its extension).
pub fn read(path: &Path) -> Result<DynamicImage> {
    ImageReader::open(path)
        .and_then(|reader| reader.with_guessed_format())
        .map_err(|e| Error::input(path, InputProblem::Unreadable(e)))?
        .decode()
        .map_err(|e| Error::input(path, InputProblem::Image(e)))
}

/// One image as a sample of `[channels, size, size]` values in `[0, 1]`, row-major (see the
/// [module documentation](self) for the rule).
pub fn to_sample(image: &DynamicImage, [channels, size, _]: [usize; 3]) -> Vec<f32> {
    let side = size as u32;
    let fitted = |dimensions: (u32, u32)| dimensions == (side, side);
    if channels == 3 {
        let rgb = image.to_rgb32f();
        let sample: ImageBuffer<Rgb<f32>, Vec<f32>> = if fitted(rgb.dimensions()) {
            rgb
        } else {
            imageops::resize(&rgb, side, side, FilterType::Triangle)
        };
        // Interleaved RGB to channel-major planes, as the model takes them.
        let pixels = sample.into_raw();
        return (0..3)
            .flat_map(|c| pixels.iter().skip(c).step_by(3).map(|v| v.clamp(0.0, 1.0)))
            .collect();
    }
    if image.dimensions() == (MNIST_SIZE as u32, MNIST_SIZE as u32) {
        if let Ok(frame) = DigitFrame::for_input([1, size, size]) {
            let digit = image.to_luma8().into_raw();
            return frame.input(digit.as_slice().try_into().expect("28 x 28 pixels"));
        }
    }
    let gray = image.to_luma32f();
    let sample: ImageBuffer<Luma<f32>, Vec<f32>> = if fitted(gray.dimensions()) {
        gray
    } else {
        imageops::resize(&gray, side, side, FilterType::Triangle)
    };
    sample
        .into_raw()
        .into_iter()
        .map(|v| v.clamp(0.0, 1.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, RgbImage};

    #[test]
    fn mnist_digits_are_padded_with_two_zero_pixels() {
        let digit = GrayImage::from_fn(28, 28, |x, y| Luma([((x + y) * 4 + 3) as u8]));
        let sample = to_sample(&DynamicImage::ImageLuma8(digit), [1, 32, 32]);
        assert_eq!(sample.len(), 32 * 32);
        for row in 0..32 {
            for col in 0..32 {
                let v = sample[row * 32 + col];
                if (2..30).contains(&row) && (2..30).contains(&col) {
                    let (x, y) = (col - 2, row - 2);
                    assert_eq!(v, ((x + y) * 4 + 3) as f32 / 255.0, "[{row}, {col}]");
                } else {
                    assert_eq!(v, 0.0, "border [{row}, {col}]");
                }
            }
        }
    }

    #[test]
    fn other_sizes_are_resized_and_colours_become_gray() {
        // A uniform colour stays uniform through the filter: its luminance everywhere.
        let rgb = RgbImage::from_pixel(40, 20, image::Rgb([255, 255, 255]));
        let sample = to_sample(&DynamicImage::ImageRgb8(rgb), [1, 32, 32]);
        assert_eq!(sample.len(), 32 * 32);
        assert!(sample.iter().all(|&v| (v - 1.0).abs() < 1e-6), "{sample:?}");
        let gray = GrayImage::from_pixel(32, 32, Luma([51]));
        let sample = to_sample(&DynamicImage::ImageLuma8(gray), [1, 32, 32]);
        assert!(sample.iter().all(|&v| v == 0.2));
    }

    #[test]
    fn directories_are_read_in_file_name_order_and_other_files_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in [("b.png", 200u8), ("a.PNG", 100), ("c.jpg", 255)] {
            GrayImage::from_pixel(32, 32, Luma([value]))
                .save(dir.path().join(name))
                .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
        std::fs::create_dir(dir.path().join("sub.png")).unwrap();
        let batch = load_dir(dir.path(), [1, 32, 32]).unwrap();
        assert_eq!(batch.names.unwrap(), ["a.PNG", "b.png", "c.jpg"]);
        assert_eq!(batch.len, 3);
        assert_eq!(batch.values[0], 100.0 / 255.0);
        assert_eq!(batch.values[1024], 200.0 / 255.0);
        // JPEG is lossy, but a uniform white image stays (nearly) white.
        assert!(batch.values[2048] > 0.98);
    }

    #[test]
    fn empty_directories_and_bad_files_are_input_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("readme.md"), "no image").unwrap();
        let err = load_dir(dir.path(), [1, 32, 32]).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err:?}");
        assert!(err.one_line().contains("no PNG or JPEG file"), "{err}");

        std::fs::write(dir.path().join("broken.png"), "not a png").unwrap();
        let err = load_dir(dir.path(), [1, 32, 32]).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Input {
                    problem: InputProblem::Image(_),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.one_line().contains("broken.png"), "{err}");

        let err = load_dir(&dir.path().join("missing"), [1, 32, 32]).unwrap_err();
        assert!(err.one_line().contains("no such directory"), "{err}");
    }
}
