//! The HDF5-based formats: CellRanger's `.h5` (version 2 and 3 or later layouts) and AnnData's
//! `.h5ad` (0.7 and later).
//!
//! All features are kept, whatever their `feature_type` (CellRanger 3 puts antibody capture and
//! gene expression in one matrix); selecting features is the caller's business.

use super::{csr_from_parts, csr_from_triplets, make_unique, thousands, Dataset};
use crate::error::{CellPredXError, Result};
use crate::sparse::CsrMatrix;
use hdf5::types::{FixedAscii, FixedUnicode, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Container, File, Group, H5Type, Location, LocationType};
use std::path::Path;

/// Failures inside a file are described without its name, which is added once at the top.
type Checked<T> = std::result::Result<T, String>;

pub(super) fn read_10x_h5(path: &Path) -> Result<Dataset> {
    tenx(&open(path)?).map_err(|e| in_file(path, e))
}

pub(super) fn read_h5ad(path: &Path) -> Result<Dataset> {
    anndata(&open(path)?).map_err(|e| in_file(path, e))
}

/// The cell names of an `.h5ad` file's `obs` and the values of its column `column` as text.
pub(super) fn read_obs_column(path: &Path, column: &str) -> Result<(Vec<String>, Vec<String>)> {
    obs_column(&open(path)?, column).map_err(|e| in_file(path, e))
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| in_file(path, format!("cannot be opened as HDF5: {}", one_line(&e))))
}

fn in_file(path: &Path, message: String) -> CellPredXError {
    CellPredXError::invalid(format!("{}: {message}", path.display()))
}

fn one_line(err: &hdf5::Error) -> String {
    err.to_string().lines().next().unwrap_or("unknown HDF5 error").to_string()
}

fn tenx(file: &File) -> Checked<Dataset> {
    let (matrix, features) = if file.link_exists("matrix") {
        let matrix = group(file, "matrix")?;
        let features = strings(&*dataset(&group(&matrix, "features")?, "name")?)?;
        (matrix, features)
    } else {
        // CellRanger 2 has one group per genome instead.
        let groups = file.groups().map_err(|e| format!("cannot list its groups: {}", one_line(&e)))?;
        match groups.as_slice() {
            [genome] if genome.link_exists("gene_names") => {
                let features = strings(&*dataset(genome, "gene_names")?)?;
                (genome.clone(), features)
            }
            _ => {
                return Err(format!(
                    "not a 10x HDF5 file: no group 'matrix' (CellRanger 3 or later) and not a single genome group with 'gene_names' (CellRanger 2); it has {} top-level groups",
                    groups.len()
                ))
            }
        }
    };
    let cells = strings(&*dataset(&matrix, "barcodes")?)?;
    let shape = numbers::<i64>(&*dataset(&matrix, "shape")?, &path_of(&matrix, "shape"))?;
    let [n_features, n_cells] = two_dimensions(&shape, &path_of(&matrix, "shape"))?;
    expect_names(features.len(), n_features, &path_of(&matrix, "features"), "features")?;
    expect_names(cells.len(), n_cells, &path_of(&matrix, "barcodes"), "cells")?;
    // Compressed over cells, features × cells is cells × features row by row.
    let (indptr, indices, values) = compressed_parts(&matrix)?;
    let matrix = csr_from_parts(n_cells, n_features, indptr, indices, values)?;
    Ok(Dataset { matrix, features: make_unique(features), cells })
}

fn anndata(file: &File) -> Checked<Dataset> {
    let cells = dataframe_index(&dataframe(file, "obs")?)?;
    let features = dataframe_index(&dataframe(file, "var")?)?;
    let matrix = anndata_x(file, [cells.len(), features.len()])?;
    Ok(Dataset { matrix, features: make_unique(features), cells })
}

/// `X`, once its shape is known to match `obs` and `var` (which also keeps a corrupt shape from
/// sizing allocations).
fn anndata_x(file: &File, names: [usize; 2]) -> Checked<CsrMatrix> {
    if !file.link_exists("X") {
        return Err("not an AnnData file: no 'X'".into());
    }
    match file.loc_type_by_name("X") {
        Ok(LocationType::Dataset) => dense_matrix(&dataset(file, "X")?, names),
        Ok(LocationType::Group) => sparse_matrix(&group(file, "X")?, names),
        _ => Err("'X' is neither a dataset nor a group".into()),
    }
}

fn sparse_matrix(x: &Group, names: [usize; 2]) -> Checked<CsrMatrix> {
    // AnnData 0.8+ writes `encoding-type`; 0.7 wrote h5sparse's attributes.
    let encoding = match text_attribute(x, "encoding-type")? {
        Some(encoding) => encoding,
        None => text_attribute(x, "h5sparse_format")?.unwrap_or_default(),
    };
    let shape_name =
        if x.attr_names().unwrap_or_default().iter().any(|a| a == "shape") { "shape" } else { "h5sparse_shape" };
    let shape = match x.attr(shape_name) {
        Ok(attr) => numbers::<i64>(&attr, &format!("attribute '{shape_name}' of 'X'"))?,
        Err(_) => return Err("'X' is a sparse matrix without a 'shape' attribute".into()),
    };
    let [n_cells, n_features] = two_dimensions(&shape, "'X'")?;
    expect_obs_var(names, [n_cells, n_features])?;
    let (indptr, indices, values) = compressed_parts(x)?;
    match encoding.as_str() {
        "csr_matrix" | "csr" => Ok(csr_from_parts(n_cells, n_features, indptr, indices, values)?),
        "csc_matrix" | "csc" => {
            let features = expand_pointers(&indptr, n_features, indices.len())?;
            Ok(csr_from_triplets(n_cells, n_features, &indices, &features, &values)?)
        }
        other => Err(format!("'X' is a group with encoding '{other}'; expected csr_matrix or csc_matrix")),
    }
}

/// The outer index of every entry of a compressed matrix, checking the pointers on the way.
fn expand_pointers(indptr: &[usize], n_outer: usize, nnz: usize) -> Checked<Vec<u32>> {
    if indptr.len() != n_outer + 1 || indptr.first() != Some(&0) || indptr.last() != Some(&nnz) {
        return Err(format!(
            "'X/indptr' has {} entries running to {:?}; expected {} running from 0 to the {} stored values",
            indptr.len(),
            indptr.last(),
            n_outer + 1,
            nnz
        ));
    }
    let mut outer = Vec::with_capacity(nnz);
    for (j, w) in indptr.windows(2).enumerate() {
        if w[1] < w[0] {
            return Err(format!("'X/indptr' decreases at position {}", j + 1));
        }
        outer.extend(std::iter::repeat_n(j as u32, w[1] - w[0]));
    }
    Ok(outer)
}

/// Reads a dense cells × features `X` a block of rows at a time, so that only the sparse result
/// is ever held whole.
fn dense_matrix(x: &hdf5::Dataset, names: [usize; 2]) -> Checked<CsrMatrix> {
    let &[n_rows, n_cols] = x.shape().as_slice() else {
        return Err(format!("'X' has {} dimensions; expected 2 (cells × features)", x.ndim()));
    };
    expect_obs_var(names, [n_rows, n_cols])?;
    let rows_per_block = ((1usize << 22) / n_cols.max(1)).max(1);
    let mut indptr = Vec::with_capacity(n_rows + 1);
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    indptr.push(0);
    for start in (0..n_rows).step_by(rows_per_block) {
        let end = (start + rows_per_block).min(n_rows);
        let block = x
            .read_slice_2d::<f32, _>((start..end, ..))
            .map_err(|e| format!("cannot read rows {start}..{end} of 'X': {}", one_line(&e)))?;
        for row in block.rows() {
            for (col, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    indices.push(col as u32);
                    values.push(v);
                }
            }
            indptr.push(indices.len());
        }
    }
    CsrMatrix::try_new(n_rows, n_cols, indptr, indices, values).map_err(|e| e.to_string())
}

/// `data`, `indices` and `indptr` of a compressed matrix group, as the sparse module stores them.
fn compressed_parts(g: &Group) -> Checked<(Vec<usize>, Vec<u32>, Vec<f32>)> {
    let values = numbers::<f32>(&*dataset(g, "data")?, &path_of(g, "data"))?;
    let indices = numbers::<i64>(&*dataset(g, "indices")?, &path_of(g, "indices"))?
        .into_iter()
        .map(|i| u32::try_from(i).map_err(|_| format!("{} holds the invalid index {i}", path_of(g, "indices"))))
        .collect::<Checked<Vec<u32>>>()?;
    let indptr = numbers::<i64>(&*dataset(g, "indptr")?, &path_of(g, "indptr"))?
        .into_iter()
        .map(|p| usize::try_from(p).map_err(|_| format!("{} holds the negative pointer {p}", path_of(g, "indptr"))))
        .collect::<Checked<Vec<usize>>>()?;
    Ok((indptr, indices, values))
}

fn dataframe(file: &File, name: &str) -> Checked<Group> {
    match file.loc_type_by_name(name) {
        Ok(LocationType::Group) => group(file, name),
        Ok(_) => Err(format!(
            "'{name}' is stored in the AnnData layout before 0.7; re-save the file with a recent anndata (anndata.read_h5ad(path).write_h5ad(path))"
        )),
        Err(_) => Err(format!("not an AnnData file: no '{name}'")),
    }
}

/// Row names of an AnnData data frame: the dataset its `_index` attribute names.
fn dataframe_index(frame: &Group) -> Checked<Vec<String>> {
    let index = text_attribute(frame, "_index")?.unwrap_or_else(|| "_index".to_string());
    strings(&*dataset(frame, &index)?)
}

fn obs_column(file: &File, column: &str) -> Checked<(Vec<String>, Vec<String>)> {
    let obs = dataframe(file, "obs")?;
    let cells = dataframe_index(&obs)?;
    if !obs.link_exists(column) {
        let index = text_attribute(&obs, "_index")?.unwrap_or_default();
        let columns: Vec<String> = obs.member_names().unwrap_or_default().into_iter().filter(|c| *c != index).collect();
        return Err(format!("obs has no column '{column}'; its columns are: {}", columns.join(", ")));
    }
    let values = match obs.loc_type_by_name(column) {
        Ok(LocationType::Group) => categorical(&group(&obs, column)?, column, &cells)?,
        _ => plain_column(&dataset(&obs, column)?, column)?,
    };
    expect_names(values.len(), cells.len(), &format!("obs column '{column}'"), "values (one per cell)")?;
    Ok((cells, values))
}

/// AnnData 0.8+ categoricals: integer `codes` into `categories`, −1 for a missing value.
fn categorical(g: &Group, column: &str, cells: &[String]) -> Checked<Vec<String>> {
    if !g.link_exists("codes") || !g.link_exists("categories") {
        let encoding = text_attribute(g, "encoding-type")?.unwrap_or_default();
        return Err(format!(
            "obs column '{column}' is a group with encoding '{encoding}'; only categorical and text columns can be labels"
        ));
    }
    let categories = strings(&*dataset(g, "categories")?)?;
    let codes = numbers::<i64>(&*dataset(g, "codes")?, &path_of(g, "codes"))?;
    expect_names(codes.len(), cells.len(), &path_of(g, "codes"), "codes (one per cell)")?;
    codes
        .iter()
        .zip(cells)
        .map(|(&code, cell)| match usize::try_from(code).ok().and_then(|c| categories.get(c)) {
            Some(label) => Ok(label.clone()),
            None if code < 0 => Err(format!(
                "obs column '{column}' has no value for cell '{cell}'; drop the unlabelled cells or fill in their labels"
            )),
            None => Err(format!(
                "obs column '{column}': cell '{cell}' has code {code} but there are only {} categories",
                categories.len()
            )),
        })
        .collect()
}

fn plain_column(column_data: &hdf5::Dataset, column: &str) -> Checked<Vec<String>> {
    if column_data.attr_names().unwrap_or_default().iter().any(|a| a == "categories") {
        return Err(format!(
            "obs column '{column}' is a categorical in the AnnData 0.7 layout; re-save the file with anndata 0.8 or later"
        ));
    }
    match column_data.dtype().and_then(|t| t.to_descriptor()) {
        // Cluster numbers are labels too.
        Ok(TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) => {
            let numbers = numbers::<i64>(column_data, &format!("obs column '{column}'"))?;
            Ok(numbers.iter().map(i64::to_string).collect())
        }
        _ => strings(column_data).map_err(|e| format!("obs column '{column}': {e}")),
    }
}

fn group(parent: &Group, name: &str) -> Checked<Group> {
    if !parent.link_exists(name) {
        return Err(format!("no group {}", path_of(parent, name)));
    }
    parent.group(name).map_err(|e| format!("cannot open group {}: {}", path_of(parent, name), one_line(&e)))
}

fn dataset(parent: &Group, name: &str) -> Checked<hdf5::Dataset> {
    if !parent.link_exists(name) {
        return Err(format!("no dataset {}", path_of(parent, name)));
    }
    parent.dataset(name).map_err(|e| format!("cannot open dataset {}: {}", path_of(parent, name), one_line(&e)))
}

fn path_of(parent: &Group, name: &str) -> String {
    format!("'{}/{name}'", parent.name().trim_end_matches('/'))
}

/// Numbers converted by HDF5 to `T`, whatever width and signedness the file stores.
fn numbers<T: H5Type>(container: &Container, what: &str) -> Checked<Vec<T>> {
    container.read_raw::<T>().map_err(|e| format!("cannot read {what} as numbers: {}", one_line(&e)))
}

fn text_attribute(location: &Location, name: &str) -> Checked<Option<String>> {
    if !location.attr_names().unwrap_or_default().iter().any(|a| a == name) {
        return Ok(None);
    }
    let attr = location.attr(name).map_err(|e| format!("cannot open attribute '{name}': {}", one_line(&e)))?;
    let values = strings(&attr).map_err(|e| format!("attribute '{name}' of '{}': {e}", location.name()))?;
    Ok(values.into_iter().next())
}

/// Text in any of HDF5's four string types: AnnData writes variable-length UTF-8, CellRanger
/// fixed-length ASCII.
fn strings(container: &Container) -> Checked<Vec<String>> {
    let descriptor = container.dtype().and_then(|t| t.to_descriptor()).map_err(|e| one_line(&e))?;
    match descriptor {
        TypeDescriptor::VarLenUnicode => text::<VarLenUnicode>(container, VarLenUnicode::as_bytes),
        TypeDescriptor::VarLenAscii => text::<VarLenAscii>(container, VarLenAscii::as_bytes),
        TypeDescriptor::FixedAscii(n) => fixed_ascii(container, n),
        TypeDescriptor::FixedUnicode(n) => fixed_unicode(container, n),
        other => Err(format!("holds {other} values, not text")),
    }
}

// Fixed-length strings are read into the smallest of a few capacities that holds them, since
// the Rust types fix their length at compile time.
fn fixed_ascii(container: &Container, len: usize) -> Checked<Vec<String>> {
    match len {
        0..=16 => text::<FixedAscii<16>>(container, FixedAscii::as_bytes),
        17..=64 => text::<FixedAscii<64>>(container, FixedAscii::as_bytes),
        65..=256 => text::<FixedAscii<256>>(container, FixedAscii::as_bytes),
        257..=4096 => text::<FixedAscii<4096>>(container, FixedAscii::as_bytes),
        _ => Err(format!("holds strings of {len} bytes; at most 4096 are supported")),
    }
}

fn fixed_unicode(container: &Container, len: usize) -> Checked<Vec<String>> {
    match len {
        0..=16 => text::<FixedUnicode<16>>(container, FixedUnicode::as_bytes),
        17..=64 => text::<FixedUnicode<64>>(container, FixedUnicode::as_bytes),
        65..=256 => text::<FixedUnicode<256>>(container, FixedUnicode::as_bytes),
        257..=4096 => text::<FixedUnicode<4096>>(container, FixedUnicode::as_bytes),
        _ => Err(format!("holds strings of {len} bytes; at most 4096 are supported")),
    }
}

fn text<T: H5Type>(container: &Container, bytes: fn(&T) -> &[u8]) -> Checked<Vec<String>> {
    let values = container.read_raw::<T>().map_err(|e| format!("cannot read text: {}", one_line(&e)))?;
    // Lossy, because the ASCII types do not guarantee valid UTF-8 and names only need to match.
    Ok(values.iter().map(|v| String::from_utf8_lossy(bytes(v)).into_owned()).collect())
}

fn two_dimensions(shape: &[i64], what: &str) -> Checked<[usize; 2]> {
    match shape {
        &[a, b] if a >= 0 && b >= 0 => Ok([a as usize, b as usize]),
        _ => Err(format!("{what}: shape {shape:?} is not two non-negative dimensions")),
    }
}

fn expect_obs_var([n_obs, n_var]: [usize; 2], [n_rows, n_cols]: [usize; 2]) -> Checked<()> {
    expect_names(n_obs, n_rows, "'obs'", "cells (rows of X)")?;
    expect_names(n_var, n_cols, "'var'", "features (columns of X)")
}

fn expect_names(found: usize, expected: usize, source: &str, what: &str) -> Checked<()> {
    if found == expected {
        return Ok(());
    }
    Err(format!("{source} has {} entries but the matrix has {} {what}", thousands(found), thousands(expected)))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::scratch_dir;
    use super::super::{read_cell_labels, read_dataset};
    use super::*;
    use std::path::PathBuf;

    // Cells × features:
    //   c1 [1, 0, 2, 0]
    //   c2 [0, 0, 0, 3]
    //   c3 [4, 5, 0, 0]
    fn expected() -> CsrMatrix {
        CsrMatrix::try_new(3, 4, vec![0, 2, 3, 5], vec![0, 2, 3, 0, 1], vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap()
    }

    fn put<T: H5Type>(g: &Group, name: &str, values: &[T]) {
        g.new_dataset_builder().with_data(values).create(name).unwrap();
    }

    fn put_text(g: &Group, name: &str, values: &[&str]) {
        let values: Vec<VarLenUnicode> = values.iter().map(|v| v.parse().unwrap()).collect();
        put(g, name, &values);
    }

    fn put_fixed_text<const N: usize>(g: &Group, name: &str, values: &[&str]) {
        let values: Vec<FixedAscii<N>> = values.iter().map(|v| FixedAscii::from_ascii(v).unwrap()).collect();
        put(g, name, &values);
    }

    fn put_text_attribute(location: &Location, name: &str, value: &str) {
        let value: VarLenUnicode = value.parse().unwrap();
        location.new_attr::<VarLenUnicode>().shape(()).create(name).unwrap().write_scalar(&value).unwrap();
    }

    fn put_attribute<T: H5Type>(location: &Location, name: &str, values: &[T]) {
        location.new_attr_builder().with_data(values).create(name).unwrap();
    }

    fn put_compressed(g: &Group, indptr: &[i64], indices: &[i32], data: &[f32]) {
        put(g, "indptr", indptr);
        put(g, "indices", indices);
        put(g, "data", data);
    }

    fn tenx_v3(path: &Path) {
        let file = File::create(path).unwrap();
        let matrix = file.create_group("matrix").unwrap();
        put_compressed(&matrix, &[0, 2, 3, 5], &[0, 2, 3, 0, 1], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        put(&matrix, "shape", &[4i32, 3]);
        put_fixed_text::<8>(&matrix, "barcodes", &["c1", "c2", "c3"]);
        let features = matrix.create_group("features").unwrap();
        put_fixed_text::<8>(&features, "id", &["E1", "E2", "E3", "E4"]);
        put_fixed_text::<8>(&features, "name", &["g1", "g2", "g2", "g4"]);
    }

    #[derive(Clone, Copy)]
    enum Layout {
        Csr,
        Csc,
        Dense,
    }

    fn h5ad(path: &Path, layout: Layout) {
        let file = File::create(path).unwrap();
        match layout {
            Layout::Csr | Layout::Csc => {
                let x = file.create_group("X").unwrap();
                let encoding = if matches!(layout, Layout::Csr) { "csr_matrix" } else { "csc_matrix" };
                put_text_attribute(&x, "encoding-type", encoding);
                put_attribute(&x, "shape", &[3i64, 4]);
                if matches!(layout, Layout::Csr) {
                    put_compressed(&x, &[0, 2, 3, 5], &[0, 2, 3, 0, 1], &[1.0, 2.0, 3.0, 4.0, 5.0]);
                } else {
                    put_compressed(&x, &[0, 2, 3, 4, 5], &[0, 2, 2, 0, 1], &[1.0, 4.0, 5.0, 2.0, 3.0]);
                }
            }
            Layout::Dense => {
                let dense = ndarray::arr2(&[[1.0f64, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 3.0], [4.0, 5.0, 0.0, 0.0]]);
                file.new_dataset_builder().with_data(&dense).create("X").unwrap();
            }
        }
        let obs = file.create_group("obs").unwrap();
        put_text_attribute(&obs, "_index", "_index");
        put_text(&obs, "_index", &["c1", "c2", "c3"]);
        put_text(&obs, "batch", &["a", "b", "a"]);
        put(&obs, "cluster", &[0i32, 1, 1]);
        for (name, codes) in [("cell_type", [1i8, 0, 1]), ("partly_labelled", [0, -1, 0])] {
            let column = obs.create_group(name).unwrap();
            put_text_attribute(&column, "encoding-type", "categorical");
            put_text(&column, "categories", &["B", "T"]);
            put(&column, "codes", &codes);
        }
        let var = file.create_group("var").unwrap();
        put_text_attribute(&var, "_index", "gene_ids");
        put_text(&var, "gene_ids", &["g1", "g2", "g3", "g4"]);
    }

    fn fixture(name: &str, write: impl FnOnce(&Path)) -> PathBuf {
        let path = scratch_dir("h5").join(name);
        write(&path);
        path
    }

    #[test]
    fn tenx_h5_reads_as_cells_by_features() {
        let path = fixture("filtered_feature_bc_matrix.h5", tenx_v3);
        let dataset = read_dataset(&path).unwrap();
        assert_eq!(dataset.matrix, expected());
        assert_eq!(dataset.cells, ["c1", "c2", "c3"]);
        assert_eq!(dataset.features, ["g1", "g2", "g2.1", "g4"]);
    }

    #[test]
    fn cellranger_2_h5_reads_from_its_genome_group() {
        let path = fixture("v2.h5", |path| {
            let file = File::create(path).unwrap();
            let genome = file.create_group("GRCh38").unwrap();
            put_compressed(&genome, &[0, 2, 3, 5], &[0, 2, 3, 0, 1], &[1.0, 2.0, 3.0, 4.0, 5.0]);
            put(&genome, "shape", &[4i64, 3]);
            put_fixed_text::<20>(&genome, "barcodes", &["AAACCCAAGACAAGCC-1", "c2", "c3"]);
            put_text(&genome, "genes", &["E1", "E2", "E3", "E4"]);
            put_text(&genome, "gene_names", &["g1", "g2", "g3", "g4"]);
        });
        let dataset = read_dataset(&path).unwrap();
        assert_eq!(dataset.matrix, expected());
        assert_eq!(dataset.features, ["g1", "g2", "g3", "g4"]);
        assert_eq!(dataset.cells, ["AAACCCAAGACAAGCC-1", "c2", "c3"]);
    }

    #[test]
    fn h5ad_x_reads_the_same_as_csr_csc_and_dense() {
        for (name, layout) in [("csr.h5ad", Layout::Csr), ("csc.h5ad", Layout::Csc), ("dense.h5ad", Layout::Dense)] {
            let path = fixture(name, |p| h5ad(p, layout));
            let dataset = read_dataset(&path).unwrap();
            assert_eq!(dataset.matrix, expected(), "{name}");
            assert_eq!(dataset.cells, ["c1", "c2", "c3"]);
            assert_eq!(dataset.features, ["g1", "g2", "g3", "g4"]);
        }
    }

    #[test]
    fn obs_columns_give_labels_in_cell_order() {
        let path = fixture("labels.h5ad", |p| h5ad(p, Layout::Csr));
        let cells = ["c3", "c1", "c2"].map(String::from);
        assert_eq!(read_cell_labels(&path, "cell_type", &cells).unwrap(), ["T", "T", "B"]);
        assert_eq!(read_cell_labels(&path, "batch", &cells).unwrap(), ["a", "a", "b"]);
        assert_eq!(read_cell_labels(&path, "cluster", &cells).unwrap(), ["1", "0", "1"]);

        let err = read_cell_labels(&path, "partly_labelled", &cells).unwrap_err().to_string();
        assert!(err.contains("labels.h5ad: obs column 'partly_labelled' has no value for cell 'c2'"), "{err}");
        let err = read_cell_labels(&path, "celltype", &cells).unwrap_err().to_string();
        assert!(err.contains("obs has no column 'celltype'; its columns are: batch, cell_type, cluster"), "{err}");
        let err = read_cell_labels(&path, "cell_type", &["c4".to_string()]).unwrap_err().to_string();
        assert!(err.contains("1 of 1 cells have no row (the first is 'c4')"), "{err}");
    }

    #[test]
    fn files_of_the_wrong_kind_are_named() {
        let tenx = fixture("counts.h5", tenx_v3);
        let as_h5ad = tenx.with_extension("h5ad");
        std::fs::copy(&tenx, &as_h5ad).unwrap();
        let err = read_dataset(&as_h5ad).unwrap_err().to_string();
        assert!(err.ends_with("counts.h5ad: not an AnnData file: no 'obs'"), "{err}");

        let anndata = fixture("data.h5ad", |p| h5ad(p, Layout::Csr));
        let as_h5 = anndata.with_extension("h5");
        std::fs::copy(&anndata, &as_h5).unwrap();
        let err = read_dataset(&as_h5).unwrap_err().to_string();
        assert!(err.contains("data.h5: not a 10x HDF5 file: no group 'matrix'"), "{err}");

        let text = fixture("text.h5", |p| std::fs::write(p, "not hdf5").unwrap());
        let err = read_dataset(&text).unwrap_err().to_string();
        assert!(err.contains("text.h5: cannot be opened as HDF5") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn inconsistent_parts_are_refused() {
        let path = fixture("short.h5", |path| {
            tenx_v3(path);
            let file = File::open_rw(path).unwrap();
            let matrix = file.group("matrix").unwrap();
            matrix.unlink("barcodes").unwrap();
            put_text(&matrix, "barcodes", &["c1", "c2"]);
        });
        let err = read_dataset(&path).unwrap_err().to_string();
        assert!(err.contains("'/matrix/barcodes' has 2 entries but the matrix has 3 cells"), "{err}");

        let path = fixture("bad-index.h5ad", |path| {
            h5ad(path, Layout::Csc);
            let file = File::open_rw(path).unwrap();
            let x = file.group("X").unwrap();
            x.unlink("indices").unwrap();
            put(&x, "indices", &[0i32, 2, 7, 0, 1]);
        });
        let err = read_dataset(&path).unwrap_err().to_string();
        assert!(err.contains("bad-index.h5ad: cell index 7 is outside 0..3"), "{err}");

        let path = fixture("fewer-genes.h5ad", |path| {
            h5ad(path, Layout::Dense);
            let file = File::open_rw(path).unwrap();
            let var = file.group("var").unwrap();
            var.unlink("gene_ids").unwrap();
            put_text(&var, "gene_ids", &["g1", "g2", "g3"]);
        });
        let err = read_dataset(&path).unwrap_err().to_string();
        assert!(
            err.contains("fewer-genes.h5ad: 'var' has 3 entries but the matrix has 4 features (columns of X)"),
            "{err}"
        );
    }
}
