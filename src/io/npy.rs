//! NumPy `.npy` reading and writing (format versions 1.0, 2.0 and 3.0).
//!
//! Format: the magic `\x93NUMPY`, two version bytes, a little-endian header
//! length (`u16` for 1.0, `u32` for 2.0/3.0), then a Python dict literal such as
//! `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }` padded with
//! spaces and a final newline, then the raw data.
//!
//! The reader parses the header dict itself (never `eval`), accepts the
//! numeric dtypes `f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1` in either byte order and
//! converts them to `f64` in C order. Every size is checked against the bytes
//! actually present before anything is allocated.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use super::array::{checked_count, Array};
use super::atomic::atomic_write_with;
use super::error::{fmt_shape, ErrorKind, Escaped, IoError, Result};

/// The 6 magic bytes every `.npy` file starts with.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Largest header (dict text) the reader accepts. NumPy itself refuses headers
/// over 10 000 bytes by default; 1 MiB is generous and bounds the allocation.
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// Most dimensions NumPy supports.
const MAX_NDIM: usize = 64;

/// Nesting depth limit for the header literal parser.
const MAX_DEPTH: usize = 16;

/// Borrowed data to write: `f32` or `f64`.
#[derive(Debug, Clone, Copy)]
pub enum NpyData<'a> {
    /// Written with dtype `<f4`.
    F32(&'a [f32]),
    /// Written with dtype `<f8`.
    F64(&'a [f64]),
}

impl NpyData<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::F32(d) => d.len(),
            NpyData::F64(d) => d.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn descr(&self) -> &'static str {
        match self {
            NpyData::F32(_) => "<f4",
            NpyData::F64(_) => "<f8",
        }
    }

    fn itemsize(&self) -> usize {
        match self {
            NpyData::F32(_) => 4,
            NpyData::F64(_) => 8,
        }
    }

    /// Size of the data section in bytes.
    pub(crate) fn nbytes(&self) -> usize {
        self.len() * self.itemsize()
    }
}

impl<'a> From<&'a [f32]> for NpyData<'a> {
    fn from(d: &'a [f32]) -> Self {
        NpyData::F32(d)
    }
}
impl<'a> From<&'a [f64]> for NpyData<'a> {
    fn from(d: &'a [f64]) -> Self {
        NpyData::F64(d)
    }
}
impl<'a> From<&'a Vec<f32>> for NpyData<'a> {
    fn from(d: &'a Vec<f32>) -> Self {
        NpyData::F32(d)
    }
}
impl<'a> From<&'a Vec<f64>> for NpyData<'a> {
    fn from(d: &'a Vec<f64>) -> Self {
        NpyData::F64(d)
    }
}

// ---------------------------------------------------------------------------
// dtype
// ---------------------------------------------------------------------------

/// Element kind of an `.npy` dtype we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    UInt,
    Bool,
}

/// A parsed simple dtype such as `<f8` or `|u1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dtype {
    kind: Kind,
    size: usize,
    big_endian: bool,
}

impl Dtype {
    fn name(&self) -> String {
        let base = match (self.kind, self.size) {
            (Kind::Bool, _) => "bool".to_string(),
            (Kind::Float, s) => format!("f{}", s * 8),
            (Kind::Int, s) => format!("i{}", s * 8),
            (Kind::UInt, s) => format!("u{}", s * 8),
        };
        if self.big_endian && self.size > 1 {
            format!("{base} (big-endian)")
        } else {
            base
        }
    }
}

fn parse_descr(descr: &str) -> std::result::Result<Dtype, ErrorKind> {
    let unsupported = || {
        ErrorKind::Dtype(format!(
            "unsupported dtype '{descr}' (supported: f4, f8, i1, i2, i4, i8, u1, u2, u4, u8, b1)"
        ))
    };
    let mut chars = descr.chars();
    let (order, rest) = match chars.next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, chars.as_str()),
        Some(_) => ('=', descr),
        None => return Err(ErrorKind::BadHeader("empty 'descr'".into())),
    };
    let mut rc = rest.chars();
    let kind = match rc.next() {
        Some('f') => Kind::Float,
        Some('i') => Kind::Int,
        Some('u') => Kind::UInt,
        Some('b') => Kind::Bool,
        _ => return Err(unsupported()),
    };
    let size: usize = rc.as_str().parse().map_err(|_| unsupported())?;
    let ok = match kind {
        Kind::Float => matches!(size, 4 | 8),
        Kind::Int | Kind::UInt => matches!(size, 1 | 2 | 4 | 8),
        Kind::Bool => size == 1,
    };
    if !ok {
        return Err(unsupported());
    }
    let big_endian = match order {
        '>' => true,
        '<' => false,
        '=' => cfg!(target_endian = "big"),
        // '|' means "not applicable", which NumPy only uses for 1-byte types.
        _ => {
            if size != 1 {
                return Err(ErrorKind::Dtype(format!(
                    "dtype '{descr}' has no byte order but is {size} bytes wide"
                )));
            }
            false
        }
    };
    Ok(Dtype {
        kind,
        size,
        big_endian,
    })
}

// ---------------------------------------------------------------------------
// header dict literal parser
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum PyVal {
    Str(String),
    Bool(bool),
    Int(i128),
    None,
    Seq(Vec<PyVal>),
    Dict(Vec<(PyVal, PyVal)>),
}

impl PyVal {
    fn type_name(&self) -> &'static str {
        match self {
            PyVal::Str(_) => "a string",
            PyVal::Bool(_) => "a bool",
            PyVal::Int(_) => "an integer",
            PyVal::None => "None",
            PyVal::Seq(_) => "a tuple/list",
            PyVal::Dict(_) => "a dict",
        }
    }
}

struct LitParser {
    chars: Vec<char>,
    pos: usize,
}

type PResult<T> = std::result::Result<T, String>;

impl LitParser {
    fn new(text: &str) -> Self {
        LitParser {
            chars: text.chars().collect(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == '\0' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn expect(&mut self, c: char) -> PResult<()> {
        self.skip_ws();
        match self.peek() {
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            Some(x) => Err(format!(
                "expected '{c}' at offset {}, found '{}'",
                self.pos,
                x.escape_debug()
            )),
            None => Err(format!(
                "expected '{c}' at offset {}, found end of header",
                self.pos
            )),
        }
    }

    fn value(&mut self, depth: usize) -> PResult<PyVal> {
        if depth > MAX_DEPTH {
            return Err("header literal nested too deeply".into());
        }
        self.skip_ws();
        let c = self
            .peek()
            .ok_or_else(|| "unexpected end of header".to_string())?;
        match c {
            '\'' | '"' => self.string().map(PyVal::Str),
            'u' | 'b' | 'U' | 'B' if matches!(self.chars.get(self.pos + 1), Some('\'' | '"')) => {
                self.pos += 1;
                self.string().map(PyVal::Str)
            }
            '(' => self.seq('(', ')', depth).map(PyVal::Seq),
            '[' => self.seq('[', ']', depth).map(PyVal::Seq),
            '{' => self.dict(depth).map(PyVal::Dict),
            '-' | '+' | '0'..='9' => self.int().map(PyVal::Int),
            c if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c.is_alphanumeric() || c == '_') {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                match word.as_str() {
                    "True" => Ok(PyVal::Bool(true)),
                    "False" => Ok(PyVal::Bool(false)),
                    "None" => Ok(PyVal::None),
                    _ => Err(format!("unexpected name '{word}' at offset {start}")),
                }
            }
            other => Err(format!(
                "unexpected character '{}' at offset {}",
                other.escape_debug(),
                self.pos
            )),
        }
    }

    fn string(&mut self) -> PResult<String> {
        let quote = self.peek().ok_or("unexpected end of header")?;
        let start = self.pos;
        self.pos += 1;
        let mut s = String::new();
        loop {
            let c = self
                .peek()
                .ok_or_else(|| format!("unterminated string starting at offset {start}"))?;
            self.pos += 1;
            if c == quote {
                return Ok(s);
            }
            if c == '\\' {
                let e = self
                    .peek()
                    .ok_or_else(|| format!("unterminated string starting at offset {start}"))?;
                self.pos += 1;
                s.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    other => other,
                });
            } else if c == '\n' {
                return Err(format!("newline inside string starting at offset {start}"));
            } else {
                s.push(c);
            }
        }
    }

    fn int(&mut self) -> PResult<i128> {
        let start = self.pos;
        let neg = match self.peek() {
            Some('-') => {
                self.pos += 1;
                true
            }
            Some('+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        let mut v: i128 = 0;
        let mut digits = 0usize;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            self.pos += 1;
            digits += 1;
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(i128::from(d)))
                .ok_or_else(|| format!("integer too large at offset {start}"))?;
        }
        if digits == 0 {
            return Err(format!("expected a number at offset {start}"));
        }
        // Python 2 long suffix, as written by very old NumPy: `(3L, 4L)`.
        if matches!(self.peek(), Some('L' | 'l')) {
            self.pos += 1;
        }
        if matches!(self.peek(), Some('.' | 'e' | 'E' | 'j' | 'x' | 'X' | '_')) {
            return Err(format!("expected an integer at offset {start}"));
        }
        Ok(if neg { -v } else { v })
    }

    fn seq(&mut self, open: char, close: char, depth: usize) -> PResult<Vec<PyVal>> {
        self.expect(open)?;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(c) if c == close => {}
                Some(c) => {
                    return Err(format!(
                        "expected ',' or '{close}' at offset {}, found '{}'",
                        self.pos,
                        c.escape_debug()
                    ))
                }
                None => return Err(format!("missing '{close}'")),
            }
        }
    }

    fn dict(&mut self, depth: usize) -> PResult<Vec<(PyVal, PyVal)>> {
        self.expect('{')?;
        let mut items: Vec<(PyVal, PyVal)> = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(items);
            }
            let key = self.value(depth + 1)?;
            self.expect(':')?;
            let val = self.value(depth + 1)?;
            if items.iter().any(|(k, _)| *k == key) {
                return Err(format!("duplicate key {key:?}"));
            }
            items.push((key, val));
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {}
                Some(c) => {
                    return Err(format!(
                        "expected ',' or '}}' at offset {}, found '{}'",
                        self.pos,
                        c.escape_debug()
                    ))
                }
                None => return Err("missing '}'".into()),
            }
        }
    }
}

/// What the header dict says.
#[derive(Debug, Clone, PartialEq)]
struct Header {
    dtype: Dtype,
    fortran_order: bool,
    shape: Vec<usize>,
}

fn parse_header_text(text: &str) -> std::result::Result<Header, ErrorKind> {
    let bad = ErrorKind::BadHeader;
    let mut p = LitParser::new(text);
    p.skip_ws();
    if p.peek() != Some('{') {
        return Err(bad("header is not a dict literal".into()));
    }
    let items = p.dict(0).map_err(bad)?;
    p.skip_ws();
    if p.pos < p.chars.len() {
        return Err(bad(format!(
            "unexpected text after the dict at offset {}",
            p.pos
        )));
    }
    let get = |key: &str| {
        items.iter().find_map(|(k, v)| match k {
            PyVal::Str(s) if s == key => Some(v),
            _ => None,
        })
    };
    let descr = get("descr").ok_or_else(|| bad("key 'descr' missing".into()))?;
    let fortran = get("fortran_order").ok_or_else(|| bad("key 'fortran_order' missing".into()))?;
    let shape = get("shape").ok_or_else(|| bad("key 'shape' missing".into()))?;

    let dtype = match descr {
        PyVal::Str(s) => parse_descr(s)?,
        PyVal::Seq(_) => {
            return Err(ErrorKind::Dtype(
                "structured (record) dtypes are not supported".into(),
            ))
        }
        other => {
            return Err(bad(format!(
                "'descr' is {}, expected a string",
                other.type_name()
            )))
        }
    };
    let fortran_order = match fortran {
        PyVal::Bool(b) => *b,
        other => {
            return Err(bad(format!(
                "'fortran_order' is {}, expected True or False",
                other.type_name()
            )))
        }
    };
    let dims = match shape {
        PyVal::Seq(v) => v.as_slice(),
        // `(3)` parses as a parenthesised integer; be lenient.
        PyVal::Int(_) => std::slice::from_ref(shape),
        other => {
            return Err(bad(format!(
                "'shape' is {}, expected a tuple",
                other.type_name()
            )))
        }
    };
    if dims.len() > MAX_NDIM {
        return Err(bad(format!(
            "'shape' has {} dimensions (at most {MAX_NDIM})",
            dims.len()
        )));
    }
    let mut shape = Vec::with_capacity(dims.len());
    for d in dims {
        match d {
            PyVal::Int(v) if *v >= 0 => {
                let v = usize::try_from(*v).map_err(|_| {
                    ErrorKind::TooLarge(format!("dimension {v} in 'shape' is too large"))
                })?;
                shape.push(v);
            }
            PyVal::Int(v) => return Err(bad(format!("negative dimension {v} in 'shape'"))),
            other => {
                return Err(bad(format!(
                    "'shape' entry is {}, expected an integer",
                    other.type_name()
                )))
            }
        }
    }
    Ok(Header {
        dtype,
        fortran_order,
        shape,
    })
}

// ---------------------------------------------------------------------------
// reading
// ---------------------------------------------------------------------------

/// Parses the fixed preamble. `pre` holds the first bytes of the input (at
/// most 12). Returns `(major, length of the preamble, header length)`, or
/// `Ok(None)` when more bytes are needed than `pre` holds.
fn parse_preamble(pre: &[u8]) -> std::result::Result<Option<(u8, usize, usize)>, ErrorKind> {
    let m = pre.len().min(6);
    if pre[..m] != NPY_MAGIC[..m] {
        let what = if pre.starts_with(b"PK") {
            "it looks like a zip/.npz archive".to_string()
        } else {
            format!("bad magic bytes '{}'", Escaped(&pre[..m]))
        };
        return Err(ErrorKind::BadMagic(what));
    }
    if pre.len() < 8 {
        return Ok(None);
    }
    let (major, minor) = (pre[6], pre[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(ErrorKind::UnsupportedVersion { major, minor }),
    };
    let pre_len = 8 + len_bytes;
    if pre.len() < pre_len {
        return Ok(None);
    }
    let hlen = if len_bytes == 2 {
        u16::from_le_bytes([pre[8], pre[9]]) as usize
    } else {
        u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize
    };
    if hlen > MAX_HEADER_LEN {
        return Err(ErrorKind::TooLarge(format!(
            "header length {hlen} exceeds the {MAX_HEADER_LEN}-byte limit"
        )));
    }
    Ok(Some((major, pre_len, hlen)))
}

fn decode_header_bytes(major: u8, raw: &[u8]) -> std::result::Result<Header, ErrorKind> {
    let text: String = if major >= 3 {
        std::str::from_utf8(raw)
            .map_err(|e| ErrorKind::BadHeader(format!("header is not valid UTF-8: {e}")))?
            .to_string()
    } else {
        // Versions 1 and 2 are latin-1.
        raw.iter().map(|&b| b as char).collect()
    };
    parse_header_text(&text)
}

/// Element count and byte size of the data described by `h`.
fn data_size(h: &Header) -> std::result::Result<(usize, usize), ErrorKind> {
    let too_large = || {
        ErrorKind::TooLarge(format!(
            "shape {} of {} is too large to address",
            fmt_shape(&h.shape),
            h.dtype.name()
        ))
    };
    let count = checked_count(&h.shape).ok_or_else(too_large)?;
    let nbytes = count.checked_mul(h.dtype.size).ok_or_else(too_large)?;
    Ok((count, nbytes))
}

fn describe(h: &Header, nbytes: usize) -> String {
    format!(
        "{} {} ({} bytes)",
        fmt_shape(&h.shape),
        h.dtype.name(),
        nbytes
    )
}

const TWO_POW_53: u64 = 1 << 53;

/// Decodes `bytes` (exactly `count * size` of them) into `f64` values in
/// storage order.
fn decode_values(dt: Dtype, bytes: &[u8]) -> std::result::Result<Vec<f64>, ErrorKind> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            bytes.chunks_exact($n).map(|c| {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                if dt.big_endian {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            })
        };
    }
    let out: Vec<f64> = match (dt.kind, dt.size) {
        (Kind::Float, 4) => conv!(f32, 4).map(f64::from).collect(),
        (Kind::Float, 8) => conv!(f64, 8).collect(),
        (Kind::Int, 1) => bytes.iter().map(|&b| f64::from(b as i8)).collect(),
        (Kind::Int, 2) => conv!(i16, 2).map(f64::from).collect(),
        (Kind::Int, 4) => conv!(i32, 4).map(f64::from).collect(),
        (Kind::UInt, 1) => bytes.iter().map(|&b| f64::from(b)).collect(),
        (Kind::UInt, 2) => conv!(u16, 2).map(f64::from).collect(),
        (Kind::UInt, 4) => conv!(u32, 4).map(f64::from).collect(),
        (Kind::Bool, 1) => bytes
            .iter()
            .map(|&b| if b != 0 { 1.0 } else { 0.0 })
            .collect(),
        (Kind::Int, 8) => {
            let mut v = Vec::with_capacity(bytes.len() / 8);
            for (i, x) in conv!(i64, 8).enumerate() {
                if x.unsigned_abs() > TWO_POW_53 {
                    return Err(ErrorKind::Value(format!(
                        "i64 value {x} at flat index {i} is not exactly representable as f64"
                    )));
                }
                v.push(x as f64);
            }
            v
        }
        (Kind::UInt, 8) => {
            let mut v = Vec::with_capacity(bytes.len() / 8);
            for (i, x) in conv!(u64, 8).enumerate() {
                if x > TWO_POW_53 {
                    return Err(ErrorKind::Value(format!(
                        "u64 value {x} at flat index {i} is not exactly representable as f64"
                    )));
                }
                v.push(x as f64);
            }
            v
        }
        // parse_descr only produces the combinations above.
        _ => return Err(ErrorKind::Dtype(format!("unsupported dtype {}", dt.name()))),
    };
    Ok(out)
}

/// Reorders Fortran-order (column-major) data into C order.
pub(crate) fn fortran_to_c(shape: &[usize], f: &[f64]) -> Vec<f64> {
    let n = f.len();
    if shape.len() < 2 || n == 0 {
        return f.to_vec();
    }
    let nd = shape.len();
    let mut fstride = vec![1usize; nd];
    for d in 1..nd {
        fstride[d] = fstride[d - 1] * shape[d - 1];
    }
    let mut idx = vec![0usize; nd];
    let mut off = 0usize;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(f[off]);
        for d in (0..nd).rev() {
            idx[d] += 1;
            off += fstride[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= fstride[d] * shape[d];
            idx[d] = 0;
        }
    }
    out
}

fn finish(h: Header, data: &[u8]) -> std::result::Result<Array, ErrorKind> {
    let vals = decode_values(h.dtype, data)?;
    let data = if h.fortran_order {
        fortran_to_c(&h.shape, &vals)
    } else {
        vals
    };
    Ok(Array {
        shape: h.shape,
        data,
    })
}

fn parse_npy_bytes(bytes: &[u8]) -> std::result::Result<Array, ErrorKind> {
    if bytes.is_empty() {
        return Err(ErrorKind::BadMagic("file is empty".into()));
    }
    let pre = &bytes[..bytes.len().min(12)];
    let (major, pre_len, hlen) = match parse_preamble(pre)? {
        Some(x) => x,
        None => {
            return Err(ErrorKind::Truncated(format!(
                "only {} bytes, not even a complete preamble",
                bytes.len()
            )))
        }
    };
    let rest = &bytes[pre_len..];
    if rest.len() < hlen {
        return Err(ErrorKind::Truncated(format!(
            "header length field says {hlen} bytes, file has {} after the preamble",
            rest.len()
        )));
    }
    let h = decode_header_bytes(major, &rest[..hlen])?;
    let (_, nbytes) = data_size(&h)?;
    let data = &rest[hlen..];
    if data.len() < nbytes {
        return Err(ErrorKind::Truncated(format!(
            "header says {}, file has {}",
            describe(&h, nbytes),
            data.len()
        )));
    }
    if data.len() > nbytes {
        return Err(ErrorKind::TrailingData(format!(
            "{} unexpected bytes after the data (header says {})",
            data.len() - nbytes,
            describe(&h, nbytes)
        )));
    }
    finish(h, data)
}

/// Parses an in-memory `.npy` file. `name` is only used in error messages.
///
/// The whole buffer must be exactly one array: trailing bytes are an error.
pub fn read_npy_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<Array> {
    parse_npy_bytes(bytes).map_err(|k| IoError::new(name, k))
}

/// Reads a `.npy` file into an [`Array`] of `f64` in C order.
pub fn read_npy_f64(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| IoError::io(path, "read", e))?;
    read_npy_bytes(&bytes, path)
}

/// Reads into `buf` until it is full or EOF; returns how many bytes were read.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads up to `n` bytes, growing the buffer only as data actually arrives
/// (so a lying size field cannot trigger a huge allocation).
fn read_bounded<R: Read + ?Sized>(r: &mut R, n: usize) -> std::io::Result<Vec<u8>> {
    const CHUNK: usize = 1 << 20;
    let mut buf = Vec::with_capacity(n.min(CHUNK));
    let mut remaining = n;
    while remaining > 0 {
        let step = remaining.min(CHUNK);
        let start = buf.len();
        buf.resize(start + step, 0);
        let got = read_full(r, &mut buf[start..])?;
        buf.truncate(start + got);
        remaining -= got;
        if got < step {
            break;
        }
    }
    Ok(buf)
}

/// Reads one `.npy` message from a stream, consuming exactly its bytes.
///
/// Returns `Ok(None)` on a clean end of stream (no byte before the magic),
/// which makes this suitable for reading a sequence of concatenated `.npy`
/// messages (e.g. framed on stdin). `name` is used in error messages.
pub fn read_npy_stream<R: Read + ?Sized>(
    reader: &mut R,
    name: impl AsRef<Path>,
) -> Result<Option<Array>> {
    let name = name.as_ref();
    let err = |k| IoError::new(name, k);
    let ioerr = |e| IoError::io(name, "read", e);
    let mut pre = [0u8; 12];
    // Magic + version first: they determine how long the preamble is.
    let got = read_full(reader, &mut pre[..8]).map_err(ioerr)?;
    if got == 0 {
        return Ok(None);
    }
    let mut have = got;
    let parsed = match parse_preamble(&pre[..have]).map_err(err)? {
        Some(p) => Some(p),
        None if have == 8 => {
            // Version known, length field missing: read it.
            let want = if pre[6] == 1 { 10 } else { 12 };
            have += read_full(reader, &mut pre[8..want]).map_err(ioerr)?;
            parse_preamble(&pre[..have]).map_err(err)?
        }
        None => None,
    };
    let (major, _, hlen) = parsed.ok_or_else(|| {
        err(ErrorKind::Truncated(format!(
            "stream ended after {have} bytes, inside the preamble"
        )))
    })?;
    let raw = read_bounded(reader, hlen).map_err(ioerr)?;
    if raw.len() < hlen {
        return Err(err(ErrorKind::Truncated(format!(
            "header length field says {hlen} bytes, stream has {}",
            raw.len()
        ))));
    }
    let h = decode_header_bytes(major, &raw).map_err(err)?;
    let (_, nbytes) = data_size(&h).map_err(err)?;
    let data = read_bounded(reader, nbytes).map_err(ioerr)?;
    if data.len() < nbytes {
        return Err(err(ErrorKind::Truncated(format!(
            "header says {}, stream has {}",
            describe(&h, nbytes),
            data.len()
        ))));
    }
    finish(h, &data).map(Some).map_err(err)
}

/// What an `.npy` header says, without the data: shape, dtype and memory order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyInfo {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The dtype as the messages name it: `f64`, `f32`, `i8`, `bool`, ...
    pub dtype: String,
    /// Whether the data is stored in Fortran (column-major) order.
    pub fortran_order: bool,
}

/// Reads only the preamble and header of an `.npy` message from a stream (the reader is left at
/// the start of the data). The element count and byte size are checked to be addressable.
pub fn read_npy_header_from<R: Read + ?Sized>(
    reader: &mut R,
    name: impl AsRef<Path>,
) -> Result<NpyInfo> {
    let h = read_header_from(reader, name.as_ref())?;
    Ok(NpyInfo {
        dtype: h.dtype.name(),
        fortran_order: h.fortran_order,
        shape: h.shape,
    })
}

fn read_header_from<R: Read + ?Sized>(reader: &mut R, name: &Path) -> Result<Header> {
    let err = |k| IoError::new(name, k);
    let ioerr = |e| IoError::io(name, "read", e);
    let mut pre = [0u8; 12];
    let mut have = read_full(reader, &mut pre[..8]).map_err(ioerr)?;
    if have == 0 {
        return Err(err(ErrorKind::Truncated("file is empty".into())));
    }
    let parsed = match parse_preamble(&pre[..have]).map_err(err)? {
        Some(p) => Some(p),
        None if have == 8 => {
            let want = if pre[6] == 1 { 10 } else { 12 };
            have += read_full(reader, &mut pre[8..want]).map_err(ioerr)?;
            parse_preamble(&pre[..have]).map_err(err)?
        }
        None => None,
    };
    let (major, _, hlen) = parsed.ok_or_else(|| {
        err(ErrorKind::Truncated(format!(
            "ended after {have} bytes, inside the preamble"
        )))
    })?;
    let raw = read_bounded(reader, hlen).map_err(ioerr)?;
    if raw.len() < hlen {
        return Err(err(ErrorKind::Truncated(format!(
            "header length field says {hlen} bytes, found {}",
            raw.len()
        ))));
    }
    let h = decode_header_bytes(major, &raw).map_err(err)?;
    data_size(&h).map_err(err)?;
    Ok(h)
}

/// Reads rows `rows` (along the first axis; a 1-D array's elements) of one `.npy` message from a
/// stream, as an [`Array`] of those rows in C order. Only those rows are decoded and held:
/// `skip(reader, n)` moves the stream `n` bytes forward (a seek for a file, reading and
/// discarding for a compressed stream) and returns how many bytes it moved, or `n` if it cannot
/// tell. A Fortran-order array with more than one column is read whole and then sliced.
pub fn read_npy_rows_from<R: Read + ?Sized>(
    reader: &mut R,
    name: impl AsRef<Path>,
    rows: std::ops::Range<usize>,
    skip: &mut dyn FnMut(&mut R, u64) -> std::io::Result<u64>,
) -> Result<Array> {
    let name = name.as_ref();
    let err = |k| IoError::new(name, k);
    let ioerr = |e| IoError::io(name, "read", e);
    let h = read_header_from(reader, name)?;
    let n = h.shape.first().copied().unwrap_or(1);
    if rows.start > rows.end || rows.end > n {
        return Err(err(ErrorKind::Shape(format!(
            "rows {}..{} asked of an array of shape {}",
            rows.start,
            rows.end,
            fmt_shape(&h.shape)
        ))));
    }
    let row_elems: usize = h.shape.iter().skip(1).product();
    let mut shape = h.shape.clone();
    if let Some(first) = shape.first_mut() {
        *first = rows.len();
    }
    if h.fortran_order && row_elems > 1 && n > 1 {
        let (_, nbytes) = data_size(&h).map_err(err)?;
        let data = read_bounded(reader, nbytes).map_err(ioerr)?;
        if data.len() < nbytes {
            return Err(err(ErrorKind::Truncated(format!(
                "header says {}, found {} bytes",
                describe(&h, nbytes),
                data.len()
            ))));
        }
        let all = finish(h, &data).map_err(err)?;
        return Ok(Array {
            shape,
            data: all.data[rows.start * row_elems..rows.end * row_elems].to_vec(),
        });
    }
    let row_bytes = row_elems * h.dtype.size;
    let (_, nbytes) = data_size(&h).map_err(err)?;
    let before = (rows.start * row_bytes) as u64;
    let moved = skip(reader, before).map_err(ioerr)?;
    let want = rows.len() * row_bytes;
    let data = read_bounded(reader, want).map_err(ioerr)?;
    if moved < before || data.len() < want {
        return Err(err(ErrorKind::Truncated(format!(
            "header says {}, the data ends before row {}",
            describe(&h, nbytes),
            rows.end
        ))));
    }
    Ok(Array {
        shape,
        data: decode_values(h.dtype, &data).map_err(err)?,
    })
}

/// Rows `rows` of an `.npy` file (see [`read_npy_rows_from`]): a C-order file is read from the
/// first of those rows (a seek), not from its start.
pub fn read_npy_rows(path: impl AsRef<Path>, rows: std::ops::Range<usize>) -> Result<Array> {
    use std::io::{Seek, SeekFrom};
    let path = path.as_ref();
    let f = File::open(path).map_err(|e| IoError::io(path, "open", e))?;
    let mut r = std::io::BufReader::new(f);
    read_npy_rows_from(&mut r, path, rows, &mut |r, n| {
        r.seek(SeekFrom::Current(n as i64))?;
        Ok(n)
    })
}

/// Moves a stream `n` bytes forward by reading and discarding them; returns how many there were.
pub fn skip_by_reading<R: Read + ?Sized>(r: &mut R, n: u64) -> std::io::Result<u64> {
    std::io::copy(&mut r.take(n), &mut std::io::sink())
}

/// Reads only the header of an `.npy` file (see [`read_npy_header_from`]).
pub fn read_npy_header(path: impl AsRef<Path>) -> Result<NpyInfo> {
    let path = path.as_ref();
    let mut f = File::open(path).map_err(|e| IoError::io(path, "open", e))?;
    read_npy_header_from(&mut f, path)
}

/// Reads exactly one `.npy` message from a stream; end of stream is an error.
pub fn read_npy_from<R: Read + ?Sized>(reader: &mut R, name: impl AsRef<Path>) -> Result<Array> {
    let name = name.as_ref();
    read_npy_stream(reader, name)?
        .ok_or_else(|| IoError::new(name, ErrorKind::Truncated("stream is empty".into())))
}

// ---------------------------------------------------------------------------
// writing
// ---------------------------------------------------------------------------

fn shape_literal(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Preamble + padded header for a C-order array (version 1.0 when the header
/// fits in 64 KiB, else 2.0). The total is a multiple of 64 bytes, as NumPy does.
fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        shape_literal(shape)
    );
    let build = |pre_len: usize| {
        let unpadded = pre_len + dict.len() + 1;
        let pad = (64 - unpadded % 64) % 64;
        dict.len() + pad + 1
    };
    let (major, pre_len) = if build(10) <= u16::MAX as usize {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let hlen = build(pre_len);
    let mut out = Vec::with_capacity(pre_len + hlen);
    out.extend_from_slice(NPY_MAGIC);
    out.push(major);
    out.push(0);
    if major == 1 {
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(pre_len + hlen - 1, b' ');
    out.push(b'\n');
    out
}

pub(crate) fn check_shape(shape: &[usize], len: usize) -> std::result::Result<(), ErrorKind> {
    match checked_count(shape) {
        Some(n) if n == len => Ok(()),
        Some(n) => Err(ErrorKind::Shape(format!(
            "shape {} has {n} elements but {len} values were given",
            fmt_shape(shape)
        ))),
        None => Err(ErrorKind::TooLarge(format!(
            "shape {} overflows",
            fmt_shape(shape)
        ))),
    }
}

/// Writes header + data; the shape must already have been checked.
pub(crate) fn write_npy_unchecked<W: Write + ?Sized>(
    w: &mut W,
    shape: &[usize],
    data: NpyData<'_>,
) -> std::io::Result<()> {
    w.write_all(&header_bytes(data.descr(), shape))?;
    const CHUNK: usize = 8192;
    let mut buf = Vec::with_capacity(CHUNK * 8);
    match data {
        NpyData::F32(d) => {
            for c in d.chunks(CHUNK) {
                buf.clear();
                c.iter()
                    .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
                w.write_all(&buf)?;
            }
        }
        NpyData::F64(d) => {
            for c in d.chunks(CHUNK) {
                buf.clear();
                c.iter()
                    .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
                w.write_all(&buf)?;
            }
        }
    }
    Ok(())
}

/// Writes one `.npy` message (C order, `<f4` or `<f8`) to any writer.
/// `name` is used in error messages.
pub fn write_npy_to<'a, W: Write + ?Sized>(
    writer: &mut W,
    name: impl AsRef<Path>,
    shape: &[usize],
    data: impl Into<NpyData<'a>>,
) -> Result<()> {
    let name = name.as_ref();
    let data = data.into();
    check_shape(shape, data.len()).map_err(|k| IoError::new(name, k))?;
    write_npy_unchecked(writer, shape, data).map_err(|e| IoError::io(name, "write", e))
}

fn npy_bytes(shape: &[usize], data: NpyData<'_>) -> Result<Vec<u8>> {
    check_shape(shape, data.len()).map_err(|k| IoError::new("<npy bytes>", k))?;
    let mut out = Vec::with_capacity(128 + data.nbytes());
    // Writing into a Vec cannot fail.
    write_npy_unchecked(&mut out, shape, data)
        .map_err(|e| IoError::io("<npy bytes>", "write", e))?;
    Ok(out)
}

/// An in-memory `.npy` file with dtype `<f8`. Errors (named `<npy bytes>`)
/// only when `shape` does not match `data.len()`.
pub fn npy_bytes_f64(shape: &[usize], data: &[f64]) -> Result<Vec<u8>> {
    npy_bytes(shape, NpyData::F64(data))
}

/// An in-memory `.npy` file with dtype `<f4`.
pub fn npy_bytes_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    npy_bytes(shape, NpyData::F32(data))
}

fn write_npy_file(path: &Path, shape: &[usize], data: NpyData<'_>) -> Result<()> {
    check_shape(shape, data.len()).map_err(|k| IoError::new(path, k))?;
    atomic_write_with(path, |w: &mut BufWriter<File>| {
        write_npy_unchecked(w, shape, data).map_err(|e| IoError::io(path, "write", e))
    })
}

/// Atomically writes a `.npy` file with dtype `<f4` in C order.
pub fn write_npy_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    write_npy_file(path.as_ref(), shape, NpyData::F32(data))
}

/// Atomically writes a `.npy` file with dtype `<f8` in C order.
pub fn write_npy_f64(path: impl AsRef<Path>, shape: &[usize], data: &[f64]) -> Result<()> {
    write_npy_file(path.as_ref(), shape, NpyData::F64(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a `.npy` file by hand from a header dict text and raw data.
    fn raw_npy(major: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut v = NPY_MAGIC.to_vec();
        v.push(major);
        v.push(0);
        if major == 1 {
            v.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(dict.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn msg(r: Result<Array>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn header_is_aligned_and_versioned() {
        for shape in [vec![], vec![3], vec![2, 3], vec![2, 3, 4]] {
            let h = header_bytes("<f8", &shape);
            assert_eq!(h.len() % 64, 0, "{shape:?}");
            assert_eq!(h[6], 1);
            assert_eq!(*h.last().unwrap(), b'\n');
        }
        // A 10000-dimension shape is not valid for NumPy, but forces a >64 KiB
        // header, which must switch to version 2.0.
        let big = vec![123456usize; 10000];
        let h = header_bytes("<f8", &big);
        assert_eq!(h[6], 2);
        assert_eq!(h.len() % 64, 0);
    }

    #[test]
    fn shape_literal_matches_python() {
        assert_eq!(shape_literal(&[]), "()");
        assert_eq!(shape_literal(&[5]), "(5,)");
        assert_eq!(shape_literal(&[5, 2, 1]), "(5, 2, 1)");
    }

    #[test]
    fn round_trip_f64_and_f32() {
        let d: Vec<f64> = (0..24).map(|i| i as f64 * 0.5 - 3.0).collect();
        let b = npy_bytes_f64(&[2, 3, 4], &d).unwrap();
        let a = read_npy_bytes(&b, "mem").unwrap();
        assert_eq!(a.shape, vec![2, 3, 4]);
        assert_eq!(a.data, d);

        let f: Vec<f32> = vec![1.5, -2.25, f32::MAX, f32::MIN_POSITIVE];
        let b = npy_bytes_f32(&[4], &f).unwrap();
        let a = read_npy_bytes(&b, "mem").unwrap();
        assert_eq!(a.to_f32(), f);
    }

    #[test]
    fn shape_mismatch_on_write() {
        let e = npy_bytes_f64(&[2, 2], &[1.0, 2.0, 3.0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("2×2 has 4 elements but 3 values"), "{e}");
    }

    #[test]
    fn fortran_order_is_transposed() {
        // 2×3 matrix [[1,2,3],[4,5,6]] stored column-major: 1 4 2 5 3 6.
        let vals = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0];
        let data: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
        let b = raw_npy(
            1,
            "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }\n",
            &data,
        );
        let a = read_npy_bytes(&b, "f.npy").unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn fortran_3d_matches_index_formula() {
        let shape = [2usize, 3, 4];
        let n = 24;
        // Value at (i,j,k) is 100i + 10j + k; F offset = i + 2j + 6k.
        let mut f = vec![0.0; n];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    f[i + 2 * j + 6 * k] = (100 * i + 10 * j + k) as f64;
                }
            }
        }
        let c = fortran_to_c(&shape, &f);
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    assert_eq!(c[i * 12 + j * 4 + k], (100 * i + 10 * j + k) as f64);
                }
            }
        }
    }

    #[test]
    fn integer_bool_and_big_endian_dtypes() {
        let b = raw_npy(
            1,
            "{'descr': '<i4', 'fortran_order': False, 'shape': (3,)}",
            &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0],
        );
        assert_eq!(read_npy_bytes(&b, "i").unwrap().data, vec![1.0, -1.0, 7.0]);
        let b = raw_npy(
            1,
            "{'descr': '|b1', 'fortran_order': False, 'shape': (3,)}",
            &[1, 0, 1],
        );
        assert_eq!(read_npy_bytes(&b, "b").unwrap().data, vec![1.0, 0.0, 1.0]);
        let b = raw_npy(
            1,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2,)}",
            &[255, 3],
        );
        assert_eq!(read_npy_bytes(&b, "u").unwrap().data, vec![255.0, 3.0]);
        let b = raw_npy(
            1,
            "{'descr': '>f8', 'fortran_order': False, 'shape': (1,)}",
            &2.5f64.to_be_bytes(),
        );
        assert_eq!(read_npy_bytes(&b, "be").unwrap().data, vec![2.5]);
        let big = (1i64 << 53) + 1;
        let b = raw_npy(
            1,
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1,)}",
            &big.to_le_bytes(),
        );
        let e = msg(read_npy_bytes(&b, "i8.npy"));
        assert!(
            e.starts_with("i8.npy: ") && e.contains("not exactly representable"),
            "{e}"
        );
    }

    #[test]
    fn version_2_and_3_headers() {
        let data = 4.0f64.to_le_bytes();
        let b = raw_npy(
            2,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n",
            &data,
        );
        assert_eq!(read_npy_bytes(&b, "v2").unwrap().data, vec![4.0]);
        let b = raw_npy(
            3,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n",
            &data,
        );
        assert_eq!(read_npy_bytes(&b, "v3").unwrap().data, vec![4.0]);
    }

    #[test]
    fn lenient_header_forms() {
        let data = [0u8; 16];
        for dict in [
            "{\"descr\":\"<f8\",\"fortran_order\":False,\"shape\":(2,)}",
            "{'shape': (2L,), 'fortran_order': False, 'descr': '<f8'}   \n",
            "{'descr': '<f8', 'fortran_order': False, 'shape': [2], 'extra': None}",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2)}",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, ), }",
        ] {
            let b = raw_npy(1, dict, &data);
            let a = read_npy_bytes(&b, "h").unwrap_or_else(|e| panic!("{dict}: {e}"));
            assert_eq!(a.len(), 2, "{dict}");
        }
    }

    #[test]
    fn bad_headers_are_errors() {
        let cases: &[(&str, &str)] = &[
            ("{'descr': '<f8', 'fortran_order': False}", "key 'shape' missing"),
            ("{'descr': '<c16', 'fortran_order': False, 'shape': (1,)}", "unsupported dtype '<c16'"),
            ("{'descr': '|O', 'fortran_order': False, 'shape': (1,)}", "unsupported dtype '|O'"),
            ("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,)}", "structured"),
            ("{'descr': '<f8', 'fortran_order': 'no', 'shape': (1,)}", "'fortran_order' is a string"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}", "negative dimension"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (1.5,)}", "expected an integer"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)", "missing '}'"),
            ("{'descr': '<f8, 'fortran_order': False, 'shape': (1,)}", "expected ','"),
            ("['descr']", "not a dict"),
            ("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", "duplicate key"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)} junk", "after the dict"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999,)}", "too large"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': ((((((((((((((((((1,),),),),),),),),),),),),),),),),),),)}", "nested too deeply"),
        ];
        for (dict, want) in cases {
            let b = raw_npy(1, dict, &[0u8; 8]);
            let e = msg(read_npy_bytes(&b, "bad.npy"));
            assert!(e.starts_with("bad.npy: "), "{e}");
            assert!(e.contains(want), "{dict}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn absurd_shape_does_not_allocate() {
        let b = raw_npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000)}",
            &[0u8; 40],
        );
        let e = msg(read_npy_bytes(&b, "big.npy"));
        assert!(
            e.contains(
                "truncated: header says 1000000×1000000 f64 (8000000000000 bytes), file has 40"
            ),
            "{e}"
        );
        let b = raw_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296)}", &[]);
        let e = msg(read_npy_bytes(&b, "huge.npy"));
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn truncation_message_matches_spec() {
        let d = vec![0f32; 2000 * 3];
        let mut b = npy_bytes_f32(&[2000, 3], &d).unwrap();
        let header_len = b.len() - 24000;
        b.truncate(header_len + 8000);
        let e = msg(read_npy_bytes(&b, "x.npy"));
        assert_eq!(
            e,
            "x.npy: truncated: header says 2000×3 f32 (24000 bytes), file has 8000"
        );
    }

    #[test]
    fn magic_and_version_errors() {
        assert!(msg(read_npy_bytes(b"", "e.npy")).contains("empty"));
        assert!(msg(read_npy_bytes(b"PK\x03\x04rest", "z.npy")).contains("zip"));
        assert!(msg(read_npy_bytes(b"hello world", "t.npy")).contains("bad magic"));
        let mut b = npy_bytes_f64(&[1], &[1.0]).unwrap();
        b[5] = b'X';
        assert!(msg(read_npy_bytes(&b, "m.npy")).contains("bad magic bytes '\\x93NUMPX'"));
        assert!(msg(read_npy_bytes(b"\x93NUM", "p.npy")).contains("truncated"));
        assert!(msg(read_npy_bytes(b"\x93NUMPY\x04\x00\x10\x00", "v.npy")).contains("version 4.0"));
        assert!(msg(read_npy_bytes(b"\x93NUMPY\x01\x00\xff\x00{", "h.npy"))
            .contains("header length field says 255"));
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut b = npy_bytes_f64(&[1], &[1.0]).unwrap();
        b.push(0);
        assert!(msg(read_npy_bytes(&b, "t.npy")).contains("1 unexpected bytes"));
    }

    #[test]
    fn stream_reads_consecutive_messages() {
        let mut buf = npy_bytes_f64(&[2], &[1.0, 2.0]).unwrap();
        buf.extend(npy_bytes_f32(&[1, 1], &[3.0]).unwrap());
        let mut r = std::io::Cursor::new(buf);
        let a = read_npy_stream(&mut r, "stdin").unwrap().unwrap();
        assert_eq!(a.data, vec![1.0, 2.0]);
        let b = read_npy_stream(&mut r, "stdin").unwrap().unwrap();
        assert_eq!((b.shape.clone(), b.data.clone()), (vec![1, 1], vec![3.0]));
        assert!(read_npy_stream(&mut r, "stdin").unwrap().is_none());
        let e = read_npy_from(&mut r, "stdin").unwrap_err().to_string();
        assert_eq!(e, "stdin: truncated: stream is empty");
    }

    #[test]
    fn stream_truncation_is_error() {
        let full = npy_bytes_f64(&[3], &[1.0, 2.0, 3.0]).unwrap();
        for cut in 1..full.len() {
            let mut r = std::io::Cursor::new(&full[..cut]);
            let e = read_npy_stream(&mut r, "pipe").unwrap_err().to_string();
            assert!(e.starts_with("pipe: truncated"), "cut {cut}: {e}");
        }
    }
}
