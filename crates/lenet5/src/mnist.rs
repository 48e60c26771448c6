//! MNIST's handwritten digits in their IDX files, and LeNet-5's input made from them.
//!
//! The IDX format (<http://yann.lecun.com/exdb/mnist/>) is a big-endian header, then the data:
//!
//! ```text
//! images: magic 0x00000803 (unsigned bytes, 3 dimensions), count, rows, columns,
//!         then count x rows x columns pixels, row-major (0 = background, 255 = ink)
//! labels: magic 0x00000801 (unsigned bytes, 1 dimension), count, then count labels 0..=9
//! ```
//!
//! Files are read plain or gzip-compressed, told apart by their first bytes (the gzip magic
//! `1f 8b`), not by their name. Everything a corrupt or foreign file can get wrong is an error
//! naming the file and the problem in one line, never a panic; memory grows with the bytes
//! actually read, never with what a header announces.
//!
//! LeNet-5 takes 32 x 32 images: [`DigitFrame`] centres a 28 x 28 digit in one (or in the
//! input of another size a variant takes).
//!
//! ```no_run
//! use lenet5::mnist::{Mnist, Split};
//!
//! let test = Mnist::load("data/mnist", Split::Test)?;
//! let (digit, label) = (test.digit(0).unwrap(), test.label(0).unwrap());
//! let input = lenet5::mnist::DigitFrame::LENET5.input(digit); // [1, 32, 32] in [0, 1]
//! # Ok::<(), lenet5::mnist::MnistError>(())
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use flate2::bufread::MultiGzDecoder;

use crate::model::config::{MNIST_SIZE, PADDED_SIZE};
use crate::{LeNet5, LeNet5Config};

/// Magic number of an IDX file of unsigned bytes in 3 dimensions: images.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes in 1 dimension: labels.
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Pixels of one MNIST digit: 28 x 28.
pub const MNIST_PIXELS: usize = MNIST_SIZE * MNIST_SIZE;
/// MNIST's classes: the digits 0 to 9.
pub const MNIST_CLASSES: usize = 10;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const IMAGES_HEADER_LEN: usize = 16;
const LABELS_HEADER_LEN: usize = 8;

/// The two sets MNIST is distributed as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`.
    Train,
    /// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`: the held-out test digits.
    Test,
}

impl Split {
    /// The file name of the split's images, without `.gz`.
    pub fn images_file_name(self) -> &'static str {
        match self {
            Self::Train => "train-images-idx3-ubyte",
            Self::Test => "t10k-images-idx3-ubyte",
        }
    }

    /// The file name of the split's labels, without `.gz`.
    pub fn labels_file_name(self) -> &'static str {
        match self {
            Self::Train => "train-labels-idx1-ubyte",
            Self::Test => "t10k-labels-idx1-ubyte",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Train => "training",
            Self::Test => "test",
        })
    }
}

/// The two kinds of IDX file MNIST has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxKind {
    /// Images: magic `0x00000803`.
    Images,
    /// Labels: magic `0x00000801`.
    Labels,
}

impl IdxKind {
    fn magic(self) -> u32 {
        match self {
            Self::Images => IMAGES_MAGIC,
            Self::Labels => LABELS_MAGIC,
        }
    }

    fn header_len(self) -> usize {
        match self {
            Self::Images => IMAGES_HEADER_LEN,
            Self::Labels => LABELS_HEADER_LEN,
        }
    }
}

impl fmt::Display for IdxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Images => "images",
            Self::Labels => "labels",
        })
    }
}

/// Why MNIST data could not be read. Each message is one line and names the file.
#[derive(Debug, thiserror::Error)]
pub enum MnistError {
    /// The file cannot be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file starts like gzip but does not decompress.
    #[error("{}: corrupt or truncated gzip data: {source}", path.display())]
    Gzip {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        source: io::Error,
    },
    /// The (decompressed) file ends inside the IDX header.
    #[error(
        "{}: {len} bytes, too short for the {}-byte header of an IDX {kind} file",
        path.display(),
        kind.header_len()
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Which file was expected.
        kind: IdxKind,
        /// Its (decompressed) length.
        len: usize,
    },
    /// The magic number is not the one of the expected kind of file.
    #[error(
        "{}: not an IDX {kind} file: magic number 0x{found:08x}, expected 0x{:08x}{}",
        path.display(),
        kind.magic(),
        describe_magic(*found).map(|what| format!(" ({what})")).unwrap_or_default()
    )]
    Magic {
        /// The file.
        path: PathBuf,
        /// Which file was expected.
        kind: IdxKind,
        /// The first four bytes, big-endian.
        found: u32,
    },
    /// The header announces no items, or images without pixels.
    #[error("{}: the header announces {items}, nothing to read", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// What the header announces, in words.
        items: String,
    },
    /// The data is shorter than the header announces.
    #[error(
        "{}: truncated: the header announces {items} ({announced} bytes of data), the file holds {found}",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What the header announces, in words.
        items: String,
        /// Bytes of data the header announces.
        announced: u128,
        /// Bytes of data after the header.
        found: usize,
    },
    /// Bytes follow the data the header announces.
    #[error(
        "{}: trailing bytes after the {announced} bytes of data the header announces ({items})",
        path.display()
    )]
    TrailingData {
        /// The file.
        path: PathBuf,
        /// What the header announces, in words.
        items: String,
        /// Bytes of data the header announces.
        announced: u128,
    },
    /// A label is not a digit.
    #[error("{}: label {label} at index {index}, expected a digit 0 to 9", path.display())]
    Label {
        /// The file.
        path: PathBuf,
        /// Index of the first label out of range.
        index: usize,
        /// Its value.
        label: u8,
    },
    /// The images are not MNIST's 28 x 28.
    #[error("{}: images of {rows} x {cols} pixels, MNIST digits are 28 x 28", path.display())]
    NotMnistSize {
        /// The images file.
        path: PathBuf,
        /// Rows of each image.
        rows: usize,
        /// Columns of each image.
        cols: usize,
    },
    /// The images and labels files disagree on the number of digits.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// Its number of images.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// Its number of labels.
        labels: usize,
    },
    /// Neither the plain nor the gzip file of a split is in the directory.
    #[error("{}: no {name} nor {name}.gz (the {split} {kind} of MNIST)", dir.display())]
    NotFound {
        /// The directory searched.
        dir: PathBuf,
        /// The file name looked for, without `.gz`.
        name: &'static str,
        /// The split.
        split: Split,
        /// Images or labels.
        kind: IdxKind,
    },
}

/// What an IDX magic number other than the expected one describes, when it is one.
fn describe_magic(magic: u32) -> Option<String> {
    if magic == IMAGES_MAGIC {
        return Some("an IDX images file".into());
    }
    if magic == LABELS_MAGIC {
        return Some("an IDX labels file".into());
    }
    if magic >> 16 == u32::from(u16::from_be_bytes(GZIP_MAGIC)) {
        return Some("gzip data inside gzip data".into());
    }
    // IDX: two zero bytes, a type code, the number of dimensions.
    if magic >> 16 != 0 {
        return None;
    }
    let element = match (magic >> 8) & 0xff {
        0x08 => "unsigned bytes",
        0x09 => "signed bytes",
        0x0b => "16-bit integers",
        0x0c => "32-bit integers",
        0x0d => "32-bit floats",
        0x0e => "64-bit floats",
        _ => return None,
    };
    Some(format!(
        "an IDX file of {element} in {} dimensions",
        magic & 0xff
    ))
}

/// The images of an IDX images file: `len()` images of `rows()` x `cols()` pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
}

impl IdxImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels.len() / (self.rows * self.cols)
    }

    /// Whether there is no image (never, for images read by [`read_images`]).
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// Rows of each image.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of each image.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The pixels of image `index`, row-major, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        self.pixels.chunks_exact(self.rows * self.cols).nth(index)
    }

    /// Every pixel, image after image, row-major.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }
}

/// Reads an IDX images file (plain or gzip): unsigned bytes in 3 dimensions, of any size.
///
/// [`Mnist`] checks they are 28 x 28; [`DigitFrame::input`] makes LeNet-5's input of one.
pub fn read_images(path: impl AsRef<Path>) -> Result<IdxImages, MnistError> {
    let mut file = IdxFile::open(path.as_ref(), IdxKind::Images)?;
    let [count, rows, cols] = file.header::<3>()?;
    let pixels = file.data(count, rows, cols)?;
    Ok(IdxImages {
        rows: rows as usize,
        cols: cols as usize,
        pixels,
    })
}

/// Reads an IDX labels file (plain or gzip) of digits: unsigned bytes in 1 dimension, each
/// 0 to 9.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>, MnistError> {
    let path = path.as_ref();
    let mut file = IdxFile::open(path, IdxKind::Labels)?;
    let [count] = file.header::<1>()?;
    let labels = file.data(count, 1, 1)?;
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &label)| usize::from(label) >= MNIST_CLASSES)
    {
        return Err(MnistError::Label {
            path: path.to_path_buf(),
            index,
            label,
        });
    }
    Ok(labels)
}

/// An IDX file being read, decompressed on the fly when it is gzip.
struct IdxFile<'a> {
    path: &'a Path,
    kind: IdxKind,
    gzip: bool,
    reader: Box<dyn Read>,
}

impl<'a> IdxFile<'a> {
    fn open(path: &'a Path, kind: IdxKind) -> Result<Self, MnistError> {
        let io_error = |source| MnistError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = BufReader::new(File::open(path).map_err(io_error)?);
        let gzip = file.fill_buf().map_err(io_error)?.starts_with(&GZIP_MAGIC);
        let reader: Box<dyn Read> = if gzip {
            Box::new(MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        Ok(Self {
            path,
            kind,
            gzip,
            reader,
        })
    }

    /// Reads up to `limit` more bytes, as many as the file holds.
    fn read(&mut self, limit: u64) -> Result<Vec<u8>, MnistError> {
        let mut bytes = Vec::new();
        match (&mut self.reader).take(limit).read_to_end(&mut bytes) {
            Ok(_) => Ok(bytes),
            Err(source) if self.gzip => Err(MnistError::Gzip {
                path: self.path.to_path_buf(),
                source,
            }),
            Err(source) => Err(MnistError::Io {
                path: self.path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads the header, checks the magic number, and returns the `D` sizes that follow it.
    fn header<const D: usize>(&mut self) -> Result<[u32; D], MnistError> {
        let header_len = self.kind.header_len();
        let bytes = self.read(header_len as u64)?;
        let word = |index: usize| {
            let at = 4 * index;
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        // A foreign file long enough to have a magic number is told by it, whatever its length.
        if bytes.len() >= 4 && word(0) != self.kind.magic() {
            return Err(MnistError::Magic {
                path: self.path.to_path_buf(),
                kind: self.kind,
                found: word(0),
            });
        }
        if bytes.len() < header_len {
            return Err(MnistError::TooShort {
                path: self.path.to_path_buf(),
                kind: self.kind,
                len: bytes.len(),
            });
        }
        Ok(std::array::from_fn(|index| word(index + 1)))
    }

    /// Reads the data of `count` items of `rows` x `cols` bytes (1 x 1 for labels): exactly
    /// that many bytes must follow the header.
    fn data(mut self, count: u32, rows: u32, cols: u32) -> Result<Vec<u8>, MnistError> {
        let kind = self.kind;
        if count == 0 || rows == 0 || cols == 0 {
            return Err(MnistError::Empty {
                path: self.path.to_path_buf(),
                items: announced_items(kind, count, rows, cols),
            });
        }
        let announced = u128::from(count) * u128::from(rows) * u128::from(cols);
        // One byte more than announced tells trailing data apart; the buffer grows with what
        // the file holds, never to what the header claims.
        let data = self.read(u64::try_from(announced + 1).unwrap_or(u64::MAX))?;
        match (data.len() as u128).cmp(&announced) {
            Ordering::Less => Err(MnistError::Truncated {
                path: self.path.to_path_buf(),
                items: announced_items(kind, count, rows, cols),
                announced,
                found: data.len(),
            }),
            Ordering::Greater => Err(MnistError::TrailingData {
                path: self.path.to_path_buf(),
                items: announced_items(kind, count, rows, cols),
                announced,
            }),
            Ordering::Equal => Ok(data),
        }
    }
}

/// What a header announces, in words: "3 images of 28 x 28 pixels", "3 labels".
fn announced_items(kind: IdxKind, count: u32, rows: u32, cols: u32) -> String {
    match kind {
        IdxKind::Images => format!("{count} images of {rows} x {cols} pixels"),
        IdxKind::Labels => format!("{count} labels"),
    }
}

/// MNIST digits and their labels: 28 x 28 images, one label 0 to 9 each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mnist {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl Mnist {
    /// Reads a split from a directory holding MNIST's files under their original names, each
    /// plain or gzip-compressed (`.gz`): `train-images-idx3-ubyte[.gz]`,
    /// `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`,
    /// `t10k-labels-idx1-ubyte[.gz]`.
    pub fn load(dir: impl AsRef<Path>, split: Split) -> Result<Self, MnistError> {
        let dir = dir.as_ref();
        let find = |name: &'static str, kind: IdxKind| {
            [dir.join(name), dir.join(format!("{name}.gz"))]
                .into_iter()
                .find(|path| path.is_file())
                .ok_or_else(|| MnistError::NotFound {
                    dir: dir.to_path_buf(),
                    name,
                    split,
                    kind,
                })
        };
        let images = find(split.images_file_name(), IdxKind::Images)?;
        let labels = find(split.labels_file_name(), IdxKind::Labels)?;
        Self::from_files(images, labels)
    }

    /// Reads digits from an IDX images file and an IDX labels file, of any names.
    pub fn from_files(
        images_path: impl AsRef<Path>,
        labels_path: impl AsRef<Path>,
    ) -> Result<Self, MnistError> {
        let (images_path, labels_path) = (images_path.as_ref(), labels_path.as_ref());
        let images = read_images(images_path)?;
        if (images.rows, images.cols) != (MNIST_SIZE, MNIST_SIZE) {
            return Err(MnistError::NotMnistSize {
                path: images_path.to_path_buf(),
                rows: images.rows,
                cols: images.cols,
            });
        }
        let labels = read_labels(labels_path)?;
        if labels.len() != images.len() {
            return Err(MnistError::CountMismatch {
                images_path: images_path.to_path_buf(),
                images: images.len(),
                labels_path: labels_path.to_path_buf(),
                labels: labels.len(),
            });
        }
        Ok(Self {
            pixels: images.pixels,
            labels,
        })
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no digit (never, for digits read from files).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 28 x 28 pixels of digit `index`, row-major, or `None` past the end.
    pub fn digit(&self, index: usize) -> Option<&[u8; MNIST_PIXELS]> {
        self.pixels
            .chunks_exact(MNIST_PIXELS)
            .nth(index)
            .map(|digit| digit.try_into().expect("chunks of MNIST_PIXELS"))
    }

    /// The label (0 to 9) of digit `index`, or `None` past the end.
    pub fn label(&self, index: usize) -> Option<u8> {
        self.labels.get(index).copied()
    }

    /// Every label, in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The first `len` digits (all of them when there are fewer).
    pub fn first(mut self, len: usize) -> Self {
        let len = len.min(self.len());
        self.pixels.truncate(len * MNIST_PIXELS);
        self.labels.truncate(len);
        self
    }
}

/// The image a 28 x 28 MNIST digit is framed in to make a LeNet-5's input: the digit centred
/// in `size x size` pixels, `(size - 28) / 2` zero pixels on each side, each value scaled from
/// 0..=255 to [0, 1] (`value / 255`).
///
/// [`DigitFrame::LENET5`] is LeNet-5's 32 x 32, as the network was designed for MNIST (a
/// border of 2); a LeNet-5 whose first convolution pads its input by 2 (d2l's) takes the
/// digit as it is, 28 x 28.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigitFrame {
    size: usize,
}

impl DigitFrame {
    /// LeNet-5's 32 x 32.
    pub const LENET5: DigitFrame = DigitFrame { size: PADDED_SIZE };

    /// The frame of a model's input: one channel, of a side of 28 or more that leaves the same
    /// border on each side.
    pub fn for_model(config: &LeNet5Config) -> Result<Self, FrameError> {
        Self::for_input(config.input_dims())
    }

    /// The frame of an input of `[channels, size, size]`: one channel, of a side of 28 or
    /// more that leaves the same border on each side.
    pub fn for_input([channels, size, _]: [usize; 3]) -> Result<Self, FrameError> {
        if channels != 1 {
            return Err(FrameError::Channels(channels));
        }
        if size < MNIST_SIZE || !(size - MNIST_SIZE).is_multiple_of(2) {
            return Err(FrameError::Size(size));
        }
        Ok(DigitFrame { size })
    }

    /// Side of the image.
    pub fn size(self) -> usize {
        self.size
    }

    /// Zero pixels on each side of the digit.
    pub fn border(self) -> usize {
        (self.size - MNIST_SIZE) / 2
    }

    /// The input of one digit.
    ///
    /// # Shapes
    ///
    /// - digit: 28 x 28 pixels, row-major
    /// - output: `[1, size, size]` values, row-major
    pub fn input(self, digit: &[u8; MNIST_PIXELS]) -> Vec<f32> {
        self.shifted_input(digit, 0, 0)
    }

    /// [`input`](Self::input) with the digit moved `down` rows and `right` columns (negative:
    /// up, left); at most [`border`](Self::border) either way, so the digit stays whole.
    pub(crate) fn shifted_input(
        self,
        digit: &[u8; MNIST_PIXELS],
        down: isize,
        right: isize,
    ) -> Vec<f32> {
        let border = self.border() as isize;
        assert!(
            down.abs() <= border && right.abs() <= border,
            "a shift of ({down}, {right}) pixels would cut the digit"
        );
        let (top, left) = ((border + down) as usize, (border + right) as usize);
        let mut input = vec![0.0; self.size * self.size];
        for (row, pixels) in digit.chunks_exact(MNIST_SIZE).enumerate() {
            let start = (top + row) * self.size + left;
            for (value, &pixel) in input[start..start + MNIST_SIZE].iter_mut().zip(pixels) {
                *value = f32::from(pixel) / 255.0;
            }
        }
        input
    }

    /// A batch of inputs made by [`input`](Self::input).
    ///
    /// # Shapes
    ///
    /// - digits: `batch` digits of 28 x 28 pixels
    /// - output: `[batch, 1, size, size]`
    pub fn images<'a, B: Backend>(
        self,
        digits: impl IntoIterator<Item = &'a [u8; MNIST_PIXELS]>,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        let values: Vec<f32> = digits.into_iter().flat_map(|d| self.input(d)).collect();
        self.to_images(values, device)
    }

    /// The batch of inputs whose values, image after image, are `values`.
    ///
    /// # Shapes
    ///
    /// - values: `batch * size * size`
    /// - output: `[batch, 1, size, size]`
    pub(crate) fn to_images<B: Backend>(
        self,
        values: Vec<f32>,
        device: &B::Device,
    ) -> Tensor<B, 4> {
        let batch = values.len() / (self.size * self.size);
        Tensor::from_data(
            TensorData::new(values, [batch, 1, self.size, self.size]),
            device,
        )
    }
}

/// Why MNIST's digits cannot be a model's input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The model takes colour images.
    #[error("MNIST digits are grayscale, and this LeNet-5 takes {0} input channels")]
    Channels(usize),
    /// The model's input cannot hold a 28 x 28 digit centred.
    #[error(
        "this LeNet-5 takes {0} x {0} images, which cannot hold a 28 x 28 MNIST digit centred \
         (32 x 32 with no padding, 28 x 28 with --padding 2)"
    )]
    Size(usize),
}

/// Digits a model classifies correctly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accuracy {
    /// Digits whose largest logit is their label.
    pub correct: usize,
    /// Digits classified.
    pub total: usize,
}

impl Accuracy {
    /// `correct / total`, in [0, 1] (0 when there is no digit).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

impl fmt::Display for Accuracy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2}% ({}/{})",
            100.0 * self.fraction(),
            self.correct,
            self.total
        )
    }
}

/// How many of `data`'s digits `model` classifies correctly (the largest logit is the label),
/// evaluated in batches of `batch_size` digits framed as the model takes them.
pub fn accuracy<B: Backend>(
    model: &LeNet5<B>,
    data: &Mnist,
    batch_size: usize,
    device: &B::Device,
) -> Result<Accuracy, FrameError> {
    let frame = DigitFrame::for_model(&model.config())?;
    let batch_size = batch_size.max(1);
    let mut correct = 0;
    for (start, labels) in (0..)
        .step_by(batch_size)
        .zip(data.labels.chunks(batch_size))
    {
        let digits = (start..start + labels.len()).filter_map(|index| data.digit(index));
        let logits = model.forward(frame.images::<B>(digits, device)); // [batch, classes]
        let predicted = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("argmax converted to i64");
        correct += predicted
            .iter()
            .zip(labels)
            .filter(|(&class, &label)| class == i64::from(label))
            .count();
    }
    Ok(Accuracy {
        correct,
        total: data.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    fn images_file(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [IMAGES_MAGIC, count, rows, cols] {
            bytes.extend(word.to_be_bytes());
        }
        bytes.extend(pixels);
        bytes
    }

    fn labels_file(labels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [LABELS_MAGIC, labels.len() as u32] {
            bytes.extend(word.to_be_bytes());
        }
        bytes.extend(labels);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Three 28 x 28 digits whose pixel values encode their index and position.
    fn three_digits() -> Vec<u8> {
        (0..3 * MNIST_PIXELS).map(|i| (i * 7 % 256) as u8).collect()
    }

    /// A directory of test files, removed on drop.
    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Self {
            Self(tempfile::tempdir().unwrap())
        }

        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        }

        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    fn message(error: MnistError) -> String {
        let message = error.to_string();
        assert!(!message.contains('\n'), "one line: {message}");
        message
    }

    #[test]
    fn reads_plain_and_gzip_files_alike() {
        let dir = Dir::new();
        let pixels = three_digits();
        let images = images_file(3, 28, 28, &pixels);
        let labels = labels_file(&[7, 0, 9]);
        let plain =
            Mnist::from_files(dir.write("images", &images), dir.write("labels", &labels)).unwrap();
        // Compression is told by the content: a gzip file named like a plain one is read.
        let gzipped = Mnist::from_files(
            dir.write("images.idx", &gzip(&images)),
            dir.write("labels.gz", &gzip(&labels)),
        )
        .unwrap();
        assert_eq!(plain, gzipped);
        assert_eq!(plain.len(), 3);
        assert_eq!(plain.labels(), &[7, 0, 9]);
        assert_eq!(plain.label(2), Some(9));
        assert_eq!(plain.label(3), None);
        assert_eq!(
            &plain.digit(1).unwrap()[..],
            &pixels[MNIST_PIXELS..2 * MNIST_PIXELS]
        );
        assert!(plain.digit(3).is_none());
        assert_eq!(plain.clone().first(2).len(), 2);
        assert_eq!(plain.clone().first(2).digit(1), plain.digit(1));
        assert_eq!(plain.clone().first(10), plain);

        let read = read_images(dir.path().join("images.idx")).unwrap();
        assert_eq!((read.len(), read.rows(), read.cols()), (3, 28, 28));
        assert_eq!(read.pixels(), &pixels[..]);
    }

    #[test]
    fn load_finds_a_split_plain_or_gzip() {
        let dir = Dir::new();
        let pixels = three_digits();
        dir.write(
            "t10k-images-idx3-ubyte.gz",
            &gzip(&images_file(3, 28, 28, &pixels)),
        );
        dir.write("t10k-labels-idx1-ubyte", &labels_file(&[1, 2, 3]));
        let test = Mnist::load(dir.path(), Split::Test).unwrap();
        assert_eq!(test.labels(), &[1, 2, 3]);

        let message = message(Mnist::load(dir.path(), Split::Train).unwrap_err());
        assert!(
            message.ends_with(
                "no train-images-idx3-ubyte nor train-images-idx3-ubyte.gz (the training images of MNIST)"
            ),
            "{message}"
        );
    }

    #[test]
    fn images_of_any_size_are_read_but_mnist_wants_28_by_28() {
        let dir = Dir::new();
        let path = dir.write("images", &images_file(2, 3, 4, &[5; 24]));
        let images = read_images(&path).unwrap();
        assert_eq!((images.len(), images.rows(), images.cols()), (2, 3, 4));
        assert_eq!(images.image(1), Some(&[5; 12][..]));
        assert_eq!(images.image(2), None);

        let labels = dir.write("labels", &labels_file(&[0, 1]));
        let message = message(Mnist::from_files(&path, labels).unwrap_err());
        assert!(
            message.ends_with("images: images of 3 x 4 pixels, MNIST digits are 28 x 28"),
            "{message}"
        );
    }

    /// The error message for `bytes` read as `kind`, plain and gzip-compressed: the same.
    fn error_of(dir: &Dir, kind: IdxKind, bytes: &[u8]) -> String {
        let read = |path: &Path| match kind {
            IdxKind::Images => read_images(path).map(|_| ()),
            IdxKind::Labels => read_labels(path).map(|_| ()),
        };
        let plain = message(read(&dir.write("file", bytes)).unwrap_err());
        let gzipped = message(read(&dir.write("file", &gzip(bytes))).unwrap_err());
        assert_eq!(plain, gzipped);
        plain
    }

    #[test]
    fn corrupt_headers_are_errors_naming_the_file() {
        let dir = Dir::new();
        let file = dir.path().join("file");
        let file = file.display();
        let images = IdxKind::Images;
        assert_eq!(
            error_of(&dir, images, &[]),
            format!("{file}: 0 bytes, too short for the 16-byte header of an IDX images file")
        );
        assert_eq!(
            error_of(&dir, images, &images_file(1, 28, 28, &[])[..10]),
            format!("{file}: 10 bytes, too short for the 16-byte header of an IDX images file")
        );
        assert_eq!(
            error_of(&dir, images, &labels_file(&[1, 2, 3])),
            format!(
                "{file}: not an IDX images file: magic number 0x00000801, expected 0x00000803 (an IDX labels file)"
            )
        );
        assert_eq!(
            error_of(&dir, IdxKind::Labels, &images_file(1, 1, 1, &[0])),
            format!(
                "{file}: not an IDX labels file: magic number 0x00000803, expected 0x00000801 (an IDX images file)"
            )
        );
        let mut floats = images_file(1, 1, 1, &[0, 0, 0, 0]);
        floats[2] = 0x0d;
        assert_eq!(
            error_of(&dir, images, &floats),
            format!(
                "{file}: not an IDX images file: magic number 0x00000d03, expected 0x00000803 (an IDX file of 32-bit floats in 3 dimensions)"
            )
        );
        assert_eq!(
            error_of(
                &dir,
                images,
                b"\x89PNG\r\n\x1a\n and more than sixteen bytes"
            ),
            format!("{file}: not an IDX images file: magic number 0x89504e47, expected 0x00000803")
        );
        // A foreign file shorter than a header is reported by its magic number.
        assert_eq!(
            error_of(&dir, images, b"hello"),
            format!("{file}: not an IDX images file: magic number 0x68656c6c, expected 0x00000803")
        );
        let twice = dir.write("twice", &gzip(&gzip(&images_file(1, 1, 1, &[0]))));
        assert_eq!(
            message(read_images(&twice).unwrap_err()),
            format!(
                "{}: not an IDX images file: magic number 0x1f8b0800, expected 0x00000803 (gzip data inside gzip data)",
                twice.display()
            )
        );
        assert_eq!(
            error_of(&dir, images, &images_file(0, 28, 28, &[])),
            format!("{file}: the header announces 0 images of 28 x 28 pixels, nothing to read")
        );
        assert_eq!(
            error_of(&dir, images, &images_file(5, 0, 28, &[])),
            format!("{file}: the header announces 5 images of 0 x 28 pixels, nothing to read")
        );
        assert_eq!(
            error_of(&dir, IdxKind::Labels, &labels_file(&[])),
            format!("{file}: the header announces 0 labels, nothing to read")
        );
    }

    #[test]
    fn data_must_have_the_announced_length() {
        let dir = Dir::new();
        let file = dir.path().join("file");
        let file = file.display();
        assert_eq!(
            error_of(&dir, IdxKind::Images, &images_file(3, 28, 28, &[1; 2000])),
            format!(
                "{file}: truncated: the header announces 3 images of 28 x 28 pixels (2352 bytes of data), the file holds 2000"
            )
        );
        assert_eq!(
            error_of(&dir, IdxKind::Images, &images_file(1, 2, 2, &[1; 5])),
            format!(
                "{file}: trailing bytes after the 4 bytes of data the header announces (1 images of 2 x 2 pixels)"
            )
        );
        let mut labels = labels_file(&[1, 2, 3]);
        labels.push(4);
        assert_eq!(
            error_of(&dir, IdxKind::Labels, &labels),
            format!(
                "{file}: trailing bytes after the 3 bytes of data the header announces (3 labels)"
            )
        );
        assert_eq!(
            error_of(&dir, IdxKind::Labels, &labels_file(&[1, 2, 3])[..10]),
            format!(
                "{file}: truncated: the header announces 3 labels (3 bytes of data), the file holds 2"
            )
        );
    }

    #[test]
    fn a_huge_announced_size_is_not_allocated() {
        let dir = Dir::new();
        let file = dir.path().join("file");
        // 4 x 10^9 images of 65535 x 65535 pixels: far more than any memory.
        let header = images_file(4_000_000_000, 65_535, 65_535, &[7; 100]);
        assert_eq!(
            error_of(&dir, IdxKind::Images, &header),
            format!(
                "{}: truncated: the header announces 4000000000 images of 65535 x 65535 pixels (17179344900000000000 bytes of data), the file holds 100",
                file.display()
            )
        );
    }

    #[test]
    fn labels_must_be_digits() {
        let dir = Dir::new();
        let file = dir.path().join("file");
        assert_eq!(
            error_of(&dir, IdxKind::Labels, &labels_file(&[3, 9, 10, 255])),
            format!(
                "{}: label 10 at index 2, expected a digit 0 to 9",
                file.display()
            )
        );
    }

    #[test]
    fn images_and_labels_must_agree_on_the_count() {
        let dir = Dir::new();
        let images = dir.write("images", &images_file(3, 28, 28, &three_digits()));
        let labels = dir.write("labels", &labels_file(&[1, 2]));
        assert_eq!(
            message(Mnist::from_files(&images, &labels).unwrap_err()),
            format!(
                "{} holds 3 images but {} holds 2 labels",
                images.display(),
                labels.display()
            )
        );
    }

    #[test]
    fn corrupt_gzip_data_is_an_error() {
        let dir = Dir::new();
        let compressed = gzip(&images_file(3, 28, 28, &three_digits()));

        let truncated = dir.write("truncated", &compressed[..compressed.len() / 2]);
        let message_truncated = message(read_images(&truncated).unwrap_err());
        assert!(
            message_truncated.starts_with(&format!(
                "{}: corrupt or truncated gzip data: ",
                truncated.display()
            )),
            "{message_truncated}"
        );

        // A flipped byte in the trailer's CRC: the data decompresses but does not check out.
        let mut bad_crc = compressed.clone();
        let crc = bad_crc.len() - 8;
        bad_crc[crc] ^= 0xff;
        let bad_crc = dir.write("bad-crc", &bad_crc);
        let message_crc = message(read_images(&bad_crc).unwrap_err());
        assert!(
            message_crc.starts_with(&format!(
                "{}: corrupt or truncated gzip data: ",
                bad_crc.display()
            )),
            "{message_crc}"
        );

        let missing = dir.path().join("missing");
        let message_missing = message(read_images(&missing).unwrap_err());
        assert!(
            message_missing.starts_with(&format!("{}: No such file", missing.display())),
            "{message_missing}"
        );
        let message_dir = message(read_labels(dir.path()).unwrap_err());
        assert!(
            message_dir.starts_with(&format!("{}: Is a directory", dir.path().display())),
            "{message_dir}"
        );
    }

    #[test]
    fn a_digit_becomes_the_padded_scaled_input() {
        let mut digit = [0u8; MNIST_PIXELS];
        digit[0] = 255; // top-left
        digit[27] = 51; // top-right
        digit[28 * 27] = 102; // bottom-left
        digit[28 * 28 - 1] = 1; // bottom-right
        let frame = DigitFrame::LENET5;
        let input = frame.input(&digit);
        let at = |row: usize, col: usize| input[row * 32 + col];
        assert_eq!(at(2, 2), 1.0);
        assert_eq!(at(2, 29), 0.2);
        assert_eq!(at(29, 2), 0.4);
        assert_eq!(at(29, 29), 1.0 / 255.0);
        let nonzero = input.iter().filter(|&&v| v != 0.0).count();
        assert_eq!(nonzero, 4, "the 2-pixel border is zero");

        let images = frame.images::<burn::backend::NdArray>([&digit, &digit], &Default::default());
        assert_eq!(images.dims(), [2, 1, 32, 32]);
        let values = images.into_data().into_vec::<f32>().unwrap();
        assert_eq!(&values[1024..], &input[..]);

        // d2l's LeNet pads inside its first convolution: the digit as it is.
        let d2l = LeNet5Config::new().with_padding(2);
        let frame = DigitFrame::for_model(&d2l).unwrap();
        assert_eq!((frame.size(), frame.border()), (28, 0));
        let input = frame.input(&digit);
        assert_eq!(
            (input[0], input[27], input[28 * 28 - 1]),
            (1.0, 0.2, 1.0 / 255.0)
        );
        for bad in [
            LeNet5Config::new().with_in_channels(3),
            LeNet5Config::new().with_padding(3),
        ] {
            assert!(DigitFrame::for_model(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_shifted_digit_moves_inside_the_border() {
        let mut digit = [0u8; MNIST_PIXELS];
        digit[0] = 255; // top-left
        digit[MNIST_PIXELS - 1] = 255; // bottom-right
        for (down, right) in [(-2, -2), (2, 2), (-1, 2), (0, 0)] {
            let input = DigitFrame::LENET5.shifted_input(&digit, down, right);
            let at = |row: isize, col: isize| input[row as usize * 32 + col as usize];
            assert_eq!(at(2 + down, 2 + right), 1.0);
            assert_eq!(at(29 + down, 29 + right), 1.0);
            assert_eq!(input.iter().sum::<f32>(), 2.0, "the digit stays whole");
        }
        let frame = DigitFrame::LENET5;
        assert_eq!(frame.shifted_input(&digit, 0, 0), frame.input(&digit));
    }

    #[test]
    fn accuracy_counts_the_largest_logit() {
        let device = Default::default();
        let model = crate::LeNet5Config::new().init::<burn::backend::NdArray>(&device);
        let dir = Dir::new();
        let data = Mnist::from_files(
            dir.write("images", &images_file(3, 28, 28, &three_digits())),
            dir.write("labels", &labels_file(&[0, 1, 2])),
        )
        .unwrap();
        let logits =
            model.forward(DigitFrame::LENET5.images((0..3).filter_map(|i| data.digit(i)), &device));
        let predicted = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .unwrap();
        let expected = predicted
            .iter()
            .zip([0, 1, 2])
            .filter(|(p, l)| **p == *l)
            .count();
        // Batches of 2 leave a batch of 1: the same count as all at once.
        let accuracy = accuracy(&model, &data, 2, &device).unwrap();
        assert_eq!(
            accuracy,
            Accuracy {
                correct: expected,
                total: 3
            }
        );
        assert_eq!(
            Accuracy {
                correct: 962,
                total: 1000
            }
            .to_string(),
            "96.20% (962/1000)"
        );
    }
}
