//! Prediction (METHOD.md, "Prediction"): the query alone through the frozen encoder and
//! classifier, in chunks of cells, so that memory grows with the output (cells × types and
//! cells × embedding), never with cells × features. Then, on the cells' neighbour graph in the
//! embedding, the open-set score (`open_set`) and, where the settings ask for it, the smoothing of
//! each cell's probabilities with its neighbours'.

use crate::error::{CellPredXError, Result};
use crate::losses::unit_rows;
use crate::graph::{diffuse, knn_graph, Metric};
use crate::open_set::{self, reference_distance};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::sparse::CsrMatrix;
use crate::ensemble::Ensemble;
use crate::train::{host_values, Encoder, TrainedModel};
use ndarray::Array2;
use tch::Kind;

/// The label given to cells the Unknown rule rejects.
pub const UNKNOWN: &str = "Unknown";

/// The paper's confidence threshold for calling a type (`UnknownRule::Threshold`).
pub const DEFAULT_THRESHOLD: f64 = 0.95;

/// How far above the median of the query's novelty a cell must lie to be Unknown under
/// `UnknownRule::Calibrated`, in robust standard deviations of its lower half. 3 called 0-3.8 %
/// of known cells Unknown on P2, P4, P5 and P6, and every novel P6 cell (bench/NOTES.md, "The
/// Unknown call: candidate rules measured").
pub const DEFAULT_UNKNOWN_SCALE: f64 = 3.0;

/// Which cells are called Unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownRule {
    /// Cells whose open-set score (`novelty`) lies beyond a cut-off calibrated on the training
    /// query's own scores: their median plus `unknown_scale` robust standard deviations of the
    /// lower half (novel cells sit in the upper tail, so the lower half describes the known
    /// ones). A cut-off from the reference's own cells rejected most known query cells, whose
    /// scores the domain shift raises (bench/NOTES.md).
    Calibrated,
    /// The paper's rule: cells whose highest type probability is below `threshold`.
    Threshold,
    /// Every cell gets its most probable type (cells without counts excepted).
    None,
}

impl std::str::FromStr for UnknownRule {
    type Err = CellPredXError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "calibrated" => Ok(UnknownRule::Calibrated),
            "threshold" => Ok(UnknownRule::Threshold),
            "none" => Ok(UnknownRule::None),
            other => Err(CellPredXError::invalid(format!("unknown must be \"calibrated\", \"threshold\" or \"none\", not \"{other}\""))),
        }
    }
}

/// A rule with what it needs: the threshold, or the novelty cut-off the calibration found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnknownDecision {
    pub rule: UnknownRule,
    pub threshold: f64,
    pub novelty_cutoff: f32,
}

/// The probability threshold must be a probability.
pub fn check_threshold(threshold: f64) -> Result<()> {
    if (0.0..=1.0).contains(&threshold) {
        Ok(())
    } else {
        Err(CellPredXError::invalid(format!("threshold must be between 0 and 1, not {threshold}")))
    }
}

/// The calibration's scale must be a positive number of robust standard deviations.
pub fn check_unknown_scale(scale: f64) -> Result<()> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(CellPredXError::invalid(format!("unknown_scale must be a number above 0, not {scale}")))
    }
}

/// `UnknownRule::Calibrated`'s cut-off from the novelty of the cells with counts: median +
/// `scale` × (median − lower quartile) / 0.6745, the lower half's robust standard deviation. In
/// the scores' own precision, so that a model file keeps it exactly.
pub fn calibrated_novelty_cutoff(novelty: &[f32], no_counts: &[bool], scale: f64) -> f32 {
    let mut values: Vec<f64> = novelty.iter().zip(no_counts).filter(|(_, &empty)| !empty).map(|(&v, _)| f64::from(v)).collect();
    if values.is_empty() {
        return f32::INFINITY;
    }
    values.sort_unstable_by(f64::total_cmp);
    let quantile = |q: f64| {
        let position = q * (values.len() - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        values[low] + (values[high] - values[low]) * (position - low as f64)
    };
    let median = quantile(0.5);
    (median + scale * (median - quantile(0.25)) / 0.6745) as f32
}

const CELLS_PER_CHUNK: usize = 4096;

/// Neighbours per cell in the embedding graph of the predicted cells.
pub const EMBEDDING_NEIGHBOURS: usize = 10;

/// Rounds of probability smoothing: each mixes in the neighbours' current probabilities.
pub const SMOOTHING_STEPS: usize = 3;

/// A neighbour's say in the smoothing is its cosine similarity to the cell to this power, so
/// that a small type's cells, whose nearest neighbours include cells of a larger type nearby,
/// listen mostly to their own kind. On the panels this let smoothing go from 0.5 to 0.8 (P4
/// accuracy and macro-F1 +0.011) without the small types of P6 drowning (bench/NOTES.md).
const SMOOTHING_SIMILARITY_POWER: i32 = 8;

/// Each neighbour's weight in the smoothing (cells × k) from its cosine distance: similarity
/// (at least 0) to `SMOOTHING_SIMILARITY_POWER`; a cell with no similar neighbour at all weighs
/// them equally.
fn smoothing_weights(cosine_distances: &Array2<f32>) -> Array2<f32> {
    let mut weights = cosine_distances.mapv(|d| (1.0 - d).max(0.0).powi(SMOOTHING_SIMILARITY_POWER));
    for mut row in weights.rows_mut() {
        if row.sum() <= 0.0 {
            row.fill(1.0);
        }
    }
    weights
}

#[derive(Debug, Clone)]
pub struct Predictions {
    pub classes: Vec<String>,
    /// cells × classes; rows sum to 1.
    pub probabilities: Array2<f32>,
    /// cells × embedding dimensions: each network's embedding side by side.
    pub embedding: Array2<f32>,
    /// ln(1 − max p) of the classifier (before any smoothing) per cell, computed from the logits
    /// so that it keeps ranking cells whose confidence rounds to 1; the networks' mean.
    pub log_doubt: Vec<f32>,
    /// Cosine similarity of each cell's embedding to the nearest class prototype (the mean
    /// reference embedding of a type): low for cells unlike every reference type. The networks' mean.
    pub prototype_similarity: Vec<f32>,
    /// Mean distance in the embedding to the nearest reference cells (`open_set`); the networks' mean.
    pub reference_distance: Vec<f32>,
    /// The open-set score: `reference_distance` diffused over the cells' neighbour graph
    /// (higher = more likely a type the reference lacks). On the open-set benchmark pairs it
    /// separates the novel types best of the scores here (bench/NOTES.md).
    pub novelty: Vec<f32>,
    /// Cells with no value above zero in the model's features: nothing places them, so they get
    /// the scores `with_cells_without_counts` gives and are always `UNKNOWN`.
    pub no_counts: Vec<bool>,
}

impl Predictions {
    /// The most probable class of each cell and its probability (the confidence).
    pub fn best(&self) -> Vec<(usize, f32)> {
        self.probabilities
            .rows()
            .into_iter()
            .map(|row| {
                row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (k, &p)| if p > best.1 { (k, p) } else { best })
            })
            .collect()
    }

    /// Each cell's label: its most probable class, or `UNKNOWN` where `decision` rejects it (and
    /// always for cells without counts).
    pub fn labels(&self, decision: &UnknownDecision) -> Vec<&str> {
        self.best()
            .into_iter()
            .enumerate()
            .map(|(i, (k, p))| {
                let rejected = self.no_counts[i]
                    || match decision.rule {
                        UnknownRule::Calibrated => self.novelty[i] > decision.novelty_cutoff,
                        UnknownRule::Threshold => f64::from(p) < decision.threshold,
                        UnknownRule::None => false,
                    };
                if rejected {
                    UNKNOWN
                } else {
                    self.classes[k].as_str()
                }
            })
            .collect()
    }

    /// The predictions of all cells from those of the cells with counts (`self`, in order),
    /// `has_counts` telling which cells those are. A cell without counts carries no evidence:
    /// it gets equal probabilities for every type (so `log_doubt` is ln(1 − 1/K)), a zero
    /// embedding and prototype similarity, and the largest reference distance and novelty of
    /// the others, so that it ranks among the cells least like the reference.
    pub fn with_cells_without_counts(self, has_counts: &[bool]) -> Predictions {
        let (n, classes) = (has_counts.len(), self.classes.len());
        let largest = |v: &[f32]| v.iter().copied().fold(0f32, f32::max);
        let mut all = Predictions {
            probabilities: Array2::from_elem((n, classes), 1.0 / classes as f32),
            embedding: Array2::zeros((n, self.embedding.ncols())),
            log_doubt: vec![(1.0 - 1.0 / classes as f32).ln(); n],
            prototype_similarity: vec![0.0; n],
            reference_distance: vec![largest(&self.reference_distance); n],
            novelty: vec![largest(&self.novelty); n],
            no_counts: has_counts.iter().map(|&h| !h).collect(),
            classes: self.classes,
        };
        for (kept, cell) in (0..n).filter(|&i| has_counts[i]).enumerate() {
            all.probabilities.row_mut(cell).assign(&self.probabilities.row(kept));
            all.embedding.row_mut(cell).assign(&self.embedding.row(kept));
            all.log_doubt[cell] = self.log_doubt[kept];
            all.prototype_similarity[cell] = self.prototype_similarity[kept];
            all.reference_distance[cell] = self.reference_distance[kept];
            all.novelty[cell] = self.novelty[kept];
        }
        all
    }
}

/// The rows (cells) of `m` that have a value above zero, and which rows those are: the others
/// carry no evidence for any type. When no row has one, the error says so in the words of
/// `none_has_counts` (given the number of rows).
pub fn keep_rows_with_counts(m: CsrMatrix, none_has_counts: impl FnOnce(usize) -> String) -> Result<(CsrMatrix, Vec<bool>)> {
    let has_counts: Vec<bool> = (0..m.n_rows()).map(|r| m.row(r).1.iter().any(|&v| v > 0.0)).collect();
    let counted: Vec<usize> = (0..has_counts.len()).filter(|&i| has_counts[i]).collect();
    if counted.is_empty() {
        return Err(CellPredXError::invalid(none_has_counts(has_counts.len())));
    }
    let kept = if counted.len() < has_counts.len() { m.select_rows(&counted)? } else { m };
    Ok((kept, has_counts))
}

/// Smoothing is a share: at least 0 (none) and below 1 (a cell's own prediction must count).
pub fn check_smoothing(smoothing: f64) -> Result<()> {
    if (0.0..1.0).contains(&smoothing) {
        Ok(())
    } else {
        Err(CellPredXError::invalid(format!("smoothing must be at least 0 and below 1, not {smoothing}")))
    }
}

/// The prior correction is a share: 0 (the balanced prior) to 1 (the reference's composition).
pub fn check_prior_correction(correction: f64) -> Result<()> {
    if (0.0..=1.0).contains(&correction) {
        Ok(())
    } else {
        Err(CellPredXError::invalid(format!("prior_correction must be between 0 and 1, not {correction}")))
    }
}

/// One network's view of the cells, before the networks are combined and the neighbour graph
/// is built: row-major cells × classes probabilities and cells × embedding, and the per-cell scores.
struct CellScores {
    probabilities: Vec<f32>,
    embedding: Vec<f32>,
    log_doubt: Vec<f32>,
    prototype_similarity: Vec<f32>,
    reference_distance: Vec<f32>,
}

impl TrainedModel {
    /// `query` through the frozen network in chunks of cells; `report(done)` after each chunk.
    fn cell_scores(&self, query: &CsrMatrix, report: &mut dyn FnMut(usize) -> Result<()>) -> Result<CellScores> {
        let n = query.n_rows();
        let shape = self.shape();
        let mut scores = CellScores {
            probabilities: Vec::with_capacity(n * shape.n_classes as usize),
            embedding: Vec::with_capacity(n * shape.embedding_dim as usize),
            log_doubt: Vec::with_capacity(n),
            prototype_similarity: Vec::with_capacity(n),
            reference_distance: Vec::with_capacity(n),
        };
        let prototypes = unit_rows(&self.prototypes)?;
        let encoder = Encoder::new(&self.net, self.compute)?;
        let rows: Vec<usize> = (0..n).collect();
        for chunk in rows.chunks(CELLS_PER_CHUNK) {
            tch::no_grad(|| -> Result<()> {
                let z = encoder.encode(query, chunk.to_vec(), false)?.z;
                let logits = self.class_logits(&z)?;
                let best = logits.f_argmax(1, true)?;
                let others = logits.f_scatter_value(1, &best, f64::NEG_INFINITY)?;
                let doubt = others.f_logsumexp(&[1i64][..], false)?.f_sub(&logits.f_logsumexp(&[1i64][..], false)?)?;
                let similarity = unit_rows(&z)?.f_mm(&prototypes.f_tr()?)?.f_amax(&[1i64][..], false)?;
                scores.probabilities.extend(host_values(&logits.f_softmax(-1, Kind::Float)?)?);
                scores.embedding.extend(host_values(&z)?);
                scores.log_doubt.extend(host_values(&doubt)?);
                scores.prototype_similarity.extend(host_values(&similarity)?);
                scores.reference_distance.extend(host_values(&reference_distance(&z, &self.reference_sample)?)?);
                Ok(())
            })?;
            report(chunk[chunk.len() - 1] + 1)?;
        }
        Ok(scores)
    }
}

/// `sum[i] += values[i]` for every i.
fn add_to(sum: &mut [f32], values: &[f32]) {
    sum.iter_mut().zip(values).for_each(|(s, v)| *s += v);
}

impl Ensemble {
    /// Probabilities and embeddings of `query`, whose columns must be the training features.
    /// Each network predicts on its own: its open-set score and, with `smoothing` s > 0, the
    /// smoothing of its probabilities — (1 − s) × a cell's own + s × its neighbours' mean,
    /// `SMOOTHING_STEPS` times (a random walk with restart 1 − s) — use the neighbour graph of
    /// its own embedding. Then the networks' probabilities and scores are averaged and their
    /// embeddings put side by side (cells × networks·embedding_dim). Averaging predictions
    /// smoothed over each network's graph did better on the benchmark pairs than smoothing the
    /// average over one graph of the joint embedding (bench/NOTES.md).
    pub fn predict(&self, query: &CsrMatrix, smoothing: f64, progress: &mut dyn ProgressSink) -> Result<Predictions> {
        check_smoothing(smoothing)?;
        let shape = self.shape();
        if query.n_cols() as i64 != shape.input_dim {
            return Err(CellPredXError::DimensionMismatch {
                what: "features of the cells to predict".into(),
                expected: shape.input_dim as usize,
                got: query.n_cols(),
            });
        }
        let (n, classes, networks, width) = (query.n_rows(), self.classes().len(), self.members().len(), shape.embedding_dim as usize);
        let shape_error = |_| CellPredXError::invalid("prediction output has an unexpected shape");
        let mut probabilities = Array2::<f32>::zeros((n, classes));
        let mut embedding = Array2::<f32>::zeros((n, networks * width));
        let [mut log_doubt, mut prototype_similarity, mut distance, mut novelty] = [(); 4].map(|_| vec![0f32; n]);
        for (i, member) in self.members().iter().enumerate() {
            let mut report = |done: usize| progress.report(&ProgressEvent { stage: "prediction", done: i * n + done, total: networks * n, metrics: &[] });
            let scores = member.cell_scores(query, &mut report)?;
            let member_embedding = Array2::from_shape_vec((n, width), scores.embedding).map_err(shape_error)?;
            let graph = if n > 1 { Some(knn_graph(member_embedding.view(), EMBEDDING_NEIGHBOURS.min(n - 1), Metric::Cosine, progress)?) } else { None };
            let mut member_probabilities = Array2::from_shape_vec((n, classes), scores.probabilities).map_err(shape_error)?;
            if let (Some(graph), true) = (&graph, smoothing > 0.0) {
                let weights = smoothing_weights(&graph.distances);
                member_probabilities = diffuse(member_probabilities.view(), &graph.neighbours, Some(&weights), (1.0 - smoothing) as f32, SMOOTHING_STEPS);
            }
            probabilities += &member_probabilities;
            embedding.slice_mut(ndarray::s![.., i * width..(i + 1) * width]).assign(&member_embedding);
            add_to(&mut novelty, &open_set::novelty(&scores.reference_distance, graph.as_ref().map(|g| &g.neighbours)));
            add_to(&mut distance, &scores.reference_distance);
            add_to(&mut log_doubt, &scores.log_doubt);
            add_to(&mut prototype_similarity, &scores.prototype_similarity);
        }
        let count = networks as f32;
        probabilities /= count;
        for sum in [&mut log_doubt, &mut prototype_similarity, &mut distance, &mut novelty] {
            sum.iter_mut().for_each(|v| *v /= count);
        }
        Ok(Predictions {
            classes: self.classes().to_vec(),
            probabilities,
            embedding,
            log_doubt,
            prototype_similarity,
            reference_distance: distance,
            novelty,
            no_counts: vec![false; n],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::tests::toy_ensemble;
    use crate::progress::Silent;
    use crate::train::tests::small_config;
    use ndarray::array;

    #[test]
    fn the_calibrated_cutoff_is_the_median_plus_the_lower_halfs_robust_scale() {
        // Sorted, the cells with counts are 1, 2, 3, 4, 5, 100: lower quartile 2.25 and median
        // 3.5, interpolated between neighbouring values.
        let novelty = [1.0, 2.0, 3.0, 4.0, 100.0, 1000.0, 5.0];
        let no_counts = [false, false, false, false, false, true, false];
        let (q1, median) = (2.25f64, 3.5f64);
        let cutoff = calibrated_novelty_cutoff(&novelty[..], &no_counts, 3.0);
        assert_eq!(cutoff, (median + 3.0 * (median - q1) / 0.6745) as f32);
        // A long upper tail (novel cells) moves the cut-off far less than a standard deviation would.
        let mut tail = vec![1.0f32; 60];
        tail.extend([2.0; 30]);
        tail.extend([50.0; 30]);
        assert!(calibrated_novelty_cutoff(&tail, &[false; 120], 3.0) < 10.0);
        assert_eq!(calibrated_novelty_cutoff(&[1.0], &[true], 3.0), f32::INFINITY);
        assert!("fuzzy".parse::<UnknownRule>().unwrap_err().to_string().contains("\"calibrated\", \"threshold\" or \"none\""));
        assert!(check_unknown_scale(0.0).is_err() && check_threshold(1.5).is_err());
    }

    #[test]
    fn smoothing_listens_to_similar_neighbours() {
        // Cosine distances 0 (the same direction), 0.5, 1 (orthogonal) and 1.5 (opposed).
        let weights = smoothing_weights(&array![[0f32, 0.5], [1.0, 1.5]]);
        assert_eq!(weights, array![[1.0, 0.5f32.powi(8)], [1.0, 1.0]]);
    }

    #[test]
    fn unknown_below_the_threshold() {
        let p = Predictions {
            classes: vec!["a".into(), "b".into()],
            probabilities: array![[0.97, 0.03], [0.4, 0.6], [0.02, 0.98]],
            embedding: Array2::zeros((3, 2)),
            log_doubt: vec![0.03f32.ln(), 0.4f32.ln(), 0.02f32.ln()],
            prototype_similarity: vec![0.9, 0.5, 0.8],
            reference_distance: vec![0.1, 0.3, 0.2],
            novelty: vec![0.1, 0.3, 0.2],
            no_counts: vec![false; 3],
        };
        let threshold = |t: f64| UnknownDecision { rule: UnknownRule::Threshold, threshold: t, novelty_cutoff: 0.0 };
        assert_eq!(p.labels(&threshold(0.95)), ["a", UNKNOWN, "b"]);
        assert_eq!(p.labels(&threshold(0.5)), ["a", "b", "b"]);
        let calibrated = UnknownDecision { rule: UnknownRule::Calibrated, threshold: 0.99, novelty_cutoff: 0.25 };
        assert_eq!(p.labels(&calibrated), ["a", UNKNOWN, "b"]);
        let none = UnknownDecision { rule: UnknownRule::None, threshold: 0.99, novelty_cutoff: 0.0 };
        assert_eq!(p.labels(&none), ["a", "b", "b"]);
        assert_eq!(p.best()[1], (1, 0.6));

        // Two cells without counts around them: equal probabilities, finite scores, Unknown at
        // any threshold.
        let all = p.with_cells_without_counts(&[false, true, true, false, true]);
        assert_eq!(all.no_counts, [true, false, false, true, false]);
        assert_eq!(all.probabilities.row(0).to_vec(), [0.5, 0.5]);
        assert_eq!(all.probabilities.row(2).to_vec(), [0.4, 0.6]);
        assert_eq!(all.log_doubt[3], 0.5f32.ln());
        assert_eq!(all.novelty, [0.3, 0.1, 0.3, 0.3, 0.2]);
        assert_eq!(all.reference_distance[0], 0.3);
        assert!(all.embedding.iter().all(|v| v.is_finite()));
        assert_eq!(all.labels(&none), [UNKNOWN, "a", "b", UNKNOWN, "b"]);
    }

    #[test]
    fn a_trained_model_separates_the_toy_types_and_predicts_deterministically() {
        let (model, query) = toy_ensemble(120, 90, &small_config(60), 1);
        let predictions = model.predict(&query, 0.0, &mut Silent).unwrap();
        assert_eq!(predictions.probabilities.dim(), (90, 2));
        assert_eq!(predictions.embedding.dim(), (90, 64));
        for row in predictions.probabilities.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-5);
        }
        // The toy query alternates alpha, beta like the reference.
        let every_cell = UnknownDecision { rule: UnknownRule::None, threshold: 0.0, novelty_cutoff: 0.0 };
        let correct = predictions.labels(&every_cell).iter().enumerate().filter(|(i, l)| **l == ["alpha", "beta"][i % 2]).count();
        assert!(correct >= 85, "{correct} of 90 correct");
        for (row, &doubt) in predictions.probabilities.rows().into_iter().zip(&predictions.log_doubt) {
            let max = row.iter().cloned().fold(0f32, f32::max);
            assert!(doubt <= 0.0 && (max < 0.999 || doubt < -5.0), "max p {max}, ln(1 - max p) {doubt}");
            if max < 0.999 {
                assert!((doubt.exp() - (1.0 - max)).abs() < 1e-4, "max p {max}, ln(1 - max p) {doubt}");
            }
        }
        let again = model.predict(&query, 0.0, &mut Silent).unwrap();
        assert_eq!(predictions.probabilities, again.probabilities);

        // Smoothing mixes in the neighbours' probabilities: rows still sum to 1, the open-set
        // score and the embedding are untouched, and it follows the graph's random walk.
        let smoothed = model.predict(&query, 0.5, &mut Silent).unwrap();
        assert_eq!(smoothed.embedding, predictions.embedding);
        assert_eq!(smoothed.novelty, predictions.novelty);
        let graph = knn_graph(predictions.embedding.view(), EMBEDDING_NEIGHBOURS, Metric::Cosine, &mut Silent).unwrap();
        let weights = smoothing_weights(&graph.distances);
        let expected = diffuse(predictions.probabilities.view(), &graph.neighbours, Some(&weights), 0.5, SMOOTHING_STEPS);
        assert!(smoothed.probabilities.iter().zip(expected.iter()).all(|(a, b)| (a - b).abs() < 1e-6));
        assert!(smoothed.probabilities.rows().into_iter().all(|row| (row.sum() - 1.0).abs() < 1e-5));
        assert_ne!(smoothed.probabilities, predictions.probabilities);
        assert!(model.predict(&query, 1.0, &mut Silent).is_err());
        let err = model.predict(&CsrMatrix::try_new(1, 3, vec![0, 0], vec![], vec![]).unwrap(), 0.0, &mut Silent).unwrap_err();
        assert_eq!(err.to_string(), "features of the cells to predict: expected 120, got 3");
    }

    #[test]
    fn an_ensemble_averages_its_networks_and_puts_their_embeddings_side_by_side() {
        let (ensemble, query) = toy_ensemble(100, 70, &small_config(40), 2);
        let predictions = ensemble.predict(&query, 0.5, &mut Silent).unwrap();
        let scores = [0, 1].map(|i| ensemble.members()[i].cell_scores(&query, &mut |_| Ok(())).unwrap());
        assert_ne!(scores[0].probabilities, scores[1].probabilities, "the networks differ");
        // Each network smooths its probabilities and diffuses its open-set score over the graph
        // of its own embedding; then the two are averaged.
        let [(p0, n0), (p1, n1)] = [0, 1].map(|i| {
            let s = &scores[i];
            let z = Array2::from_shape_vec((70, 64), s.embedding.clone()).unwrap();
            let graph = knn_graph(z.view(), EMBEDDING_NEIGHBOURS, Metric::Cosine, &mut Silent).unwrap();
            let p = Array2::from_shape_vec((70, 2), s.probabilities.clone()).unwrap();
            let smoothed = diffuse(p.view(), &graph.neighbours, Some(&smoothing_weights(&graph.distances)), 0.5, SMOOTHING_STEPS);
            (smoothed, open_set::novelty(&s.reference_distance, Some(&graph.neighbours)))
        });
        let close = |x: &[f32], y: &[f32]| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-6);
        let mean = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p + q) / 2.0).collect::<Vec<f32>>();
        assert!(close(predictions.probabilities.as_slice().unwrap(), &mean(p0.as_slice().unwrap(), p1.as_slice().unwrap())));
        assert!(close(&predictions.novelty, &mean(&n0, &n1)));
        assert!(close(&predictions.reference_distance, &mean(&scores[0].reference_distance, &scores[1].reference_distance)));
        assert!(close(&predictions.log_doubt, &mean(&scores[0].log_doubt, &scores[1].log_doubt)));
        assert_eq!(predictions.embedding.dim(), (70, 128));
        for cell in [0, 69] {
            let row = predictions.embedding.row(cell);
            assert_eq!(row.slice(ndarray::s![..64]).to_vec(), scores[0].embedding[cell * 64..(cell + 1) * 64]);
            assert_eq!(row.slice(ndarray::s![64..]).to_vec(), scores[1].embedding[cell * 64..(cell + 1) * 64]);
        }
    }
}
