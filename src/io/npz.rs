//! NumPy `.npz` archives: a zip of `NAME.npy` members, stored (`np.savez`) or
//! deflated (`np.savez_compressed`).

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

use super::array::Array;
use super::atomic::atomic_write_with;
use super::error::{list_names, ErrorKind, IoError, Result};
use super::npy::{
    check_shape, read_npy_header_from, read_npy_rows_from, read_npy_stream, skip_by_reading,
    write_npy_unchecked, NpyData, NpyInfo,
};

/// The arrays of an `.npz` file, by name (without the `.npy` suffix).
#[derive(Debug, Clone, PartialEq)]
pub struct Npz {
    path: PathBuf,
    arrays: BTreeMap<String, Array>,
}

impl Npz {
    /// The file the arrays were read from (used in error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The array called `name`, or an error such as
    /// `data.npz: array 'theta' missing (available: x, y)`.
    pub fn get(&self, name: &str) -> Result<&Array> {
        self.arrays.get(name).ok_or_else(|| self.missing(name))
    }

    /// Removes and returns the array called `name` (same error as [`Npz::get`]).
    pub fn take(&mut self, name: &str) -> Result<Array> {
        match self.arrays.remove(name) {
            Some(a) => Ok(a),
            None => Err(self.missing(name)),
        }
    }

    fn missing(&self, name: &str) -> IoError {
        IoError::new(
            &self.path,
            ErrorKind::Missing {
                what: "array",
                name: name.to_string(),
                available: list_names(self.arrays.keys().map(String::as_str)),
            },
        )
    }

    /// Whether an array called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.arrays.contains_key(name)
    }

    /// Array names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.arrays.keys().map(String::as_str)
    }

    /// Number of arrays.
    pub fn len(&self) -> usize {
        self.arrays.len()
    }

    /// Whether the archive holds no arrays.
    pub fn is_empty(&self) -> bool {
        self.arrays.is_empty()
    }

    /// All arrays by name.
    pub fn arrays(&self) -> &BTreeMap<String, Array> {
        &self.arrays
    }

    /// Consumes the archive, returning the map of arrays.
    pub fn into_map(self) -> BTreeMap<String, Array> {
        self.arrays
    }
}

fn zip_err(path: &Path, e: zip::result::ZipError) -> IoError {
    match e {
        zip::result::ZipError::Io(io) => IoError::new(path, ErrorKind::Zip(io.to_string())),
        other => IoError::new(path, ErrorKind::Zip(other.to_string())),
    }
}

/// Reads every `*.npy` member of the archive (other members are ignored).
fn read_archive<R: Read + Seek>(reader: R, path: &Path) -> Result<Npz> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| zip_err(path, e))?;
    let mut arrays = BTreeMap::new();
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| zip_err(path, e))?;
        if member.is_dir() {
            continue;
        }
        let full = member.name().to_string();
        let Some(name) = full.strip_suffix(".npy") else {
            continue;
        };
        let name = name.to_string();
        if arrays.contains_key(&name) {
            return Err(IoError::new(
                path,
                ErrorKind::Zip(format!("member '{full}' appears twice")),
            ));
        }
        // Errors inside a member read "data.npz: member 'theta.npy': ...".
        let ctx = |e: IoError| {
            IoError::new(
                path,
                ErrorKind::InMember {
                    member: full.clone(),
                    inner: Box::new(e.into_kind()),
                },
            )
        };
        let arr = read_npy_stream(&mut member, &full)
            .map_err(ctx)?
            .ok_or_else(|| {
                IoError::new(
                    path,
                    ErrorKind::Truncated(format!("member '{full}' is empty")),
                )
            })?;
        // Reading to the end makes the zip reader verify the CRC, and catches
        // data beyond what the header describes.
        let mut extra = [0u8; 1];
        match member.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => {
                return Err(IoError::new(
                    path,
                    ErrorKind::TrailingData(format!(
                        "member '{full}' has bytes after the data its header describes"
                    )),
                ))
            }
            Err(e) => {
                return Err(IoError::new(
                    path,
                    ErrorKind::Zip(format!("member '{full}': {e}")),
                ))
            }
        }
        arrays.insert(name, arr);
    }
    Ok(Npz {
        path: path.to_path_buf(),
        arrays,
    })
}

/// Reads all arrays of an `.npz` file.
///
/// ```no_run
/// let npz = gkl_gpu::io::read_npz("data.npz")?;
/// let theta = npz.get("theta")?; // "data.npz: array 'theta' missing (...)" if absent
/// # Ok::<(), gkl_gpu::io::IoError>(())
/// ```
pub fn read_npz(path: impl AsRef<Path>) -> Result<Npz> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, "open", e))?;
    read_archive(std::io::BufReader::new(file), path)
}

/// The header of every `*.npy` member of an `.npz` file, by array name, without reading the
/// data (each member is decompressed only as far as its header).
pub fn read_npz_headers(path: impl AsRef<Path>) -> Result<BTreeMap<String, NpyInfo>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, "open", e))?;
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| zip_err(path, e))?;
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| zip_err(path, e))?;
        if member.is_dir() {
            continue;
        }
        let full = member.name().to_string();
        let Some(name) = full.strip_suffix(".npy") else {
            continue;
        };
        let name = name.to_string();
        let info = read_npy_header_from(&mut member, &full).map_err(|e| {
            IoError::new(
                path,
                ErrorKind::InMember {
                    member: full.clone(),
                    inner: Box::new(e.into_kind()),
                },
            )
        })?;
        if out.insert(name, info).is_some() {
            return Err(IoError::new(
                path,
                ErrorKind::Zip(format!("member '{full}' appears twice")),
            ));
        }
    }
    Ok(out)
}

/// Rows `rows` (along the first axis) of the arrays `names` of an `.npz` file, in that order.
/// Each member is decompressed up to the last of those rows; only those rows are decoded and
/// held (the rows before them are read and discarded).
pub fn read_npz_rows(
    path: impl AsRef<Path>,
    names: &[&str],
    rows: std::ops::Range<usize>,
) -> Result<Vec<Array>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, "open", e))?;
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| zip_err(path, e))?;
    let members: Vec<String> = zip.file_names().map(str::to_string).collect();
    let mut out = vec![];
    for name in names {
        let full = format!("{name}.npy");
        if !members.contains(&full) {
            return Err(IoError::new(
                path,
                ErrorKind::Missing {
                    what: "array",
                    name: name.to_string(),
                    available: list_names(members.iter().filter_map(|m| m.strip_suffix(".npy"))),
                },
            ));
        }
        let mut member = zip.by_name(&full).map_err(|e| zip_err(path, e))?;
        let a = read_npy_rows_from(&mut member, &full, rows.clone(), &mut |r, n| {
            skip_by_reading(r, n)
        })
        .map_err(|e| {
            IoError::new(
                path,
                ErrorKind::InMember {
                    member: full.clone(),
                    inner: Box::new(e.into_kind()),
                },
            )
        })?;
        out.push(a);
    }
    Ok(out)
}

/// Reads an `.npz` archive held in memory. `name` is used in error messages.
pub fn read_npz_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<Npz> {
    read_archive(std::io::Cursor::new(bytes), name.as_ref())
}

/// One array to store in an `.npz`: `(name, shape, data)`.
pub type NpzEntry<'a> = (&'a str, &'a [usize], NpyData<'a>);

fn write_npz_impl(path: &Path, arrays: &[NpzEntry<'_>], method: CompressionMethod) -> Result<()> {
    for (i, (name, shape, data)) in arrays.iter().enumerate() {
        if name.is_empty() {
            return Err(IoError::new(
                path,
                ErrorKind::Format("array name is empty".into()),
            ));
        }
        if arrays[..i].iter().any(|(n, _, _)| n == name) {
            return Err(IoError::new(
                path,
                ErrorKind::Format(format!("array name '{name}' given twice")),
            ));
        }
        check_shape(shape, data.len())
            .map_err(|k| IoError::new(path, ErrorKind::Shape(format!("array '{name}': {k}"))))?;
    }
    atomic_write_with(path, |w| {
        let mut zw = zip::ZipWriter::new(w);
        for (name, shape, data) in arrays {
            // Zip64 is needed for members over 4 GiB; leave generous room for the header.
            let large = data.nbytes() as u64 >= u64::from(u32::MAX) - (1 << 20);
            let opts = SimpleFileOptions::default()
                .compression_method(method)
                .large_file(large);
            zw.start_file(format!("{name}.npy"), opts)
                .map_err(|e| zip_err(path, e))?;
            write_npy_unchecked(&mut zw, shape, *data)
                .map_err(|e| IoError::io(path, "write", e))?;
        }
        zw.finish().map_err(|e| zip_err(path, e))?;
        Ok(())
    })
}

/// Atomically writes an uncompressed `.npz` (like `np.savez`).
///
/// ```no_run
/// use gkl_gpu::io::{write_npz, NpyData};
/// let theta = vec![0.0f64; 6];
/// let x = vec![0.0f32; 4];
/// write_npz("data.npz", &[
///     ("theta", &[3, 2], NpyData::F64(&theta)),
///     ("x", &[4], NpyData::F32(&x)),
/// ])?;
/// # Ok::<(), gkl_gpu::io::IoError>(())
/// ```
pub fn write_npz(path: impl AsRef<Path>, arrays: &[NpzEntry<'_>]) -> Result<()> {
    write_npz_impl(path.as_ref(), arrays, CompressionMethod::Stored)
}

/// Atomically writes a deflate-compressed `.npz` (like `np.savez_compressed`).
pub fn write_npz_compressed(path: impl AsRef<Path>, arrays: &[NpzEntry<'_>]) -> Result<()> {
    write_npz_impl(path.as_ref(), arrays, CompressionMethod::Deflated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_file(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "gkl-io-npz-{tag}-{}-{}.npz",
            std::process::id(),
            rand::random::<u32>()
        ))
    }

    #[test]
    fn round_trip_stored_and_deflated() {
        let theta: Vec<f64> = (0..12).map(|i| i as f64 / 7.0).collect();
        let x: Vec<f32> = (0..8).map(|i| i as f32 * -0.25).collect();
        for compressed in [false, true] {
            let p = scratch_file("rt");
            let entries: [NpzEntry<'_>; 2] = [
                ("theta", &[4, 3], NpyData::F64(&theta)),
                ("x", &[2, 2, 2], NpyData::F32(&x)),
            ];
            if compressed {
                write_npz_compressed(&p, &entries).unwrap();
            } else {
                write_npz(&p, &entries).unwrap();
            }
            let mut npz = read_npz(&p).unwrap();
            assert_eq!(npz.names().collect::<Vec<_>>(), vec!["theta", "x"]);
            assert_eq!(npz.get("theta").unwrap().shape, vec![4, 3]);
            assert_eq!(npz.get("theta").unwrap().data, theta);
            let xa = npz.take("x").unwrap();
            assert_eq!(xa.shape, vec![2, 2, 2]);
            assert_eq!(xa.to_f32(), x);
            let e = npz.get("x").unwrap_err().to_string();
            assert!(e.ends_with(": array 'x' missing (available: theta)"), "{e}");
            std::fs::remove_file(&p).unwrap();
        }
    }

    #[test]
    fn bad_entries_rejected_before_writing() {
        let p = scratch_file("bad");
        let d = [1.0f64, 2.0];
        let e = write_npz(&p, &[("a", &[3], NpyData::F64(&d))])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("array 'a': shape 3 has 3 elements but 2 values"),
            "{e}"
        );
        let e = write_npz(
            &p,
            &[("a", &[2], (&d[..]).into()), ("a", &[2], (&d[..]).into())],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("given twice"), "{e}");
        assert!(!p.exists());
    }

    #[test]
    fn not_a_zip() {
        let e = read_npz_bytes(b"\x93NUMPY not a zip", "a.npz")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.npz: bad .npz archive"), "{e}");
    }
}
