//! Reading a `.npy` file: a C-order array of floats (float32, or float64 converted) or of
//! integers (labels), every header field checked before the data is read.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use npyz::{NpyFile, NpyHeader, Order};

use crate::error::{Error, InputProblem, Result};
use crate::panic::quietly;

/// An array read from a `.npy` file, C order.
#[derive(Debug)]
pub struct Array {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Values,
    /// Its dtype, for messages: `int32 ('<i4')`.
    pub dtype: String,
}

/// The values of an [`Array`].
#[derive(Debug, PartialEq)]
pub enum Values {
    /// float32 values, or float64 ones converted (then `converted_from_f64`).
    Float {
        /// The values.
        values: Vec<f32>,
        /// Set when the file held float64 values, converted to float32.
        converted_from_f64: bool,
    },
    /// Integers of any width, signed or not.
    Integer(Vec<i64>),
}

/// The element types read: a dtype's code (`f4`, `i8`...), its size, what it becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Element {
    F32,
    F64,
    Int(u8, bool), // bytes, signed
}

impl Array {
    /// The values as floats; integers are refused, naming what was expected.
    pub fn floats(self, path: &Path, expected: &str) -> Result<(Vec<f32>, bool)> {
        match self.values {
            Values::Float {
                values,
                converted_from_f64,
            } => Ok((values, converted_from_f64)),
            Values::Integer(_) => Err(Error::input(
                path,
                InputProblem::Format(format!(
                    "dtype {} for {expected}, expected float32 ('<f4'; float64 is converted)",
                    self.dtype
                )),
            )),
        }
    }

    /// The values as integers; floats are refused, naming what was expected.
    pub fn integers(self, path: &Path, expected: &str) -> Result<Vec<i64>> {
        match self.values {
            Values::Integer(values) => Ok(values),
            Values::Float { .. } => Err(Error::input(
                path,
                InputProblem::Format(format!(
                    "dtype {} for {expected}, expected integers",
                    self.dtype
                )),
            )),
        }
    }
}

/// Reads a C-order array of float32, float64 (converted to float32) or integers.
///
/// Everything the header announces is checked before the data is read: the order, the dtype,
/// and that the file holds all the bytes the shape needs (a corrupt header can announce more
/// data than any memory holds).
pub fn read(path: &Path) -> Result<Array> {
    let fail = |what: String| Error::input(path, InputProblem::Format(what));
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::input(
            path,
            InputProblem::Missing {
                kind: "file, expected a .npy file",
            },
        ),
        _ => Error::input(path, InputProblem::Unreadable(e)),
    })?;
    let metadata = file
        .metadata()
        .map_err(|e| Error::input(path, InputProblem::Unreadable(e)))?;
    if metadata.is_dir() {
        return Err(fail("is a directory, expected a .npy file".into()));
    }
    if metadata.len() == 0 {
        return Err(fail("the file is empty, expected a .npy file".into()));
    }
    let mut file = file;
    check_header_size(&mut file, metadata.len()).map_err(fail)?;
    let mut reader = Counting {
        inner: BufReader::new(file),
        count: 0,
    };
    // npyz multiplies the header's dimensions unchecked: an absurd shape panics there.
    let header = quietly(|| NpyHeader::from_reader(&mut reader))
        .map_err(|_| fail("not a .npy file (its header announces an impossible shape)".into()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                fail("not a .npy file, or its header is truncated".into())
            }
            _ => {
                let e = e.to_string();
                if e.starts_with("could not parse utf-8") {
                    fail("not a .npy file (its header is not text)".into())
                } else if e.starts_with("could not parse Python expression") {
                    fail("not a .npy file (its header is not the Python dict numpy writes)".into())
                } else {
                    fail(format!(
                        "not a .npy file ({})",
                        e.lines().next().unwrap_or("")
                    ))
                }
            }
        })?;
    if header.order() == Order::Fortran {
        return Err(fail(
            "Fortran-order array; save it in C order (numpy.ascontiguousarray) and retry".into(),
        ));
    }
    let shape = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>();
    let descr = header.dtype().descr();
    let code = descr
        .trim_matches('\'')
        .trim_start_matches(['<', '>', '=', '|'])
        .to_string();
    let element = match code.as_str() {
        "f4" => Element::F32,
        "f8" => Element::F64,
        "i1" | "i2" | "i4" | "i8" | "u1" | "u2" | "u4" | "u8" => {
            Element::Int(code[1..].parse().expect("a digit"), code.starts_with('i'))
        }
        _ => {
            return Err(fail(format!(
                "dtype {} is not supported, expected float32 ('<f4'; float64 is converted) \
                 or integers",
                dtype_name(&descr, &code)
            )))
        }
    };
    let item_size = match element {
        Element::F32 => 4,
        Element::F64 => 8,
        Element::Int(bytes, _) => usize::from(bytes),
    };
    let needed = shape.as_ref().and_then(|shape| {
        shape
            .iter()
            .try_fold(item_size, |bytes, &d| bytes.checked_mul(d))
    });
    let (Some(shape), Some(needed)) = (shape, needed) else {
        return Err(fail(format!(
            "the header announces shape {:?}, more data than memory can hold",
            header.shape()
        )));
    };
    let held = metadata.len().saturating_sub(reader.count);
    if (needed as u64) > held {
        return Err(fail(format!(
            "truncated: shape {shape:?} of {} needs {needed} bytes of data, the file holds {held}",
            dtype_name(&descr, &code),
        )));
    }
    let npy = NpyFile::with_header(header, reader);
    let corrupt = |e: std::io::Error| fail(format!("corrupt data ({e})"));
    let widen = |v: Vec<i64>| Values::Integer(v);
    let values = match element {
        Element::F32 => Values::Float {
            values: npy.into_vec::<f32>().map_err(corrupt)?,
            converted_from_f64: false,
        },
        Element::F64 => Values::Float {
            values: npy
                .into_vec::<f64>()
                .map_err(corrupt)?
                .into_iter()
                .map(|x| x as f32)
                .collect(),
            converted_from_f64: true,
        },
        Element::Int(1, true) => widen(ints::<i8>(npy).map_err(corrupt)?),
        Element::Int(2, true) => widen(ints::<i16>(npy).map_err(corrupt)?),
        Element::Int(4, true) => widen(ints::<i32>(npy).map_err(corrupt)?),
        Element::Int(8, true) => widen(ints::<i64>(npy).map_err(corrupt)?),
        Element::Int(1, false) => widen(ints::<u8>(npy).map_err(corrupt)?),
        Element::Int(2, false) => widen(ints::<u16>(npy).map_err(corrupt)?),
        Element::Int(4, false) => widen(ints::<u32>(npy).map_err(corrupt)?),
        Element::Int(_, _) => widen(
            npy.into_vec::<u64>()
                .map_err(corrupt)?
                .into_iter()
                .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
                .collect(),
        ),
    };
    Ok(Array {
        shape,
        values,
        dtype: dtype_name(&descr, &code),
    })
}

/// The integers of an array of `T`, widened.
fn ints<T: npyz::Deserialize + Into<i64>>(
    npy: NpyFile<Counting<BufReader<File>>>,
) -> std::io::Result<Vec<i64>> {
    Ok(npy.into_vec::<T>()?.into_iter().map(Into::into).collect())
}

/// Checks the header length the file announces before npyz reads (and allocates) it, and
/// that the header is plain enough for npyz's recursive parser.
fn check_header_size(file: &mut File, file_len: u64) -> std::result::Result<(), String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    let mut start = [0u8; 12];
    let mut got = 0;
    while got < start.len() {
        match file.read(&mut start[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read: {e}")),
        }
    }
    let start = &start[..got];
    if !start.starts_with(MAGIC) {
        return Err("not a .npy file (it does not start with the .npy magic \\x93NUMPY)".into());
    }
    let (text_start, text_len) = match start.get(6..) {
        Some([1, _, a, b, ..]) => (10, u16::from_le_bytes([*a, *b]) as u64),
        Some([2 | 3, _, a, b, c, d, ..]) => (12, u32::from_le_bytes([*a, *b, *c, *d]) as u64),
        Some([major, minor, ..]) if ![1, 2, 3].contains(major) => {
            return Err(format!(
                "not a .npy file (format version {major}.{minor}, expected 1.0, 2.0 or 3.0)"
            ))
        }
        _ => return Err("not a .npy file, or its header is truncated".into()),
    };
    if text_start + text_len > file_len {
        return Err(format!(
            "not a .npy file, or its header is truncated (it announces a {text_len}-byte header, \
             the file holds {file_len} bytes)"
        ));
    }
    // numpy writes headers of a few hundred bytes (numpy.load refuses more than 10000 by
    // default); nesting in a long one could exhaust the stack of npyz's parser.
    if text_len > 1 << 16 {
        return Err(format!(
            "not a .npy file of numbers (a {text_len}-byte header, expected at most 65536)"
        ));
    }
    let mut text = vec![0u8; text_len as usize];
    file.seek(SeekFrom::Start(text_start))
        .and_then(|_| file.read_exact(&mut text))
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut depth = 0usize;
    for byte in &text {
        match byte {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > 16 {
            return Err("not a .npy file of numbers (its header nests too deep)".into());
        }
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(())
}

/// A numpy dtype for the user: `int32 ('<i4')`.
fn dtype_name(descr: &str, code: &str) -> String {
    let (kind, size) = code.split_at(code.len().min(1));
    let bits = size.parse::<usize>().ok().map(|bytes| bytes * 8);
    let name = match (kind, bits) {
        ("b", _) => Some("bool".to_string()),
        ("f", Some(bits)) => Some(format!("float{bits}")),
        ("i", Some(bits)) => Some(format!("int{bits}")),
        ("u", Some(bits)) => Some(format!("uint{bits}")),
        ("c", Some(bits)) => Some(format!("complex{bits}")),
        ("U" | "S", _) => Some("string".to_string()),
        ("O", _) => Some("object".to_string()),
        _ => None,
    };
    match name {
        Some(name) => format!("{name} ({descr})"),
        None => descr.to_string(),
    }
}

/// A reader that counts the bytes read through it (the length of the `.npy` header).
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}
