//! The encoder's first layer on sparse minibatches, computed in Rust.
//!
//! The first layer dominates a training step: dense, it costs cells × features × 64
//! multiply-adds forward and again backward, although 94–99.7 % of the inputs are zero; and
//! libtorch's sparse kernels are slower than dense on CPU (TOOLCHAIN.md, "Performance facts").
//! Here both products cost O(non-zeros × 64): `Z = X·Wᵀ` row by row, and the weight gradient
//! `dWᵀ = Xᵀ·dZ` scattered non-zero by non-zero. tch has no custom autograd functions, so the
//! training loop feeds `Z` to libtorch as a leaf and hands the gradient back (see `train`).

use crate::runtime;
use crate::sparse::CsrMatrix;
use rayon::prelude::*;

/// `X[rows]·W` for an input-major weight `weight_t` (features × `width`, row-major), as a
/// row-major `rows.len() × width` matrix.
pub fn rows_times_dense(x: &CsrMatrix, rows: &[usize], weight_t: &[f32], width: usize) -> Vec<f32> {
    debug_assert_eq!(weight_t.len(), x.n_cols() * width);
    let mut out = vec![0f32; rows.len() * width];
    runtime::in_pool(|| {
        out.par_chunks_mut(width).zip(rows.par_iter()).for_each(|(out_row, &row)| {
            let (indices, values) = x.row(row);
            for (&col, &v) in indices.iter().zip(values) {
                let w = &weight_t[col as usize * width..(col as usize + 1) * width];
                for (o, &wj) in out_row.iter_mut().zip(w) {
                    *o += v * wj;
                }
            }
        })
    });
    out
}

/// Adds `X[rows]ᵀ·grad` to `acc` (features × `width`, row-major): the gradient of the weight,
/// input-major, for an output gradient `grad` of `rows.len() × width`.
pub fn add_rows_transpose_times_dense(x: &CsrMatrix, rows: &[usize], grad: &[f32], width: usize, acc: &mut [f32]) {
    debug_assert_eq!(grad.len(), rows.len() * width);
    debug_assert_eq!(acc.len(), x.n_cols() * width);
    for (g, &row) in grad.chunks_exact(width).zip(rows) {
        let (indices, values) = x.row(row);
        for (&col, &v) in indices.iter().zip(values) {
            let a = &mut acc[col as usize * width..(col as usize + 1) * width];
            for (aj, &gj) in a.iter_mut().zip(g) {
                *aj += v * gj;
            }
        }
    }
}

/// The coordinates and values of `X[rows]`'s non-zeros, for building a dense minibatch on the
/// compute device (where only these, not the zeros, need to travel).
pub fn rows_coordinates(x: &CsrMatrix, rows: &[usize]) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
    let nnz: usize = rows.iter().map(|&r| x.row(r).0.len()).sum();
    let (mut r_idx, mut c_idx, mut vals) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz), Vec::with_capacity(nnz));
    for (i, &row) in rows.iter().enumerate() {
        let (indices, values) = x.row(row);
        r_idx.extend(std::iter::repeat_n(i as i64, indices.len()));
        c_idx.extend(indices.iter().map(|&c| c as i64));
        vals.extend_from_slice(values);
    }
    (r_idx, c_idx, vals)
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
    fn products_match_hand_values() {
        // W (input-major, 3 × 2) = [[1, 2], [3, 4], [5, 6]]
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let z = rows_times_dense(&example(), &[2, 0, 1], &w, 2);
        assert_eq!(z, vec![9.0, 12.0, 11.0, 14.0, 0.0, 0.0]);
        let mut acc = vec![0f32; 6];
        // rows [2, 0] with output gradients [1, 1] and [1, -1]: Xᵀ·G
        add_rows_transpose_times_dense(&example(), &[2, 0], &[1.0, 1.0, 1.0, -1.0], 2, &mut acc);
        assert_eq!(acc, vec![1.0, -1.0, 3.0, 3.0, 2.0, -2.0]);
    }

    #[test]
    fn coordinates_list_the_nonzeros_of_the_chosen_rows() {
        let (r, c, v) = rows_coordinates(&example(), &[2, 1, 0]);
        assert_eq!((r, c, v), (vec![0, 2, 2], vec![1, 0, 2], vec![3.0, 1.0, 2.0]));
    }
}
