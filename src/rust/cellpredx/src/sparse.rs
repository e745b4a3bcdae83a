//! Compressed sparse row matrices: cells are rows, features are columns.
//!
//! Single-cell matrices are 90–99.7 % zeros, so the core never holds a whole matrix densely;
//! only minibatches are densified. Values are stored in single precision, which is what the
//! network computes in. An R `dgCMatrix` of features × cells is, byte for byte, the CSR form of
//! cells × features, so it converts without any reordering.

use crate::error::{CellPredXError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix {
    n_rows: usize,
    n_cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl CsrMatrix {
    /// Builds a matrix from its parts after checking that they describe one: `indptr` starts at 0,
    /// never decreases and ends at `nnz`; column indices are in range and strictly increasing
    /// within a row (so there are no duplicate entries).
    pub fn try_new(
        n_rows: usize,
        n_cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Self> {
        if indptr.len() != n_rows + 1 {
            return Err(CellPredXError::invalid(format!(
                "sparse matrix: row pointer has length {}, expected rows + 1 = {}",
                indptr.len(),
                n_rows + 1
            )));
        }
        if indices.len() != values.len() {
            return Err(CellPredXError::invalid(format!(
                "sparse matrix: {} indices but {} values",
                indices.len(),
                values.len()
            )));
        }
        if indptr[0] != 0 || indptr[n_rows] != indices.len() {
            return Err(CellPredXError::invalid(format!(
                "sparse matrix: row pointer must run from 0 to the number of non-zeros ({}), runs from {} to {}",
                indices.len(),
                indptr[0],
                indptr[n_rows]
            )));
        }
        for row in 0..n_rows {
            let (start, end) = (indptr[row], indptr[row + 1]);
            if end < start || end > indices.len() {
                return Err(CellPredXError::invalid(format!(
                    "sparse matrix: row pointer decreases at row {row} or exceeds the number of non-zeros"
                )));
            }
            let mut previous: Option<u32> = None;
            for &col in &indices[start..end] {
                if col as usize >= n_cols {
                    return Err(CellPredXError::invalid(format!(
                        "sparse matrix: index {col} in row {row} is outside 0..{n_cols}"
                    )));
                }
                if previous.is_some_and(|p| col <= p) {
                    return Err(CellPredXError::invalid(format!(
                        "sparse matrix: indices in row {row} are not strictly increasing"
                    )));
                }
                previous = Some(col);
            }
        }
        Ok(CsrMatrix { n_rows, n_cols, indptr, indices, values })
    }

    /// Copies compressed parts with 32-bit indices and double values, the layout of R's
    /// `dgCMatrix` and of most file formats.
    pub fn from_compressed_i32(
        n_rows: usize,
        n_cols: usize,
        indptr: &[i32],
        indices: &[i32],
        values: &[f64],
    ) -> Result<Self> {
        let to_usize = |v: i32, what: &str| {
            usize::try_from(v)
                .map_err(|_| CellPredXError::invalid(format!("sparse matrix: negative {what} {v}")))
        };
        let indptr = indptr.iter().map(|&p| to_usize(p, "row pointer")).collect::<Result<Vec<_>>>()?;
        let indices = indices
            .iter()
            .map(|&i| to_usize(i, "index").map(|i| i as u32))
            .collect::<Result<Vec<_>>>()?;
        let values = values.iter().map(|&v| v as f32).collect();
        Self::try_new(n_rows, n_cols, indptr, indices, values)
    }

    /// Keeps the non-zeros of a dense row-major matrix (an R matrix of features × cells is
    /// row-major cells × features).
    pub fn from_dense_row_major<T: Copy + Into<f64>>(n_rows: usize, n_cols: usize, data: &[T]) -> Result<Self> {
        if data.len() != n_rows * n_cols {
            return Err(CellPredXError::DimensionMismatch {
                what: "dense matrix values".into(),
                expected: n_rows * n_cols,
                got: data.len(),
            });
        }
        let mut indptr = Vec::with_capacity(n_rows + 1);
        let mut indices = Vec::new();
        let mut values = Vec::new();
        indptr.push(0);
        for row in 0..n_rows {
            for (col, &v) in data[row * n_cols..(row + 1) * n_cols].iter().enumerate() {
                let v: f64 = v.into();
                if v != 0.0 {
                    indices.push(col as u32);
                    values.push(v as f32);
                }
            }
            indptr.push(indices.len());
        }
        Ok(CsrMatrix { n_rows, n_cols, indptr, indices, values })
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    pub fn indptr(&self) -> &[usize] {
        &self.indptr
    }

    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The column indices and values of one row.
    pub fn row(&self, row: usize) -> (&[u32], &[f32]) {
        let range = self.indptr[row]..self.indptr[row + 1];
        (&self.indices[range.clone()], &self.values[range])
    }

    /// The matrix of the given rows, in that order (a row may repeat).
    pub fn select_rows(&self, rows: &[usize]) -> Result<CsrMatrix> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.n_rows) {
            return Err(CellPredXError::invalid(format!("row {bad} is outside 0..{}", self.n_rows)));
        }
        let nnz = rows.iter().map(|&r| self.indptr[r + 1] - self.indptr[r]).sum();
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        let (mut indices, mut values) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
        indptr.push(0);
        for &r in rows {
            let (idx, vals) = self.row(r);
            indices.extend_from_slice(idx);
            values.extend_from_slice(vals);
            indptr.push(indices.len());
        }
        Ok(CsrMatrix { n_rows: rows.len(), n_cols: self.n_cols, indptr, indices, values })
    }

    /// How many stored values are NaN or infinite, and how many are negative: count matrices
    /// must have neither, and the front ends say which it was.
    pub fn count_invalid_values(&self) -> (usize, usize) {
        self.values.iter().fold((0, 0), |(non_finite, negative), &v| {
            (non_finite + usize::from(!v.is_finite()), negative + usize::from(v < 0.0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> CsrMatrix {
        // [[1, 0, 2],
        //  [0, 0, 0],
        //  [0, 3, 0]]
        CsrMatrix::try_new(3, 3, vec![0, 2, 2, 3], vec![0, 2, 1], vec![1.0, 2.0, 3.0]).unwrap()
    }

    #[test]
    fn rows_hold_their_entries() {
        let m = example();
        assert_eq!(m.row(0), (&[0u32, 2][..], &[1.0f32, 2.0][..]));
        assert_eq!(m.row(1), (&[][..], &[][..]));
        assert_eq!(m.row(2), (&[1u32][..], &[3.0f32][..]));
        assert_eq!(m.nnz(), 3);
    }

    #[test]
    fn selected_rows_come_in_the_given_order() {
        let m = example().select_rows(&[2, 0, 2]).unwrap();
        assert_eq!(m.n_rows(), 3);
        assert_eq!(m.row(0), (&[1u32][..], &[3.0f32][..]));
        assert_eq!(m.row(1), (&[0u32, 2][..], &[1.0f32, 2.0][..]));
        assert_eq!(m.row(2), (&[1u32][..], &[3.0f32][..]));
        assert_eq!(example().select_rows(&[3]).unwrap_err().to_string(), "row 3 is outside 0..3");
    }

    #[test]
    fn dense_and_compressed_inputs_agree() {
        let dense = [1.0f64, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0];
        assert_eq!(CsrMatrix::from_dense_row_major(3, 3, &dense).unwrap(), example());
        let from_i32 =
            CsrMatrix::from_compressed_i32(3, 3, &[0, 2, 2, 3], &[0, 2, 1], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(from_i32, example());
    }

    #[test]
    fn empty_shapes_are_valid() {
        let no_rows = CsrMatrix::from_dense_row_major::<f64>(0, 5, &[]).unwrap();
        assert_eq!((no_rows.n_rows(), no_rows.n_cols(), no_rows.indptr()), (0, 5, &[0usize][..]));
        let no_cols = CsrMatrix::from_dense_row_major::<f64>(4, 0, &[]).unwrap();
        assert_eq!(no_cols.indptr(), &[0, 0, 0, 0, 0]);
        assert!(CsrMatrix::try_new(0, 0, vec![0], vec![], vec![]).is_ok());
    }

    #[test]
    fn malformed_parts_are_rejected_with_the_reason() {
        let err = |r: Result<CsrMatrix>| r.unwrap_err().to_string();
        assert!(err(CsrMatrix::try_new(2, 3, vec![0, 1], vec![0], vec![1.0])).contains("length 2, expected rows + 1 = 3"));
        assert!(err(CsrMatrix::try_new(1, 3, vec![0, 1], vec![3], vec![1.0])).contains("index 3 in row 0 is outside 0..3"));
        assert!(err(CsrMatrix::try_new(1, 3, vec![0, 2], vec![2, 1], vec![1.0, 1.0])).contains("not strictly increasing"));
        assert!(err(CsrMatrix::try_new(1, 3, vec![0, 2], vec![1, 1], vec![1.0, 1.0])).contains("not strictly increasing"));
        assert!(err(CsrMatrix::try_new(3, 3, vec![0, 2, 1, 2], vec![0, 1], vec![1.0, 1.0])).contains("decreases at row 1"));
        assert!(err(CsrMatrix::try_new(2, 3, vec![0, 5, 2], vec![0, 1], vec![1.0, 1.0])).contains("at row 0 or exceeds"));
        assert!(err(CsrMatrix::try_new(1, 3, vec![0, 1], vec![0], vec![])).contains("1 indices but 0 values"));
        assert!(err(CsrMatrix::from_compressed_i32(1, 3, &[0, 1], &[-1], &[1.0])).contains("negative index -1"));
        assert!(err(CsrMatrix::from_dense_row_major(2, 2, &[1.0f64])).contains("expected 4, got 1"));
    }

    #[test]
    fn invalid_values_are_counted() {
        let m = CsrMatrix::try_new(1, 4, vec![0, 4], vec![0, 1, 2, 3], vec![f32::NAN, -1.0, f32::INFINITY, 2.0])
            .unwrap();
        assert_eq!(m.count_invalid_values(), (2, 1));
        assert_eq!(example().count_invalid_values(), (0, 0));
    }
}
