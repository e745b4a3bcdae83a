//! Datasets read from disk by the core (MatrixMarket directories, 10x .h5, AnnData .h5ad), for
//! R/read-data.R.

use crate::convert::{csr_to_r, strings_from_r};
use crate::errors::{guard, r_err};
use cellpredx::io;
use extendr_api::prelude::*;
use std::path::Path;

/// The dataset at `path`: its matrix (the slots of a features x cells dgCMatrix), feature names
/// and cell names.
#[extendr]
fn read_dataset_(path: &str) -> extendr_api::Result<List> {
    guard("read_dataset_", || {
        let dataset = io::read_dataset(Path::new(path)).map_err(r_err)?;
        Ok(list!(matrix = csr_to_r(&dataset.matrix)?, features = dataset.features, cells = dataset.cells))
    })
}

/// Column `column` of the cell metadata at `path` (a metadata.tsv, a dataset directory or an
/// .h5ad's obs), in the order of `cells`.
#[extendr]
fn read_cell_labels_(path: &str, column: &str, cells: Strings) -> extendr_api::Result<Vec<String>> {
    guard("read_cell_labels_", || io::read_cell_labels(Path::new(path), column, &strings_from_r(&cells)).map_err(r_err))
}

extendr_module! {
    mod read_data;
    fn read_dataset_;
    fn read_cell_labels_;
}
