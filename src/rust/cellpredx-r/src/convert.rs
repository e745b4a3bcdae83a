//! Matrices between R and the core. R holds features x cells (columns are cells); the core holds
//! cells x features in CSR. A `dgCMatrix`'s column pointers, row indices and values are already
//! that CSR, so conversion is one pass over the non-zeros and never densifies; a base matrix is
//! scanned column by column for its non-zeros.

use crate::errors::guard;
use cellpredx::labels::Labels;
use cellpredx::sparse::CsrMatrix;
use extendr_api::prelude::*;

fn slot(x: &Robj, name: &str, arg: &str) -> extendr_api::Result<Robj> {
    x.get_attrib(name)
        .ok_or_else(|| crate::errors::invalid(format!("`{arg}` is a dgCMatrix without its `{name}` slot")))
}

/// A features x cells R matrix (`dgCMatrix`, or a base double/integer matrix) as cells x features.
pub fn csr_from_r(x: &Robj, arg: &str) -> extendr_api::Result<CsrMatrix> {
    if x.inherits("dgCMatrix") {
        let dim = slot(x, "Dim", arg)?;
        let dim = dim.as_integer_slice().filter(|d| d.len() == 2).ok_or_else(|| {
            crate::errors::invalid(format!("`{arg}` has a malformed `Dim` slot"))
        })?;
        let (features, cells) = (dim[0] as usize, dim[1] as usize);
        let (p, i, values) = (slot(x, "p", arg)?, slot(x, "i", arg)?, slot(x, "x", arg)?);
        let malformed = || crate::errors::invalid(format!("`{arg}` is a malformed dgCMatrix (slot types)"));
        return CsrMatrix::from_compressed_i32(
            cells,
            features,
            p.as_integer_slice().ok_or_else(malformed)?,
            i.as_integer_slice().ok_or_else(malformed)?,
            values.as_real_slice().ok_or_else(malformed)?,
        )
        .map_err(|e| crate::errors::invalid(format!("`{arg}`: {e}")));
    }
    let dim = x
        .get_attrib("dim")
        .and_then(|d| d.as_integer_slice().map(|d| d.to_vec()))
        .filter(|d| d.len() == 2)
        .ok_or_else(|| crate::errors::invalid(format!("`{arg}` must be a dgCMatrix or a numeric matrix")))?;
    let (features, cells) = (dim[0] as usize, dim[1] as usize);
    let dense = if let Some(values) = x.as_real_slice() {
        CsrMatrix::from_dense_row_major(cells, features, values)
    } else if let Some(values) = x.as_integer_slice() {
        CsrMatrix::from_dense_row_major(cells, features, values)
    } else {
        return Err(crate::errors::invalid(format!("`{arg}` must be a dgCMatrix or a numeric matrix")));
    };
    dense.map_err(|e| crate::errors::invalid(format!("`{arg}`: {e}")))
}

/// A character vector (feature names, labels) as Rust strings.
pub fn strings_from_r(x: &Strings) -> Vec<String> {
    x.iter().map(|s| s.to_string()).collect()
}

/// Cells x features back to R as the slots of a features x cells `dgCMatrix`.
pub fn csr_to_r(m: &CsrMatrix) -> extendr_api::Result<List> {
    let to_i32 = |v: usize| {
        i32::try_from(v).map_err(|_| crate::errors::invalid(format!("{v} is too large for an R sparse matrix")))
    };
    let p = m.indptr().iter().map(|&v| to_i32(v)).collect::<extendr_api::Result<Vec<i32>>>()?;
    let i: Vec<i32> = m.indices().iter().map(|&v| v as i32).collect();
    let x: Vec<f64> = m.values().iter().map(|&v| v as f64).collect();
    Ok(list!(p = p, i = i, x = x, dim = [to_i32(m.n_cols())?, to_i32(m.n_rows())?]))
}

/// Cell labels from a character vector or a factor (whose level order is kept).
pub fn labels_from_r(x: &Robj, arg: &str) -> extendr_api::Result<Labels> {
    let with_arg = |e: cellpredx::CellPredXError| crate::errors::invalid(format!("`{arg}`: {e}"));
    if x.is_factor() {
        let levels_robj = x.get_attrib("levels");
        let levels = levels_robj.as_ref().and_then(|l| l.as_str_vector()).unwrap_or_default();
        let codes = x.as_integer_slice().ok_or_else(|| crate::errors::invalid(format!("`{arg}` is a malformed factor")))?;
        let labels = codes.iter().map(|&c| {
            if c == i32::MIN { None } else { levels.get((c - 1) as usize).copied() }
        });
        return Labels::encode(labels, Some(&levels)).map_err(with_arg);
    }
    let strings = Strings::try_from(x.clone())
        .map_err(|_| crate::errors::invalid(format!("`{arg}` must be a character vector or a factor")))?;
    Labels::encode(strings.iter().map(|s| if s.is_na() { None } else { Some(s.as_ref()) }), None).map_err(with_arg)
}

/// Encodes labels and returns the codes (1-based) and classes: the label bridge's own check.
#[extendr]
fn labels_roundtrip_(x: Robj) -> extendr_api::Result<List> {
    guard("labels_roundtrip_", || {
        let labels = labels_from_r(&x, "labels")?;
        let codes: Vec<i32> = labels.codes().iter().map(|&c| c as i32 + 1).collect();
        let counts: Vec<i32> = labels.counts().iter().map(|&c| c as i32).collect();
        Ok(list!(codes = codes, classes = labels.classes().to_vec(), counts = counts))
    })
}

/// Converts a matrix into the core's form and back, reporting what the core saw: the bridge's
/// own check, used by the test suite.
#[extendr]
fn sparse_roundtrip_(x: Robj) -> extendr_api::Result<List> {
    guard("sparse_roundtrip_", || {
        let m = csr_from_r(&x, "x")?;
        let (non_finite, negative) = m.count_invalid_values();
        Ok(list!(
            matrix = csr_to_r(&m)?,
            cells = m.n_rows() as f64,
            features = m.n_cols() as f64,
            nnz = m.nnz() as f64,
            non_finite = non_finite as f64,
            negative = negative as f64
        ))
    })
}

extendr_module! {
    mod convert;
    fn sparse_roundtrip_;
    fn labels_roundtrip_;
}

