//! Model weights as `.safetensors` (f32 tensors plus string metadata).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype as StDtype, SafeTensors, View};

use super::array::checked_count;
use super::atomic::atomic_write_bytes;
use super::error::{fmt_shape, list_names, ErrorKind, IoError, Result};

/// One named f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values in C (row-major) order.
    pub data: Vec<f32>,
}

/// The contents of a `.safetensors` file: f32 tensors by name + metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    path: PathBuf,
    /// Tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// The `__metadata__` string map (empty if the file has none).
    pub metadata: BTreeMap<String, String>,
}

impl Weights {
    /// The file these weights came from (used in error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor called `name`, or an error naming it and what exists.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| {
            IoError::new(
                &self.path,
                ErrorKind::Missing {
                    what: "tensor",
                    name: name.to_string(),
                    available: list_names(self.tensors.keys().map(String::as_str)),
                },
            )
        })
    }

    /// The data of tensor `name`, checking that its shape is `expected`.
    ///
    /// Error example: `model.safetensors: tensor 'w1' has shape 3×4, expected 4×3`.
    pub fn tensor(&self, name: &str, expected: &[usize]) -> Result<&[f32]> {
        let t = self.get(name)?;
        if t.shape != expected {
            return Err(IoError::new(
                &self.path,
                ErrorKind::Shape(format!(
                    "tensor '{name}' has shape {}, expected {}",
                    fmt_shape(&t.shape),
                    fmt_shape(expected)
                )),
            ));
        }
        Ok(&t.data)
    }

    /// A metadata value, or an error naming the missing key.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata.get(key).map(String::as_str).ok_or_else(|| {
            IoError::new(
                &self.path,
                ErrorKind::Missing {
                    what: "metadata key",
                    name: key.to_string(),
                    available: list_names(self.metadata.keys().map(String::as_str)),
                },
            )
        })
    }
}

/// A borrowed f32 tensor for serialization.
struct F32View<'a> {
    shape: Vec<usize>,
    data: &'a [f32],
}

impl View for F32View<'_> {
    fn dtype(&self) -> StDtype {
        StDtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        #[cfg(target_endian = "little")]
        {
            Cow::Borrowed(bytemuck::cast_slice(self.data))
        }
        #[cfg(not(target_endian = "little"))]
        {
            Cow::Owned(self.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
    }
    fn data_len(&self) -> usize {
        self.data.len() * 4
    }
}

/// One tensor to write: `(name, shape, data)`.
pub type TensorEntry<'a> = (&'a str, &'a [usize], &'a [f32]);

/// Serializes f32 tensors and metadata to `.safetensors` bytes in memory.
/// `name` is used in error messages.
pub fn safetensors_bytes(
    tensors: &[TensorEntry<'_>],
    metadata: &BTreeMap<String, String>,
    name: impl AsRef<Path>,
) -> Result<Vec<u8>> {
    let name = name.as_ref();
    let err = |k| IoError::new(name, k);
    let mut views = Vec::with_capacity(tensors.len());
    for (i, (tname, shape, data)) in tensors.iter().enumerate() {
        if tname.is_empty() {
            return Err(err(ErrorKind::Format("tensor name is empty".into())));
        }
        if tname.as_bytes() == b"__metadata__" {
            return Err(err(ErrorKind::Format(
                "tensor name '__metadata__' is reserved".into(),
            )));
        }
        if tensors[..i].iter().any(|(n, _, _)| n == tname) {
            return Err(err(ErrorKind::Format(format!(
                "tensor name '{tname}' given twice"
            ))));
        }
        match checked_count(shape) {
            Some(n) if n == data.len() => {}
            _ => {
                return Err(err(ErrorKind::Shape(format!(
                    "tensor '{tname}': shape {} does not match {} values",
                    fmt_shape(shape),
                    data.len()
                ))))
            }
        }
        views.push((
            tname.to_string(),
            F32View {
                shape: shape.to_vec(),
                data,
            },
        ));
    }
    let meta: Option<HashMap<String, String>> = if metadata.is_empty() {
        None
    } else {
        Some(
            metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    };
    safetensors::tensor::serialize(views, meta)
        .map_err(|e| err(ErrorKind::Safetensors(e.to_string())))
}

/// Atomically writes f32 tensors and string metadata to a `.safetensors` file.
///
/// ```no_run
/// use std::collections::BTreeMap;
/// let w1 = vec![0.0f32; 12];
/// let meta = BTreeMap::from([("task".to_string(), "two_moons".to_string())]);
/// gkl_gpu::io::write_safetensors("model.safetensors", &[("w1", &[3, 4], &w1)], &meta)?;
/// # Ok::<(), gkl_gpu::io::IoError>(())
/// ```
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &[TensorEntry<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = safetensors_bytes(tensors, metadata, path)?;
    atomic_write_bytes(path, &bytes)
}

/// Parses `.safetensors` bytes held in memory. Every tensor must be F32.
pub fn read_safetensors_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<Weights> {
    let name = name.as_ref();
    let err = |k| IoError::new(name, k);
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| err(ErrorKind::Safetensors(e.to_string())))?;
    let st =
        SafeTensors::deserialize(bytes).map_err(|e| err(ErrorKind::Safetensors(e.to_string())))?;
    let mut tensors = BTreeMap::new();
    for (tname, view) in st.tensors() {
        if view.dtype() != StDtype::F32 {
            return Err(err(ErrorKind::Dtype(format!(
                "tensor '{tname}' has dtype {:?}, expected F32",
                view.dtype()
            ))));
        }
        let raw = view.data();
        let shape = view.shape().to_vec();
        match checked_count(&shape) {
            Some(n) if n.checked_mul(4) == Some(raw.len()) => {}
            _ => {
                return Err(err(ErrorKind::Shape(format!(
                    "tensor '{tname}': shape {} does not match its {} data bytes",
                    fmt_shape(&shape),
                    raw.len()
                ))))
            }
        }
        let data = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(tname, Tensor { shape, data });
    }
    let metadata = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(Weights {
        path: name.to_path_buf(),
        tensors,
        metadata,
    })
}

/// Reads a `.safetensors` file of f32 tensors (any other dtype is an error).
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Weights> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| IoError::io(path, "read", e))?;
    read_safetensors_bytes(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_metadata_and_shape_checks() {
        let w1: Vec<f32> = (0..12).map(|i| i as f32 * 0.1).collect();
        let b1 = vec![-1.0f32, 2.0, 3.5];
        let meta = BTreeMap::from([("arch".to_string(), "mlp".to_string())]);
        let bytes =
            safetensors_bytes(&[("w1", &[3, 4], &w1), ("b1", &[3], &b1)], &meta, "m").unwrap();
        let w = read_safetensors_bytes(&bytes, "m.safetensors").unwrap();
        assert_eq!(w.metadata, meta);
        assert_eq!(w.tensor("w1", &[3, 4]).unwrap(), &w1[..]);
        assert_eq!(w.tensor("b1", &[3]).unwrap(), &b1[..]);
        let e = w.tensor("w1", &[4, 3]).unwrap_err().to_string();
        assert_eq!(e, "m.safetensors: tensor 'w1' has shape 3×4, expected 4×3");
        let e = w.get("w2").unwrap_err().to_string();
        assert_eq!(e, "m.safetensors: tensor 'w2' missing (available: b1, w1)");
        let e = w.meta("seed").unwrap_err().to_string();
        assert_eq!(
            e,
            "m.safetensors: metadata key 'seed' missing (available: arch)"
        );
    }

    #[test]
    fn wrong_dtype_rejected() {
        let data = [0u8; 16];
        let view = safetensors::tensor::TensorView::new(StDtype::F64, vec![2], &data).unwrap();
        let bytes = safetensors::tensor::serialize([("w", view)], None).unwrap();
        let e = read_safetensors_bytes(&bytes, "d.safetensors")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "d.safetensors: tensor 'w' has dtype F64, expected F32");
    }

    #[test]
    fn write_errors() {
        let d = [1.0f32; 3];
        let m = BTreeMap::new();
        let e = safetensors_bytes(&[("w", &[2, 2], &d)], &m, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("shape 2×2 does not match 3 values"), "{e}");
        let e = safetensors_bytes(&[("w", &[3], &d), ("w", &[3], &d)], &m, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("given twice"), "{e}");
    }
}
