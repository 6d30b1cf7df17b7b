//! Plain owned array types returned by the readers.

/// An n-dimensional array of `f64` in C (row-major) order.
///
/// Whatever the dtype and memory order on disk (`<f4`, `<i8`, Fortran order,
/// ...), readers convert to this representation.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Dimensions, outermost first. Empty for a 0-D (scalar) array.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values in C order.
    pub data: Vec<f64>,
}

impl Array {
    /// Builds an array, checking that `data.len()` matches `shape`.
    /// Returns `None` when it does not (or when the element count overflows).
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Option<Array> {
        let n = checked_count(&shape)?;
        (n == data.len()).then_some(Array { shape, data })
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The data converted to `f32` (rounding to nearest).
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&x| x as f32).collect()
    }
}

/// A 2-D array of `f64`, row-major: element `(r, c)` is `data[r * cols + c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Array2 {
    /// Number of rows (samples / observations).
    pub rows: usize,
    /// Number of columns (dimensions).
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub data: Vec<f64>,
}

impl Array2 {
    /// Builds a matrix, checking that `data.len() == rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Option<Array2> {
        (rows.checked_mul(cols)? == data.len()).then_some(Array2 { rows, cols, data })
    }

    /// Row `r` as a slice. Panics if `r >= self.rows`.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Iterator over the rows.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f64]> + '_ {
        // `chunks_exact(0)` panics; a 0-column matrix yields `rows` empty rows.
        (0..self.rows).map(move |r| &self.data[r * self.cols..(r + 1) * self.cols])
    }

    /// The data converted to `f32` (rounding to nearest).
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&x| x as f32).collect()
    }

    /// Shape as `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
}

/// `shape.iter().product()` with overflow checking.
pub(crate) fn checked_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}
