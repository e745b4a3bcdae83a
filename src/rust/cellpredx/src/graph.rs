//! The query's k-nearest-neighbour graph, on which the contrastive loss draws its positive pairs.
//!
//! Up to `EXACT_SEARCH_MAX_CELLS` cells the search is exact, chunked over query rows: each chunk
//! is one parallel pass over all cells, sized so that it takes well under a second, and progress
//! (with its chance to cancel) is reported between chunks. Exact search costs O(cells² × dims),
//! so above the cutoff the graph is built by NN-descent (Dong, Moses & Li 2011) instead, which
//! refines a random graph by comparing each cell's neighbours with one another until few lists
//! change. On 200,000 clustered cells in 50 dimensions with a PCA-like spectrum it finds 97% of
//! the true neighbours, all of them in the cell's own cluster: ample for drawing positive pairs.
//! Progress is reported after each of its iterations. Both searches keep memory at
//! O(cells × k) and give the same graph for the same input whatever the thread count.

use crate::error::{CellPredXError, Result};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::rng::SplitMix64;
use crate::runtime;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use std::cmp::Ordering;

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

/// A random walk with restart of per-cell values (cells × columns) over a neighbour graph
/// (cells × k): v ← restart · v₀ + (1 − restart) · mean of the neighbours' v, `steps` times. A
/// cell's result draws on its neighbourhood up to `steps` hops away, weighted (1 − restart)^hops.
/// With `weights` (cells × k, no row all zero) the mean weighs each neighbour by its weight.
pub fn diffuse(values: ArrayView2<'_, f32>, neighbours: &Array2<u32>, weights: Option<&Array2<f32>>, restart: f32, steps: usize) -> Array2<f32> {
    // Each neighbour's share of a step, fixed over the steps.
    let shares = match weights {
        Some(w) => {
            let mut shares = w.clone();
            for mut row in shares.rows_mut() {
                let total = row.sum();
                row.mapv_inplace(|weight| (1.0 - restart) * weight / total);
            }
            shares
        }
        None => Array2::from_elem(neighbours.dim(), (1.0 - restart) / neighbours.ncols() as f32),
    };
    let mut current = values.to_owned();
    for _ in 0..steps {
        let mut next = values.to_owned() * restart;
        for ((mut out, around), share) in next.axis_iter_mut(Axis(0)).zip(neighbours.axis_iter(Axis(0))).zip(shares.rows()) {
            for (&j, &s) in around.iter().zip(share) {
                out.scaled_add(s, &current.row(j as usize));
            }
        }
        current = next;
    }
    current
}

/// Largest query searched exactly: at 50 dimensions the exact search of this many cells took
/// 7 s on two cores that another job was also using, so it stays within about ten seconds on a
/// busy two-core machine; the time grows with the square of the cells beyond it.
pub const EXACT_SEARCH_MAX_CELLS: usize = 25_000;

/// NN-descent's seed inside `knn_graph`, so that the graph of a given embedding is reproducible.
const APPROXIMATE_SEARCH_SEED: u64 = 0;

/// Distance evaluations per chunk: about a tenth of a second of work on one core.
const WORK_PER_CHUNK: usize = 50_000_000;

const STAGE: &str = "neighbour graph";

/// Each cell's `k` nearest other cells, nearest first, exactly for up to
/// `EXACT_SEARCH_MAX_CELLS` cells and by NN-descent above.
pub fn knn_graph(
    points: ArrayView2<'_, f32>,
    k: usize,
    metric: Metric,
    progress: &mut dyn ProgressSink,
) -> Result<KnnGraph> {
    if points.nrows() <= EXACT_SEARCH_MAX_CELLS {
        exact_knn_graph(points, k, metric, progress)
    } else {
        knn_graph_approximate(points, k, metric, APPROXIMATE_SEARCH_SEED, progress)
    }
}

fn exact_knn_graph(
    points: ArrayView2<'_, f32>,
    k: usize,
    metric: Metric,
    progress: &mut dyn ProgressSink,
) -> Result<KnnGraph> {
    let prepared = prepare(points, k, metric)?;
    let (n, dims) = prepared.dim();
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
        progress.report(&ProgressEvent { stage: STAGE, done, total: n, metrics: &[] })?;
    }
    into_graph(n, k, neighbours, distances)
}

/// Checks the arguments and returns the points as the metric compares them: rows contiguous,
/// and for cosine scaled to unit length so that one minus a dot product is the distance.
fn prepare(points: ArrayView2<'_, f32>, k: usize, metric: Metric) -> Result<Array2<f32>> {
    let n = points.nrows();
    if k == 0 || k >= n {
        return Err(CellPredXError::invalid(format!(
            "k = {k} neighbours need between 1 and cells - 1 = {}",
            n.saturating_sub(1)
        )));
    }
    if points.iter().any(|v| !v.is_finite()) {
        return Err(CellPredXError::invalid("the embedding for the neighbour graph has non-finite values"));
    }
    Ok(match metric {
        Metric::Manhattan => points.as_standard_layout().into_owned(),
        Metric::Cosine => unit_rows(points),
    })
}

fn into_graph(n: usize, k: usize, neighbours: Vec<u32>, distances: Vec<f32>) -> Result<KnnGraph> {
    let shape_error = |_| CellPredXError::invalid(format!("neighbour graph of {n} cells × {k} has the wrong size"));
    let neighbours = Array2::from_shape_vec((n, k), neighbours).map_err(shape_error)?;
    let distances = Array2::from_shape_vec((n, k), distances).map_err(shape_error)?;
    Ok(KnnGraph { neighbours, distances })
}

/// Fills `candidates` with (distance, cell) for every other cell, its first `k` entries being
/// the nearest in order (ties broken by cell index, so results do not depend on threads).
fn nearest(points: &Array2<f32>, cell: usize, k: usize, metric: Metric, candidates: &mut Vec<(f32, u32)>) {
    let query = row(points, cell);
    candidates.clear();
    for other in 0..points.nrows() {
        if other != cell {
            candidates.push((distance(metric, query, row(points, other)), other as u32));
        }
    }
    let order = |a: &(f32, u32), b: &(f32, u32)| closer_first(*a, *b);
    candidates.select_nth_unstable_by(k - 1, order);
    candidates[..k].sort_unstable_by(order);
}

/// The neighbour order of both searches: by distance, then by cell index.
fn closer_first(a: (f32, u32), b: (f32, u32)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

fn row(points: &Array2<f32>, cell: usize) -> &[f32] {
    points.row(cell).to_slice().expect("prepared points have contiguous rows")
}

/// Lanes of independent partial sums: one running sum would force the additions into sequence,
/// eight let the compiler use vector instructions.
const LANES: usize = 8;

fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Manhattan => lane_sum(a, b, |x, y| (x - y).abs()),
        Metric::Cosine => 1.0 - lane_sum(a, b, |x, y| x * y),
    }
}

fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(&x, &y)| term(x, y)).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            lanes[lane] += term(x[lane], y[lane]);
        }
    }
    lanes.iter().sum::<f32>() + tail
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

/// A safety bound on NN-descent iterations: the convergence test normally ends the descent first
/// (200,000 clustered cells took 14 to 16 iterations with lists k wide, fewer with wider lists).
const MAX_ITERATIONS: usize = 20;

/// NN-descent stops once an iteration changes fewer than this fraction of all list entries.
const CONVERGENCE_FRACTION: f64 = 0.001;

/// NN-descent keeps this many times k neighbours per cell and returns the nearest k: wider lists
/// give the local joins more paths to the true neighbours. On 50,000 clustered cells in 50
/// dimensions this lifts recall from 0.90 to 0.99 for about twice the time.
const SEARCH_WIDTH: usize = 2;

/// ρ: each cell's new and old candidates hold up to ρ·width of its forward and as many of its
/// reverse neighbours. The local join costs O((ρ·width)²) distances per cell; on 50,000
/// clustered cells 0.5 lost 0.02 of recall, and 1 gained 0.006 for a quarter more time.
const SAMPLE_RATE: f64 = 0.75;

/// Cells whose local joins run in parallel before their updates are applied: small enough that
/// later blocks compare against lists already improved by earlier ones, large enough to keep
/// all threads busy.
const JOIN_BLOCK: usize = 2048;

/// The k-nearest-neighbour graph by NN-descent (Dong, Moses & Li 2011) from a random start drawn
/// with `seed`: same output convention as `knn_graph`, the same graph for the same seed whatever
/// the thread count, and most but not necessarily all neighbours exact.
pub fn knn_graph_approximate(
    points: ArrayView2<'_, f32>,
    k: usize,
    metric: Metric,
    seed: u64,
    progress: &mut dyn ProgressSink,
) -> Result<KnnGraph> {
    let prepared = prepare(points, k, metric)?;
    let n = prepared.nrows();
    let width = (SEARCH_WIDTH * k).min(n - 1);
    let mut rng = SplitMix64::new(seed);
    let mut lists = NeighbourLists::random(&prepared, width, metric, &mut rng);
    let per_direction = ((SAMPLE_RATE * width as f64).ceil() as usize).max(1);
    let enough_changes = (CONVERGENCE_FRACTION * (n * width) as f64).ceil() as usize;
    for iteration in 1..=MAX_ITERATIONS {
        let (new, old) = lists.sample_candidates(per_direction, &mut rng);
        let changes = runtime::in_pool(|| local_joins(&prepared, metric, &mut lists, &new, &old));
        progress.report(&ProgressEvent { stage: STAGE, done: iteration, total: MAX_ITERATIONS, metrics: &[] })?;
        if changes < enough_changes {
            break;
        }
    }
    lists.into_graph(k)
}

/// Each cell's current `width` best neighbours, nearest first, each flagged while it is new: not yet
/// joined with the cell's other neighbours.
struct NeighbourLists {
    width: usize,
    ids: Vec<u32>,
    distances: Vec<f32>,
    is_new: Vec<bool>,
}

impl NeighbourLists {
    fn random(points: &Array2<f32>, width: usize, metric: Metric, rng: &mut SplitMix64) -> Self {
        let n = points.nrows();
        let mut ids = Vec::with_capacity(n * width);
        for cell in 0..n {
            let start = ids.len();
            while ids.len() < start + width {
                let other = rng.below(n) as u32;
                if other as usize != cell && !ids[start..].contains(&other) {
                    ids.push(other);
                }
            }
        }
        let mut distances = vec![0f32; n * width];
        runtime::in_pool(|| {
            ids.par_chunks_mut(width).zip(distances.par_chunks_mut(width)).enumerate().for_each(|(cell, (ids, dists))| {
                let query = row(points, cell);
                let mut entries: Vec<(f32, u32)> =
                    ids.iter().map(|&other| (distance(metric, query, row(points, other as usize)), other)).collect();
                entries.sort_unstable_by(|a, b| closer_first(*a, *b));
                for (j, (d, other)) in entries.into_iter().enumerate() {
                    dists[j] = d;
                    ids[j] = other;
                }
            })
        });
        NeighbourLists { width, ids, distances, is_new: vec![true; n * width] }
    }

    /// The graph of each cell's `k` nearest entries.
    fn into_graph(self, k: usize) -> Result<KnnGraph> {
        fn first_columns<T: Copy>(values: &[T], width: usize, k: usize) -> Vec<T> {
            values.chunks(width).flat_map(|row| row[..k].iter().copied()).collect()
        }
        let neighbours = first_columns(&self.ids, self.width, k);
        let distances = first_columns(&self.distances, self.width, k);
        into_graph(self.cells(), k, neighbours, distances)
    }

    fn cells(&self) -> usize {
        self.ids.len() / self.width
    }

    fn worst_distance(&self, cell: usize) -> f32 {
        self.distances[cell * self.width + self.width - 1]
    }

    /// Puts `other` into `cell`'s list if it is nearer than the worst entry and not there yet.
    fn insert(&mut self, cell: usize, other: u32, d: f32) -> bool {
        let span = cell * self.width..(cell + 1) * self.width;
        let (ids, distances) = (&mut self.ids[span.clone()], &mut self.distances[span.clone()]);
        let last = self.width - 1;
        if closer_first((d, other), (distances[last], ids[last])) != Ordering::Less || ids.contains(&other) {
            return false;
        }
        let position = (0..last)
            .find(|&j| closer_first((d, other), (distances[j], ids[j])) == Ordering::Less)
            .unwrap_or(last);
        let is_new = &mut self.is_new[span];
        ids.copy_within(position..last, position + 1);
        distances.copy_within(position..last, position + 1);
        is_new.copy_within(position..last, position + 1);
        ids[position] = other;
        distances[position] = d;
        is_new[position] = true;
        true
    }

    /// Each cell's new and old candidates, forward and reverse. New entries drawn as candidates
    /// become old: after this iteration's join they have been compared with the cell's other
    /// candidates, and joining them again would find nothing new.
    fn sample_candidates(&mut self, per_direction: usize, rng: &mut SplitMix64) -> (Candidates, Candidates) {
        let n = self.cells();
        let mut new = Candidates::empty(n, per_direction);
        let mut old = Candidates::empty(n, per_direction);
        for cell in 0..n {
            for slot in cell * self.width..(cell + 1) * self.width {
                let other = self.ids[slot];
                let priority = rng.next_u64();
                let candidates = if self.is_new[slot] { &mut new } else { &mut old };
                candidates.offer(cell, other, Direction::Forward, priority);
                candidates.offer(other as usize, cell as u32, Direction::Reverse, priority);
            }
        }
        for cell in 0..n {
            let drawn: Vec<u32> = new.of(cell).collect();
            for slot in cell * self.width..(cell + 1) * self.width {
                if self.is_new[slot] && drawn.contains(&self.ids[slot]) {
                    self.is_new[slot] = false;
                }
            }
        }
        (new, old)
    }
}

/// Each cell's candidates in two fixed-size halves, forward (its own neighbours) and reverse
/// (cells that list it), each keeping of the cells offered those of lowest random priority: a
/// uniform sample of ρk per direction, as in the paper, bounded in memory however many reverse
/// neighbours a cell has. A cell offered twice is kept once.
struct Candidates {
    per_direction: usize,
    ids: Vec<u32>,
    priorities: Vec<u64>,
}

#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Reverse,
}

impl Candidates {
    const EMPTY: u32 = u32::MAX;

    fn empty(n: usize, per_direction: usize) -> Self {
        let slots = n * 2 * per_direction;
        Candidates { per_direction, ids: vec![Self::EMPTY; slots], priorities: vec![u64::MAX; slots] }
    }

    fn offer(&mut self, cell: usize, other: u32, direction: Direction, priority: u64) {
        let row = cell * 2 * self.per_direction;
        if self.ids[row..row + 2 * self.per_direction].contains(&other) {
            return;
        }
        let half = match direction {
            Direction::Forward => row..row + self.per_direction,
            Direction::Reverse => row + self.per_direction..row + 2 * self.per_direction,
        };
        let (ids, priorities) = (&mut self.ids[half.clone()], &mut self.priorities[half]);
        let slot = (0..ids.len()).max_by_key(|&j| priorities[j]).expect("ρk is at least 1");
        if priority < priorities[slot] {
            ids[slot] = other;
            priorities[slot] = priority;
        }
    }

    fn of(&self, cell: usize) -> impl Iterator<Item = u32> + '_ {
        let row = cell * 2 * self.per_direction;
        self.ids[row..row + 2 * self.per_direction].iter().copied().filter(|&id| id != Self::EMPTY)
    }
}

/// One iteration of local joins: every pair of a cell's candidates with at least one new member
/// is compared, and each may enter the other's list. Distances are computed in parallel against
/// lists frozen for the block; updates are then applied in cell order, so the outcome does not
/// depend on the number of threads. Returns how many list entries changed.
fn local_joins(
    points: &Array2<f32>,
    metric: Metric,
    lists: &mut NeighbourLists,
    new: &Candidates,
    old: &Candidates,
) -> usize {
    let n = lists.cells();
    let mut changes = 0;
    for block_start in (0..n).step_by(JOIN_BLOCK) {
        let block = block_start..(block_start + JOIN_BLOCK).min(n);
        let frozen = &*lists;
        let updates: Vec<Vec<(u32, u32, f32)>> = block
            .into_par_iter()
            .map(|cell| {
                let (new, old): (Vec<u32>, Vec<u32>) = (new.of(cell).collect(), old.of(cell).collect());
                join_updates(points, metric, frozen, &new, &old)
            })
            .collect();
        for (a, b, d) in updates.into_iter().flatten() {
            changes += lists.insert(a as usize, b, d) as usize + lists.insert(b as usize, a, d) as usize;
        }
    }
    changes
}

/// The pairs among one cell's candidates that would enter at least one of the two lists.
fn join_updates(
    points: &Array2<f32>,
    metric: Metric,
    lists: &NeighbourLists,
    new: &[u32],
    old: &[u32],
) -> Vec<(u32, u32, f32)> {
    let mut updates = Vec::new();
    for (i, &a) in new.iter().enumerate() {
        for &b in new[i + 1..].iter().chain(old) {
            // A cell can be a new candidate through one list and an old one through another.
            if a == b {
                continue;
            }
            let d = distance(metric, row(points, a as usize), row(points, b as usize));
            if d <= lists.worst_distance(a as usize) || d <= lists.worst_distance(b as usize) {
                updates.push((a, b, d));
            }
        }
    }
    updates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CellPredXError;
    use crate::progress::Silent;
    use ndarray::array;
    use std::collections::HashSet;

    #[test]
    fn diffusion_follows_the_restart_rule() {
        // Three cells, each the neighbour of the other two; two columns diffuse independently.
        let neighbours = array![[1u32, 2], [0, 2], [0, 1]];
        let start = array![[3f32, 1.0], [0.0, 1.0], [0.0, 1.0]];
        let mut expected = start.clone();
        for _ in 0..4 {
            let previous = expected.clone();
            for i in 0..3 {
                for c in 0..2 {
                    let others: f32 = (0..3).filter(|&j| j != i).map(|j| previous[[j, c]]).sum::<f32>() / 2.0;
                    expected[[i, c]] = 0.2 * start[[i, c]] + 0.8 * others;
                }
            }
        }
        let got = diffuse(start.view(), &neighbours, None, 0.2, 4);
        assert!(got.iter().zip(expected.iter()).all(|(g, e)| (g - e).abs() < 1e-6), "{got:?} vs {expected:?}");
        // Mass is conserved on a regular graph, a constant column stays constant, the high cell stays highest.
        assert!((got.column(0).sum() - 3.0).abs() < 1e-5 && got.column(1).iter().all(|&v| (v - 1.0).abs() < 1e-6));
        assert!(got[[0, 0]] > got[[1, 0]] && (got[[1, 0]] - got[[2, 0]]).abs() < 1e-6);
        assert_eq!(diffuse(start.view(), &neighbours, None, 0.2, 0), start);
        // Equal weights are the plain mean; cell 0 weighing cell 1 three times cell 2 moves toward it.
        assert_eq!(diffuse(start.view(), &neighbours, Some(&Array2::from_elem((3, 2), 0.5)), 0.2, 4), got);
        let weights = array![[3f32, 1.0], [1.0, 1.0], [1.0, 1.0]];
        let one_step = diffuse(array![[0f32], [4.0], [0.0]].view(), &neighbours, Some(&weights), 0.5, 1);
        assert_eq!(one_step, array![[0.5 * 0.75 * 4.0], [0.5 * 4.0], [0.5 * 0.5 * 4.0]]);
    }

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

    /// Gaussian clusters of unit spread around centres spread ten times wider; dimension j is
    /// scaled by `decay`^j, so that below 1 the variance falls off like a PCA embedding's.
    fn clustered(cells: usize, dims: usize, clusters: usize, decay: f32, seed: u64) -> Array2<f32> {
        let mut rng = SplitMix64::new(seed);
        let centres = Array2::from_shape_fn((clusters, dims), |_| 10.0 * rng.normal() as f32);
        Array2::from_shape_fn((cells, dims), |(cell, dim)| {
            (centres[[cell % clusters, dim]] + rng.normal() as f32) * decay.powi(dim as i32)
        })
    }

    fn recall(approximate: &KnnGraph, exact: &KnnGraph) -> f64 {
        let found: usize = approximate
            .neighbours
            .outer_iter()
            .zip(exact.neighbours.outer_iter())
            .map(|(a, e)| {
                let truth: HashSet<u32> = e.iter().copied().collect();
                a.iter().filter(|id| truth.contains(id)).count()
            })
            .sum();
        found as f64 / exact.neighbours.len() as f64
    }

    #[test]
    fn nn_descent_finds_nearly_all_true_neighbours() {
        let points = clustered(4000, 50, 20, 1.0, 1);
        for metric in [Metric::Manhattan, Metric::Cosine] {
            let exact = exact_knn_graph(points.view(), 10, metric, &mut Silent).unwrap();
            let approximate = knn_graph_approximate(points.view(), 10, metric, 3, &mut Silent).unwrap();
            let recall = recall(&approximate, &exact);
            println!("{metric:?}: recall {recall:.4}");
            assert!(recall >= 0.95, "{metric:?}: recall {recall}");
        }
    }

    #[test]
    fn nn_descent_rows_are_sorted_distinct_other_cells_with_their_distances() {
        let points = clustered(1500, 20, 8, 1.0, 2);
        let g = knn_graph_approximate(points.view(), 10, Metric::Cosine, 5, &mut Silent).unwrap();
        let prepared = unit_rows(points.view());
        for (cell, (ids, dists)) in g.neighbours.outer_iter().zip(g.distances.outer_iter()).enumerate() {
            let distinct: HashSet<u32> = ids.iter().copied().collect();
            assert_eq!(distinct.len(), ids.len(), "cell {cell}: {ids}");
            assert!(!distinct.contains(&(cell as u32)), "cell {cell} is its own neighbour");
            for j in 0..ids.len() {
                assert_eq!(dists[j], distance(Metric::Cosine, row(&prepared, cell), row(&prepared, ids[j] as usize)));
                if j > 0 {
                    assert_eq!(closer_first((dists[j - 1], ids[j - 1]), (dists[j], ids[j])), Ordering::Less);
                }
            }
        }
    }

    #[test]
    fn nn_descent_depends_on_the_seed_only() {
        let points = clustered(3000, 30, 10, 1.0, 4);
        let threads = runtime::threads();
        runtime::set_threads(1).unwrap();
        let one_thread = knn_graph_approximate(points.view(), 10, Metric::Manhattan, 9, &mut Silent);
        runtime::set_threads(2).unwrap();
        let two_threads = knn_graph_approximate(points.view(), 10, Metric::Manhattan, 9, &mut Silent);
        let again = knn_graph_approximate(points.view(), 10, Metric::Manhattan, 9, &mut Silent);
        runtime::set_threads(threads).unwrap();
        assert_eq!(one_thread.unwrap(), two_threads.as_ref().unwrap().clone());
        assert_eq!(two_threads.unwrap(), again.unwrap());
    }

    #[test]
    fn a_sink_error_stops_nn_descent_after_one_iteration() {
        let points = clustered(2000, 10, 5, 1.0, 6);
        let mut sink = StopAfter { reports: 0 };
        let err = knn_graph_approximate(points.view(), 5, Metric::Manhattan, 0, &mut sink).unwrap_err();
        assert!(matches!(err, CellPredXError::Interrupted));
        assert_eq!(sink.reports, 1);
    }

    #[test]
    fn nn_descent_explains_bad_arguments() {
        let points = Array2::<f32>::zeros((3, 2));
        let err = knn_graph_approximate(points.view(), 0, Metric::Cosine, 0, &mut Silent).unwrap_err();
        assert_eq!(err.to_string(), "k = 0 neighbours need between 1 and cells - 1 = 2");
    }

    #[test]
    fn knn_graph_searches_exactly_up_to_the_cutoff() {
        let points = clustered(3000, 50, 20, 1.0, 7);
        let chosen = knn_graph(points.view(), 10, Metric::Manhattan, &mut Silent).unwrap();
        assert_eq!(chosen, exact_knn_graph(points.view(), 10, Metric::Manhattan, &mut Silent).unwrap());
        assert!(points.nrows() <= EXACT_SEARCH_MAX_CELLS);
    }

    /// Run with `--ignored --nocapture` in release: the figures behind `EXACT_SEARCH_MAX_CELLS`
    /// and the time and quality of 200,000-cell graphs, on isotropic clusters (the hardest case
    /// for NN-descent) and on clusters with a PCA-like falling spectrum.
    #[test]
    #[ignore]
    fn timing_of_both_searches() {
        let exact_points = clustered(EXACT_SEARCH_MAX_CELLS, 50, 20, 1.0, 8);
        let start = std::time::Instant::now();
        exact_knn_graph(exact_points.view(), 10, Metric::Manhattan, &mut Silent).unwrap();
        let seconds = start.elapsed().as_secs_f64();
        let cells = exact_points.nrows();
        println!("exact search, {cells} cells × 50 dims, {} threads: {seconds:.1} s", runtime::threads());
        for decay in [1.0, 0.93] {
            let points = clustered(200_000, 50, 20, decay, 8);
            let start = std::time::Instant::now();
            let graph = knn_graph(points.view(), 10, Metric::Manhattan, &mut Silent).unwrap();
            let seconds = start.elapsed().as_secs_f64();
            let (recall, same_cluster) = sampled_quality(&points, &graph, 20);
            println!(
                "knn_graph, 200,000 cells × 50 dims, decay {decay}, {} threads: {seconds:.1} s, \
                 recall {recall:.3} and same-cluster neighbours {same_cluster:.3} on 200 cells",
                runtime::threads()
            );
        }
    }

    /// Recall against the exact search and the fraction of neighbours from the cell's own
    /// cluster, on every thousandth cell.
    fn sampled_quality(points: &Array2<f32>, graph: &KnnGraph, clusters: usize) -> (f64, f64) {
        let sample: Vec<usize> = (0..points.nrows()).step_by(1000).collect();
        let k = graph.neighbours.ncols();
        let mut candidates = Vec::new();
        let (mut found, mut same_cluster) = (0, 0);
        for &cell in &sample {
            let row = graph.neighbours.row(cell);
            nearest(points, cell, k, Metric::Manhattan, &mut candidates);
            found += candidates[..k].iter().filter(|(_, id)| row.iter().any(|n| n == id)).count();
            same_cluster += row.iter().filter(|&&n| n as usize % clusters == cell % clusters).count();
        }
        let total = (k * sample.len()) as f64;
        (found as f64 / total, same_cluster as f64 / total)
    }
}
