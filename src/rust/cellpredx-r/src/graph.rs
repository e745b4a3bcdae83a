//! The query neighbour graph.

use crate::errors::{guard, r_err};
use crate::progress::RProgress;
use cellpredx::graph::{knn_graph, Metric};
use extendr_api::prelude::*;
use ndarray::Array2;

/// Each cell's `k` nearest neighbours in a cells x dimensions embedding: a list of a 1-based
/// cells x k index matrix and the matching distances.
#[extendr]
fn knn_graph_(embedding: RMatrix<f64>, k: i32, metric: &str, progress: Nullable<Function>) -> extendr_api::Result<List> {
    guard("knn_graph_", || {
        let (cells, dims) = (embedding.nrows(), embedding.ncols());
        let data = embedding.data();
        let points = Array2::from_shape_fn((cells, dims), |(i, j)| data[j * cells + i] as f32);
        let metric: Metric = metric.parse().map_err(r_err)?;
        let k = usize::try_from(k).map_err(|_| crate::errors::invalid(format!("k must be positive, not {k}")))?;
        let graph = knn_graph(points.view(), k, metric, &mut RProgress::new(progress)).map_err(r_err)?;
        let neighbours = RMatrix::new_matrix(cells, k, |i, j| graph.neighbours[[i, j]] as i32 + 1);
        let distances = RMatrix::new_matrix(cells, k, |i, j| graph.distances[[i, j]] as f64);
        Ok(list!(neighbours = neighbours, distances = distances))
    })
}

extendr_module! {
    mod graph;
    fn knn_graph_;
}
