//! Reading count matrices and cell metadata in the layouts single-cell tools write — 10x-style
//! MatrixMarket directories, 10x HDF5 (`.h5`) and AnnData (`.h5ad`) — and reading and writing
//! tab-separated tables.
//!
//! Every error is one line that names the file, says what is wrong with it and, where there is
//! one, what to do about it: the front ends show these messages to users as they are.

mod h5;
mod mtx;
mod table;

pub use table::{read_table, write_table, Table};

use crate::error::{CellPredXError, Result};
use crate::sparse::CsrMatrix;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A count matrix with its row and column names.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Cells × features.
    pub matrix: CsrMatrix,
    pub features: Vec<String>,
    pub cells: Vec<String>,
}

/// Reads a dataset, choosing the format by what `path` is: a directory holds `matrix.mtx(.gz)`
/// with `features.tsv` and `barcodes.tsv`; a `.h5` file is CellRanger's HDF5 output; a `.h5ad`
/// file is AnnData.
pub fn read_dataset(path: &Path) -> Result<Dataset> {
    let dataset = if path.is_dir() {
        mtx::read_mtx_dir(path)?
    } else if !path.exists() {
        return Err(CellPredXError::invalid(format!("{} does not exist", path.display())));
    } else {
        match extension(path).as_deref() {
            Some("h5") => h5::read_10x_h5(path)?,
            Some("h5ad") => h5::read_h5ad(path)?,
            _ => {
                return Err(CellPredXError::invalid(format!(
                    "{}: unknown dataset format; expected a directory with matrix.mtx(.gz), features.tsv and barcodes.tsv, a 10x .h5 file or an AnnData .h5ad file",
                    path.display()
                )))
            }
        }
    };
    check_unique_cells(path, &dataset.cells)?;
    Ok(dataset)
}

/// Cells are matched to metadata and results by name, so a name given twice is an error.
fn check_unique_cells(path: &Path, cells: &[String]) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        if let Some(first) = seen.insert(cell.as_str(), i) {
            return Err(CellPredXError::invalid(format!(
                "{}: cell {cell:?} is named twice (cells {} and {}); cell names (barcodes) must be unique",
                path.display(),
                first + 1,
                i + 1
            )));
        }
    }
    Ok(())
}

/// Looks up the label of each of `cells` in column `column` of a cell metadata table: a TSV file
/// whose first column holds cell names, a dataset directory (its `metadata.tsv`), or an `.h5ad`
/// file (its `obs` data frame). Labels come back in the order of `cells`.
pub fn read_cell_labels(path: &Path, column: &str, cells: &[String]) -> Result<Vec<String>> {
    let (source, names, labels) = if extension(path).as_deref() == Some("h5ad") {
        let (names, labels) = h5::read_obs_column(path, column)?;
        (path.to_path_buf(), names, labels)
    } else {
        let source = if path.is_dir() { path.join("metadata.tsv") } else { path.to_path_buf() };
        let table = read_table(&source)?;
        let labels = table.column(column)?.into_iter().map(str::to_string).collect();
        let names = table.rows.into_iter().map(|row| row.into_iter().next().unwrap_or_default()).collect();
        (source, names, labels)
    };
    labels_in_cell_order(&source, &names, &labels, cells)
}

fn labels_in_cell_order(source: &Path, names: &[String], labels: &[String], cells: &[String]) -> Result<Vec<String>> {
    let mut label_of: HashMap<&str, &str> = HashMap::with_capacity(names.len());
    for (name, label) in names.iter().zip(labels) {
        if label_of.insert(name, label).is_some() {
            return Err(CellPredXError::invalid(format!(
                "{}: cell '{name}' appears more than once; cell names must be unique",
                source.display()
            )));
        }
    }
    let missing: Vec<&String> = cells.iter().filter(|c| !label_of.contains_key(c.as_str())).collect();
    if let Some(first) = missing.first() {
        return Err(CellPredXError::invalid(format!(
            "{}: {} of {} cells have no row (the first is '{first}'); the metadata must cover every cell of the dataset",
            source.display(),
            thousands(missing.len()),
            thousands(cells.len())
        )));
    }
    Ok(cells.iter().map(|c| label_of[c.as_str()].to_string()).collect())
}

fn extension(path: &Path) -> Option<String> {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// The first of `names` that exists in `dir`.
fn find_in_dir(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// A file's bytes, decompressed when they are gzip (recognised by content, not by name, because
/// files get renamed).
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| CellPredXError::io(format!("cannot read {}", path.display()), e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut text = Vec::with_capacity(raw.len() * 4);
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut text)
        .map_err(|e| CellPredXError::io(format!("{} is not valid gzip", path.display()), e))?;
    Ok(text)
}

/// Renames repeated names the way R's `make.unique` does (and so Seurat): later copies of `x`
/// become `x.1`, `x.2`, … skipping suffixes that are already names of their own.
pub(crate) fn make_unique(names: Vec<String>) -> Vec<String> {
    let mut taken: HashSet<String> = names.iter().cloned().collect();
    if taken.len() == names.len() {
        return names;
    }
    let mut seen: HashSet<String> = HashSet::with_capacity(names.len());
    let mut next_suffix: HashMap<String, usize> = HashMap::new();
    names
        .into_iter()
        .map(|name| {
            if seen.insert(name.clone()) {
                return name;
            }
            let suffix = next_suffix.entry(name.clone()).or_insert(1);
            let mut candidate = format!("{name}.{suffix}");
            while taken.contains(&candidate) {
                *suffix += 1;
                candidate = format!("{name}.{suffix}");
            }
            *suffix += 1;
            taken.insert(candidate.clone());
            candidate
        })
        .collect()
}

/// `1234567` → `"1,234,567"`, so that counts in messages are readable.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Builds a cells × features matrix from entries in any order with a counting sort by cell:
/// linear in the number of entries, and entries that arrive sorted (as R and scipy write them)
/// need no further sorting.
fn csr_from_triplets(
    n_rows: usize,
    n_cols: usize,
    rows: &[u32],
    cols: &[u32],
    values: &[f32],
) -> std::result::Result<CsrMatrix, String> {
    if cols.len() != rows.len() || values.len() != rows.len() {
        return Err(format!(
            "{} cell indices, {} feature indices and {} values; expected as many of each",
            rows.len(),
            cols.len(),
            values.len()
        ));
    }
    if let Some(&r) = rows.iter().find(|&&r| r as usize >= n_rows) {
        return Err(format!("cell index {r} is outside 0..{n_rows}"));
    }
    let mut indptr = vec![0usize; n_rows + 1];
    for &r in rows {
        indptr[r as usize + 1] += 1;
    }
    for i in 0..n_rows {
        indptr[i + 1] += indptr[i];
    }
    let mut next = indptr[..n_rows].to_vec();
    let mut indices = vec![0u32; rows.len()];
    let mut sorted_values = vec![0f32; rows.len()];
    for ((&r, &c), &v) in rows.iter().zip(cols).zip(values) {
        let slot = &mut next[r as usize];
        indices[*slot] = c;
        sorted_values[*slot] = v;
        *slot += 1;
    }
    csr_from_parts(n_rows, n_cols, indptr, indices, sorted_values)
}

/// Builds a matrix from compressed parts whose indices may be unsorted within a row (scipy
/// allows that), refusing repeated entries, which formats disagree on how to combine.
fn csr_from_parts(
    n_rows: usize,
    n_cols: usize,
    indptr: Vec<usize>,
    mut indices: Vec<u32>,
    mut values: Vec<f32>,
) -> std::result::Result<CsrMatrix, String> {
    let well_formed = indptr.len() == n_rows + 1
        && indptr.first() == Some(&0)
        && indptr.last() == Some(&indices.len())
        && indices.len() == values.len()
        && indptr.windows(2).all(|w| w[0] <= w[1]);
    if !well_formed {
        // The sparse module's checks word the problem precisely.
        return CsrMatrix::try_new(n_rows, n_cols, indptr, indices, values).map_err(|e| e.to_string());
    }
    for row in 0..n_rows {
        let range = indptr[row]..indptr[row + 1];
        let row_indices = &indices[range.clone()];
        if row_indices.windows(2).all(|w| w[0] < w[1]) {
            continue;
        }
        let mut entries: Vec<(u32, f32)> =
            row_indices.iter().copied().zip(values[range.clone()].iter().copied()).collect();
        entries.sort_unstable_by_key(|&(col, _)| col);
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(format!(
                "feature {} of cell {} is stored more than once; each entry must appear once",
                w[0].0 as usize + 1,
                row + 1
            ));
        }
        for (k, (col, value)) in range.zip(entries) {
            indices[k] = col;
            values[k] = value;
        }
    }
    CsrMatrix::try_new(n_rows, n_cols, indptr, indices, values).map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory per call, so that tests running in parallel never share files.
    pub fn scratch_dir(name: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cellpredx-io-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The shared example data, if this checkout has it.
    pub fn shared_data() -> Option<PathBuf> {
        let dir = match std::env::var_os("CELLPREDX_DATA") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/data"),
        };
        dir.is_dir().then_some(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn repeated_names_get_suffixes_like_make_unique_in_r() {
        let names = ["a", "a", "a.1", "a", "b", "b.1", "b"].map(String::from).to_vec();
        assert_eq!(make_unique(names), ["a", "a.2", "a.1", "a.3", "b", "b.1", "b.2"]);
    }

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1677), "1,677");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn triplets_in_any_order_become_sorted_rows_and_repeats_are_refused() {
        let m = csr_from_triplets(2, 3, &[1, 0, 0], &[0, 2, 0], &[3.0, 2.0, 1.0]).unwrap();
        assert_eq!(m, CsrMatrix::try_new(2, 3, vec![0, 2, 3], vec![0, 2, 0], vec![1.0, 2.0, 3.0]).unwrap());
        let err = csr_from_triplets(2, 3, &[1, 1], &[2, 2], &[1.0, 1.0]).unwrap_err();
        assert!(err.contains("feature 3 of cell 2 is stored more than once"), "{err}");
        assert!(csr_from_parts(1, 3, vec![0, 5], vec![0], vec![1.0]).is_err());
    }

    #[test]
    fn labels_follow_the_order_of_the_cells() {
        let dir = scratch_dir("labels");
        let path = dir.join("metadata.tsv");
        std::fs::write(&path, "cell_id\tcell_type\tscore\nc1\tT\t1\nc2\tB\t2\nc3\tNK\t3\n").unwrap();
        let cells = ["c3", "c1"].map(String::from);
        assert_eq!(read_cell_labels(&path, "cell_type", &cells).unwrap(), ["NK", "T"]);
        assert_eq!(read_cell_labels(&dir, "cell_type", &cells).unwrap(), ["NK", "T"]);

        let unknown = ["c1", "x", "y"].map(String::from);
        let err = read_cell_labels(&path, "cell_type", &unknown).unwrap_err().to_string();
        assert!(err.contains("2 of 3 cells have no row (the first is 'x')"), "{err}");
        assert!(err.contains("metadata.tsv"), "{err}");
        let err = read_cell_labels(&path, "celltype", &cells).unwrap_err().to_string();
        assert!(err.contains("no column 'celltype'") && err.contains("cell_id, cell_type, score"), "{err}");

        std::fs::write(&path, "cell_id\tcell_type\nc1\tT\nc1\tB\n").unwrap();
        let err = read_cell_labels(&path, "cell_type", &cells[1..]).unwrap_err().to_string();
        assert!(err.contains("cell 'c1' appears more than once"), "{err}");
    }

    #[test]
    fn unknown_paths_and_formats_are_named() {
        let dir = scratch_dir("formats");
        let err = read_dataset(&dir.join("missing.h5")).unwrap_err().to_string();
        assert!(err.ends_with("missing.h5 does not exist"), "{err}");
        std::fs::write(dir.join("counts.csv"), "a,b\n").unwrap();
        let err = read_dataset(&dir.join("counts.csv")).unwrap_err().to_string();
        assert!(err.contains("unknown dataset format"), "{err}");
    }

    #[test]
    fn pbmc3k_reads_with_its_nine_cell_types() {
        let Some(data) = shared_data() else {
            eprintln!("note: shared data not found (set CELLPREDX_DATA); skipping the pbmc3k check");
            return;
        };
        let dir = data.join("pbmc3k_seurat/rna");
        if !dir.is_dir() {
            eprintln!("note: {} not found; skipping", dir.display());
            return;
        }
        let dataset = read_dataset(&dir).unwrap();
        assert_eq!((dataset.matrix.n_rows(), dataset.matrix.n_cols()), (2638, 2000));
        assert_eq!((dataset.cells.len(), dataset.features.len()), (2638, 2000));
        assert_eq!(dataset.matrix.nnz(), 514_442);
        let labels = read_cell_labels(&dir, "cell_type", &dataset.cells).unwrap();
        let types: HashSet<&String> = labels.iter().collect();
        assert_eq!(types.len(), 9);
    }

    #[test]
    fn every_shared_dataset_reads_and_its_metadata_covers_its_cells() {
        let Some(data) = shared_data() else {
            eprintln!("note: shared data not found (set CELLPREDX_DATA); skipping");
            return;
        };
        let dirs = std::fs::read_dir(&data).unwrap().flatten().filter(|e| e.path().is_dir());
        for collection in dirs {
            for dir in std::fs::read_dir(collection.path()).unwrap().flatten().map(|e| e.path()) {
                if find_in_dir(&dir, &["matrix.mtx.gz", "matrix.mtx"]).is_none() {
                    continue;
                }
                let dataset = read_dataset(&dir).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(dataset.matrix.count_invalid_values().0, 0, "{}", dir.display());
                if dir.join("metadata.tsv").is_file() {
                    let labels = read_cell_labels(&dir, "cell_type", &dataset.cells).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(labels.len(), dataset.cells.len());
                }
            }
        }
    }

    /// `cargo test --release -p cellpredx io::tests::snareseq_peaks_read_time -- --nocapture`
    #[test]
    fn snareseq_peaks_read_time() {
        let Some(dir) = shared_data().map(|d| d.join("snareseq_mouse_cortex/atac_peaks")).filter(|d| d.is_dir()) else {
            eprintln!("note: snareseq atac_peaks not found; skipping the timing");
            return;
        };
        let start = std::time::Instant::now();
        let dataset = read_dataset(&dir).unwrap();
        eprintln!(
            "read {} ({} cells × {} features, {} non-zeros) in {:.3} s",
            dir.display(),
            dataset.cells.len(),
            dataset.features.len(),
            dataset.matrix.nnz(),
            start.elapsed().as_secs_f64()
        );
        assert_eq!((dataset.matrix.n_rows(), dataset.matrix.n_cols()), (10_309, 25_734));
    }
}
