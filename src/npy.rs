//! `.npy` files: reading the input batch, writing Jacobians without ever leaving a partial
//! file or destroying an existing one.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use npyz::{NpyFile, Order, WriterBuilder};
use tempfile::NamedTempFile;

use crate::error::{AppError, Result};

/// A float32 array read from a `.npy` file, C order.
#[derive(Debug)]
pub struct Array {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f32>,
    /// Set when the file held float64 values, converted to float32.
    pub converted_from_f64: bool,
}

/// Reads a float32 (or float64, converted) C-order array.
pub fn read(path: &Path) -> Result<Array> {
    let fail = |what: String| AppError::Input(format!("{}: {what}", path.display()));
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail("no such file".into()),
        _ => fail(format!("cannot open: {e}")),
    })?;
    let npy =
        NpyFile::new(BufReader::new(file)).map_err(|e| fail(format!("not a .npy file ({e})")))?;
    if npy.order() == Order::Fortran {
        return Err(fail(
            "Fortran-order array; save it in C order (numpy.ascontiguousarray) and retry".into(),
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let (values, converted_from_f64) = match descr
        .trim_matches('\'')
        .trim_start_matches(['<', '>', '=', '|'])
    {
        "f4" => (npy.into_vec::<f32>(), false),
        "f8" => (
            npy.into_vec::<f64>()
                .map(|v| v.into_iter().map(|x| x as f32).collect()),
            true,
        ),
        _ => {
            return Err(fail(format!(
                "dtype {descr} is not supported, expected float32 ('<f4') or float64"
            )))
        }
    };
    let values = values.map_err(|e| fail(format!("truncated or corrupt data ({e})")))?;
    Ok(Array {
        shape,
        values,
        converted_from_f64,
    })
}

/// A file written in full or not at all: the bytes go to a hidden temporary file in the
/// target's directory, renamed over the target only by [`AtomicFile::commit`]. A failed or
/// interrupted run leaves the target as it was.
pub struct AtomicFile {
    temp: NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file now, so that a missing or read-only directory is reported
    /// before any work is done.
    pub fn create(target: &Path) -> Result<Self> {
        let fail = |what: String| AppError::Runtime(format!("{}: {what}", target.display()));
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(fail(format!(
                "cannot write: directory {} does not exist",
                dir.display()
            )));
        }
        if target.is_dir() {
            return Err(fail("is a directory, expected a file name".into()));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| fail(format!("cannot write in {}: {e}", dir.display())))?;
        Ok(AtomicFile {
            temp,
            target: target.to_path_buf(),
        })
    }

    /// A buffered writer to the temporary file.
    pub fn writer(&self) -> Result<BufWriter<File>> {
        let file = self.temp.as_file().try_clone().map_err(|e| self.error(e))?;
        Ok(BufWriter::with_capacity(1 << 20, file))
    }

    /// Moves the finished file into place.
    pub fn commit(self) -> Result<()> {
        self.temp.as_file().sync_all().map_err(|e| self.error(e))?;
        let target = self.target.clone();
        self.temp.persist(&target).map_err(|e| {
            AppError::Runtime(format!("{}: cannot write: {}", target.display(), e.error))
        })?;
        Ok(())
    }

    fn error(&self, e: std::io::Error) -> AppError {
        AppError::Runtime(format!("{}: cannot write: {e}", self.target.display()))
    }

    /// The path the file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }
}

/// A float32 C-order `.npy` file of a known shape, written in pieces, then committed.
pub struct NpyOutput {
    file: AtomicFile,
    writer: npyz::NpyWriter<f32, BufWriter<File>>,
}

impl NpyOutput {
    /// Prepares `target` for an array of `shape` (see [`AtomicFile::create`]).
    pub fn create(target: &Path, shape: &[usize]) -> Result<Self> {
        let file = AtomicFile::create(target)?;
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(file.writer()?)
            .begin_nd()
            .map_err(|e| file.error(e))?;
        Ok(NpyOutput { file, writer })
    }

    /// Appends values in C order.
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        self.writer
            .extend(values.iter().copied())
            .map_err(|e| self.file.error(e))
    }

    /// Checks that every value was written and moves the file into place.
    pub fn commit(self) -> Result<()> {
        let NpyOutput { file, writer } = self;
        // finish() checks the element count against the shape and flushes.
        writer.finish().map_err(|e| file.error(e))?;
        file.commit()
    }
}

/// Writes a whole array at once.
pub fn write(target: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let mut out = NpyOutput::create(target, shape)?;
    out.write(values)?;
    out.commit()
}

/// Writes bytes to `target` atomically.
pub fn write_bytes(target: &Path, bytes: &[u8]) -> Result<()> {
    let file = AtomicFile::create(target)?;
    let mut writer = file.writer()?;
    writer.write_all(bytes).map_err(|e| file.error(e))?;
    writer.flush().map_err(|e| file.error(e))?;
    drop(writer);
    file.commit()
}
