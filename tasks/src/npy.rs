//! Minimal NumPy `.npy` (format 1.0, little-endian f64, C order) writer and reader for 2-D arrays.

use std::io::{self, Read, Write};
use std::path::Path;

/// Writes an n×d row-major f64 array as `.npy`.
pub fn write_npy_f64(path: &Path, data: &[f64], n: usize, d: usize) -> io::Result<()> {
    assert_eq!(data.len(), n * d);
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    // magic(6) + version(2) + header_len(2) + header + '\n' must be a multiple of 64.
    let total = 10 + header.len() + 1;
    let pad = (64 - total % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut f = io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for v in data {
        f.write_all(&v.to_le_bytes())?;
    }
    f.flush()
}

/// Reads a 2-D (or 1-D, as n×1) little-endian f64 or f32 `.npy` file; returns (data, n, d).
pub fn read_npy_f64(path: &Path) -> io::Result<(Vec<f64>, usize, usize)> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    let bad = |m: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {m}", path.display()),
        )
    };
    if buf.len() < 10 || &buf[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file"));
    }
    let (hlen, hstart) = if buf[6] == 1 {
        (u16::from_le_bytes([buf[8], buf[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&buf[hstart..hstart + hlen]).map_err(|_| bad("bad header"))?;
    if header.contains("'fortran_order': True") {
        return Err(bad("fortran order not supported"));
    }
    let f32_ = header.contains("'<f4'");
    if !f32_ && !header.contains("'<f8'") {
        return Err(bad("only <f8 / <f4 supported"));
    }
    let shape_s = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape_s
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap_or(0))
        .collect();
    let (n, d) = match dims.as_slice() {
        [n] => (*n, 1),
        [n, d] => (*n, *d),
        [1, n, d] => (*n, *d),
        _ => return Err(bad("expected a 1-d or 2-d array")),
    };
    let body = &buf[hstart + hlen..];
    let data: Vec<f64> = if f32_ {
        body.chunks_exact(4)
            .take(n * d)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect()
    } else {
        body.chunks_exact(8)
            .take(n * d)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    if data.len() != n * d {
        return Err(bad("truncated data"));
    }
    Ok((data, n, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = std::env::temp_dir().join(format!("gkl_tasks_npy_{}.npy", std::process::id()));
        let data: Vec<f64> = (0..12).map(|i| i as f64 * 0.5 - 1.0).collect();
        write_npy_f64(&p, &data, 4, 3).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        let (back, n, d) = read_npy_f64(&p).unwrap();
        assert_eq!((n, d), (4, 3));
        assert_eq!(back, data);
        let _ = std::fs::remove_file(&p);
    }
}
