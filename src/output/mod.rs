//! Everything the application writes: the atomic file every output goes through, the `.npy`
//! codec, the PNG.

pub mod npy;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, OutputProblem, Result};

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
        let fail = |problem| Error::output(target, problem);
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            let what = if dir.exists() {
                "is not a directory"
            } else {
                "does not exist"
            };
            return Err(fail(OutputProblem::NoDirectory {
                dir: dir.to_path_buf(),
                what,
            }));
        }
        if target.is_dir() {
            return Err(fail(OutputProblem::IsDirectory));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".partial");
        #[cfg(unix)]
        {
            // As File::create makes files (0666 less the umask), not tempfile's private 0600.
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let temp = builder.tempfile_in(dir).map_err(|e| {
            // tempfile's error names its random file name, which the user never chose: keep
            // the cause only.
            let message = e.to_string();
            let message = message.split(" at path ").next().unwrap_or_default();
            let cause = std::io::Error::new(e.kind(), message.to_string());
            fail(OutputProblem::Directory {
                dir: dir.to_path_buf(),
                cause,
            })
        })?;
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

    /// Writes all of `bytes` to the temporary file.
    pub fn write_all(&self, bytes: &[u8]) -> Result<()> {
        let mut writer = self.writer()?;
        writer.write_all(bytes).map_err(|e| self.error(e))?;
        writer.flush().map_err(|e| self.error(e))
    }

    /// Moves the finished file into place.
    pub fn commit(self) -> Result<()> {
        self.temp.as_file().sync_all().map_err(|e| self.error(e))?;
        let target = self.target.clone();
        self.temp
            .persist(&target)
            .map_err(|e| Error::output(&target, OutputProblem::Write(e.error)))?;
        Ok(())
    }

    /// A write error of this file.
    pub fn error(&self, e: std::io::Error) -> Error {
        Error::output(&self.target, OutputProblem::Write(e))
    }

    /// The path the file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }
}

/// Writes `bytes` to `target` atomically.
pub fn write_bytes(target: &Path, bytes: &[u8]) -> Result<()> {
    let file = AtomicFile::create(target)?;
    file.write_all(bytes)?;
    file.commit()
}

/// Encodes `image` as PNG into `file` and commits it.
pub fn write_png(file: AtomicFile, image: &image::RgbImage) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| Error::output(file.target(), OutputProblem::Png(e)))?;
    file.write_all(&bytes.into_inner())?;
    file.commit()
}
