//! Writing `.npy` files: the codec (a float32 C-order array of a known shape, to any writer,
//! in pieces) and the file it goes to.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use npyz::WriterBuilder;

use crate::error::Result;
use crate::output::AtomicFile;

/// The `.npy` codec: a header for `shape`, then float32 values appended in C order.
pub struct NpyWriter<W: Write> {
    inner: npyz::NpyWriter<f32, W>,
}

impl<W: Write> NpyWriter<W> {
    /// Writes the header of a float32 C-order array of `shape` to `writer`.
    pub fn new(writer: W, shape: &[usize]) -> std::io::Result<Self> {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let inner = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(writer)
            .begin_nd()?;
        Ok(NpyWriter { inner })
    }

    /// Appends values in C order.
    pub fn write(&mut self, values: &[f32]) -> std::io::Result<()> {
        self.inner.extend(values.iter().copied())
    }

    /// Checks that the shape's every value was written, and flushes.
    pub fn finish(self) -> std::io::Result<()> {
        self.inner.finish()
    }
}

/// A `.npy` file written in pieces through an [`AtomicFile`], then committed.
pub struct NpyFile {
    file: AtomicFile,
    writer: NpyWriter<BufWriter<File>>,
}

impl NpyFile {
    /// Prepares `target` for an array of `shape` (see [`AtomicFile::create`]).
    pub fn create(target: &Path, shape: &[usize]) -> Result<Self> {
        Self::from_atomic(AtomicFile::create(target)?, shape)
    }

    /// An array of `shape` in a file already created.
    pub fn from_atomic(file: AtomicFile, shape: &[usize]) -> Result<Self> {
        let writer = NpyWriter::new(file.writer()?, shape).map_err(|e| file.error(e))?;
        Ok(NpyFile { file, writer })
    }

    /// Appends values in C order.
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        self.writer.write(values).map_err(|e| self.file.error(e))
    }

    /// Checks that every value was written and moves the file into place.
    pub fn commit(self) -> Result<()> {
        let NpyFile { file, writer } = self;
        writer.finish().map_err(|e| file.error(e))?;
        file.commit()
    }
}

/// Writes a whole array to `target` atomically.
pub fn write(target: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let mut out = NpyFile::create(target, shape)?;
    out.write(values)?;
    out.commit()
}
