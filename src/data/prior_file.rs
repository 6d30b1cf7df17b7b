//! Prior files: the JSON schema of [`gkl_tasks::Prior`], read with a size cap.

use super::error::{DataError, Result};
use crate::io::IoError;
use gkl_tasks::Prior;
use std::io::Read;
use std::path::Path;

/// Largest prior file read (a full covariance of dimension ~1000 fits in far less).
pub const MAX_PRIOR_FILE: u64 = 16 << 20;

/// Parses and validates a prior held in memory; `name` is used in messages.
pub fn prior_from_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<Prior> {
    let name = name.as_ref();
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DataError::file(name, format!("not UTF-8 text: {e}")))?;
    Prior::from_json(text).map_err(|e| DataError::file(name, e.to_string()))
}

/// Reads a prior file (`{"type": "box_uniform", "low": [..], "high": [..]}`, ...; see
/// [`gkl_tasks::Prior`]), refusing files over [`MAX_PRIOR_FILE`] bytes before reading them.
pub fn read_prior(path: impl AsRef<Path>) -> Result<Prior> {
    let path = path.as_ref();
    let f = std::fs::File::open(path).map_err(|e| IoError::io(path, "open", e))?;
    let mut bytes = Vec::new();
    f.take(MAX_PRIOR_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| IoError::io(path, "read", e))?;
    if bytes.len() as u64 > MAX_PRIOR_FILE {
        return Err(DataError::file(
            path,
            format!("prior file is larger than {MAX_PRIOR_FILE} bytes"),
        ));
    }
    prior_from_bytes(&bytes, path)
}
