//! Preprocessing of cells × features count matrices: matching the two sides' features,
//! normalisation, feature selection and the raw embeddings (PCA, LSI) the query's neighbour
//! graph is built on.
//!
//! Everything stays sparse. Per-feature scaling is only ever applied to densified minibatch
//! rows, and centring for PCA is implicit, so no step densifies a whole matrix.

use crate::error::{CellPredXError, Result};
use crate::runtime;
use crate::sparse::CsrMatrix;
use rayon::prelude::*;
use std::collections::HashMap;
use tch::Tensor;

/// The features both sides share, as column indices into each side in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureMatch {
    pub names: Vec<String>,
    pub reference: Vec<usize>,
    pub query: Vec<usize>,
}

/// Below this many shared features the two sides almost certainly name different things.
pub const MIN_SHARED_FEATURES: usize = 100;

/// Intersects the feature names, in name order.
pub fn match_features(reference: &[String], query: &[String]) -> Result<FeatureMatch> {
    index_names(reference, "reference")?;
    let query_index = index_names(query, "query")?;
    let mut shared = FeatureMatch { names: Vec::new(), reference: Vec::new(), query: Vec::new() };
    // In name order, not either side's: the same data with its features in another order then
    // trains the same network, where a new order would change results as much as a new seed.
    let mut by_name: Vec<(usize, &String)> = reference.iter().enumerate().collect();
    by_name.sort_unstable_by(|a, b| a.1.cmp(b.1));
    for (r, name) in by_name {
        if let Some(&q) = query_index.get(name.as_str()) {
            shared.names.push(name.clone());
            shared.reference.push(r);
            shared.query.push(q);
        }
    }
    if shared.names.len() < MIN_SHARED_FEATURES {
        return Err(CellPredXError::invalid(format!(
            "only {} features are shared between reference ({}) and query ({}); at least {MIN_SHARED_FEATURES} are needed — are both sides the same kind of features (gene symbols vs Ensembl IDs, peak naming)? e.g. reference {:?}, query {:?}",
            shared.names.len(),
            reference.len(),
            query.len(),
            reference.first().map_or("", String::as_str),
            query.first().map_or("", String::as_str),
        )));
    }
    Ok(shared)
}

/// Maps each name to its position; a duplicate would make the match ambiguous.
fn index_names<'a>(names: &'a [String], side: &str) -> Result<HashMap<&'a str, usize>> {
    let mut index = HashMap::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if let Some(first) = index.insert(name.as_str(), i) {
            return Err(CellPredXError::invalid(format!(
                "feature {name:?} appears more than once in the {side} (positions {} and {})",
                first + 1,
                i + 1
            )));
        }
    }
    Ok(index)
}

/// Keeps the given columns, in the given order.
///
/// # Panics
/// If a column is out of range or given twice: callers pass indices from [`match_features`] or
/// [`highly_variable_features`], so either would be a bug.
pub fn select_columns(m: &CsrMatrix, columns: &[usize]) -> CsrMatrix {
    let mut new_position = vec![u32::MAX; m.n_cols()];
    for (new, &old) in columns.iter().enumerate() {
        assert!(old < m.n_cols(), "column {old} is outside 0..{}", m.n_cols());
        assert!(new_position[old] == u32::MAX, "column {old} is selected twice");
        new_position[old] = new as u32;
    }
    let mut indptr = Vec::with_capacity(m.n_rows() + 1);
    let mut indices = Vec::new();
    let mut values = Vec::new();
    let mut row_entries: Vec<(u32, f32)> = Vec::new();
    indptr.push(0);
    for row in 0..m.n_rows() {
        let (cols, vals) = m.row(row);
        row_entries.clear();
        row_entries.extend(
            cols.iter().zip(vals).map(|(&c, &v)| (new_position[c as usize], v)).filter(|&(c, _)| c != u32::MAX),
        );
        // Rows hold a few hundred to a few thousand entries; a sort per row is linear in practice.
        row_entries.sort_unstable_by_key(|&(c, _)| c);
        indices.extend(row_entries.iter().map(|&(c, _)| c));
        values.extend(row_entries.iter().map(|&(_, v)| v));
        indptr.push(indices.len());
    }
    rebuild(m.n_rows(), columns.len(), indptr, indices, values)
}

/// Reassembles parts produced from a valid matrix, which are valid by construction.
fn rebuild(n_rows: usize, n_cols: usize, indptr: Vec<usize>, indices: Vec<u32>, values: Vec<f32>) -> CsrMatrix {
    CsrMatrix::try_new(n_rows, n_cols, indptr, indices, values).expect("parts derived from a valid matrix")
}

/// Same sparsity pattern, values transformed one row at a time.
fn map_rows(m: &CsrMatrix, f: impl Fn(&[f32]) -> Vec<f32>) -> CsrMatrix {
    let values = (0..m.n_rows()).flat_map(|row| f(m.row(row).1)).collect();
    rebuild(m.n_rows(), m.n_cols(), m.indptr().to_vec(), m.indices().to_vec(), values)
}

/// Library-size normalisation then ln(1 + x), as Seurat's LogNormalize.
pub fn normalize_log1p(m: &CsrMatrix, scale: f32) -> CsrMatrix {
    map_rows(m, |vals| {
        let total: f64 = vals.iter().map(|&v| v as f64).sum();
        let factor = if total > 0.0 { scale as f64 / total } else { 0.0 };
        vals.iter().map(|&v| ((v as f64) * factor).ln_1p() as f32).collect()
    })
}

/// Centred log-ratio per cell, as Seurat's `NormalizeData(method = "CLR", margin = 2)`:
/// ln(1 + x / g) with g = exp(mean of ln(1 + x) over every feature, zeros included). The usual
/// normalisation of antibody (protein) counts, where a few abundant tags dominate the library
/// size that `normalize_log1p` divides by.
pub fn normalize_clr(m: &CsrMatrix) -> CsrMatrix {
    let n_features = m.n_cols().max(1) as f64;
    map_rows(m, |vals| {
        let geometric_mean = (vals.iter().map(|&v| (v as f64).ln_1p()).sum::<f64>() / n_features).exp();
        vals.iter().map(|&v| ((v as f64) / geometric_mean).ln_1p() as f32).collect()
    })
}

pub fn log1p(m: &CsrMatrix) -> CsrMatrix {
    map_rows(m, |vals| vals.iter().map(|v| v.ln_1p()).collect())
}

/// x > 0 becomes 1; stored zeros and negatives are dropped rather than kept as explicit zeros.
pub fn binarize(m: &CsrMatrix) -> CsrMatrix {
    let mut indptr = Vec::with_capacity(m.n_rows() + 1);
    let mut indices = Vec::new();
    indptr.push(0);
    for row in 0..m.n_rows() {
        let (cols, vals) = m.row(row);
        indices.extend(cols.iter().zip(vals).filter(|&(_, &v)| v > 0.0).map(|(&c, _)| c));
        indptr.push(indices.len());
    }
    let values = vec![1.0; indices.len()];
    rebuild(m.n_rows(), m.n_cols(), indptr, indices, values)
}

/// Per-feature mean, variance (denominator n − 1, as R's var) and stored-entry count, over all
/// cells including the implicit zeros. Two passes, so that features with a large mean and a
/// small spread keep their variance.
struct ColumnStats {
    mean: Vec<f64>,
    var: Vec<f64>,
    nnz: Vec<usize>,
}

fn column_stats(m: &CsrMatrix) -> ColumnStats {
    let n = m.n_rows() as f64;
    let mut sum = vec![0.0f64; m.n_cols()];
    let mut nnz = vec![0usize; m.n_cols()];
    for (&c, &v) in m.indices().iter().zip(m.values()) {
        sum[c as usize] += v as f64;
        nnz[c as usize] += 1;
    }
    let mean: Vec<f64> = sum.iter().map(|s| if n > 0.0 { s / n } else { 0.0 }).collect();
    let mut squares: Vec<f64> = mean.iter().zip(&nnz).map(|(mu, &k)| (n - k as f64) * mu * mu).collect();
    for (&c, &v) in m.indices().iter().zip(m.values()) {
        let d = v as f64 - mean[c as usize];
        squares[c as usize] += d * d;
    }
    let var = squares.iter().map(|s| if n > 1.0 { s / (n - 1.0) } else { 0.0 }).collect();
    ColumnStats { mean, var, nnz }
}

/// A standard deviation to divide by; constant features are left unscaled instead of blowing up.
fn usable_sd(var: f64) -> f64 {
    let sd = var.sqrt();
    if sd > 0.0 && sd.is_finite() { sd } else { 1.0 }
}

/// Per-feature z-scoring fitted on one dataset, as Seurat's ScaleData.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureScaling {
    pub mean: Vec<f32>,
    pub sd: Vec<f32>,
    pub clip: f32,
}

impl FeatureScaling {
    pub fn fit(m: &CsrMatrix, clip: f32) -> Self {
        let stats = column_stats(m);
        FeatureScaling {
            mean: stats.mean.iter().map(|&v| v as f32).collect(),
            sd: stats.var.iter().map(|&v| usable_sd(v) as f32).collect(),
            clip,
        }
    }

    /// Scales one densified cell in place. Like Seurat's `scale.max`, only the upper end is
    /// clipped: the clip exists to stop a few cells with a rare feature from dominating.
    pub fn apply_row(&self, dense_row: &mut [f32]) {
        debug_assert_eq!(dense_row.len(), self.mean.len());
        for ((x, &mu), &sd) in dense_row.iter_mut().zip(&self.mean).zip(&self.sd) {
            *x = ((*x - mu) / sd).min(self.clip);
        }
    }
}

/// Seurat v3's "vst" selection (FindVariableFeatures, selection.method = "vst") on raw counts:
/// a loess trend of log10 variance on log10 mean gives each feature an expected spread; the
/// variance of the values standardised by it (clipped at √cells) ranks the features. Returns up
/// to `n_top` column indices, most variable first, ties by index; features with no variance
/// are never selected.
pub fn highly_variable_features(counts: &CsrMatrix, n_top: usize) -> Vec<usize> {
    let stats = column_stats(counts);
    let varying: Vec<usize> = (0..counts.n_cols()).filter(|&c| stats.var[c] > 0.0).collect();
    if varying.is_empty() || n_top == 0 {
        return Vec::new();
    }
    let log_mean: Vec<f64> = varying.iter().map(|&c| stats.mean[c].log10()).collect();
    let log_var: Vec<f64> = varying.iter().map(|&c| stats.var[c].log10()).collect();
    let trend = loess(&log_mean, &log_var, HVG_LOESS_SPAN);
    let mut expected_sd = vec![0.0f64; counts.n_cols()];
    for (&c, t) in varying.iter().zip(trend) {
        expected_sd[c] = 10f64.powf(t).sqrt();
    }
    let standardized = standardized_variance(counts, &stats, &expected_sd);
    let mut ranked = varying;
    ranked.sort_by(|&a, &b| standardized[b].total_cmp(&standardized[a]).then(a.cmp(&b)));
    ranked.truncate(n_top);
    ranked
}

const HVG_LOESS_SPAN: f64 = 0.3;

/// Variance of (x − mean) / expected_sd with values above √cells clipped, as Seurat's
/// SparseRowVarStd (the zeros are never clipped: they lie below the mean).
fn standardized_variance(m: &CsrMatrix, stats: &ColumnStats, expected_sd: &[f64]) -> Vec<f64> {
    let n = m.n_rows() as f64;
    let vmax = n.sqrt();
    let mut sums: Vec<f64> = (0..m.n_cols())
        .map(|c| {
            let z = stats.mean[c] / expected_sd[c];
            if expected_sd[c] > 0.0 { (n - stats.nnz[c] as f64) * z * z } else { 0.0 }
        })
        .collect();
    for (&c, &v) in m.indices().iter().zip(m.values()) {
        let c = c as usize;
        if expected_sd[c] > 0.0 {
            let z = ((v as f64 - stats.mean[c]) / expected_sd[c]).min(vmax);
            sums[c] += z * z;
        }
    }
    sums.iter().map(|s| if n > 1.0 { s / (n - 1.0) } else { 0.0 }).collect()
}

/// Local quadratic regression with tricube weights over the nearest `span` fraction of points,
/// evaluated exactly at every x (R's `loess(y ~ x, span, degree = 2)` with surface "direct").
fn loess(x: &[f64], y: &[f64], span: f64) -> Vec<f64> {
    let n = x.len();
    let q = ((n as f64 * span).floor() as usize).clamp(n.min(3), n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let xs: Vec<f64> = order.iter().map(|&i| x[i]).collect();
    let ys: Vec<f64> = order.iter().map(|&i| y[i]).collect();
    let windows = nearest_windows(&xs, q);
    let fitted: Vec<f64> = runtime::in_pool(|| {
        (0..n)
            .into_par_iter()
            .map(|i| {
                let window = windows[i]..windows[i] + q;
                local_quadratic(&xs[window.clone()], &ys[window], xs[i])
            })
            .collect()
    });
    let mut out = vec![0.0; n];
    for (&i, f) in order.iter().zip(fitted) {
        out[i] = f;
    }
    out
}

/// For sorted x, the start of the `q` consecutive points nearest to each x; it only moves right.
fn nearest_windows(xs: &[f64], q: usize) -> Vec<usize> {
    let mut start = 0;
    xs.iter()
        .map(|&x0| {
            while start + q < xs.len() && xs[start + q] - x0 < x0 - xs[start] {
                start += 1;
            }
            start
        })
        .collect()
}

/// Weighted least squares of y on (1, u, u²), u = (x − x0)/h, h the farthest distance in the
/// window; the fitted value at x0 is the intercept. Falls back to lower degrees when the window
/// has too few distinct x for a quadratic.
fn local_quadratic(xs: &[f64], ys: &[f64], x0: f64) -> f64 {
    let h = (x0 - xs[0]).max(xs[xs.len() - 1] - x0);
    let mut s = [0.0f64; 5];
    let mut t = [0.0f64; 3];
    for (&x, &y) in xs.iter().zip(ys) {
        let u = if h > 0.0 { (x - x0) / h } else { 0.0 };
        let w = (1.0 - u.abs().powi(3)).max(0.0).powi(3);
        let mut p = w;
        for k in 0..5 {
            s[k] += p;
            if k < 3 {
                t[k] += p * y;
            }
            p *= u;
        }
    }
    if s[0] <= 0.0 {
        return ys.iter().sum::<f64>() / ys.len() as f64;
    }
    let quadratic = [[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]];
    if let Some(beta) = solve3(quadratic, t) {
        return beta[0];
    }
    let det = s[0] * s[2] - s[1] * s[1];
    if det > 1e-12 * s[0] * s[0] {
        return (t[0] * s[2] - s[1] * t[1]) / det;
    }
    t[0] / s[0]
}

/// Gaussian elimination with partial pivoting; None when the system is (nearly) singular.
fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> Option<[f64; 3]> {
    let scale = a.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    for col in 0..3 {
        let pivot = (col..3).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= 1e-10 * scale {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..3 {
            let f = a[row][col] / pivot_row[col];
            a[row][col..].iter_mut().zip(&pivot_row[col..]).for_each(|(x, p)| *x -= f * p);
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let tail: f64 = (row + 1..3).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    Some(x)
}

/// Signac's RunTFIDF, method 1: ln(1 + x / cell total × cells / feature total × 10⁴).
pub fn tfidf(m: &CsrMatrix) -> CsrMatrix {
    let stats = column_stats(m);
    // Mean = total / cells, so cells / feature total is 1 / mean.
    let idf: Vec<f64> = stats.mean.iter().map(|&mu| if mu != 0.0 { 1.0 / mu } else { 0.0 }).collect();
    let mut values = Vec::with_capacity(m.nnz());
    for row in 0..m.n_rows() {
        let (cols, vals) = m.row(row);
        let total: f64 = vals.iter().map(|&v| v as f64).sum();
        let tf_scale = if total != 0.0 { 1e4 / total } else { 0.0 };
        values.extend(cols.iter().zip(vals).map(|(&c, &v)| (v as f64 * tf_scale * idf[c as usize]).ln_1p() as f32));
    }
    rebuild(m.n_rows(), m.n_cols(), m.indptr().to_vec(), m.indices().to_vec(), values)
}

/// A truncated SVD's cell embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Svd {
    /// cells × k, row-major: U·S.
    pub embedding: Vec<f32>,
    pub n_cells: usize,
    pub k: usize,
    pub singular_values: Vec<f32>,
}

/// Extra random directions beyond k: they make the captured subspace accurate for the top k.
const OVERSAMPLING: usize = 10;

/// Truncated SVD by randomised subspace iteration (Halko, Martinsson & Tropp 2011, algorithms
/// 4.4 and 5.1), with the columns centred implicitly when `center` (PCA).
pub fn randomized_svd(m: &CsrMatrix, k: usize, center: bool, seed: u64) -> Result<Svd> {
    let (n, p) = (m.n_rows(), m.n_cols());
    if n == 0 || p == 0 {
        return Err(CellPredXError::invalid(format!("cannot compute an SVD of an empty {n} × {p} matrix")));
    }
    let k = k.clamp(1, (n.min(p).saturating_sub(1)).max(1));
    let width = (k + OVERSAMPLING).min(n.min(p));
    // More passes when k is small against the matrix, where the spectrum decays slowly (as sklearn).
    let power_iterations = if (k as f64) < 0.1 * n.min(p) as f64 { 7 } else { 4 };
    let op = CenteredOperator::new(m, center);
    let mut basis = gaussian(p * width, seed);
    for _ in 0..power_iterations {
        basis = orthonormalize(&op.times(&basis, width), n, width)?;
        basis = orthonormalize(&op.transpose_times(&basis, width), p, width)?;
    }
    let q = orthonormalize(&op.times(&basis, width), n, width)?;
    // Bᵀ = AᵀQ (p × width); B = Qᵀ A = V_b S U_bᵀ, so A ≈ (Q V_b) S U_bᵀ.
    let bt = to_tensor(&op.transpose_times(&q, width), p, width);
    let (_, s, v) = bt.f_svd(true, true)?;
    let s = s.f_narrow(0, 0, k as i64)?;
    let embedding = to_tensor(&q, n, width).f_matmul(&v.f_narrow(1, 0, k as i64)?)?.f_mul(&s.f_unsqueeze(0)?)?;
    Ok(Svd {
        embedding: Vec::<f32>::try_from(&embedding.f_flatten(0, -1)?)?,
        n_cells: n,
        k,
        singular_values: Vec::<f32>::try_from(&s)?,
    })
}

/// A sparse matrix with its column means optionally subtracted on the fly:
/// (X − 1μᵀ)D = XD − 1(μᵀD) and (X − 1μᵀ)ᵀD = XᵀD − μ(1ᵀD).
struct CenteredOperator<'a> {
    m: &'a CsrMatrix,
    t: CsrMatrix,
    mean: Option<Vec<f64>>,
}

impl<'a> CenteredOperator<'a> {
    fn new(m: &'a CsrMatrix, center: bool) -> Self {
        CenteredOperator { m, t: transpose(m), mean: center.then(|| column_stats(m).mean) }
    }

    /// (n × width) = A · (p × width)
    fn times(&self, dense: &[f64], width: usize) -> Vec<f64> {
        let mut out = sparse_times_dense(self.m, dense, width);
        if let Some(mean) = &self.mean {
            let shift = vector_times_dense(mean, dense, width);
            out.chunks_mut(width).for_each(|row| row.iter_mut().zip(&shift).for_each(|(o, s)| *o -= s));
        }
        out
    }

    /// (p × width) = Aᵀ · (n × width)
    fn transpose_times(&self, dense: &[f64], width: usize) -> Vec<f64> {
        let mut out = sparse_times_dense(&self.t, dense, width);
        if let Some(mean) = &self.mean {
            let ones = vec![1.0; self.m.n_rows()];
            let column_sums = vector_times_dense(&ones, dense, width);
            for (row, &mu) in out.chunks_mut(width).zip(mean) {
                row.iter_mut().zip(&column_sums).for_each(|(o, s)| *o -= mu * s);
            }
        }
        out
    }
}

/// The same matrix stored by columns (features × cells), so that Xᵀ products are row-parallel
/// too, without per-thread copies of the output.
fn transpose(m: &CsrMatrix) -> CsrMatrix {
    let mut indptr = vec![0usize; m.n_cols() + 1];
    for &c in m.indices() {
        indptr[c as usize + 1] += 1;
    }
    for c in 0..m.n_cols() {
        indptr[c + 1] += indptr[c];
    }
    let mut next = indptr.clone();
    let mut indices = vec![0u32; m.nnz()];
    let mut values = vec![0f32; m.nnz()];
    for row in 0..m.n_rows() {
        let (cols, vals) = m.row(row);
        for (&c, &v) in cols.iter().zip(vals) {
            let slot = &mut next[c as usize];
            indices[*slot] = row as u32;
            values[*slot] = v;
            *slot += 1;
        }
    }
    rebuild(m.n_cols(), m.n_rows(), indptr, indices, values)
}

fn sparse_times_dense(m: &CsrMatrix, dense: &[f64], width: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; m.n_rows() * width];
    runtime::in_pool(|| {
        out.par_chunks_mut(width).enumerate().for_each(|(row, out_row)| {
            let (cols, vals) = m.row(row);
            for (&c, &v) in cols.iter().zip(vals) {
                let d = &dense[c as usize * width..(c as usize + 1) * width];
                out_row.iter_mut().zip(d).for_each(|(o, x)| *o += v as f64 * x);
            }
        })
    });
    out
}

/// (1 × width) = vᵀ · (len(v) × width)
fn vector_times_dense(v: &[f64], dense: &[f64], width: usize) -> Vec<f64> {
    let mut out = vec![0.0; width];
    for (&a, row) in v.iter().zip(dense.chunks(width)) {
        out.iter_mut().zip(row).for_each(|(o, x)| *o += a * x);
    }
    out
}

fn to_tensor(data: &[f64], rows: usize, cols: usize) -> Tensor {
    Tensor::from_slice(data).view([rows as i64, cols as i64])
}

/// An orthonormal basis of the columns (reduced QR), in double precision.
fn orthonormalize(data: &[f64], rows: usize, cols: usize) -> Result<Vec<f64>> {
    let (q, _) = Tensor::f_linalg_qr(&to_tensor(data, rows, cols), "reduced")?;
    Ok(Vec::<f64>::try_from(&q.f_contiguous()?.f_view(-1)?)?)
}

/// SplitMix64 (Steele, Lea & Flood 2014): reproducible for a seed on every platform and thread
/// count, with no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: never 0, so its logarithm is finite.
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// Standard normal draws by Box–Muller.
fn gaussian(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        let radius = (-2.0 * rng.uniform().ln()).sqrt();
        let angle = 2.0 * std::f64::consts::PI * rng.uniform();
        out.push(radius * angle.cos());
        out.push(radius * angle.sin());
    }
    out.truncate(len);
    out
}

/// PCA of normalised log data with every feature standardised, as Seurat's ScaleData then
/// RunPCA but without the clip: columns are divided by their standard deviation (the sparse
/// matrix stays sparse) and centred implicitly.
pub fn pca(m: &CsrMatrix, k: usize, seed: u64) -> Result<Svd> {
    let stats = column_stats(m);
    let inverse_sd: Vec<f64> = stats.var.iter().map(|&v| 1.0 / usable_sd(v)).collect();
    let values = m.indices().iter().zip(m.values()).map(|(&c, &v)| (v as f64 * inverse_sd[c as usize]) as f32).collect();
    let scaled = rebuild(m.n_rows(), m.n_cols(), m.indptr().to_vec(), m.indices().to_vec(), values);
    randomized_svd(&scaled, k, true, seed)
}

/// Latent semantic indexing as Signac's RunTFIDF + RunSVD, without the first component, which
/// follows sequencing depth rather than cell identity.
pub fn lsi(m: &CsrMatrix, k: usize, seed: u64) -> Result<Svd> {
    let full = randomized_svd(&tfidf(m), k + 1, false, seed)?;
    if full.k < 2 {
        return Err(CellPredXError::invalid(format!(
            "LSI needs at least 3 cells and 3 features to keep a component after dropping the first, got {} × {}",
            m.n_rows(),
            m.n_cols()
        )));
    }
    let kept = full.k - 1;
    let embedding = full.embedding.chunks(full.k).flat_map(|row| row[1..].iter().copied()).collect();
    Ok(Svd { embedding, n_cells: full.n_cells, k: kept, singular_values: full.singular_values[1..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(n_rows: usize, n_cols: usize, dense: &[f64]) -> CsrMatrix {
        CsrMatrix::from_dense_row_major(n_rows, n_cols, dense).unwrap()
    }

    fn densify(m: &CsrMatrix) -> Vec<f64> {
        let mut out = vec![0.0; m.n_rows() * m.n_cols()];
        for row in 0..m.n_rows() {
            let (cols, vals) = m.row(row);
            for (&c, &v) in cols.iter().zip(vals) {
                out[row * m.n_cols() + c as usize] = v as f64;
            }
        }
        out
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "entry {i}: got {g}, want {w}");
        }
    }

    // [[1, 0, 3, 0, 0],
    //  [0, 0, 0, 0, 0],
    //  [2, 2, 0, 4, 0]]
    fn counts() -> CsrMatrix {
        matrix(3, 5, &[1.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 4.0, 0.0])
    }

    fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn features_match_in_name_order_whatever_either_sides_order() {
        let reference = names("g", 0..150);
        let mut query = names("g", 20..200);
        query.reverse();
        let m = match_features(&reference, &query).unwrap();
        let mut expected = names("g", 20..150);
        expected.sort();
        assert_eq!(m.names, expected);
        assert!(m.names.iter().zip(&m.reference).all(|(n, &r)| &reference[r] == n));
        assert!(m.names.iter().zip(&m.query).all(|(n, &q)| &query[q] == n));
        let mut permuted = reference.clone();
        permuted.reverse();
        assert_eq!(match_features(&permuted, &query).unwrap().names, m.names);
    }

    #[test]
    fn duplicated_feature_names_are_refused() {
        let mut query = names("g", 0..150);
        query[7] = "g3".into();
        let err = match_features(&names("g", 0..150), &query).unwrap_err().to_string();
        assert_eq!(err, "feature \"g3\" appears more than once in the query (positions 4 and 8)");
    }

    #[test]
    fn too_few_shared_features_say_what_may_be_wrong() {
        let reference = names("CD", 0..120);
        let mut query = names("ENSG", 0..300);
        query.extend(names("CD", 0..99));
        let err = match_features(&reference, &query).unwrap_err().to_string();
        assert_eq!(
            err,
            "only 99 features are shared between reference (120) and query (399); at least 100 are needed — are both sides the same kind of features (gene symbols vs Ensembl IDs, peak naming)? e.g. reference \"CD0\", query \"ENSG0\""
        );
    }

    #[test]
    fn columns_are_selected_in_the_given_order() {
        let m = select_columns(&counts(), &[3, 0, 2]);
        assert_eq!((m.n_rows(), m.n_cols()), (3, 3));
        assert_eq!(densify(&m), [0.0, 1.0, 3.0, 0.0, 0.0, 0.0, 4.0, 2.0, 0.0]);
        let identity = select_columns(&counts(), &[0, 1, 2, 3, 4]);
        assert_eq!(identity, counts());
    }

    #[test]
    fn normalisation_and_log_by_hand() {
        // Row 0 totals 4: 1 → 2.5, 3 → 7.5 at scale 10; row 2 totals 8; row 1 stays empty.
        let m = normalize_log1p(&counts(), 10.0);
        let l = |x: f64| x.ln_1p();
        let want = [l(2.5), 0.0, l(7.5), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, l(2.5), l(2.5), 0.0, l(5.0), 0.0];
        assert_close(&densify(&m), &want, 1e-6);
        let want = [l(1.0), 0.0, l(3.0), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, l(2.0), l(2.0), 0.0, l(4.0), 0.0];
        assert_close(&densify(&log1p(&counts())), &want, 1e-6);
    }

    #[test]
    fn centred_log_ratio_by_hand() {
        // Row 0 holds 1 and 3 among 5 features: g = exp((ln 2 + ln 4) / 5); row 1 stays empty.
        let m = normalize_clr(&counts());
        let l = |x: f64| x.ln_1p();
        let g0 = ((2f64.ln() + 4f64.ln()) / 5.0).exp();
        let g2 = ((3f64.ln() + 3f64.ln() + 5f64.ln()) / 5.0).exp();
        let want = [l(1.0 / g0), 0.0, l(3.0 / g0), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, l(2.0 / g2), l(2.0 / g2), 0.0, l(4.0 / g2), 0.0];
        assert_close(&densify(&m), &want, 1e-6);
    }

    #[test]
    fn binarising_drops_stored_zeros_and_negatives() {
        let m = CsrMatrix::try_new(2, 3, vec![0, 3, 4], vec![0, 1, 2, 1], vec![0.5, 0.0, -1.0, 7.0]).unwrap();
        let b = binarize(&m);
        assert_eq!(b.indices(), [0, 1]);
        assert_eq!(b.values(), [1.0, 1.0]);
        assert_eq!(b.indptr(), [0, 1, 2]);
    }

    #[test]
    fn tfidf_by_hand() {
        // Feature totals 3, 2, 3, 4, 0 over 3 cells: idf 1, 1.5, 1, 0.75, (0).
        // Row 0 totals 4: 1/4·1·10⁴ = 2500, 3/4·1·10⁴ = 7500.
        // Row 2 totals 8: 2/8·1·10⁴ = 2500, 2/8·1.5·10⁴ = 3750, 4/8·0.75·10⁴ = 3750.
        let l = |x: f64| x.ln_1p();
        let want = [l(2500.0), 0.0, l(7500.0), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, l(2500.0), l(3750.0), 0.0, l(3750.0), 0.0];
        assert_close(&densify(&tfidf(&counts())), &want, 1e-6);
    }

    #[test]
    fn feature_scaling_by_hand() {
        // Columns 1,0,2 | 0,0,2 | 3,0,0 | 0,0,4 | 0,0,0:
        // means 1, 2/3, 1, 4/3, 0; variances (n − 1) 1, 4/3, 3, 16/3, 0 (→ sd 1).
        let s = FeatureScaling::fit(&counts(), 1.0);
        let want_mean = [1.0, 2.0 / 3.0, 1.0, 4.0 / 3.0, 0.0];
        let want_sd = [1.0, (4.0f64 / 3.0).sqrt(), 3.0f64.sqrt(), (16.0f64 / 3.0).sqrt(), 1.0];
        assert_close(&s.mean.iter().map(|&v| v as f64).collect::<Vec<_>>(), &want_mean, 1e-6);
        assert_close(&s.sd.iter().map(|&v| v as f64).collect::<Vec<_>>(), &want_sd, 1e-6);
        // Row 2 scales to 1, 1.155, −0.577, 1.155, 0; the clip at 1 caps the top only.
        let mut row = [2.0f32, 2.0, 0.0, 4.0, 0.0];
        s.apply_row(&mut row);
        let got: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        assert_close(&got, &[1.0, 1.0, -1.0 / 3.0f64.sqrt(), 1.0, 0.0], 1e-6);
    }

    #[test]
    fn loess_reproduces_a_quadratic_exactly() {
        // A local quadratic fit is exact on quadratic data, ties in x included.
        let x: Vec<f64> = (0..60).map(|i| ((i * 37) % 50) as f64 / 7.0).collect();
        let y: Vec<f64> = x.iter().map(|&x| 1.0 + 2.0 * x - 0.5 * x * x).collect();
        assert_close(&loess(&x, &y, 0.3), &y, 1e-9);
    }

    fn poisson(rng: &mut SplitMix64, lambda: f64) -> f64 {
        let limit = (-lambda).exp();
        let (mut k, mut p) = (0.0, rng.uniform());
        while p > limit {
            k += 1.0;
            p *= rng.uniform();
        }
        k
    }

    #[test]
    fn overdispersed_features_are_the_most_variable() {
        // Poisson counts follow the mean-variance trend; ten features instead come in bursts
        // (six times the mean in one cell in six), far above it.
        let (n_cells, n_features) = (400, 2000);
        let bursty: Vec<usize> = (10..20).map(|i| i * 100).collect();
        let mut rng = SplitMix64(42);
        let mut dense = vec![0.0; n_cells * n_features];
        for j in 0..n_features - 2 {
            let lambda = 0.05 * 400f64.powf(j as f64 / n_features as f64);
            for i in 0..n_cells {
                let boost = if !bursty.contains(&j) { 1.0 } else if rng.uniform() < 1.0 / 6.0 { 6.0 } else { 0.0 };
                dense[i * n_features + j] = poisson(&mut rng, lambda * boost);
            }
        }
        let m = matrix(n_cells, n_features, &dense);
        let mut top = highly_variable_features(&m, 10);
        top.sort_unstable();
        assert_eq!(top, bursty);
        let all = highly_variable_features(&m, n_features);
        assert_eq!(all.len(), n_features - 2, "the two all-zero features are never selected");
        assert!(highly_variable_features(&m, 0).is_empty());
    }

    fn random_sparse(n_rows: usize, n_cols: usize, density: f64, seed: u64) -> CsrMatrix {
        clustered_sparse(n_rows, n_cols, density, 1, seed)
    }

    /// Random values in [1, 5) at the given density, with cells in `groups` groups whose own
    /// block of features is raised by a group-specific factor: a spectrum with clear gaps, as
    /// cell types give, so that the leading singular vectors are well defined.
    fn clustered_sparse(n_rows: usize, n_cols: usize, density: f64, groups: usize, seed: u64) -> CsrMatrix {
        let mut rng = SplitMix64(seed);
        let mut indptr = vec![0];
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        for r in 0..n_rows {
            for c in 0..n_cols {
                if rng.uniform() < density {
                    let own_block = groups > 1 && c * groups / n_cols == r % groups;
                    let factor = if own_block { 1.0 + (r % groups) as f64 } else { 1.0 };
                    indices.push(c as u32);
                    values.push((factor * (1.0 + 4.0 * rng.uniform())) as f32);
                }
            }
            indptr.push(indices.len());
        }
        CsrMatrix::try_new(n_rows, n_cols, indptr, indices, values).unwrap()
    }

    /// Singular values and left singular vectors of a dense row-major matrix.
    fn exact_svd(dense: &[f64], n: usize, p: usize) -> (Tensor, Vec<f64>) {
        let (u, s, _) = to_tensor(dense, n, p).svd(true, true);
        (u, Vec::<f64>::try_from(&s).unwrap())
    }

    /// Checks the singular values and that the left singular subspaces coincide: the cosines of
    /// the principal angles between them are the singular values of UᵀU_exact.
    fn assert_matches_exact(svd: &Svd, dense: &[f64], n: usize, p: usize) {
        let (u_exact, s_exact) = exact_svd(dense, n, p);
        let k = svd.k;
        let s: Vec<f64> = svd.singular_values.iter().map(|&v| v as f64).collect();
        for (i, (a, b)) in s.iter().zip(&s_exact).enumerate() {
            assert!((a - b).abs() <= 1e-3 * b, "singular value {i}: {a} vs exact {b}");
        }
        let embedding: Vec<f64> = svd.embedding.iter().map(|&v| v as f64).collect();
        let u = to_tensor(&embedding, n, k) / Tensor::from_slice(&s).unsqueeze(0);
        let overlap = u.transpose(0, 1).matmul(&u_exact.narrow(1, 0, k as i64));
        let cosines = Vec::<f64>::try_from(&overlap.svd(true, false).1).unwrap();
        assert!(cosines.iter().all(|&c| c > 1.0 - 1e-3), "principal cosines {cosines:?}");
    }

    #[test]
    fn randomized_svd_matches_an_exact_svd() {
        let m = clustered_sparse(200, 80, 0.1, 7, 7);
        let svd = randomized_svd(&m, 5, false, 1).unwrap();
        assert_eq!((svd.n_cells, svd.k, svd.embedding.len()), (200, 5, 1000));
        assert_matches_exact(&svd, &densify(&m), 200, 80);
    }

    #[test]
    fn implicit_centering_equals_explicit_centering() {
        let m = clustered_sparse(200, 80, 0.1, 7, 8);
        let mut dense = densify(&m);
        for c in 0..80 {
            let mean = (0..200).map(|r| dense[r * 80 + c]).sum::<f64>() / 200.0;
            (0..200).for_each(|r| dense[r * 80 + c] -= mean);
        }
        assert_matches_exact(&randomized_svd(&m, 5, true, 2).unwrap(), &dense, 200, 80);
    }

    #[test]
    fn svd_rank_is_clamped_and_empty_input_refused() {
        let m = random_sparse(30, 12, 0.3, 9);
        assert_eq!(randomized_svd(&m, 100, false, 0).unwrap().k, 11);
        assert_eq!(randomized_svd(&m, 0, false, 0).unwrap().k, 1);
        let empty = CsrMatrix::try_new(0, 5, vec![0], vec![], vec![]).unwrap();
        assert!(randomized_svd(&empty, 3, true, 0).unwrap_err().to_string().contains("empty 0 × 5"));
    }

    #[test]
    fn pca_and_lsi_are_deterministic_and_shaped() {
        let m = random_sparse(150, 60, 0.15, 10);
        let a = pca(&m, 8, 3).unwrap();
        assert_eq!((a.n_cells, a.k, a.embedding.len(), a.singular_values.len()), (150, 8, 1200, 8));
        assert_eq!(a, pca(&m, 8, 3).unwrap());
        let l = lsi(&m, 8, 3).unwrap();
        assert_eq!((l.n_cells, l.k, l.embedding.len(), l.singular_values.len()), (150, 8, 1200, 8));
        assert_eq!(l, lsi(&m, 8, 3).unwrap());
        let full = randomized_svd(&tfidf(&m), 9, false, 3).unwrap();
        assert_eq!(l.singular_values, full.singular_values[1..]);
        assert_eq!(l.embedding[..8], full.embedding[1..9]);
    }

    #[test]
    fn pca_standardises_features() {
        // Standardising makes PCA blind to each feature's unit: rescaling a column changes nothing.
        let m = random_sparse(100, 30, 0.2, 11);
        let values = m.indices().iter().zip(m.values()).map(|(&c, &v)| if c == 3 { v * 100.0 } else { v }).collect();
        let rescaled = CsrMatrix::try_new(100, 30, m.indptr().to_vec(), m.indices().to_vec(), values).unwrap();
        let (a, b) = (pca(&m, 4, 5).unwrap(), pca(&rescaled, 4, 5).unwrap());
        let (sa, sb): (Vec<f64>, Vec<f64>) = (a.singular_values.iter().map(|&v| v as f64).collect(), b.singular_values.iter().map(|&v| v as f64).collect());
        assert_close(&sa, &sb, 1e-4);
    }

    /// Timing only: `cargo test --release -p cellpredx timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn svd_timing() {
        let m = random_sparse(10_000, 25_000, 0.003, 12);
        let start = std::time::Instant::now();
        let svd = randomized_svd(&m, 50, true, 0).unwrap();
        println!("randomized_svd k = 50 of 10,000 × 25,000 ({} non-zeros), {} threads: {:.2?}", m.nnz(), runtime::threads(), start.elapsed());
        assert_eq!(svd.k, 50);
    }

    /// Timing only: the loess is quadratic in the number of features.
    #[test]
    #[ignore]
    fn hvg_timing() {
        let m = random_sparse(2_000, 30_000, 0.05, 13);
        let start = std::time::Instant::now();
        let top = highly_variable_features(&m, 2000);
        println!("highly_variable_features of 2,000 × 30,000, {} threads: {:.2?}", runtime::threads(), start.elapsed());
        assert_eq!(top.len(), 2000);
    }
}
