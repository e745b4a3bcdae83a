//! Training (METHOD.md, "Losses"): the encoder, attention network and classifier are fitted to
//! the labelled reference and the unlabelled query together, one minibatch of each per step.
//!
//! `TrainingData` has no field for query labels, so nothing in here can use them: not the
//! losses, not the early stop, not the choice of the model that is returned (the last one).

use crate::error::{CellPredXError, Result};
use crate::graph::KnnGraph;
use crate::labels::Labels;
use crate::losses::{self, CenterWeighting};
use crate::model::{CellPredXNet, NetworkShape};
use crate::open_set::reference_sample_rows;
use crate::progress::{ProgressEvent, ProgressSink};
use crate::rng::{EpochSampler, SplitMix64, WeightedSampler};
use crate::sparse::CsrMatrix;
use crate::sparse_linear;
use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// The four kinds of transfer the method has presets for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    RnaAtacMatched,
    RnaAtacUnmatched,
    AtacAtac,
    RnaRna,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [Scenario::RnaAtacMatched, Scenario::RnaAtacUnmatched, Scenario::AtacAtac, Scenario::RnaRna];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::RnaAtacMatched => "rna_atac_matched",
            Scenario::RnaAtacUnmatched => "rna_atac_unmatched",
            Scenario::AtacAtac => "atac_atac",
            Scenario::RnaRna => "rna_rna",
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = CellPredXError;
    fn from_str(s: &str) -> Result<Self> {
        Scenario::ALL.into_iter().find(|sc| sc.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Scenario::ALL.iter().map(|sc| sc.name()).collect();
            CellPredXError::invalid(format!("scenario must be one of {}, not \"{s}\"", names.join(", ")))
        })
    }
}

/// Every knob of a training run. `TrainingConfig::preset` gives the scenario's defaults; each
/// field can then be overridden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    /// α: weight of the neighbourhood contrastive loss. The presets leave it `None`, for the
    /// transfer to choose by scenario and input (`transfer::auto_contrastive_weight`); training
    /// needs it set.
    pub contrastive_weight: Option<f64>,
    /// β: weight of the feature alignment loss.
    pub alignment_weight: f64,
    /// γ: weight of the sparse center loss.
    pub center_weight: f64,
    /// τ: temperature of the contrastive loss.
    pub temperature: f64,
    pub projection_weight: f64,
    pub l1_weight: f64,
    pub max_steps: usize,
    /// Training also stops after this many passes over the larger side's cells
    /// (`step_limit`), so that small datasets do not train thousands of passes.
    #[serde(default = "no_epoch_limit")]
    pub max_epochs: f64,
    /// Cells per side and step (fewer when a side has fewer cells).
    pub batch_size: usize,
    /// How reference cells are drawn: 0 = uniformly (epoch by epoch), 1 = every type equally
    /// often, in between = each cell with weight (cells of its type)^−balance. Small types then
    /// shape the classifier too, which is what macro-F1 rewards.
    pub class_balance: f64,
    pub learning_rate: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// The learning rate drops ×0.1 after this fraction of the steps (`step_limit`).
    pub lr_drop_at: f64,
    /// Fraction of the steps (`step_limit`) before the sparse center loss starts (the classifier's
    /// pseudo-labels are noise before then).
    pub center_warmup: f64,
    /// α_c of the center update.
    pub center_step: f64,
    pub center_weighting: CenterWeighting,
    /// Query cells whose confidence is at or above this quantile of their batch join the
    /// center loss with their pseudo-labels.
    pub pseudo_label_quantile: f64,
    /// Fraction p of query cells kept by the feature alignment loss.
    pub alignment_keep: f64,
    pub alignment_hinge: bool,
    /// Stop when the center loss changed by less than `early_stop_tolerance` (relative) for
    /// this many consecutive steps; 0 disables the rule.
    pub early_stop_patience: usize,
    pub early_stop_tolerance: f64,
    /// The returned weights are the mean of the weights after each of the last `average_last`
    /// fraction of steps (stochastic weight averaging; 0 = the last step's weights). A mean over
    /// the low-learning-rate phase varies less with the seed than any single step.
    pub average_last: f64,
    pub embedding_dim: i64,
    pub seed: u64,
}

/// The presets' limit on passes over the data. The pairs of the benchmark train 110–330 passes
/// at their preset steps; at 200 passes P2 lost 0.008 accuracy and 0.011 macro-F1, while P6 (760
/// passes) and the shipped 800-cell subset (1,450) did as well or better with 200–350
/// (bench/NOTES.md). So 350 leaves every pair but P6 as it was and spares small datasets most of
/// their training time.
pub const MAX_EPOCHS: f64 = 350.0;

/// What model files written before `max_epochs` existed trained with.
fn no_epoch_limit() -> f64 {
    f64::MAX
}

impl TrainingConfig {
    /// The steps a training on `n_reference` and `n_query` cells runs at most: `max_steps`, or
    /// fewer where those would pass over the larger side more than `max_epochs` times (each
    /// step draws `batch_size` cells, or all of a smaller side's).
    pub fn step_limit(&self, n_reference: usize, n_query: usize) -> usize {
        let cells = n_reference.max(n_query).max(1);
        let per_step = self.batch_size.clamp(1, cells);
        // A cast from f64 saturates, so a huge max_epochs leaves max_steps in charge.
        let epoch_steps = (self.max_epochs * cells as f64 / per_step as f64).ceil() as usize;
        self.max_steps.min(epoch_steps).max(1)
    }

    /// The paper's presets (METHOD.md, "Presets"), read as α = contrastive, β = alignment,
    /// γ = center weight, τ = temperature.
    pub fn preset(scenario: Scenario) -> Self {
        // Departures from the paper, measured on the benchmark pairs (bench/NOTES.md):
        // rna_atac_matched uses the unmatched preset's contrastive weight and temperature (its
        // τ = 0.04 made a needle-sharp loss; macro-F1 on P1 rose from 0.31 to 0.34); rna_rna and
        // atac_atac train 1,000 steps instead of 200, atac_atac at learning rate 0.1 (very sparse
        // peaks learn slowly at 0.01); reference cells are drawn with class_balance 0.5 except
        // for rna_atac_unmatched, where uniform draws did better. The contrastive weight depends
        // on the input as well as the scenario, so the transfer chooses it.
        let (beta, gamma, tau, steps, learning_rate, class_balance) = match scenario {
            Scenario::RnaAtacMatched => (0.05, 0.01, 0.8, 3000, 0.01, 0.5),
            Scenario::RnaAtacUnmatched => (0.05, 0.01, 0.8, 3000, 0.01, 0.0),
            Scenario::RnaRna => (0.0, 0.1, 0.8, 1000, 0.01, 0.5),
            Scenario::AtacAtac => (0.0, 0.001, 0.8, 1000, 0.1, 0.5),
        };
        TrainingConfig {
            contrastive_weight: None,
            alignment_weight: beta,
            center_weight: gamma,
            temperature: tau,
            projection_weight: 0.1,
            l1_weight: 0.1,
            max_steps: steps,
            max_epochs: MAX_EPOCHS,
            batch_size: 512,
            class_balance,
            learning_rate,
            momentum: 0.9,
            weight_decay: 5e-4,
            lr_drop_at: 0.5,
            center_warmup: 0.25,
            center_step: 0.5,
            center_weighting: CenterWeighting::MeanOne,
            pseudo_label_quantile: 0.75,
            alignment_keep: 0.8,
            alignment_hinge: false,
            early_stop_patience: 20,
            early_stop_tolerance: 1e-4,
            average_last: 0.5,
            embedding_dim: 64,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let weights = [
            ("contrastive_weight", self.contrastive_weight.unwrap_or(0.0)),
            ("alignment_weight", self.alignment_weight),
            ("center_weight", self.center_weight),
            ("projection_weight", self.projection_weight),
            ("l1_weight", self.l1_weight),
            ("weight_decay", self.weight_decay),
            ("momentum", self.momentum),
        ];
        for (name, value) in weights {
            if !(value.is_finite() && value >= 0.0) {
                return Err(CellPredXError::invalid(format!("{name} must be a finite number >= 0, not {value}")));
            }
        }
        let positive = [("temperature", self.temperature), ("learning_rate", self.learning_rate), ("center_step", self.center_step)];
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(CellPredXError::invalid(format!("{name} must be a finite number > 0, not {value}")));
            }
        }
        if !(0.0..=1.0).contains(&self.center_warmup) {
            return Err(CellPredXError::invalid(format!("center_warmup must be in [0, 1], not {}", self.center_warmup)));
        }
        if !(0.0..=1.0).contains(&self.average_last) {
            return Err(CellPredXError::invalid(format!("average_last must be in [0, 1], not {}", self.average_last)));
        }
        if !(0.0..=1.0).contains(&self.class_balance) {
            return Err(CellPredXError::invalid(format!("class_balance must be in [0, 1], not {}", self.class_balance)));
        }
        let fractions = [("lr_drop_at", self.lr_drop_at), ("pseudo_label_quantile", self.pseudo_label_quantile), ("alignment_keep", self.alignment_keep)];
        for (name, value) in fractions {
            if !(value > 0.0 && value <= 1.0) {
                return Err(CellPredXError::invalid(format!("{name} must be in (0, 1], not {value}")));
            }
        }
        if self.max_epochs.is_nan() || self.max_epochs <= 0.0 {
            return Err(CellPredXError::invalid(format!("max_epochs must be a number > 0, not {}", self.max_epochs)));
        }
        if self.max_steps == 0 || self.batch_size < 2 || self.embedding_dim < 2 {
            return Err(CellPredXError::invalid(format!(
                "max_steps must be >= 1, batch_size >= 2 and embedding_dim >= 2 (got {}, {}, {})",
                self.max_steps, self.batch_size, self.embedding_dim
            )));
        }
        Ok(())
    }
}

/// Where the encoder's first layer is computed: sparse in Rust (fast on CPU) or as a dense
/// minibatch on the device (GPUs, and the reference the sparse path is tested against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstLayer {
    Sparse,
    Dense,
}

/// The device to compute on and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    pub device: Device,
    pub first_layer: FirstLayer,
}

impl Compute {
    /// The fastest first layer for `device`: sparse on CPU, dense on a GPU.
    pub fn on(device: Device) -> Self {
        let first_layer = if device == Device::Cpu { FirstLayer::Sparse } else { FirstLayer::Dense };
        Compute { device, first_layer }
    }
}

/// What training sees: reference cells with their labels, query cells and the query's
/// neighbour graph, all on the same features in the same order. No query labels.
#[derive(Clone, Copy)]
pub struct TrainingData<'a> {
    pub reference: &'a CsrMatrix,
    pub labels: &'a Labels,
    pub query: &'a CsrMatrix,
    pub query_graph: &'a KnnGraph,
}

impl TrainingData<'_> {
    fn validate(&self) -> Result<()> {
        let (reference, query) = (self.reference, self.query);
        if reference.n_cols() != query.n_cols() {
            return Err(CellPredXError::DimensionMismatch { what: "query features (columns)".into(), expected: reference.n_cols(), got: query.n_cols() });
        }
        if self.labels.codes().len() != reference.n_rows() {
            return Err(CellPredXError::DimensionMismatch { what: "reference labels".into(), expected: reference.n_rows(), got: self.labels.codes().len() });
        }
        if reference.n_rows() < 2 || query.n_rows() < 2 {
            return Err(CellPredXError::invalid(format!(
                "training needs at least 2 reference and 2 query cells, got {} and {}",
                reference.n_rows(),
                query.n_rows()
            )));
        }
        if self.labels.classes().len() < 2 {
            return Err(CellPredXError::invalid(format!(
                "the reference has a single cell type (\"{}\"): there is nothing to tell apart; give labels with at least 2 types",
                self.labels.classes().first().map_or("", |c| c.as_str())
            )));
        }
        let graph = &self.query_graph.neighbours;
        if graph.nrows() != query.n_rows() || graph.ncols() == 0 {
            return Err(CellPredXError::DimensionMismatch { what: "rows of the query neighbour graph".into(), expected: query.n_rows(), got: graph.nrows() });
        }
        if graph.iter().any(|&j| j as usize >= query.n_rows()) {
            return Err(CellPredXError::invalid("the query neighbour graph names cells that are not in the query"));
        }
        let (non_finite, _) = reference.count_invalid_values();
        let (query_non_finite, _) = query.count_invalid_values();
        if non_finite + query_non_finite > 0 {
            return Err(CellPredXError::invalid(format!(
                "the input has non-finite values (NaN or Inf): {non_finite} in the reference, {query_non_finite} in the query"
            )));
        }
        Ok(())
    }
}

/// The losses of one step; `None` where a loss was not computed (zero weight, or the center
/// loss before its warm-up ends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub learning_rate: f64,
    pub total: f64,
    pub cross_entropy: f64,
    pub projection: Option<f64>,
    pub l1: Option<f64>,
    pub alignment: Option<f64>,
    pub contrastive: Option<f64>,
    pub center: Option<f64>,
}

/// One recovery from a diverging loss (`LossWatch`): training went back to the weights it had
/// before step `resumed_from`, cleared the optimiser's momentum, halved the learning rate and
/// went on from there. Steps from `resumed_from` to `step` are trained again, so the history
/// holds each step once, as it counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// The step whose loss diverged.
    pub step: usize,
    /// Its total loss (non-finite, or `JUMP_FACTOR` times above the recent median).
    pub loss: f64,
    pub learning_rate: f64,
    pub resumed_from: usize,
    /// The learning rate at `resumed_from` after halving.
    pub new_learning_rate: f64,
}

/// Why training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    MaxSteps,
    CenterLossConverged,
}

/// A fitted network with what it needs to predict: the class names and the layer sizes.
pub struct TrainedModel {
    pub(crate) vs: nn::VarStore,
    pub(crate) net: CellPredXNet,
    pub classes: Vec<String>,
    pub config: TrainingConfig,
    pub history: Vec<StepRecord>,
    /// Recoveries from a diverging loss, in order; empty when training never diverged.
    pub recoveries: Vec<Recovery>,
    pub stop: StopReason,
    pub(crate) compute: Compute,
    pub(crate) centers: Option<Tensor>,
    /// Mean reference embedding of each class under the final weights (classes × embedding);
    /// a variable of `vs`, so that it is saved with the weights.
    pub(crate) prototypes: Tensor,
    /// Embeddings of the reference sample under the final weights (`open_set`), also a variable
    /// of `vs`.
    pub(crate) reference_sample: Tensor,
    /// Added to the classifier's logits whenever the network predicts or is explained, never in
    /// training (`Ensemble::correct_priors`); zero until set.
    pub(crate) class_offsets: Tensor,
}

impl TrainedModel {
    pub fn shape(&self) -> NetworkShape {
        self.net.shape
    }

    /// A network of `shape` whose variables (weights, prototypes, reference sample) take the
    /// values `value_of(name, variable)` gives, e.g. from a saved file.
    pub(crate) fn with_weights(
        shape: NetworkShape,
        classes: Vec<String>,
        config: TrainingConfig,
        stop: StopReason,
        compute: Compute,
        mut value_of: impl FnMut(&str, &Tensor) -> Result<Tensor>,
    ) -> Result<Self> {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = CellPredXNet::new(&vs.root(), shape);
        let (prototypes, reference_sample) = summary_variables(&vs, shape)?;
        tch::no_grad(|| -> Result<()> {
            for (name, mut variable) in vs.variables() {
                let value = value_of(&name, &variable)?;
                variable.f_copy_(&value)?;
            }
            Ok(())
        })?;
        vs.set_device(compute.device);
        let class_offsets = Tensor::f_zeros([shape.n_classes], (Kind::Float, compute.device))?;
        Ok(TrainedModel {
            vs,
            net,
            classes,
            config,
            history: Vec::new(),
            recoveries: Vec::new(),
            stop,
            compute,
            centers: None,
            prototypes,
            reference_sample,
            class_offsets,
        })
    }

    /// The class logits of embeddings as predictions see them: the classifier's plus the class
    /// offsets.
    pub(crate) fn class_logits(&self, embedding: &Tensor) -> Result<Tensor> {
        Ok(self.net.classify(embedding).f_add(&self.class_offsets)?)
    }

    /// The class centers of the sparse center loss (classes × embedding), once it has run.
    pub fn centers(&self) -> Option<&Tensor> {
        self.centers.as_ref()
    }
}

/// One side's minibatch pushed through the encoder. With the sparse first layer, `leaf` is the
/// pre-bias product that libtorch sees as an input; its gradient comes back to `Encoder`.
pub(crate) struct EncodedBatch<'a> {
    pub z: Tensor,
    leaf: Option<Tensor>,
    matrix: &'a CsrMatrix,
    rows: Vec<usize>,
}

/// The first layer of the network for one step (or one prediction pass), either path.
pub(crate) struct Encoder<'n> {
    net: &'n CellPredXNet,
    compute: Compute,
    /// The encoder weight, input-major, copied once per step for the sparse products.
    weight_t: Vec<f32>,
}

impl<'n> Encoder<'n> {
    pub fn new(net: &'n CellPredXNet, compute: Compute) -> Result<Self> {
        let weight_t = match compute.first_layer {
            FirstLayer::Sparse => {
                let (weight, _) = net.encoder_parameters();
                host_values(&weight.f_detach()?.f_tr()?)?
            }
            FirstLayer::Dense => Vec::new(),
        };
        Ok(Encoder { net, compute, weight_t })
    }

    pub fn encode<'a>(&self, matrix: &'a CsrMatrix, rows: Vec<usize>, track_gradient: bool) -> Result<EncodedBatch<'a>> {
        let width = self.net.shape.embedding_dim;
        let b = rows.len() as i64;
        let (z, leaf) = match self.compute.first_layer {
            FirstLayer::Sparse => {
                let product = sparse_linear::rows_times_dense(matrix, &rows, &self.weight_t, width as usize);
                let leaf = Tensor::f_from_slice(&product)?.f_view([b, width])?.f_to_device(self.compute.device)?;
                let leaf = if track_gradient { leaf.set_requires_grad(true) } else { leaf };
                let (_, bias) = self.net.encoder_parameters();
                let z = match bias {
                    Some(bias) => leaf.f_add(bias)?,
                    None => leaf.shallow_clone(),
                };
                (z, track_gradient.then_some(leaf))
            }
            FirstLayer::Dense => {
                let x = dense_rows(matrix, &rows, self.compute.device)?;
                (self.net.embed(&x), None)
            }
        };
        Ok(EncodedBatch { z, leaf, matrix, rows })
    }

    /// After `backward()`, adds the first layer's weight gradient, dW = dZᵀ·X summed over the
    /// batches, to the weight's gradient (through a surrogate `sum(W ⊙ dW)` whose gradient is dW).
    fn backward_first_layer(&self, batches: &[&EncodedBatch<'_>]) -> Result<()> {
        if self.compute.first_layer == FirstLayer::Dense {
            return Ok(());
        }
        let (weight, _) = self.net.encoder_parameters();
        let (width, input_dim) = (self.net.shape.embedding_dim as usize, self.net.shape.input_dim as usize);
        let mut grad_t = vec![0f32; input_dim * width];
        for batch in batches {
            let Some(leaf) = &batch.leaf else { continue };
            let grad = leaf.grad();
            if !grad.defined() {
                continue;
            }
            let grad = host_values(&grad)?;
            sparse_linear::add_rows_transpose_times_dense(batch.matrix, &batch.rows, &grad, width, &mut grad_t);
        }
        let grad = Tensor::f_from_slice(&grad_t)?.f_view([input_dim as i64, width as i64])?.f_tr()?.f_to_device(weight.device())?;
        weight.f_mul(&grad)?.f_sum(Kind::Float)?.backward();
        Ok(())
    }
}

/// A tensor's values in row-major order, copied to the host.
pub(crate) fn host_values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(&t.f_to_device(Device::Cpu)?.f_contiguous()?.f_flatten(0, -1)?)?)
}

/// `X[rows]` as a dense tensor built on `device` from the non-zeros alone.
pub(crate) fn dense_rows(matrix: &CsrMatrix, rows: &[usize], device: Device) -> Result<Tensor> {
    let (r, c, v) = sparse_linear::rows_coordinates(matrix, rows);
    let dense = Tensor::f_zeros([rows.len() as i64, matrix.n_cols() as i64], (Kind::Float, device))?;
    let index = [Some(Tensor::f_from_slice(&r)?.f_to_device(device)?), Some(Tensor::f_from_slice(&c)?.f_to_device(device)?)];
    Ok(dense.f_index_put(&index, &Tensor::f_from_slice(&v)?.f_to_device(device)?, false)?)
}

/// The weights the L1 penalty applies to, in a fixed (name) order so that the sum, and with it
/// the whole run, is reproducible.
fn penalised_weights(vs: &nn::VarStore) -> Vec<Tensor> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(name, _)| name.ends_with(".weight") && !name.contains(".norm."))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.into_iter().map(|(_, t)| t).collect()
}

/// Reference minibatches: epochs of distinct cells, or draws weighted toward small types.
enum ReferenceSampler {
    Uniform(EpochSampler),
    Balanced(WeightedSampler),
}

impl ReferenceSampler {
    fn new(labels: &Labels, balance: f64) -> Self {
        if balance == 0.0 {
            return ReferenceSampler::Uniform(EpochSampler::new(labels.codes().len()));
        }
        let counts = labels.counts();
        let weights: Vec<f64> = labels.codes().iter().map(|&c| (counts[c as usize] as f64).powf(-balance)).collect();
        ReferenceSampler::Balanced(WeightedSampler::new(&weights))
    }

    fn batch(&mut self, size: usize, rng: &mut SplitMix64) -> Vec<usize> {
        match self {
            ReferenceSampler::Uniform(s) => s.batch(size, rng),
            ReferenceSampler::Balanced(s) => s.batch(size, rng),
        }
    }
}

/// The running mean of the trainable weights over the steps it is given.
struct WeightAverage {
    sums: Vec<(String, Tensor)>,
    count: usize,
}

fn trainable(vs: &nn::VarStore) -> std::collections::HashMap<String, Tensor> {
    vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect()
}

impl WeightAverage {
    fn new(vs: &nn::VarStore) -> Self {
        let mut names: Vec<String> = trainable(vs).into_keys().collect();
        names.sort();
        WeightAverage { sums: names.into_iter().map(|n| (n, Tensor::from(0f32))).collect(), count: 0 }
    }

    fn add(&mut self, vs: &nn::VarStore) -> Result<()> {
        let current = trainable(vs);
        tch::no_grad(|| -> Result<()> {
            for (name, sum) in &mut self.sums {
                if let Some(value) = current.get(name) {
                    *sum = if self.count == 0 { value.f_detach_copy()? } else { sum.f_add(value)? };
                }
            }
            Ok(())
        })?;
        self.count += 1;
        Ok(())
    }

    fn snapshot(&self) -> Result<Self> {
        let sums = self.sums.iter().map(|(name, sum)| Ok((name.clone(), sum.f_detach_copy()?))).collect::<Result<_>>()?;
        Ok(WeightAverage { sums, count: self.count })
    }

    /// Replaces the weights by their mean, when at least one step was added.
    fn install(&self, vs: &nn::VarStore) -> Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let mut current = trainable(vs);
        tch::no_grad(|| -> Result<()> {
            for (name, sum) in &self.sums {
                if let Some(value) = current.get_mut(name) {
                    value.f_copy_(&sum.f_div_scalar(self.count as f64)?)?;
                }
            }
            Ok(())
        })
    }
}

/// Early stop on a converged center loss.
#[derive(Clone)]
struct ConvergenceWatch {
    previous: Option<f64>,
    quiet_steps: usize,
    patience: usize,
    tolerance: f64,
}

impl ConvergenceWatch {
    fn new(patience: usize, tolerance: f64) -> Self {
        ConvergenceWatch { previous: None, quiet_steps: 0, patience, tolerance }
    }

    /// Records a step's center loss; true when it has been still for `patience` steps.
    fn converged(&mut self, loss: f64) -> bool {
        if let Some(previous) = self.previous {
            let change = (loss - previous).abs() / previous.abs().max(1e-12);
            self.quiet_steps = if change < self.tolerance { self.quiet_steps + 1 } else { 0 };
        }
        self.previous = Some(loss);
        self.patience > 0 && self.quiet_steps >= self.patience
    }
}

fn class_codes(labels: &Labels, rows: &[usize], device: Device) -> Result<Tensor> {
    let codes: Vec<i64> = rows.iter().map(|&r| labels.codes()[r] as i64).collect();
    Ok(Tensor::f_from_slice(&codes)?.f_to_device(device)?)
}

/// The places of the prototypes and of the reference sample's embeddings in the variable store
/// (not trained; filled after training).
pub(crate) fn summary_variables(vs: &nn::VarStore, shape: NetworkShape) -> Result<(Tensor, Tensor)> {
    let root = vs.root();
    Ok((
        root.f_zeros_no_train("prototypes", &[shape.n_classes, shape.embedding_dim])?,
        root.f_zeros_no_train("reference_sample", &[shape.reference_cells, shape.embedding_dim])?,
    ))
}

/// In one pass over the reference: the mean embedding of each class (where the centers start
/// when the center loss begins; the prototypes after training) and the embeddings of the
/// reference rows `keep` (in increasing order), in that order.
fn reference_summary(encoder: &Encoder<'_>, data: &TrainingData<'_>, device: Device, keep: &[usize]) -> Result<(Tensor, Tensor)> {
    tch::no_grad(|| {
        let classes = data.labels.classes().len() as i64;
        let width = encoder.net.shape.embedding_dim;
        let mut sums = Tensor::f_zeros([classes, width], (Kind::Float, device))?;
        let mut counts = Tensor::f_zeros([classes], (Kind::Float, device))?;
        let mut kept = vec![Tensor::f_zeros([0, width], (Kind::Float, device))?];
        let mut next_kept = 0;
        let rows: Vec<usize> = (0..data.reference.n_rows()).collect();
        for chunk in rows.chunks(4096) {
            let z = encoder.encode(data.reference, chunk.to_vec(), false)?.z;
            let y = class_codes(data.labels, chunk, device)?;
            sums = sums.f_index_add(0, &y, &z)?;
            counts = counts.f_index_add(0, &y, &y.f_ones_like()?.f_to_kind(Kind::Float)?)?;
            let in_chunk = keep[next_kept..].iter().take_while(|&&row| row <= chunk[chunk.len() - 1]).count();
            if in_chunk > 0 {
                let local: Vec<i64> = keep[next_kept..next_kept + in_chunk].iter().map(|&row| (row - chunk[0]) as i64).collect();
                kept.push(z.f_index_select(0, &Tensor::f_from_slice(&local)?.f_to_device(device)?)?);
                next_kept += in_chunk;
            }
        }
        Ok((sums.f_div(&counts.f_clamp_min(1.0)?.f_unsqueeze(1)?)?, Tensor::f_cat(&kept, 0)?))
    })
}

/// The most the sparse center loss may ask of the encoder in one step: learning rate × γ × its
/// curvature bound (`losses::center_curvature`). Plain gradient descent on a quadratic overshoots
/// once that product passes 2 (with momentum μ, 2(1 + μ)), and the loss then grows without limit;
/// at 1 the center term alone moves an embedding at most the whole way to its center. Where the
/// product would be larger, the term's weight is scaled down to meet it; below, it is γ as set.
const CENTER_STEP_LIMIT: f64 = 1.0;

/// Divergences training recovers from before it gives up with an error.
pub const MAX_RECOVERIES: usize = 5;
/// Steps between the weights training can go back to.
const SNAPSHOT_EVERY: usize = 10;
/// A finite loss counts as diverged above this multiple of the median of the last
/// `LOSS_WINDOW` accepted losses (absolute values; the total can be negative).
const JUMP_FACTOR: f64 = 1e3;
const LOSS_WINDOW: usize = 20;

/// Tells diverged steps from the rest: a total loss that is not finite, or, once
/// `LOSS_WINDOW / 2` steps have been accepted, one whose absolute value exceeds `JUMP_FACTOR`
/// times the median absolute value of the last `LOSS_WINDOW` accepted steps.
#[derive(Clone, Default)]
struct LossWatch {
    recent: std::collections::VecDeque<f64>,
}

impl LossWatch {
    fn diverged(&self, loss: f64) -> bool {
        if !loss.is_finite() {
            return true;
        }
        if self.recent.len() < LOSS_WINDOW / 2 {
            return false;
        }
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        loss.abs() > JUMP_FACTOR * sorted[sorted.len() / 2]
    }

    fn accept(&mut self, loss: f64) {
        if self.recent.len() == LOSS_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(loss.abs());
    }
}

/// What training goes back to after a divergence: every variable, the center-loss state, the
/// weight average, the watches and how much history there was, as they were before `step`.
struct Snapshot {
    step: usize,
    variables: Vec<(String, Tensor)>,
    centers: Option<Tensor>,
    average: WeightAverage,
    watch: ConvergenceWatch,
    losses: LossWatch,
}

fn copy_variables(vs: &nn::VarStore) -> Result<Vec<(String, Tensor)>> {
    tch::no_grad(|| vs.variables().into_iter().map(|(name, t)| Ok((name, t.f_detach_copy()?))).collect())
}

fn restore_variables(vs: &nn::VarStore, saved: &[(String, Tensor)]) -> Result<()> {
    let mut current = vs.variables();
    tch::no_grad(|| {
        for (name, value) in saved {
            if let Some(variable) = current.get_mut(name) {
                variable.f_copy_(value)?;
            }
        }
        Ok(())
    })
}

/// The error after `MAX_RECOVERIES` recoveries did not help, naming what was tried.
fn diverged_error(recoveries: &[Recovery], step: usize, loss: f64, learning_rate: f64, config: &TrainingConfig) -> CellPredXError {
    let tried: Vec<String> = recoveries
        .iter()
        .map(|r| {
            format!("step {} (loss {:e}, learning rate {}) -> back to step {} at {}", r.step, r.loss, r.learning_rate, r.resumed_from, r.new_learning_rate)
        })
        .collect();
    CellPredXError::invalid(format!(
        "training diverged at step {step} (loss {loss:e}, learning rate {learning_rate}) after {} recoveries, each going back to earlier weights at half the learning rate: {}; lower learning_rate (set {}) or the loss weights, or normalise the input",
        recoveries.len(),
        tried.join("; "),
        config.learning_rate
    ))
}

static GLOBAL_GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `draw` right after seeding libtorch's global generator with `seed`, with no other thread
/// drawing from that generator in between (trainings and tests in other threads would otherwise
/// change what a seed gives).
pub(crate) fn seeded<T>(seed: u64, draw: impl FnOnce() -> T) -> T {
    let _exclusive = GLOBAL_GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(seed as i64);
    draw()
}

/// Trains the network. Reports every step to `progress` (whose error stops training, e.g. on
/// Ctrl-C) with the step's losses.
pub fn train(data: &TrainingData<'_>, config: &TrainingConfig, compute: Compute, progress: &mut dyn ProgressSink) -> Result<TrainedModel> {
    train_with_faults(data, config, compute, progress, &[])
}

/// `train`, with the total loss replaced by NaN at the first pass through each step of `faults`
/// (a step trained again after a recovery counts as a new pass), to test the recovery.
pub(crate) fn train_with_faults(
    data: &TrainingData<'_>,
    config: &TrainingConfig,
    compute: Compute,
    progress: &mut dyn ProgressSink,
    faults: &[usize],
) -> Result<TrainedModel> {
    let mut faults: Vec<usize> = faults.to_vec();
    data.validate()?;
    config.validate()?;
    let contrastive_weight = config
        .contrastive_weight
        .ok_or_else(|| CellPredXError::invalid("contrastive_weight must be set to train a network (a transfer chooses it when it is not)"))?;
    let device = compute.device;
    let sample_rows = reference_sample_rows(data.reference.n_rows(), config.seed);
    let shape = NetworkShape {
        input_dim: data.reference.n_cols() as i64,
        embedding_dim: config.embedding_dim,
        context_dim: 64,
        n_classes: data.labels.classes().len() as i64,
        reference_cells: sample_rows.len() as i64,
    };
    // Initialised on the CPU and then moved, so that a seed gives the same start on any device.
    let (mut vs, net, mut prototypes, mut reference_sample) = seeded(config.seed, || -> Result<_> {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = CellPredXNet::new(&vs.root(), shape);
        let (prototypes, reference_sample) = summary_variables(&vs, shape)?;
        Ok((vs, net, prototypes, reference_sample))
    })?;
    vs.set_device(device);
    let sgd = nn::Sgd { momentum: config.momentum, dampening: 0.0, wd: config.weight_decay, nesterov: false };
    let mut optimizer = sgd.build(&vs, config.learning_rate)?;
    let penalised = penalised_weights(&vs);
    let mut rng = SplitMix64::new(config.seed);
    let mut reference_sampler = ReferenceSampler::new(data.labels, config.class_balance);
    let mut query_sampler = EpochSampler::new(data.query.n_rows());
    let reference_batch = config.batch_size.min(data.reference.n_rows());
    let query_batch = config.batch_size.min(data.query.n_rows());
    let k = data.query_graph.neighbours.ncols();
    let max_steps = config.step_limit(data.reference.n_rows(), data.query.n_rows());
    let lr_drop_step = (max_steps as f64 * config.lr_drop_at).ceil() as usize;
    let warmup_steps = (max_steps as f64 * config.center_warmup).round() as usize;

    let (reference_energy, query_energy) = (row_energies(data.reference), row_energies(data.query));
    let mut centers: Option<Tensor> = None;
    let mut watch = ConvergenceWatch::new(config.early_stop_patience, config.early_stop_tolerance);
    let mut history = Vec::with_capacity(max_steps);
    let mut stop = StopReason::MaxSteps;
    let average_from = max_steps - (max_steps as f64 * config.average_last).round() as usize;
    let mut average = WeightAverage::new(&vs);
    let mut losses_watch = LossWatch::default();
    let mut recoveries: Vec<Recovery> = Vec::new();
    // Halved at each recovery, for the rest of the schedule.
    let mut lr_scale = 1.0;
    let mut good: Option<Snapshot> = None;

    let mut step = 1;
    while step <= max_steps {
        let schedule_rate = |scale: f64, step: usize| scale * if step > lr_drop_step { config.learning_rate * 0.1 } else { config.learning_rate };
        let learning_rate = schedule_rate(lr_scale, step);
        optimizer.set_lr(learning_rate);
        // The weights before this step become the snapshot once its loss proves finite.
        let pending = if (step - 1) % SNAPSHOT_EVERY == 0 {
            Some(Snapshot {
                step,
                variables: copy_variables(&vs)?,
                centers: centers.as_ref().map(|c| c.f_detach_copy()).transpose()?,
                average: average.snapshot()?,
                watch: watch.clone(),
                losses: losses_watch.clone(),
            })
        } else {
            None
        };
        let reference_rows = reference_sampler.batch(reference_batch, &mut rng);
        let query_rows = query_sampler.batch(query_batch, &mut rng);
        let neighbour_rows: Vec<usize> =
            query_rows.iter().map(|&q| data.query_graph.neighbours[[q, rng.below(k)]] as usize).collect();

        let encoder = Encoder::new(&net, compute)?;
        let labels = class_codes(data.labels, &reference_rows, device)?;
        let a = encoder.encode(data.reference, reference_rows.clone(), true)?;
        let b = encoder.encode(data.query, query_rows.clone(), true)?;
        let logits_a = net.classify(&a.z);
        let cross_entropy = losses::cross_entropy(&logits_a, &labels)?;
        let mut total = cross_entropy.shallow_clone();
        // Loss values stay on the device until one read per step: each read waits for the GPU.
        let mut terms: Vec<Option<Tensor>> = Vec::with_capacity(5);
        // A loss enters the total times its weight and, for the center loss, its step bound; the
        // history records the loss itself.
        let mut add = |loss: Option<Tensor>, weight: f64, bound: Option<&Tensor>| -> Result<()> {
            if let Some(loss) = &loss {
                let term = match bound {
                    Some(bound) => loss.f_mul(bound)?,
                    None => loss.shallow_clone(),
                };
                total = total.f_add(&term.f_mul_scalar(weight)?)?;
            }
            terms.push(loss.map(|l| l.detach()));
            Ok(())
        };

        let l1 = (config.l1_weight > 0.0).then(|| losses::l1_penalty(&penalised)).transpose()?;
        add(l1, config.l1_weight, None)?;
        let projection = (config.projection_weight > 0.0).then(|| losses::projection_regularization(&a.z, &b.z)).transpose()?;
        add(projection, config.projection_weight, None)?;
        let alignment = (config.alignment_weight > 0.0)
            .then(|| losses::feature_alignment(&a.z, &b.z, config.alignment_keep, config.alignment_hinge.then_some(&mut rng)))
            .transpose()?;
        add(alignment, config.alignment_weight, None)?;
        let neighbours = if contrastive_weight > 0.0 { Some(encoder.encode(data.query, neighbour_rows, true)?) } else { None };
        let contrastive = neighbours.as_ref().map(|n| losses::neighbourhood_contrastive(&b.z, &n.z, config.temperature)).transpose()?;
        add(contrastive, contrastive_weight, None)?;
        let mut center_inputs = None;
        let mut center_bound = None;
        let center = if config.center_weight > 0.0 && step > warmup_steps {
            if centers.is_none() {
                centers = Some(reference_summary(&encoder, data, device, &[])?.0);
            }
            let current = centers.as_ref().map(|c| c.shallow_clone()).unwrap_or_else(|| Tensor::from(0f32));
            let (z, weights, y, kept) = center_batch(&net, &a.z, &labels, &b.z, config.pseudo_label_quantile)?;
            let loss = losses::sparse_center(&z, &weights, &y, &current, config.center_weighting)?;
            let energy = Tensor::f_cat(
                &[gather(&reference_energy, &reference_rows, device)?, gather(&query_energy, &query_rows, device)?.f_index_select(0, &kept)?],
                0,
            )?;
            let curvature = losses::center_curvature(&weights, config.center_weighting, &energy)?;
            let bound = curvature.f_mul_scalar(learning_rate * config.center_weight)?.f_reciprocal()?.f_mul_scalar(CENTER_STEP_LIMIT)?.f_clamp_max(1.0)?;
            center_inputs = Some((z, weights, y));
            center_bound = Some(bound);
            Some(loss)
        } else {
            None
        };
        add(center, config.center_weight, center_bound.as_ref())?;

        optimizer.zero_grad();
        total.backward();
        let mut batches = vec![&a, &b];
        batches.extend(neighbours.as_ref());
        encoder.backward_first_layer(&batches)?;
        optimizer.step();

        if let (Some((z, weights, y)), Some(current)) = (center_inputs, centers.as_ref()) {
            let moved = losses::update_centers(&z.f_detach()?, &weights.f_detach()?, &y, current, config.center_step)?;
            centers = Some(moved);
        }

        let mut read: Vec<Tensor> = vec![total.detach(), cross_entropy.detach()];
        read.extend(terms.iter().flatten().map(|t| t.shallow_clone()));
        let values = Vec::<f64>::try_from(&Tensor::f_stack(&read, 0)?.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?)?;
        let mut rest = values[2..].iter().copied();
        let mut value_of = |term: &Option<Tensor>| term.as_ref().and_then(|_| rest.next());
        let record = StepRecord {
            step,
            learning_rate,
            total: values[0],
            cross_entropy: values[1],
            l1: value_of(&terms[0]),
            projection: value_of(&terms[1]),
            alignment: value_of(&terms[2]),
            contrastive: value_of(&terms[3]),
            center: value_of(&terms[4]),
        };
        let observed = match faults.iter().position(|&f| f == step) {
            Some(i) => {
                faults.remove(i);
                f64::NAN
            }
            None => record.total,
        };
        if losses_watch.diverged(observed) {
            if recoveries.len() == MAX_RECOVERIES {
                return Err(diverged_error(&recoveries, step, observed, learning_rate, config));
            }
            // Step 1 always saves the initial weights, so there is a snapshot to go back to.
            let back = good.as_ref().or(pending.as_ref()).ok_or_else(|| CellPredXError::invalid("no weights saved to recover from"))?;
            restore_variables(&vs, &back.variables)?;
            centers = back.centers.as_ref().map(|c| c.f_detach_copy()).transpose()?;
            average = back.average.snapshot()?;
            watch = back.watch.clone();
            losses_watch = back.losses.clone();
            history.truncate(back.step - 1);
            lr_scale *= 0.5;
            // A fresh optimiser: the momentum that carried the weights away is not carried on.
            optimizer = sgd.build(&vs, schedule_rate(lr_scale, back.step))?;
            let recovery = Recovery { step, loss: observed, learning_rate, resumed_from: back.step, new_learning_rate: schedule_rate(lr_scale, back.step) };
            let metrics = [
                ("diverged_loss", observed),
                ("resumed_from", back.step as f64),
                ("learning_rate", recovery.new_learning_rate),
                ("recoveries", (recoveries.len() + 1) as f64),
            ];
            recoveries.push(recovery);
            step = back.step;
            progress.report(&ProgressEvent { stage: "training", done: step - 1, total: max_steps, metrics: &metrics })?;
            continue;
        }
        losses_watch.accept(observed);
        if let Some(snapshot) = pending {
            good = Some(snapshot);
        }
        let converged = record.center.is_some_and(|loss| watch.converged(loss));
        let mut metrics = vec![("loss", record.total), ("ce", record.cross_entropy)];
        if !recoveries.is_empty() {
            metrics.push(("recoveries", recoveries.len() as f64));
        }
        history.push(record);
        progress.report(&ProgressEvent { stage: "training", done: step, total: max_steps, metrics: &metrics })?;
        if converged {
            stop = StopReason::CenterLossConverged;
        }
        if step > average_from {
            average.add(&vs)?;
        }
        if stop == StopReason::CenterLossConverged {
            break;
        }
        step += 1;
    }
    average.install(&vs)?;
    let encoder = Encoder::new(&net, compute)?;
    let (means, sample) = reference_summary(&encoder, data, device, &sample_rows)?;
    tch::no_grad(|| -> Result<()> {
        prototypes.f_copy_(&means)?;
        reference_sample.f_copy_(&sample)?;
        Ok(())
    })?;
    let class_offsets = Tensor::f_zeros([shape.n_classes], (Kind::Float, device))?;
    Ok(TrainedModel {
        vs,
        net,
        classes: data.labels.classes().to_vec(),
        config: config.clone(),
        history,
        recoveries,
        stop,
        compute,
        centers,
        prototypes,
        reference_sample,
        class_offsets,
    })
}

/// The cells of the center loss: all reference cells with their labels, and the query cells of
/// the batch whose confidence reaches the quantile, with their pseudo-labels.
/// Also returns the positions of the kept query cells in the batch.
fn center_batch(net: &CellPredXNet, z_ref: &Tensor, labels: &Tensor, z_query: &Tensor, quantile: f64) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let (confidence, pseudo) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
        let probabilities = net.classify(z_query).f_softmax(-1, Kind::Float)?;
        Ok(probabilities.f_max_dim(1, false)?)
    })?;
    let cut = confidence.f_quantile_scalar(quantile, None, false, "linear")?;
    let kept = confidence.f_ge_tensor(&cut)?.f_nonzero()?.f_squeeze_dim(1)?;
    let z = Tensor::f_cat(&[z_ref, &z_query.f_index_select(0, &kept)?], 0)?;
    let y = Tensor::f_cat(&[labels, &pseudo.f_index_select(0, &kept)?], 0)?;
    let weights = net.attention(&z, true)?;
    Ok((z, weights, y, kept))
}

/// ‖x̃‖² of every row: its squared values plus 1 for the encoder's bias (`losses::center_curvature`).
fn row_energies(m: &CsrMatrix) -> Vec<f32> {
    (0..m.n_rows()).map(|r| 1.0 + m.row(r).1.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() as f32).collect()
}

fn gather(values: &[f32], rows: &[usize], device: Device) -> Result<Tensor> {
    let picked: Vec<f32> = rows.iter().map(|&r| values[r]).collect();
    Ok(Tensor::f_from_slice(&picked)?.f_to_device(device)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::graph::{knn_graph, Metric};
    use crate::progress::Silent;
    use ndarray::Array2;

    /// Two well-separated cell types in 120 features; the query is the same two types with a
    /// shifted scale (another "protocol"). Deterministic, no RNG crate needed.
    pub(crate) fn toy_pair(n_ref: usize, n_query: usize) -> (CsrMatrix, Labels, CsrMatrix) {
        let features = 120;
        let make = |n: usize, scale: f32, salt: u64| {
            let mut rng = SplitMix64::new(salt);
            let mut dense = vec![0f32; n * features];
            for cell in 0..n {
                let class = cell % 2;
                for f in 0..features {
                    let marker = (f < 60) == (class == 0);
                    let p = if marker { 0.6 } else { 0.1 };
                    if rng.uniform() < p {
                        dense[cell * features + f] = scale * (1.0 + rng.uniform() as f32);
                    }
                }
            }
            CsrMatrix::from_dense_row_major(n, features, &dense).unwrap()
        };
        let reference = make(n_ref, 1.0, 11);
        let query = make(n_query, 1.5, 12);
        let names: Vec<&str> = (0..n_ref).map(|c| if c % 2 == 0 { "alpha" } else { "beta" }).collect();
        let labels = Labels::encode(names.iter().map(|s| Some(*s)), None).unwrap();
        (reference, labels, query)
    }

    pub(crate) fn toy_graph(query: &CsrMatrix) -> KnnGraph {
        let mut dense = Array2::<f32>::zeros((query.n_rows(), query.n_cols()));
        for r in 0..query.n_rows() {
            let (idx, vals) = query.row(r);
            for (&c, &v) in idx.iter().zip(vals) {
                dense[[r, c as usize]] = v;
            }
        }
        knn_graph(dense.view(), 5, Metric::Manhattan, &mut Silent).unwrap()
    }

    pub(crate) fn small_config(steps: usize) -> TrainingConfig {
        TrainingConfig { max_steps: steps, batch_size: 32, center_warmup: 0.5, contrastive_weight: Some(1.2), ..TrainingConfig::preset(Scenario::RnaAtacMatched) }
    }

    fn run(config: &TrainingConfig, compute: Compute) -> TrainedModel {
        let (reference, labels, query) = toy_pair(80, 60);
        let graph = toy_graph(&query);
        let data = TrainingData { reference: &reference, labels: &labels, query: &query, query_graph: &graph };
        train(&data, config, compute, &mut Silent).unwrap()
    }

    fn weights(model: &TrainedModel) -> Vec<f32> {
        let (w, _) = model.net.encoder_parameters();
        Vec::<f32>::try_from(&w.flatten(0, -1)).unwrap()
    }

    #[test]
    fn sparse_first_layer_matches_the_dense_reference() {
        let config = small_config(30);
        let sparse = run(&config, Compute::on(Device::Cpu));
        let dense = run(&config, Compute { device: Device::Cpu, first_layer: FirstLayer::Dense });
        for (s, d) in sparse.history.iter().zip(&dense.history) {
            assert!((s.total - d.total).abs() < 1e-4 * (1.0 + d.total.abs()), "step {}: {} vs {}", s.step, s.total, d.total);
        }
        let max_diff = weights(&sparse).iter().zip(weights(&dense)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max_diff < 1e-4, "encoder weights differ by {max_diff}");
    }

    #[test]
    fn one_pass_gives_the_class_means_and_the_kept_rows_across_chunks() {
        // 9,000 reference cells span three chunks of 4,096; kept rows sit on both sides of each border.
        let (reference, labels, query) = toy_pair(9_000, 10);
        let graph = toy_graph(&query);
        let data = TrainingData { reference: &reference, labels: &labels, query: &query, query_graph: &graph };
        let net = seeded(0, || CellPredXNet::new(&nn::VarStore::new(Device::Cpu).root(), NetworkShape::new(120, 2)));
        let encoder = Encoder::new(&net, Compute::on(Device::Cpu)).unwrap();
        let keep = [0, 3, 4095, 4096, 8191, 8192, 8999];
        let (means, sample) = reference_summary(&encoder, &data, Device::Cpu, &keep).unwrap();
        let all = encoder.encode(&reference, (0..9_000).collect(), false).unwrap().z.detach();
        let direct = all.index_select(0, &Tensor::from_slice(&keep.map(|r| r as i64)));
        assert!(f64::try_from(sample.f_sub(&direct).unwrap().abs().max()).unwrap() < 1e-5);
        // Toy cells alternate alpha, beta.
        for (class, first) in [(0i64, 0i64), (1, 1)] {
            let rows = Tensor::arange_start_step(first, 9_000, 2, (Kind::Int64, Device::Cpu));
            let mean = all.index_select(0, &rows).mean_dim(&[0i64][..], false, Kind::Float);
            assert!(f64::try_from(means.get(class).f_sub(&mean).unwrap().abs().max()).unwrap() < 1e-4);
        }
        assert_eq!(reference_summary(&encoder, &data, Device::Cpu, &[]).unwrap().1.size(), [0, 64]);
    }

    #[test]
    fn same_seed_same_run_other_seed_other_run() {
        let config = small_config(25);
        let (a, b) = (run(&config, Compute::on(Device::Cpu)), run(&config, Compute::on(Device::Cpu)));
        assert_eq!(a.history, b.history);
        assert_eq!(weights(&a), weights(&b));
        let c = run(&TrainingConfig { seed: 1, ..config }, Compute::on(Device::Cpu));
        assert_ne!(weights(&a), weights(&c));
    }

    #[test]
    fn every_loss_is_recorded_and_the_center_loss_waits_for_its_warmup() {
        let model = run(&small_config(20), Compute::on(Device::Cpu));
        assert_eq!(model.history.len(), 20);
        let first = &model.history[0];
        assert!(first.alignment.is_some() && first.contrastive.is_some() && first.projection.is_some() && first.l1.is_some());
        assert!(model.history[..10].iter().all(|r| r.center.is_none()));
        assert!(model.history[10..].iter().all(|r| r.center.is_some()));
        assert!(model.centers().is_some());
        assert_eq!(model.history[9].learning_rate, 0.01);
        assert!((model.history[10].learning_rate - 0.001).abs() < 1e-12);
        let ce_start = model.history[..3].iter().map(|r| r.cross_entropy).sum::<f64>();
        let ce_end = model.history[17..].iter().map(|r| r.cross_entropy).sum::<f64>();
        assert!(ce_end < ce_start, "cross-entropy did not fall: {ce_start} -> {ce_end}");
    }

    #[test]
    fn averaged_weights_are_the_mean_of_the_last_steps() {
        // Without a learning-rate drop or center loss, a run of n steps is the first n steps of
        // a longer run, so the mean over the last 2 of 12 steps is the mean of 11- and 12-step runs.
        let plain = TrainingConfig { lr_drop_at: 1.0, center_weight: 0.0, average_last: 0.0, ..small_config(12) };
        let eleven = weights(&run(&TrainingConfig { max_steps: 11, ..plain.clone() }, Compute::on(Device::Cpu)));
        let twelve = weights(&run(&plain, Compute::on(Device::Cpu)));
        let averaged = weights(&run(&TrainingConfig { average_last: 2.0 / 12.0, ..plain }, Compute::on(Device::Cpu)));
        for ((a, b), m) in eleven.iter().zip(&twelve).zip(&averaged) {
            assert!(((a + b) / 2.0 - m).abs() < 1e-6, "{a} {b} {m}");
        }
        assert_ne!(eleven, twelve);
    }

    #[test]
    fn a_zero_weight_removes_its_loss() {
        let config = TrainingConfig { alignment_weight: 0.0, contrastive_weight: Some(0.0), center_weight: 0.0, projection_weight: 0.0, ..small_config(12) };
        let model = run(&config, Compute::on(Device::Cpu));
        assert!(model.history.iter().all(|r| r.alignment.is_none() && r.contrastive.is_none() && r.center.is_none() && r.projection.is_none()));
        assert!(model.centers().is_none());
    }

    #[test]
    fn the_center_loss_stops_training_once_it_is_still() {
        let mut watch = ConvergenceWatch::new(3, 1e-4);
        let losses = [1.0, 0.5, 0.5, 0.50001, 0.5, 0.5];
        let stops: Vec<bool> = losses.iter().map(|&l| watch.converged(l)).collect();
        assert_eq!(stops, [false, false, false, false, true, true]);
        let mut disabled = ConvergenceWatch::new(0, 1e-4);
        assert!(!(0..50).any(|_| disabled.converged(1.0)));

        // A tolerance no change can pass stops training right after warm-up plus the patience.
        let config = TrainingConfig { early_stop_patience: 3, early_stop_tolerance: f64::INFINITY, ..small_config(40) };
        let model = run(&config, Compute::on(Device::Cpu));
        assert_eq!(model.stop, StopReason::CenterLossConverged);
        assert_eq!(model.history.len(), 20 + 4);
    }

    #[test]
    fn small_datasets_stop_after_max_epochs_passes() {
        let config = TrainingConfig { max_epochs: 3.0, ..small_config(30) };
        // 80 reference and 60 query cells, 32 of each a step: 3 passes over the 80 are 7.5 steps.
        assert_eq!(config.step_limit(80, 60), 8);
        assert_eq!(config.step_limit(60, 80), 8);
        // A side smaller than a batch is drawn whole each step: a step is a pass.
        assert_eq!(config.step_limit(20, 10), 3);
        assert_eq!(TrainingConfig { max_epochs: 1e300, ..config.clone() }.step_limit(80, 60), 30);
        assert_eq!(TrainingConfig { max_epochs: 1e-9, ..config.clone() }.step_limit(80, 60), 1);
        let model = run(&config, Compute::on(Device::Cpu));
        assert_eq!(model.history.len(), 8);
        assert_eq!(model.stop, StopReason::MaxSteps);
        // The schedule follows the steps that run: the learning rate drops after half of them.
        assert_eq!(model.history[3].learning_rate, 0.01);
        assert!((model.history[4].learning_rate - 0.001).abs() < 1e-12);
        // The preset's limit leaves the benchmark pairs' steps alone, but not a tiny dataset's.
        let preset = TrainingConfig::preset(Scenario::RnaAtacUnmatched);
        assert_eq!(preset.step_limit(4_640, 4_550), 3_000);
        assert_eq!(preset.step_limit(1_058, 800), 724);
        for bad in [0.0, -1.0, f64::NAN] {
            let err = TrainingConfig { max_epochs: bad, ..config.clone() }.validate().err().unwrap().to_string();
            assert_eq!(err, format!("max_epochs must be a number > 0, not {bad}"));
        }
    }

    fn run_with_faults(config: &TrainingConfig, faults: &[usize]) -> Result<TrainedModel> {
        let (reference, labels, query) = toy_pair(80, 60);
        let graph = toy_graph(&query);
        let data = TrainingData { reference: &reference, labels: &labels, query: &query, query_graph: &graph };
        train_with_faults(&data, config, Compute::on(Device::Cpu), &mut Silent, faults)
    }

    #[test]
    fn a_diverged_step_goes_back_to_saved_weights_at_half_the_learning_rate() {
        let config = small_config(30);
        let clean = run(&config, Compute::on(Device::Cpu));
        assert!(clean.recoveries.is_empty());
        let model = run_with_faults(&config, &[15]).unwrap();
        // Snapshots are taken before steps 1, 11, 21, ...: step 15 goes back to step 11.
        let [r] = model.recoveries.as_slice() else { panic!("{:?}", model.recoveries) };
        assert_eq!((r.step, r.learning_rate, r.resumed_from, r.new_learning_rate), (15, 0.01, 11, 0.005));
        assert!(r.loss.is_nan());
        // Each step is in the history once; the steps before the snapshot are those of the clean run.
        assert_eq!(model.history.iter().map(|r| r.step).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
        assert_eq!(model.history[..10], clean.history[..10]);
        assert_eq!(model.history[10].learning_rate, 0.005);
        assert!((model.history[15].learning_rate - 0.0005).abs() < 1e-12);
        assert!(model.history.iter().all(|r| r.total.is_finite()));
        assert!(weights(&model).iter().all(|w| w.is_finite()));
        assert_eq!(model.stop, StopReason::MaxSteps);
    }

    #[test]
    fn training_gives_up_after_the_last_recovery_and_says_what_it_tried() {
        // Step 5 diverges on each of its passes: five recoveries, then the error.
        let err = run_with_faults(&small_config(20), &[5; MAX_RECOVERIES + 1]).err().unwrap().to_string();
        assert!(err.starts_with("training diverged at step 5 (loss NaN, learning rate 0.0003125) after 5 recoveries"), "{err}");
        assert!(err.contains("step 5 (loss NaN, learning rate 0.01) -> back to step 1 at 0.005"), "{err}");
        assert!(err.contains("step 5 (loss NaN, learning rate 0.000625) -> back to step 1 at 0.0003125"), "{err}");
        // One divergence fewer is recovered from.
        let model = run_with_faults(&small_config(20), &[5; MAX_RECOVERIES]).unwrap();
        assert_eq!(model.recoveries.len(), MAX_RECOVERIES);
        assert!(model.history.iter().all(|r| r.total.is_finite()) && model.history.len() == 20);
    }

    #[test]
    fn a_loss_a_thousand_times_its_recent_median_counts_as_diverged() {
        let mut watch = LossWatch::default();
        assert!(watch.diverged(f64::INFINITY) && watch.diverged(f64::NAN));
        // Too little history to judge a jump.
        assert!(!watch.diverged(1e9));
        for loss in [1.0, -2.0, 1.5, 0.5, 2.0, 1.0, -1.0, 1.2, 0.8, 1.1] {
            watch.accept(loss);
        }
        // |losses| median: 1.1 (sorted 0.5 0.8 1 1 1 1.1 1.2 1.5 2 2, upper middle).
        assert!(!watch.diverged(1000.0) && !watch.diverged(-1099.0));
        assert!(watch.diverged(1101.0) && watch.diverged(-1101.0));
    }

    #[test]
    fn the_center_step_bound_scales_with_the_input() {
        // Two cells, weights 1: the bound is the mean squared input norm plus 1 for the bias.
        let w = Tensor::ones([2, 4], (Kind::Float, Device::Cpu));
        let energy = Tensor::from_slice(&[3f32, 5.0]);
        let c = losses::center_curvature(&w, CenterWeighting::MeanOne, &energy).unwrap();
        assert!((c.double_value(&[]) - 4.0).abs() < 1e-6);
        let m = CsrMatrix::from_dense_row_major(2, 2, &[1.0, 2.0, 0.0, 3.0]).unwrap();
        assert_eq!(row_energies(&m), [6.0, 10.0]);
    }

    /// Poisson counts of 3 types (200 marker genes each, 8x) over `genes` genes at library sizes
    /// 1e5-5e6 per cell: nearly every gene detected in every cell. `shift` > 0 multiplies each
    /// gene by a log-normal capture efficiency (another protocol). Rows are cells; labels cycle.
    fn deep_library_counts(cells: usize, genes: usize, shift: f64, salt: u64) -> CsrMatrix {
        let mut profile_rng = SplitMix64::new(7);
        let normal = |rng: &mut SplitMix64| (-2.0 * rng.uniform().max(1e-300).ln()).sqrt() * (std::f64::consts::TAU * rng.uniform()).cos();
        let base: Vec<f64> = (0..genes).map(|_| (2.0 * normal(&mut profile_rng)).exp()).collect();
        let mut rng = SplitMix64::new(salt);
        let efficiency: Vec<f64> = (0..genes).map(|_| (shift * normal(&mut rng)).exp()).collect();
        let mut dense = vec![0f32; cells * genes];
        for cell in 0..cells {
            let class = cell % 3;
            let weight = |g: usize| base[g] * efficiency[g] * if g / 200 == class { 8.0 } else { 1.0 };
            let total: f64 = (0..genes).map(weight).sum();
            let depth = (1e5f64.ln() + rng.uniform() * (5e6f64.ln() - 1e5f64.ln())).exp();
            for g in 0..genes {
                let mu = depth * weight(g) / total;
                // Poisson: by inversion for small means, the normal approximation for large ones.
                let x = if mu < 30.0 {
                    let (mut k, mut p, limit) = (0.0, rng.uniform(), (-mu).exp());
                    while p > limit {
                        k += 1.0;
                        p *= rng.uniform();
                    }
                    k
                } else {
                    (mu + mu.sqrt() * normal(&mut rng)).round().max(0.0)
                };
                dense[cell * genes + g] = x as f32;
            }
        }
        CsrMatrix::from_dense_row_major(cells, genes, &dense).unwrap()
    }

    /// Accuracy of calling each query cell the reference type whose centroid (log-normalised)
    /// it correlates with best.
    fn nearest_centroid_accuracy(reference: &CsrMatrix, query: &CsrMatrix) -> f64 {
        let dense = |m: &CsrMatrix| -> Vec<Vec<f64>> {
            let m = crate::preprocess::normalize_log1p(m, 1e4);
            (0..m.n_rows())
                .map(|r| {
                    let mut row = vec![0.0; m.n_cols()];
                    let (idx, vals) = m.row(r);
                    idx.iter().zip(vals).for_each(|(&c, &v)| row[c as usize] = v as f64);
                    row
                })
                .collect()
        };
        let (r, q) = (dense(reference), dense(query));
        let centroids: Vec<Vec<f64>> = (0..3)
            .map(|k| {
                let members: Vec<&Vec<f64>> = r.iter().enumerate().filter(|(i, _)| i % 3 == k).map(|(_, row)| row).collect();
                (0..r[0].len()).map(|g| members.iter().map(|row| row[g]).sum::<f64>() / members.len() as f64).collect()
            })
            .collect();
        let correlation = |a: &[f64], b: &[f64]| {
            let (ma, mb) = (a.iter().sum::<f64>() / a.len() as f64, b.iter().sum::<f64>() / b.len() as f64);
            let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
            cov / (a.iter().map(|x| (x - ma).powi(2)).sum::<f64>() * b.iter().map(|y| (y - mb).powi(2)).sum::<f64>()).sqrt()
        };
        let right = q
            .iter()
            .enumerate()
            .filter(|(i, row)| (0..3).max_by(|&a, &b| correlation(row, &centroids[a]).total_cmp(&correlation(row, &centroids[b]))) == Some(i % 3))
            .count();
        right as f64 / q.len() as f64
    }

    #[test]
    fn a_small_reference_with_deep_libraries_trains_with_every_scenarios_defaults() {
        deep_libraries_with_every_scenario(false);
    }

    // Training is finite, but with the center loss on, some scenarios and seeds stay below the
    // baseline (rna_atac_matched 0.85 against 1.0 here): open work of issue 18.
    #[test]
    #[ignore = "deep libraries train to finite losses but not yet to the nearest-centroid baseline"]
    fn a_small_reference_with_deep_libraries_reaches_the_nearest_centroid_baseline() {
        deep_libraries_with_every_scenario(true);
    }

    fn deep_libraries_with_every_scenario(check_accuracy: bool) {
        use crate::transfer::{transfer, Side, TransferConfig};
        let genes = 15_000;
        let reference = deep_library_counts(210, genes, 0.0, 1);
        let query = deep_library_counts(120, genes, 0.5, 2);
        let names: Vec<String> = (0..genes).map(|g| format!("g{g}")).collect();
        let types = ["alpha", "beta", "gamma"];
        let labels = Labels::encode((0..210).map(|c| Some(types[c % 3])), None).unwrap();
        let baseline = nearest_centroid_accuracy(&reference, &query);
        for scenario in Scenario::ALL {
            let config = TransferConfig { networks: Some(1), ..TransferConfig::preset(scenario) };
            let result = transfer(
                Side { matrix: &reference, features: &names },
                &labels,
                Side { matrix: &query, features: &names },
                &config,
                Compute::on(Device::Cpu),
                &mut Silent,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", scenario.name()));
            assert!(result.model.ensemble.history().all(|(_, r)| r.total.is_finite()), "{}", scenario.name());
            let p = &result.predictions.probabilities;
            assert!(p.iter().all(|v| v.is_finite()), "{}", scenario.name());
            let right = (0..p.nrows())
                .filter(|&i| (0..3).max_by(|&a, &b| p[[i, a]].total_cmp(&p[[i, b]])).map(|k| result.predictions.classes[k].as_str()) == Some(types[i % 3]))
                .count();
            let accuracy = right as f64 / p.nrows() as f64;
            assert!(!check_accuracy || accuracy >= baseline, "{}: accuracy {accuracy} below the nearest-centroid baseline {baseline}", scenario.name());
        }
    }

    #[test]
    fn bad_inputs_and_settings_are_explained() {
        let (reference, labels, query) = toy_pair(20, 10);
        let graph = toy_graph(&query);
        let data = TrainingData { reference: &reference, labels: &labels, query: &reference, query_graph: &graph };
        let err = train(&data, &small_config(5), Compute::on(Device::Cpu), &mut Silent).err().unwrap().to_string();
        assert!(err.contains("rows of the query neighbour graph: expected 20, got 10"), "{err}");
        let data = TrainingData { reference: &reference, labels: &labels, query: &query, query_graph: &graph };
        let bad = TrainingConfig { temperature: 0.0, ..small_config(5) };
        let err = train(&data, &bad, Compute::on(Device::Cpu), &mut Silent).err().unwrap().to_string();
        assert_eq!(err, "temperature must be a finite number > 0, not 0");
        let unset = TrainingConfig { contrastive_weight: None, ..small_config(5) };
        let err = train(&data, &unset, Compute::on(Device::Cpu), &mut Silent).err().unwrap().to_string();
        assert!(err.starts_with("contrastive_weight must be set"), "{err}");
        let negative = TrainingConfig { contrastive_weight: Some(-1.0), ..small_config(5) };
        let err = train(&data, &negative, Compute::on(Device::Cpu), &mut Silent).err().unwrap().to_string();
        assert_eq!(err, "contrastive_weight must be a finite number >= 0, not -1");
        let one_type = Labels::encode((0..20).map(|_| Some("T")), None).unwrap();
        let data = TrainingData { reference: &reference, labels: &one_type, query: &query, query_graph: &graph };
        let err = train(&data, &small_config(5), Compute::on(Device::Cpu), &mut Silent).err().unwrap().to_string();
        assert!(err.contains("single cell type (\"T\")"), "{err}");
        assert!("rna_atac".parse::<Scenario>().unwrap_err().to_string().contains("rna_atac_matched"));
    }
}
