//! The query's k-nearest-neighbour graph, on which the contrastive loss draws its positive pairs.
//!
//! Exact search, chunked over query rows: each chunk is one parallel pass over all cells, sized
//! so that it takes well under a second, and progress (with its chance to cancel) is reported
//! between chunks. Memory stays at O(cells × k) plus one distance row per thread.

use crate::error::{CellPredXError, Result};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::runtime;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Sum of absolute differences, as the authors' code uses.
    Manhattan,
    /// One minus the cosine similarity.
    Cosine,
}

impl std::str::FromStr for Metric {
    type Err = CellPredXError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "manhattan" => Ok(Metric::Manhattan),
            "cosine" => Ok(Metric::Cosine),
            other => Err(CellPredXError::invalid(format!(
                "metric must be \"manhattan\" or \"cosine\", not \"{other}\""
            ))),
        }
    }
}

/// Each cell's `k` nearest other cells, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnGraph {
    pub neighbours: Array2<u32>,
    pub distances: Array2<f32>,
}

/// Distance evaluations per chunk: about a tenth of a second of work on one core.
const WORK_PER_CHUNK: usize = 50_000_000;

pub fn knn_graph(
    points: ArrayView2<'_, f32>,
    k: usize,
    metric: Metric,
    progress: &mut dyn ProgressSink,
) -> Result<KnnGraph> {
    let (n, dims) = points.dim();
    if k == 0 || k >= n {
        return Err(CellPredXError::invalid(format!(
            "k = {k} neighbours need between 1 and cells - 1 = {}",
            n.saturating_sub(1)
        )));
    }
    if points.iter().any(|v| !v.is_finite()) {
        return Err(CellPredXError::invalid("the embedding for the neighbour graph has non-finite values"));
    }
    let prepared = match metric {
        Metric::Manhattan => points.as_standard_layout().into_owned(),
        Metric::Cosine => unit_rows(points),
    };
    let mut neighbours = vec![0u32; n * k];
    let mut distances = vec![0f32; n * k];
    let chunk = (WORK_PER_CHUNK / (n * dims.max(1))).clamp(1, 4096);
    let mut done = 0;
    for (nb_chunk, dist_chunk) in neighbours.chunks_mut(chunk * k).zip(distances.chunks_mut(chunk * k)) {
        let first = done;
        let rows = nb_chunk.len() / k;
        runtime::in_pool(|| {
            nb_chunk
                .par_chunks_mut(k)
                .zip(dist_chunk.par_chunks_mut(k))
                .enumerate()
                .for_each_init(
                    || Vec::with_capacity(n),
                    |candidates, (offset, (nb_row, dist_row))| {
                        nearest(&prepared, first + offset, k, metric, candidates);
                        for (j, &(d, idx)) in candidates[..k].iter().enumerate() {
                            nb_row[j] = idx;
                            dist_row[j] = d;
                        }
                    },
                )
        });
        done += rows;
        progress.report(&ProgressEvent { stage: "neighbour graph", done, total: n, metrics: &[] })?;
    }
    let shape_error = |_| CellPredXError::invalid("neighbour graph shape");
    let neighbours = Array2::from_shape_vec((n, k), neighbours).map_err(shape_error)?;
    let distances = Array2::from_shape_vec((n, k), distances).map_err(shape_error)?;
    Ok(KnnGraph { neighbours, distances })
}

/// Fills `candidates` with (distance, cell) for every other cell, its first `k` entries being
/// the nearest in order (ties broken by cell index, so results do not depend on threads).
fn nearest(points: &Array2<f32>, cell: usize, k: usize, metric: Metric, candidates: &mut Vec<(f32, u32)>) {
    let query = points.row(cell);
    let query = query.as_slice().expect("standard layout");
    candidates.clear();
    for (other, row) in points.axis_iter(Axis(0)).enumerate() {
        if other == cell {
            continue;
        }
        let row = row.as_slice().expect("standard layout");
        let d = match metric {
            Metric::Manhattan => query.iter().zip(row).map(|(a, b)| (a - b).abs()).sum::<f32>(),
            Metric::Cosine => 1.0 - query.iter().zip(row).map(|(a, b)| a * b).sum::<f32>(),
        };
        candidates.push((d, other as u32));
    }
    let order = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    candidates.select_nth_unstable_by(k - 1, order);
    candidates[..k].sort_unstable_by(order);
}

fn unit_rows(points: ArrayView2<'_, f32>) -> Array2<f32> {
    let mut out = points.as_standard_layout().into_owned();
    for mut row in out.axis_iter_mut(Axis(0)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.mapv_inplace(|v| v / norm);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CellPredXError;
    use crate::progress::Silent;
    use ndarray::array;

    #[test]
    fn neighbours_on_a_line_are_the_adjacent_points() {
        let points = array![[0.0f32], [1.0], [3.0], [7.0]];
        let g = knn_graph(points.view(), 2, Metric::Manhattan, &mut Silent).unwrap();
        assert_eq!(g.neighbours, array![[1u32, 2], [0, 2], [1, 0], [2, 1]]);
        assert_eq!(g.distances, array![[1.0f32, 3.0], [1.0, 2.0], [2.0, 3.0], [4.0, 6.0]]);
    }

    #[test]
    fn manhattan_and_cosine_differ_where_they_should() {
        // Cell 1 points the same way as cell 0 but is far; cell 2 is near but at an angle.
        let points = array![[1.0f32, 0.0], [10.0, 0.0], [1.0, 1.0]];
        let manhattan = knn_graph(points.view(), 1, Metric::Manhattan, &mut Silent).unwrap();
        let cosine = knn_graph(points.view(), 1, Metric::Cosine, &mut Silent).unwrap();
        assert_eq!(manhattan.neighbours[[0, 0]], 2);
        assert_eq!(cosine.neighbours[[0, 0]], 1);
        assert!(cosine.distances[[0, 0]].abs() < 1e-6);
    }

    #[test]
    fn ties_break_by_cell_index_and_never_include_self() {
        let points = Array2::<f32>::zeros((6, 3));
        let g = knn_graph(points.view(), 3, Metric::Manhattan, &mut Silent).unwrap();
        assert_eq!(g.neighbours.row(0).to_vec(), vec![1, 2, 3]);
        assert_eq!(g.neighbours.row(2).to_vec(), vec![0, 1, 3]);
    }

    #[test]
    fn bad_arguments_are_explained() {
        let points = Array2::<f32>::zeros((3, 2));
        let err = knn_graph(points.view(), 3, Metric::Manhattan, &mut Silent).unwrap_err();
        assert_eq!(err.to_string(), "k = 3 neighbours need between 1 and cells - 1 = 2");
        let mut bad = points.clone();
        bad[[1, 1]] = f32::NAN;
        assert!(knn_graph(bad.view(), 1, Metric::Cosine, &mut Silent).is_err());
        assert!("euclid".parse::<Metric>().is_err());
    }

    struct StopAfter {
        reports: usize,
    }
    impl ProgressSink for StopAfter {
        fn report(&mut self, event: &ProgressEvent<'_>) -> Result<()> {
            self.reports += 1;
            assert!(event.done <= event.total);
            Err(CellPredXError::Interrupted)
        }
    }

    #[test]
    fn a_sink_error_stops_the_search_after_one_chunk() {
        // 3,000 cells × 10,000 dimensions make chunks of one or two cells.
        let points = Array2::<f32>::from_shape_fn((3000, 10_000), |(i, j)| ((i * 31 + j) % 17) as f32);
        let mut sink = StopAfter { reports: 0 };
        let err = knn_graph(points.view(), 5, Metric::Manhattan, &mut sink).unwrap_err();
        assert!(matches!(err, CellPredXError::Interrupted));
        assert_eq!(sink.reports, 1);
    }
}
