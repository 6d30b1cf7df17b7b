//! Sample and observation files: `.npy`, `.npz` (one array), `.csv` and
//! `.csv.bz2` (as written by sbibm / pandas `to_csv(index=False)`).
//!
//! The format is detected from the content (magic bytes) first and the file
//! extension second, so a `.csv` that is really bzip2-compressed still reads.

use std::io::Read;
use std::path::Path;

use super::array::{Array, Array2};
use super::error::{fmt_shape, ErrorKind, IoError, Result};
use super::npy::{read_npy_bytes, NPY_MAGIC};
use super::npz::read_npz_bytes;

/// Largest decompressed `.csv.bz2` we accept (guards against bzip2 bombs).
pub const MAX_DECOMPRESSED_CSV: u64 = 1 << 30;

/// A parsed CSV table of floats.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvTable {
    /// Column names from the header line, if the first line was a header.
    pub header: Option<Vec<String>>,
    /// The numeric rows.
    pub values: Array2,
}

fn csv_err(line: usize, msg: impl Into<String>) -> ErrorKind {
    ErrorKind::Csv {
        line,
        msg: msg.into(),
    }
}

fn unquote(field: &str) -> &str {
    let f = field.trim();
    if f.len() >= 2 && f.starts_with('"') && f.ends_with('"') {
        f[1..f.len() - 1].trim()
    } else {
        f
    }
}

fn parse_float(s: &str) -> Option<f64> {
    let s = unquote(s);
    if s.is_empty() {
        return None;
    }
    s.parse::<f64>().ok()
}

fn parse_csv_text(text: &str) -> std::result::Result<CsvTable, ErrorKind> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut header: Option<Vec<String>> = None;
    let mut cols: Option<usize> = None;
    let mut data: Vec<f64> = Vec::new();
    let mut rows = 0usize;
    for (i, raw) in text.split('\n').enumerate() {
        let lineno = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if cols.is_none() {
            // First non-blank line: a header unless every field is a number.
            cols = Some(fields.len());
            if !fields.iter().all(|f| parse_float(f).is_some()) {
                let names: Vec<String> = fields.iter().map(|f| unquote(f).to_string()).collect();
                if names.iter().any(|n| n.is_empty()) {
                    return Err(csv_err(
                        lineno,
                        "header has an empty column name (was the file written with an index column?)",
                    ));
                }
                header = Some(names);
                continue;
            }
        }
        let ncols = cols.unwrap_or(fields.len());
        if fields.len() != ncols {
            return Err(csv_err(
                lineno,
                format!("{} fields, expected {ncols}", fields.len()),
            ));
        }
        for (c, f) in fields.iter().enumerate() {
            let s = unquote(f);
            if s.is_empty() {
                return Err(csv_err(
                    lineno,
                    format!("column {}: empty value (missing data?)", c + 1),
                ));
            }
            let v = s.parse::<f64>().map_err(|_| {
                let shown: String = s.chars().take(40).collect();
                csv_err(
                    lineno,
                    format!("column {}: '{shown}' is not a number", c + 1),
                )
            })?;
            data.push(v);
        }
        rows += 1;
    }
    let cols = cols.ok_or_else(|| ErrorKind::Format("CSV file is empty".into()))?;
    let values = Array2 { rows, cols, data };
    Ok(CsvTable { header, values })
}

/// Parses CSV text of floats, with or without a header line (the first
/// line is taken as a header unless all its fields are numbers). Blank lines,
/// CRLF line ends, a UTF-8 BOM and double-quoted fields are accepted; ragged
/// rows, empty fields and non-numbers are errors naming the line.
pub fn parse_csv(bytes: &[u8], name: impl AsRef<Path>) -> Result<CsvTable> {
    let name = name.as_ref();
    let text = std::str::from_utf8(bytes).map_err(|e| {
        IoError::new(
            name,
            ErrorKind::Format(format!("CSV is not valid UTF-8: {e}")),
        )
    })?;
    parse_csv_text(text).map_err(|k| IoError::new(name, k))
}

/// Decompresses bzip2 data (multi-stream aware), refusing output over
/// [`MAX_DECOMPRESSED_CSV`] bytes.
pub fn decompress_bz2(bytes: &[u8], name: impl AsRef<Path>) -> Result<Vec<u8>> {
    let name = name.as_ref();
    let mut dec = bzip2::read::MultiBzDecoder::new(bytes).take(MAX_DECOMPRESSED_CSV + 1);
    let mut out = Vec::new();
    dec.read_to_end(&mut out)
        .map_err(|e| IoError::new(name, ErrorKind::Format(format!("bad bzip2 data: {e}"))))?;
    if out.len() as u64 > MAX_DECOMPRESSED_CSV {
        return Err(IoError::new(
            name,
            ErrorKind::TooLarge(format!(
                "decompresses to more than {MAX_DECOMPRESSED_CSV} bytes"
            )),
        ));
    }
    Ok(out)
}

/// What a sample/observation file turned out to contain.
enum Loaded {
    Array(Array),
    Table(Array2),
}

fn lower_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

fn load(bytes: &[u8], name: &Path) -> Result<Loaded> {
    let lname = lower_name(name);
    if bytes.starts_with(NPY_MAGIC) || lname.ends_with(".npy") {
        return read_npy_bytes(bytes, name).map(Loaded::Array);
    }
    if bytes.starts_with(b"PK\x03\x04")
        || bytes.starts_with(b"PK\x05\x06")
        || lname.ends_with(".npz")
    {
        let npz = read_npz_bytes(bytes, name)?;
        if npz.len() != 1 {
            return Err(IoError::new(
                name,
                ErrorKind::Format(format!(
                    "expected exactly one array in the .npz, found {} ({})",
                    npz.len(),
                    super::error::list_names(npz.names())
                )),
            ));
        }
        let arr = npz.into_map().into_values().next().ok_or_else(|| {
            IoError::new(name, ErrorKind::Format("the .npz holds no array".into()))
        })?;
        return Ok(Loaded::Array(arr));
    }
    if bytes.starts_with(b"BZh") {
        let text = decompress_bz2(bytes, name)?;
        return parse_csv(&text, name).map(|t| Loaded::Table(t.values));
    }
    if lname.ends_with(".bz2") {
        return Err(IoError::new(
            name,
            ErrorKind::Format("not bzip2 data (bad magic)".into()),
        ));
    }
    if bytes.is_empty() {
        return Err(IoError::new(
            name,
            ErrorKind::Format("file is empty".into()),
        ));
    }
    parse_csv(bytes, name).map(|t| Loaded::Table(t.values))
}

fn check_finite(m: &Array2, name: &Path) -> Result<()> {
    if let Some(i) = m.data.iter().position(|v| !v.is_finite()) {
        let (r, c) = (i / m.cols.max(1), i % m.cols.max(1));
        return Err(IoError::new(
            name,
            ErrorKind::Value(format!(
                "non-finite value {} at row {}, column {}",
                m.data[i],
                r + 1,
                c + 1
            )),
        ));
    }
    Ok(())
}

fn nonempty(m: Array2, name: &Path, what: &str) -> Result<Array2> {
    if m.rows == 0 || m.cols == 0 {
        return Err(IoError::new(
            name,
            ErrorKind::Shape(format!("no {what}: got a {}×{} table", m.rows, m.cols)),
        ));
    }
    check_finite(&m, name)?;
    Ok(m)
}

/// Parses sample data held in memory; see [`read_samples`].
pub fn samples_from_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<Array2> {
    // A 1-D array is n samples of a 1-D parameter.
    as_rows(
        bytes,
        name.as_ref(),
        false,
        "samples",
        "samples must be 1-D, 2-D (samples × dims) or 1 × samples × dims",
    )
}

/// Loads a table or array as rows: 1-D is one column (`one_d_is_row` false) or one row, 2-D is
/// itself, and (1, n, d) — what `sample` writes for a single observation — is n × d.
fn as_rows(
    bytes: &[u8],
    name: &Path,
    one_d_is_row: bool,
    what: &str,
    expected: &str,
) -> Result<Array2> {
    let m = match load(bytes, name)? {
        Loaded::Table(t) => t,
        Loaded::Array(a) => match a.shape.as_slice() {
            [n] if one_d_is_row => Array2 {
                rows: 1,
                cols: *n,
                data: a.data,
            },
            [n] => Array2 {
                rows: *n,
                cols: 1,
                data: a.data,
            },
            [r, c] | [1, r, c] => Array2 {
                rows: *r,
                cols: *c,
                data: a.data,
            },
            s => {
                return Err(IoError::new(
                    name,
                    ErrorKind::Shape(format!("{expected}, got shape {}", fmt_shape(s))),
                ))
            }
        },
    };
    nonempty(m, name, what)
}

/// Reads a set of samples (rows = samples, columns = dimensions) for C2ST and
/// similar comparisons.
///
/// Accepts `.npy` (2-D `n × d`, or 1-D = `n × 1`), an `.npz` holding exactly
/// one array, `.csv` with a header line (`parameter_1,parameter_2\n-0.81,0.57\n`,
/// as sbibm writes) and `.csv.bz2`. Empty tables and non-finite values are
/// errors.
pub fn read_samples(path: impl AsRef<Path>) -> Result<Array2> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| IoError::io(path, "read", e))?;
    samples_from_bytes(&bytes, path)
}

/// Parses observation data held in memory; see [`read_observation_rows`].
pub fn observation_rows_from_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<Array2> {
    // A 1-D array is a single observation.
    as_rows(
        bytes,
        name.as_ref(),
        true,
        "observations",
        "observations must be 1-D (one observation) or 2-D (one per row)",
    )
}

/// Reads observations, one per row: an sbibm `observation.csv` (header
/// `data_1,...` and one row), a `.csv.bz2`, or `.npy` (1-D = one observation,
/// 2-D = one observation per row).
pub fn read_observation_rows(path: impl AsRef<Path>) -> Result<Array2> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| IoError::io(path, "read", e))?;
    observation_rows_from_bytes(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbibm_style_csv() {
        let t = parse_csv(b"parameter_1,parameter_2\n-0.81,0.57\n1e-3,+2\n", "s.csv").unwrap();
        assert_eq!(
            t.header.as_deref(),
            Some(&["parameter_1".to_string(), "parameter_2".to_string()][..])
        );
        assert_eq!(
            t.values,
            Array2 {
                rows: 2,
                cols: 2,
                data: vec![-0.81, 0.57, 1e-3, 2.0]
            }
        );
    }

    #[test]
    fn headerless_crlf_quoted_bom() {
        let t = parse_csv("\u{feff}1,2\r\n\r\n3, 4\r\n".as_bytes(), "a.csv").unwrap();
        assert!(t.header.is_none());
        assert_eq!(t.values.data, vec![1.0, 2.0, 3.0, 4.0]);
        let t = parse_csv(b"\"a\",\"b\"\n\"1.5\",2\n", "q.csv").unwrap();
        assert_eq!(t.header.unwrap(), vec!["a", "b"]);
        assert_eq!(t.values.data, vec![1.5, 2.0]);
    }

    #[test]
    fn csv_errors_name_line() {
        let cases: &[(&[u8], &str)] = &[
            (b"a,b\n1,2\n3\n", "s.csv: line 3: 1 fields, expected 2"),
            (
                b"a,b\n1,x\n",
                "s.csv: line 2: column 2: 'x' is not a number",
            ),
            (b"a,b\n1,\n", "s.csv: line 2: column 2: empty value"),
            (
                b",a,b\n0,1,2\n",
                "s.csv: line 1: header has an empty column name",
            ),
            (b"", "s.csv: CSV file is empty"),
            (b"\n\n", "s.csv: CSV file is empty"),
            (b"a,b\n\xff\n", "s.csv: CSV is not valid UTF-8"),
        ];
        for (input, want) in cases {
            let e = parse_csv(input, "s.csv").unwrap_err().to_string();
            assert!(e.starts_with(want), "got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn samples_checks() {
        let e = samples_from_bytes(b"a,b\n", "h.csv")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "h.csv: no samples: got a 0×2 table");
        let e = samples_from_bytes(b"a,b\n1,nan\n", "n.csv")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "n.csv: non-finite value NaN at row 1, column 2");
        let one_d = super::super::npy::npy_bytes_f64(&[3], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(samples_from_bytes(&one_d, "s.npy").unwrap().shape(), [3, 1]);
        let one_obs = super::super::npy::npy_bytes_f64(&[1, 2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(
            samples_from_bytes(&one_obs, "s.npy").unwrap().shape(),
            [2, 2]
        );
        let two_obs = super::super::npy::npy_bytes_f64(&[2, 1, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(samples_from_bytes(&two_obs, "s.npy").is_err());
        assert_eq!(
            observation_rows_from_bytes(&one_d, "o.npy")
                .unwrap()
                .shape(),
            [1, 3]
        );
        let four_d = super::super::npy::npy_bytes_f64(&[1, 1, 1, 1], &[1.0]).unwrap();
        let e = samples_from_bytes(&four_d, "t.npy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("got shape 1×1×1×1"), "{e}");
    }

    #[test]
    fn bz2_round_trip_in_memory() {
        use std::io::Write;
        let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
        enc.write_all(b"parameter_1\n0.5\n-1.5\n").unwrap();
        let z = enc.finish().unwrap();
        let m = samples_from_bytes(&z, "s.csv.bz2").unwrap();
        assert_eq!(
            m,
            Array2 {
                rows: 2,
                cols: 1,
                data: vec![0.5, -1.5]
            }
        );
        let e = samples_from_bytes(&z[..z.len() / 2], "s.csv.bz2")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.csv.bz2: bad bzip2 data"), "{e}");
        let e = samples_from_bytes(b"a,b\n1,2\n", "s.csv.bz2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not bzip2 data"), "{e}");
    }
}
