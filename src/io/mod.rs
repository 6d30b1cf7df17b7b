//! File input/output: NumPy `.npy` / `.npz`, sample files (`.csv`,
//! `.csv.bz2`), safetensors model weights, and atomic writes.
//!
//! All errors are [`IoError`]s whose one-line `Display` names the file and
//! the problem, e.g. `data.npz: array 'theta' missing (available: x)`.
//! Readers never panic on malformed input and bound every allocation by the
//! size of the input actually present. All file writers go through
//! [`atomic_write`], so a half-written output file never appears.

mod array;
mod atomic;
mod error;
mod npy;
mod npz;
mod samples;
mod weights;

pub use array::{Array, Array2};
pub use atomic::{atomic_write, atomic_write_bytes, atomic_write_dir};
pub use error::{ErrorKind, IoError, Result};
pub use npy::{
    npy_bytes_f32, npy_bytes_f64, read_npy_bytes, read_npy_f64, read_npy_from, read_npy_header,
    read_npy_header_from, read_npy_rows, read_npy_rows_from, read_npy_stream, skip_by_reading,
    write_npy_f32, write_npy_f64, write_npy_to, NpyData, NpyInfo, MAX_HEADER_LEN, NPY_MAGIC,
};
pub use npz::{
    read_npz, read_npz_bytes, read_npz_headers, read_npz_rows, write_npz, write_npz_compressed,
    Npz, NpzEntry,
};
pub use samples::{
    decompress_bz2, observation_rows_from_bytes, parse_csv, read_observation_rows, read_samples,
    samples_from_bytes, CsvTable, MAX_DECOMPRESSED_CSV,
};
pub use weights::{
    read_safetensors, read_safetensors_bytes, safetensors_bytes, write_safetensors, Tensor,
    TensorEntry, Weights,
};
