//! Determinant features (METHOD.md, "Interpretation"): Integrated Gradients (Sundararajan et al.
//! 2017) of a class probability with respect to each input feature, batched over many cells and
//! all path steps per forward/backward pass, then ranked per cell and per predicted type.
//!
//! The encoder is linear, so the straight path from the baseline x₀ to a cell x in input space
//! maps onto the straight path from f(x₀) to f(x) in the embedding, and the input gradient is
//! Wᵀ times the embedding gradient. Integrating in the 64-dimensional embedding and mapping the
//! averaged gradient back once gives the same attributions as integrating in input space (the
//! tests check this against the input-space computation) at a fraction of the cost: the path
//! costs cells × steps × 64 instead of cells × steps × features. `PathSpace::Input` keeps the
//! textbook computation (the whole network on every interpolated input) for comparison.

use crate::error::{CellPredXError, Result};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::sparse::CsrMatrix;
use crate::ensemble::Ensemble;
use crate::train::{dense_rows, host_values, TrainedModel};
use ndarray::Array2;
use tch::{Kind, Tensor};

/// Path steps; the paper's (and Captum's) default.
pub const DEFAULT_STEPS: usize = 50;
/// Features kept per cell, ranked by |attribution|.
pub const DEFAULT_CELL_FEATURES: usize = 100;
/// Device memory one pass may use for its cells × features tensors.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// Which class's probability the attributions explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Each cell's most probable class.
    Predicted,
    /// The same class for every cell.
    Class(usize),
}

/// Where the straight path is integrated; both give the same attributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSpace {
    /// In the embedding, mapped back through the linear encoder (the fast way).
    Embedding,
    /// In input space, through the whole network (the textbook way, as Captum does it).
    Input,
}

#[derive(Debug, Clone)]
pub struct IntegratedGradientsConfig {
    pub steps: usize,
    /// The path's start, in the network's input units (after normalisation); `None` is all zeros.
    pub baseline: Option<Vec<f32>>,
    pub target: Target,
    /// Features kept per cell.
    pub cell_features: usize,
    pub memory_budget: usize,
    /// Cells per forward/backward pass; `None` derives it from `memory_budget`.
    pub cells_per_pass: Option<usize>,
    pub path_space: PathSpace,
}

impl Default for IntegratedGradientsConfig {
    fn default() -> Self {
        IntegratedGradientsConfig {
            steps: DEFAULT_STEPS,
            baseline: None,
            target: Target::Predicted,
            cell_features: DEFAULT_CELL_FEATURES,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            cells_per_pass: None,
            path_space: PathSpace::Embedding,
        }
    }
}

/// Integrated Gradients of a set of cells, reduced to what rankings need: each cell's top
/// features and, per class, how often each feature is in its cells' top lists and the sum of its
/// attributions.
#[derive(Debug, Clone)]
pub struct Attributions {
    pub classes: Vec<String>,
    pub n_features: usize,
    /// The class whose probability each cell's attributions explain.
    pub targets: Vec<usize>,
    /// f(x) − f(baseline) per cell: what its attributions add up to (completeness).
    pub prediction_change: Vec<f32>,
    /// The sum of each cell's attributions over all features.
    pub attribution_sum: Vec<f32>,
    /// Per cell, its `cell_features` features of largest |attribution| (largest first) with
    /// their attributions; features whose attribution is exactly zero are left out.
    pub cell_top: Vec<Vec<(u32, f32)>>,
    /// classes × features: how many cells explained for the class have the feature in their top list.
    pub top_counts: Array2<u32>,
    /// classes × features: the sum of the feature's attributions over the cells explained for the class.
    pub attribution_totals: Array2<f32>,
    /// Cells explained for each class.
    pub class_cells: Vec<usize>,
}

/// How `Attributions::determinants` ranks a type's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    /// The paper's rule: features most often among the type's cells' top features (ties by mean attribution).
    Frequency,
    /// Features of largest mean attribution over the type's cells (positive only: those that raise its probability).
    MeanAttribution,
}

/// One determinant feature of one type.
#[derive(Debug, Clone, PartialEq)]
pub struct Determinant {
    pub class: usize,
    pub rank: usize,
    pub feature: u32,
    /// Fraction of the type's cells with the feature in their top list.
    pub frequency: f32,
    pub mean_attribution: f32,
}

impl Attributions {
    /// Up to `per_type` determinant features of every class that has cells, ranked by `ranking`.
    pub fn determinants(&self, ranking: Ranking, per_type: usize) -> Vec<Determinant> {
        let mut out = Vec::new();
        for (class, &cells) in self.class_cells.iter().enumerate() {
            if cells == 0 {
                continue;
            }
            let counts = self.top_counts.row(class);
            let totals = self.attribution_totals.row(class);
            let mean = |f: usize| totals[f] / cells as f32;
            let mut features: Vec<usize> = match ranking {
                Ranking::Frequency => (0..self.n_features).filter(|&f| counts[f] > 0).collect(),
                Ranking::MeanAttribution => (0..self.n_features).filter(|&f| totals[f] > 0.0).collect(),
            };
            let by_mean = |a: &usize, b: &usize| mean(*b).total_cmp(&mean(*a)).then(a.cmp(b));
            match ranking {
                Ranking::Frequency => features.sort_by(|a, b| counts[*b].cmp(&counts[*a]).then_with(|| by_mean(a, b))),
                Ranking::MeanAttribution => features.sort_by(by_mean),
            }
            out.extend(features.into_iter().take(per_type).enumerate().map(|(rank, f)| Determinant {
                class,
                rank: rank + 1,
                feature: f as u32,
                frequency: counts[f] as f32 / cells as f32,
                mean_attribution: mean(f),
            }));
        }
        out
    }
}

/// Trapezoid weights of `steps` intervals on [0, 1]: 1/(2m) at the ends, 1/m inside.
fn trapezoid_weights(steps: usize) -> Vec<f32> {
    let m = steps as f32;
    (0..=steps).map(|s| if s == 0 || s == steps { 0.5 / m } else { 1.0 / m }).collect()
}

/// What every network's pass over one chunk of cells shares: the cells, their offset from the
/// baseline, the path points and the quadrature weights, and the explained class of each cell.
struct ChunkPath<'a> {
    x: &'a Tensor,
    delta: &'a Tensor,
    baseline: &'a Tensor,
    alphas: &'a Tensor,
    quadrature: &'a Tensor,
    targets: &'a Tensor,
    path_space: PathSpace,
}

impl TrainedModel {
    /// One network's Integrated Gradients of the chunk: attributions (cells × features) and
    /// f(x) − f(baseline) of the explained probabilities.
    fn path_attribution(&self, chunk: &ChunkPath<'_>) -> Result<(Tensor, Tensor)> {
        let (points, cells) = (chunk.alphas.size()[0], chunk.x.size()[0]);
        let (start, end) = match chunk.path_space {
            PathSpace::Embedding => tch::no_grad(|| (self.net.embed(chunk.baseline), self.net.embed(chunk.x))),
            PathSpace::Input => (chunk.baseline.shallow_clone(), chunk.x.shallow_clone()),
        };
        let path = start.f_unsqueeze(0)?.f_add(&chunk.alphas.f_mul(&end.f_sub(&start)?.f_unsqueeze(0)?)?)?.f_detach()?.set_requires_grad(true);
        let flat = path.f_view([points * cells, -1])?;
        let logits = match chunk.path_space {
            PathSpace::Embedding => self.class_logits(&flat)?,
            PathSpace::Input => self.class_logits(&self.net.embed(&flat))?,
        };
        let probabilities = logits.f_softmax(-1, Kind::Float)?.f_view([points, cells, self.shape().n_classes])?;
        let targets = chunk.targets.f_view([1, cells, 1])?.f_expand([points, cells, 1], false)?;
        let explained = probabilities.f_gather(2, &targets, false)?.f_squeeze_dim(2)?;
        explained.f_sum(Kind::Float)?.backward();
        tch::no_grad(|| -> Result<_> {
            let mean_gradient = path.grad().f_mul(chunk.quadrature)?.f_sum_dim_intlist(&[0i64][..], false, Kind::Float)?;
            let input_gradient = match chunk.path_space {
                PathSpace::Embedding => mean_gradient.f_mm(&self.net.encoder_parameters().0.f_detach()?)?,
                PathSpace::Input => mean_gradient,
            };
            let change = explained.f_select(0, points - 1)?.f_sub(&explained.f_select(0, 0)?)?;
            Ok((chunk.delta.f_mul(&input_gradient)?, change))
        })
    }
}

impl Ensemble {
    /// Integrated Gradients of `cells` (cells × the training features, normalised as in
    /// training) for the class probabilities `config.target` names. With several networks the
    /// explained probability is their mean, so a cell's attributions are the mean of each
    /// network's (Integrated Gradients is linear in the model) and still add up to the change
    /// in the ensemble's probability.
    pub fn integrated_gradients(&self, cells: &CsrMatrix, config: &IntegratedGradientsConfig, progress: &mut dyn ProgressSink) -> Result<Attributions> {
        let shape = self.shape();
        let (d, k, width) = (shape.input_dim as usize, shape.n_classes as usize, shape.embedding_dim);
        if cells.n_cols() != d {
            return Err(CellPredXError::DimensionMismatch { what: "features of the cells to interpret".into(), expected: d, got: cells.n_cols() });
        }
        if config.steps == 0 || config.cell_features == 0 {
            return Err(CellPredXError::invalid("Integrated Gradients needs at least one step and one feature per cell"));
        }
        if let Target::Class(class) = config.target {
            if class >= k {
                return Err(CellPredXError::invalid(format!("target class {class} does not exist: the model has {k} classes")));
            }
        }
        let device = self.compute().device;
        let baseline = match &config.baseline {
            None => Tensor::f_zeros([1, d as i64], (Kind::Float, device))?,
            Some(values) if values.len() != d => {
                return Err(CellPredXError::DimensionMismatch { what: "baseline values".into(), expected: d, got: values.len() })
            }
            Some(values) if values.iter().any(|v| !v.is_finite()) => {
                return Err(CellPredXError::invalid("the baseline has missing or infinite values"))
            }
            Some(values) => Tensor::f_from_slice(values)?.f_view([1, d as i64])?.f_to_device(device)?,
        };
        let points = config.steps + 1;
        let alphas = Tensor::f_linspace(0.0, 1.0, points as i64, (Kind::Float, device))?.f_view([points as i64, 1, 1])?;
        let quadrature = Tensor::f_from_slice(&trapezoid_weights(config.steps))?.f_to_device(device)?.f_view([points as i64, 1, 1])?;
        let keep = config.cell_features.min(d) as i64;
        let networks = self.members().len() as f64;

        // Per cell: ~5 dense feature rows and, per path point, a point, its gradient and the probabilities.
        let point_width = match config.path_space {
            PathSpace::Embedding => width as usize,
            PathSpace::Input => d,
        };
        let per_cell = 4 * (5 * d + points * (3 * point_width + 2 * k));
        let chunk = config.cells_per_pass.unwrap_or(config.memory_budget / per_cell).max(1);

        let n = cells.n_rows();
        let mut out = Attributions {
            classes: self.classes().to_vec(),
            n_features: d,
            targets: Vec::with_capacity(n),
            prediction_change: Vec::with_capacity(n),
            attribution_sum: Vec::with_capacity(n),
            cell_top: Vec::with_capacity(n),
            top_counts: Array2::zeros((k, d)),
            attribution_totals: Array2::zeros((k, d)),
            class_cells: vec![0; k],
        };
        let mut totals = Tensor::f_zeros([k as i64, d as i64], (Kind::Float, device))?;
        let rows: Vec<usize> = (0..n).collect();
        for chunk_rows in rows.chunks(chunk) {
            let c = chunk_rows.len() as i64;
            let x = dense_rows(cells, chunk_rows, device)?;
            let targets = match config.target {
                Target::Predicted => tch::no_grad(|| -> Result<Tensor> {
                    let mut sum = Tensor::f_zeros([c, k as i64], (Kind::Float, device))?;
                    for member in self.members() {
                        sum = sum.f_add(&member.class_logits(&member.net.embed(&x))?.f_softmax(-1, Kind::Float)?)?;
                    }
                    Ok(sum.f_argmax(1, false)?)
                })?,
                Target::Class(class) => Tensor::f_full([c], class as i64, (Kind::Int64, device))?,
            };
            let delta = x.f_sub(&baseline)?;
            let path = ChunkPath { x: &x, delta: &delta, baseline: &baseline, alphas: &alphas, quadrature: &quadrature, targets: &targets, path_space: config.path_space };
            let (mut attribution, mut change) = (Tensor::f_zeros([c, d as i64], (Kind::Float, device))?, Tensor::f_zeros([c], (Kind::Float, device))?);
            for member in self.members() {
                let (a, delta_p) = member.path_attribution(&path)?;
                attribution = attribution.f_add(&a)?;
                change = change.f_add(&delta_p)?;
            }
            let (top_values, top_features) = tch::no_grad(|| -> Result<_> {
                let attribution = attribution.f_div_scalar(networks)?;
                let (_, top_features) = attribution.f_abs()?.f_topk(keep, 1, true, true)?;
                let top_values = attribution.f_gather(1, &top_features, false)?;
                totals = totals.f_index_add(0, &targets, &attribution)?;
                out.prediction_change.extend(host_values(&change.f_div_scalar(networks)?)?);
                out.attribution_sum.extend(host_values(&attribution.f_sum_dim_intlist(&[1i64][..], false, Kind::Float)?)?);
                Ok((host_values(&top_values)?, Vec::<i64>::try_from(&top_features.f_to_device(tch::Device::Cpu)?.f_flatten(0, -1)?)?))
            })?;
            let targets = Vec::<i64>::try_from(&targets.f_to_device(tch::Device::Cpu)?)?;
            for (i, &target) in targets.iter().enumerate() {
                let class = target as usize;
                let span = i * keep as usize..(i + 1) * keep as usize;
                let top: Vec<(u32, f32)> =
                    top_features[span.clone()].iter().zip(&top_values[span]).filter(|(_, &v)| v != 0.0).map(|(&f, &v)| (f as u32, v)).collect();
                for &(feature, _) in &top {
                    out.top_counts[[class, feature as usize]] += 1;
                }
                out.class_cells[class] += 1;
                out.targets.push(class);
                out.cell_top.push(top);
            }
            progress.report(&ProgressEvent { stage: "interpretation", done: chunk_rows[chunk_rows.len() - 1] + 1, total: n, metrics: &[] })?;
        }
        out.attribution_totals = Array2::from_shape_vec((k, d), host_values(&totals)?)
            .map_err(|_| CellPredXError::invalid("attribution totals have an unexpected shape"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::progress::Silent;
    use crate::ensemble::tests::toy_ensemble;
    use crate::rng::SplitMix64;
    use crate::train::tests::{small_config, toy_graph};
    use crate::train::{Compute, TrainingConfig, TrainingData};
    use tch::Device;

    fn seeded_ensemble(seed: u64, networks: usize) -> (Ensemble, CsrMatrix) {
        toy_ensemble(120, 90, &TrainingConfig { seed, ..small_config(60) }, networks)
    }

    fn toy_model() -> (Ensemble, CsrMatrix) {
        seeded_ensemble(0, 1)
    }

    /// Every feature of every cell: attributions with a top list as long as the feature count.
    fn all_features(model: &Ensemble, cells: &CsrMatrix, cells_per_pass: Option<usize>) -> Attributions {
        let config = IntegratedGradientsConfig { cell_features: cells.n_cols(), cells_per_pass, ..Default::default() };
        model.integrated_gradients(cells, &config, &mut Silent).unwrap()
    }

    fn dense_attributions(a: &Attributions) -> Vec<Vec<f32>> {
        a.cell_top
            .iter()
            .map(|top| {
                let mut row = vec![0f32; a.n_features];
                for &(f, v) in top {
                    row[f as usize] = v;
                }
                row
            })
            .collect()
    }

    #[test]
    fn trapezoid_weights_sum_to_one() {
        let w = trapezoid_weights(4);
        assert_eq!(w, [0.125, 0.25, 0.25, 0.25, 0.125]);
    }

    #[test]
    fn attributions_add_up_to_the_change_in_probability() {
        let (model, query) = toy_model();
        let a = model.integrated_gradients(&query, &IntegratedGradientsConfig::default(), &mut Silent).unwrap();
        assert_eq!(a.targets.len(), 90);
        let mut checked = 0;
        for (sum, change) in a.attribution_sum.iter().zip(&a.prediction_change) {
            // Within 1 % of f(x) − f(baseline); an absolute floor for cells the path barely moves.
            assert!((sum - change).abs() <= 0.01 * change.abs() + 1e-4, "sum {sum} vs change {change}");
            checked += usize::from(change.abs() > 0.1);
        }
        assert!(checked > 45, "too few cells move their probability: {checked}");
    }

    #[test]
    fn an_ensembles_attributions_are_the_mean_of_its_networks() {
        let (ensemble, query) = seeded_ensemble(0, 2);
        let config = IntegratedGradientsConfig { cell_features: query.n_cols(), target: Target::Class(0), ..Default::default() };
        let joint = ensemble.integrated_gradients(&query, &config, &mut Silent).unwrap();
        let [first, second] = [0, 1].map(|seed| seeded_ensemble(seed, 1).0.integrated_gradients(&query, &config, &mut Silent).unwrap());
        for (cell, ((j, a), b)) in dense_attributions(&joint).iter().zip(dense_attributions(&first)).zip(dense_attributions(&second)).enumerate() {
            for ((x, y), z) in j.iter().zip(&a).zip(&b) {
                assert!((x - (y + z) / 2.0).abs() < 1e-5, "cell {cell}: {x} vs the mean of {y} and {z}");
            }
            assert!((joint.prediction_change[cell] - (first.prediction_change[cell] + second.prediction_change[cell]) / 2.0).abs() < 1e-6);
        }
        for (sum, change) in joint.attribution_sum.iter().zip(&joint.prediction_change) {
            assert!((sum - change).abs() <= 0.01 * change.abs() + 1e-4, "sum {sum} vs change {change}");
        }
    }

    #[test]
    fn batched_and_one_cell_at_a_time_agree() {
        let (model, query) = toy_model();
        let batched = all_features(&model, &query, None);
        let single = all_features(&model, &query, Some(1));
        assert_eq!(batched.targets, single.targets);
        for (b, s) in dense_attributions(&batched).iter().zip(dense_attributions(&single)) {
            for (x, y) in b.iter().zip(&s) {
                assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            }
        }
        assert_eq!(batched.top_counts, single.top_counts);
    }

    #[test]
    fn the_embedding_path_equals_the_input_space_computation() {
        let (model, query) = toy_model();
        let embedding = all_features(&model, &query, None);
        let config = IntegratedGradientsConfig { cell_features: query.n_cols(), path_space: PathSpace::Input, cells_per_pass: Some(7), ..Default::default() };
        let input = model.integrated_gradients(&query, &config, &mut Silent).unwrap();
        assert_eq!(embedding.targets, input.targets);
        for (cell, (ours, textbook)) in dense_attributions(&embedding).iter().zip(dense_attributions(&input)).enumerate() {
            for (a, b) in ours.iter().zip(&textbook) {
                assert!((a - b).abs() < 1e-5, "cell {cell}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn a_planted_deciding_feature_ranks_first() {
        // Noise features drawn alike for both types; feature 7 alone tells them apart.
        let (features, decisive) = (40usize, 7usize);
        let make = |n: usize, salt: u64| {
            let mut rng = SplitMix64::new(salt);
            let mut dense = vec![0f32; n * features];
            for cell in 0..n {
                for f in 0..features {
                    if rng.uniform() < 0.3 {
                        dense[cell * features + f] = 1.0 + rng.uniform() as f32;
                    }
                }
                dense[cell * features + decisive] = if cell % 2 == 0 { 3.0 } else { 0.0 };
            }
            CsrMatrix::from_dense_row_major(n, features, &dense).unwrap()
        };
        let (reference, query) = (make(200, 1), make(100, 2));
        let names: Vec<&str> = (0..200).map(|c| if c % 2 == 0 { "marked" } else { "plain" }).collect();
        let labels = Labels::encode(names.iter().map(|s| Some(*s)), None).unwrap();
        let graph = toy_graph(&query);
        let data = TrainingData { reference: &reference, labels: &labels, query: &query, query_graph: &graph };
        let model = Ensemble::train(&[data], &small_config(150), Compute::on(Device::Cpu), &mut Silent).unwrap();
        let config = IntegratedGradientsConfig { cell_features: 5, ..Default::default() };
        let a = model.integrated_gradients(&query, &config, &mut Silent).unwrap();
        let marked = a.classes.iter().position(|c| c == "marked").unwrap();
        for ranking in [Ranking::Frequency, Ranking::MeanAttribution] {
            let first = a.determinants(ranking, 3).into_iter().find(|d| d.class == marked && d.rank == 1).unwrap();
            assert_eq!(first.feature as usize, decisive, "{ranking:?}");
        }
        let marked_cells: Vec<usize> = (0..100).filter(|&c| a.targets[c] == marked).collect();
        assert!(marked_cells.len() > 40);
        assert!(marked_cells.iter().all(|&c| a.cell_top[c][0].0 as usize == decisive));
    }

    #[test]
    fn determinants_rank_by_frequency_then_mean() {
        let a = Attributions {
            classes: vec!["a".into(), "b".into()],
            n_features: 3,
            targets: vec![],
            prediction_change: vec![],
            attribution_sum: vec![],
            cell_top: vec![],
            top_counts: ndarray::array![[2, 2, 1], [0, 0, 0]],
            attribution_totals: ndarray::array![[0.5, 1.0, -2.0], [0.0, 0.0, 0.0]],
            class_cells: vec![2, 0],
        };
        let freq = a.determinants(Ranking::Frequency, 5);
        assert_eq!(freq.iter().map(|d| d.feature).collect::<Vec<_>>(), [1, 0, 2]);
        assert_eq!(freq[2].frequency, 0.5);
        assert_eq!(freq[0].mean_attribution, 0.5);
        let mean = a.determinants(Ranking::MeanAttribution, 1);
        assert_eq!(mean.len(), 1);
        assert_eq!((mean[0].feature, mean[0].rank), (1, 1));
    }

    #[test]
    fn bad_settings_are_explained() {
        let (model, query) = toy_model();
        let run = |config: IntegratedGradientsConfig| model.integrated_gradients(&query, &config, &mut Silent).unwrap_err().to_string();
        assert!(run(IntegratedGradientsConfig { steps: 0, ..Default::default() }).contains("at least one step"));
        assert!(run(IntegratedGradientsConfig { target: Target::Class(5), ..Default::default() }).contains("2 classes"));
        assert!(run(IntegratedGradientsConfig { baseline: Some(vec![0.0; 3]), ..Default::default() }).contains("baseline"));
        assert!(run(IntegratedGradientsConfig { baseline: Some(vec![f32::NAN; 120]), ..Default::default() }).contains("infinite"));
    }
}
