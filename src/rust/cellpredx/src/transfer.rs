//! The whole method in one call (METHOD.md from "Preprocessing" to "Prediction"): match the
//! features, normalise both sides, build the query's neighbour graph, train, predict. The R
//! package and the command-line tool both go through here, so a transfer means the same thing
//! in either.

use crate::error::{CellPredXError, Result};
use crate::graph::{knn_graph, KnnGraph, Metric};
use crate::interpret::{Attributions, IntegratedGradientsConfig};
use crate::labels::Labels;
use crate::predict::{
    calibrated_novelty_cutoff, check_prior_correction, check_smoothing, check_threshold, check_unknown_scale, keep_rows_with_counts, Predictions,
    UnknownDecision, UnknownRule, DEFAULT_THRESHOLD, DEFAULT_UNKNOWN_SCALE,
};
use crate::preprocess::{self, FeatureScaling};
use crate::progress::ProgressSink;
use crate::sparse::CsrMatrix;
use crate::model::NetworkShape;
use crate::ensemble::{check_networks, Ensemble, NetworkRun, DEFAULT_NETWORKS};
use crate::progress::Relabel;
use crate::train::{Compute, Scenario, TrainingConfig, TrainingData};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// How counts become the network's input. Settings, results and model files name each choice
/// as the command line does (`FromStr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Counts (non-negative integers) get `LogNormalize`; anything else is taken as already
    /// normalised and left as it is.
    Auto,
    /// Per-cell library size to 10,000, then ln(1 + x).
    #[serde(rename = "lognormalize")]
    LogNormalize,
    /// Centred log-ratio per cell (`preprocess::normalize_clr`), as for antibody counts.
    Clr,
    Log1p,
    /// x > 0 → 1.
    Binarize,
    /// The values as given.
    #[serde(rename = "none")]
    AsIs,
}

impl std::str::FromStr for Normalization {
    type Err = CellPredXError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Normalization::Auto),
            "lognormalize" => Ok(Normalization::LogNormalize),
            "clr" => Ok(Normalization::Clr),
            "log1p" => Ok(Normalization::Log1p),
            "binarize" => Ok(Normalization::Binarize),
            "none" => Ok(Normalization::AsIs),
            other => Err(CellPredXError::invalid(format!(
                "normalization must be one of auto, lognormalize, clr, log1p, binarize, none; not \"{other}\""
            ))),
        }
    }
}

/// The reduction of the query on which its neighbour graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphReduction {
    /// PCA of the normalised query (RNA, gene activity, proteins).
    Pca,
    /// TF-IDF then truncated SVD of the raw query, first component dropped (peaks).
    Lsi,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    pub normalization: Normalization,
    /// Z-score each feature per dataset (clipped at 10) after normalising; `None` scales small
    /// panels only (at most `SCALE_AUTO_MAX_FEATURES` shared features, e.g. proteins), where
    /// the dense result is cheap and there is no sparsity to keep.
    pub scale: Option<bool>,
    /// Keep only the top highly variable features of each side (Seurat v3 vst) that both
    /// share; `None` keeps every shared feature.
    pub variable_features: Option<usize>,
    pub graph_reduction: GraphReduction,
    pub graph_components: usize,
    pub graph_neighbours: usize,
    /// `None` chooses by `auto_graph_metric`.
    pub graph_metric: Option<Metric>,
}

impl PreprocessConfig {
    pub fn preset(scenario: Scenario) -> Self {
        let (normalization, graph_reduction) = match scenario {
            Scenario::RnaAtacMatched | Scenario::RnaAtacUnmatched => (Normalization::Binarize, GraphReduction::Pca),
            Scenario::AtacAtac => (Normalization::Log1p, GraphReduction::Lsi),
            Scenario::RnaRna => (Normalization::Auto, GraphReduction::Pca),
        };
        PreprocessConfig {
            normalization,
            scale: None,
            variable_features: None,
            graph_reduction,
            graph_components: 50,
            graph_neighbours: 10,
            graph_metric: None,
        }
    }
}

/// Everything a transfer is set up with; `TransferConfig::preset` gives a scenario's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferConfig {
    pub scenario: Scenario,
    pub preprocess: PreprocessConfig,
    pub training: TrainingConfig,
    /// Which cells are called Unknown.
    pub unknown: UnknownRule,
    /// `UnknownRule::Calibrated`: robust standard deviations above the median novelty.
    pub unknown_scale: f64,
    /// `UnknownRule::Threshold`: the confidence below which a cell is called Unknown.
    pub threshold: f64,
    /// Share of each cell's class probabilities taken from its neighbours in the embedding,
    /// in each of `SMOOTHING_STEPS` rounds (0 = none; `Ensemble::predict`); `None` chooses
    /// by `auto_smoothing`.
    pub smoothing: Option<f64>,
    /// Networks trained with consecutive seeds whose predictions are averaged (`ensemble`);
    /// `None` chooses by `auto_networks`.
    pub networks: Option<usize>,
    /// Share of the class-balanced sampling's tilt toward small types that prediction takes
    /// back (`Ensemble::correct_priors`): 0 keeps the balanced prior, 1 restores the
    /// reference's composition. `None` chooses by `auto_prior_correction`.
    pub prior_correction: Option<f64>,
}

impl TransferConfig {
    pub fn preset(scenario: Scenario) -> Self {
        TransferConfig {
            scenario,
            preprocess: PreprocessConfig::preset(scenario),
            training: TrainingConfig::preset(scenario),
            unknown: UnknownRule::Calibrated,
            unknown_scale: DEFAULT_UNKNOWN_SCALE,
            threshold: DEFAULT_THRESHOLD,
            smoothing: None,
            networks: None,
            prior_correction: None,
        }
    }
}

/// Whether a query cell carries little evidence of its own: gene activity read from chromatin
/// (RNA → ATAC) or a small panel of features (the ones scaled, e.g. proteins). There, smoothing
/// over neighbours and averaging several networks — both of which average away one cell's or one
/// network's noise — raised accuracy and macro-F1 on the benchmark pairs; where small types sit
/// beside large ones in an informative space (peaks → peaks, P3; PBMC RNA → RNA, P5) both cost
/// macro-F1 or gave nothing (bench/NOTES.md).
fn little_evidence_per_cell(scenario: Scenario, scaled: bool) -> bool {
    match scenario {
        Scenario::RnaAtacMatched | Scenario::RnaAtacUnmatched => true,
        Scenario::RnaRna | Scenario::AtacAtac => scaled,
    }
}

/// The smoothing `smoothing: None` gives where a cell carries little evidence of its own: 0.5
/// for RNA → ATAC (accuracy +0.05 on P1, +0.03 on P2; more cost macro-F1) and 0.8 for panels
/// (P4 0.933 / 0.943 → 0.944 / 0.954 against 0.5, P6 level); none otherwise (macro-F1 fell on
/// P3 and P5). Measured over 3 seeds (bench/NOTES.md).
fn auto_smoothing(scenario: Scenario, scaled: bool) -> f64 {
    match scenario {
        Scenario::RnaAtacMatched | Scenario::RnaAtacUnmatched => 0.5,
        Scenario::RnaRna | Scenario::AtacAtac if scaled => 0.8,
        Scenario::RnaRna | Scenario::AtacAtac => 0.0,
    }
}

/// The networks `networks: None` gives: `DEFAULT_NETWORKS` where a cell carries little evidence
/// of its own, one otherwise. Measured (3 seeds, accuracy / macro-F1, ensemble of 3 against one
/// network; bench/NOTES.md): P1 0.587 / 0.349 → 0.602 / 0.365, P2 0.598 / 0.334 → 0.618 / 0.347,
/// P4 0.926 / 0.937 → 0.928 / 0.940, P6 0.996 / 0.986 → 0.999 / 0.998; P5 0.850 / 0.679 →
/// 0.848 / 0.672 (fewer CD8 T cells found), P3 0.713 / 0.407 → 0.716 / 0.409 (seed 0).
fn auto_networks(scenario: Scenario, scaled: bool) -> usize {
    if little_evidence_per_cell(scenario, scaled) {
        DEFAULT_NETWORKS
    } else {
        1
    }
}

/// The contrastive weight α `contrastive_weight: None` gives. RNA → ATAC: 1.2 (the paper's
/// unmatched preset, for matched data too: macro-F1 on P1 0.31 → 0.34). Peaks: the paper's 0.1.
/// RNA → RNA: 0.5 (the paper's 0.1 gave P4 0.916 / 0.929 against 0.926 / 0.937, P5 and P6
/// level), and 0.8 for scaled panels, whose cells carry little evidence of their own, so that
/// their neighbourhoods in the query weigh more (3 seeds, ensembles of 3: P4 0.928 / 0.940 →
/// 0.933 / 0.943, AUROC 0.893 → 0.890; P6 level at 0.999 / 0.998).
fn auto_contrastive_weight(scenario: Scenario, scaled: bool) -> f64 {
    match scenario {
        Scenario::RnaAtacMatched | Scenario::RnaAtacUnmatched => 1.2,
        Scenario::AtacAtac => 0.1,
        Scenario::RnaRna if scaled => 0.8,
        Scenario::RnaRna => 0.5,
    }
}

/// The prior correction `prior_correction: None` gives: 0.5 where the query is the reference's
/// own cells measured another way (rna_atac_matched), whose composition is therefore the
/// reference's; none where the query's composition is unknown. Measured (5 seeds, ensembles of
/// 3; bench/NOTES.md): P1 0.602 / 0.365 → 0.631 / 0.365; the same correction cost P2 (drawn
/// uniformly, so untouched by this rule) and P4 macro-F1, whose queries are other samples.
fn auto_prior_correction(scenario: Scenario) -> f64 {
    match scenario {
        Scenario::RnaAtacMatched => 0.5,
        Scenario::RnaAtacUnmatched | Scenario::RnaRna | Scenario::AtacAtac => 0.0,
    }
}

/// The metric of the query's neighbour graph `graph_metric: None` gives: Manhattan (the
/// authors') where a cell carries little evidence of its own, cosine where it carries plenty —
/// the angle ignores how far a cell's whole profile sits from the origin, which there follows
/// sequencing depth more than type. Measured (3 seeds, accuracy / macro-F1): P5 0.850 / 0.679 →
/// 0.851 / 0.684 (every seed higher), P3 0.713 / 0.407 → 0.716 / 0.411; on the panels cosine
/// cost macro-F1 (P4 0.940 → 0.938, P6 0.998 → 0.992).
fn auto_graph_metric(scenario: Scenario, scaled: bool) -> Metric {
    if little_evidence_per_cell(scenario, scaled) {
        Metric::Manhattan
    } else {
        Metric::Cosine
    }
}

/// The fewest query cells (with counts) a transfer trains on: its neighbour graph and the
/// query's PCA need a few cells; fewer than this are annotated with a trained model instead.
pub const MIN_QUERY_CELLS: usize = 3;

/// One side of a transfer: cells × features with the features' names.
pub struct Side<'a> {
    pub matrix: &'a CsrMatrix,
    pub features: &'a [String],
}

impl Side<'_> {
    /// A name per feature, and values the method can take: counts or normalised data, finite
    /// and not negative (scaled data would be taken for counts by nothing and break log1p).
    fn validate(&self, what: &str) -> Result<()> {
        if self.features.len() != self.matrix.n_cols() {
            return Err(CellPredXError::DimensionMismatch { what: format!("{what} feature names"), expected: self.matrix.n_cols(), got: self.features.len() });
        }
        let (non_finite, negative) = self.matrix.count_invalid_values();
        if non_finite > 0 {
            return Err(CellPredXError::invalid(format!("{non_finite} missing or infinite values in {what}; remove those cells or features, or replace the values")));
        }
        if negative > 0 {
            return Err(CellPredXError::invalid(format!(
                "{negative} negative values in {what}; give raw counts or normalised (log) data, not scaled data"
            )));
        }
        Ok(())
    }
}

/// The result of a transfer: the fitted model, the query's predictions and how each side was
/// normalised.
pub struct Transfer {
    pub model: TransferModel,
    pub predictions: Predictions,
    pub normalization: [Normalization; 2],
    /// The configuration as run: every `None` (automatic) setting replaced by its choice.
    pub config: TransferConfig,
}

/// What a fitted model needs beside its weights to annotate new cells; saved as `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDescription {
    pub format: u32,
    pub package_version: String,
    pub scenario: Scenario,
    pub shape: NetworkShape,
    /// The input features, in the network's order.
    pub features: Vec<String>,
    pub classes: Vec<String>,
    /// As configured: `Auto` is resolved again for each dataset.
    pub normalization: Normalization,
    pub scale: bool,
    pub unknown: UnknownRule,
    pub unknown_scale: f64,
    pub threshold: f64,
    /// `UnknownRule::Calibrated`'s cut-off, calibrated on the training query: new cells are
    /// judged against the cells the model was fitted to.
    pub novelty_cutoff: f32,
    /// The smoothing the transfer used (`TransferConfig::smoothing` resolved), applied to new
    /// cells as to the training query.
    pub smoothing: f64,
    /// Reference cells of each class, in class order: the composition `prior_correction` moves
    /// the classifiers' prior toward.
    pub class_cells: Vec<usize>,
    /// `TransferConfig::prior_correction` resolved.
    pub prior_correction: f64,
    /// As configured, with the seed of the first network and the contrastive weight resolved.
    pub training: TrainingConfig,
    /// How each network was trained (`TransferConfig::networks` resolved).
    pub networks: Vec<NetworkRun>,
}

/// 3: several networks in one weights file (`Ensemble::save_weights`); 4: the reference's
/// composition and the prior correction; 5: the Unknown rule and its novelty cut-off.
const MODEL_FORMAT: u32 = 5;
const WEIGHTS_FILE: &str = "model.safetensors";
const DESCRIPTION_FILE: &str = "model.json";

/// Trained networks with their description: reusable on new cells, savable and loadable.
pub struct TransferModel {
    pub ensemble: Ensemble,
    pub description: ModelDescription,
}

impl TransferModel {
    /// `cells` in the model's features, in its order (others ignored, missing ones zero).
    fn aligned(&self, cells: Side<'_>) -> Result<CsrMatrix> {
        let features = &self.description.features;
        let position: HashMap<&str, u32> = features.iter().enumerate().map(|(i, f)| (f.as_str(), i as u32)).collect();
        let column_map: Vec<Option<u32>> = cells.features.iter().map(|f| position.get(f.as_str()).copied()).collect();
        let present = column_map.iter().flatten().count();
        if present < preprocess::MIN_SHARED_FEATURES.min(features.len()) {
            return Err(CellPredXError::invalid(format!(
                "only {present} of the model's {} features are among the {} features of the cells to annotate; at least {} are needed",
                features.len(),
                cells.features.len(),
                preprocess::MIN_SHARED_FEATURES
            )));
        }
        let m = cells.matrix;
        let (mut indptr, mut indices, mut values) = (vec![0usize], Vec::new(), Vec::new());
        let mut row: Vec<(u32, f32)> = Vec::new();
        for r in 0..m.n_rows() {
            let (idx, vals) = m.row(r);
            row.clear();
            row.extend(idx.iter().zip(vals).filter_map(|(&c, &v)| column_map[c as usize].map(|k| (k, v))));
            row.sort_unstable_by_key(|&(k, _)| k);
            indices.extend(row.iter().map(|&(k, _)| k));
            values.extend(row.iter().map(|&(_, v)| v));
            indptr.push(indices.len());
        }
        CsrMatrix::try_new(m.n_rows(), features.len(), indptr, indices, values)
    }

    /// The network's input for aligned cells: normalised and scaled as the training query was.
    fn network_input(&self, aligned: &CsrMatrix) -> Result<CsrMatrix> {
        let normalized = normalize(aligned, resolve(self.description.normalization, aligned));
        if self.description.scale {
            scaled(&normalized)
        } else {
            Ok(normalized)
        }
    }

    /// Probabilities and embeddings of new cells (cells × features with the features' names).
    pub fn predict(&self, cells: Side<'_>, progress: &mut dyn ProgressSink) -> Result<Predictions> {
        cells.validate("the cells to annotate")?;
        let features = self.description.features.len();
        let (aligned, has_counts) = keep_rows_with_counts(self.aligned(cells)?, |cells| {
            format!("none of the {cells} cells to annotate has a value above zero in the model's {features} features; check that their counts (or normalised values) are in the matrix given")
        })?;
        Ok(self.ensemble.predict(&self.network_input(&aligned)?, self.description.smoothing, progress)?.with_cells_without_counts(&has_counts))
    }

    /// Integrated Gradients of new cells (cells × features with the features' names) with
    /// respect to the model's features.
    pub fn interpret(&self, cells: Side<'_>, config: &IntegratedGradientsConfig, progress: &mut dyn ProgressSink) -> Result<Attributions> {
        cells.validate("the cells to interpret")?;
        self.ensemble.integrated_gradients(&self.network_input(&self.aligned(cells)?)?, config, progress)
    }

    /// Writes `model.safetensors` (weights) and `model.json` (this description) into `dir`. A
    /// model already there is replaced only when `overwrite` says so; an empty path, or a path
    /// that is a file, is refused.
    pub fn save(&self, dir: &Path, overwrite: bool) -> Result<()> {
        Self::check_save_target(dir, overwrite)?;
        std::fs::create_dir_all(dir).map_err(|e| CellPredXError::io(format!("cannot create {}", dir.display()), e))?;
        self.ensemble.save_weights(&dir.join(WEIGHTS_FILE))?;
        let text = serde_json::to_string_pretty(&self.description).map_err(|e| CellPredXError::invalid(e.to_string()))?;
        let path = dir.join(DESCRIPTION_FILE);
        std::fs::write(&path, text + "\n").map_err(|e| CellPredXError::io(format!("cannot write {}", path.display()), e))
    }

    /// Whether `save` may write into `dir`: refuses an empty path, a file, and a model already
    /// there unless `overwrite`.
    pub fn check_save_target(dir: &Path, overwrite: bool) -> Result<()> {
        if dir.as_os_str().is_empty() {
            return Err(CellPredXError::invalid("the model path is empty; give a directory to save the model in"));
        }
        if dir.exists() && !dir.is_dir() {
            return Err(CellPredXError::invalid(format!("{} is a file, not a directory; give a directory to save the model in", dir.display())));
        }
        let existing: Vec<&str> = [WEIGHTS_FILE, DESCRIPTION_FILE].into_iter().filter(|f| dir.join(f).exists()).collect();
        if !existing.is_empty() && !overwrite {
            return Err(CellPredXError::invalid(format!(
                "{} already holds a model ({}); choose another directory, or replace it (R: overwrite = TRUE; command line: --overwrite-model)",
                dir.display(),
                existing.join(", ")
            )));
        }
        Ok(())
    }

    /// Reads a model written by `save`. A model file may come from anyone: every size and value
    /// in its description is checked, and the weights file's size against the sizes, before
    /// anything is allocated for them.
    pub fn load(dir: &Path, compute: Compute) -> Result<Self> {
        let path = dir.join(DESCRIPTION_FILE);
        let text = read_bounded(&path, MAX_DESCRIPTION_BYTES, "the model description")?;
        let not_a_description = |e: serde_json::Error| CellPredXError::invalid(format!("{} is not a CellPredX model description: {e}", path.display()));
        // The format first: another format's description need not parse as this one's.
        let value: serde_json::Value = serde_json::from_str(&text).map_err(not_a_description)?;
        let format = value.get("format").and_then(serde_json::Value::as_u64);
        if format != Some(u64::from(MODEL_FORMAT)) {
            return Err(CellPredXError::invalid(format!(
                "{} has model format {}, and this version of CellPredX reads format {MODEL_FORMAT}; train the model again with this version",
                path.display(),
                format.map_or_else(|| "(none)".to_string(), |f| f.to_string())
            )));
        }
        let description: ModelDescription = serde_json::from_value(value).map_err(not_a_description)?;
        description.check().map_err(|why| CellPredXError::invalid(format!("{}: {why}; the file is damaged or was not written by CellPredX", path.display())))?;
        let weights = dir.join(WEIGHTS_FILE);
        description.check_weights_size(&weights)?;
        let mut ensemble = Ensemble::load_weights(&weights, description.shape, &description.classes, &description.training, &description.networks, compute)?;
        ensemble.correct_priors(&description.class_cells, description.prior_correction).map_err(|e| CellPredXError::invalid(format!("{}: {e}", path.display())))?;
        Ok(TransferModel { ensemble, description })
    }
}

/// The largest model description read: a model of a million features with long names is a few
/// tens of MB.
const MAX_DESCRIPTION_BYTES: u64 = 256 << 20;

/// Room in a weights file beside the numbers: the safetensors header that names each tensor.
const MAX_WEIGHTS_HEADER_BYTES: u64 = 1 << 20;

fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<String> {
    let size = std::fs::metadata(path).map_err(|e| CellPredXError::io(format!("cannot read {what} {}", path.display()), e))?.len();
    if size > limit {
        return Err(CellPredXError::invalid(format!("{} has {size} bytes, more than a {what} can have ({limit}); it is not a CellPredX model", path.display())));
    }
    std::fs::read_to_string(path).map_err(|e| CellPredXError::io(format!("cannot read {what} {}", path.display()), e))
}

impl ModelDescription {
    /// The model's own Unknown rule, or `rule` / `threshold` where the caller chooses another.
    pub fn unknown_decision(&self, rule: Option<UnknownRule>, threshold: Option<f64>) -> Result<UnknownDecision> {
        let threshold = threshold.unwrap_or(self.threshold);
        check_threshold(threshold)?;
        Ok(UnknownDecision { rule: rule.unwrap_or(self.unknown), threshold, novelty_cutoff: self.novelty_cutoff })
    }

    /// Every size and value within its bounds and consistent with the others, in the file's
    /// own field names.
    fn check(&self) -> std::result::Result<(), String> {
        let shape = &self.shape;
        if shape.input_dim < 1 || shape.input_dim as usize != self.features.len() {
            return Err(format!("shape.input_dim is {}, and the model lists {} features", shape.input_dim, self.features.len()));
        }
        if shape.n_classes < 2 || shape.n_classes as usize != self.classes.len() {
            return Err(format!("shape.n_classes is {}, and the model lists {} classes (at least 2)", shape.n_classes, self.classes.len()));
        }
        for (name, width) in [("shape.embedding_dim", shape.embedding_dim), ("shape.context_dim", shape.context_dim)] {
            if !(2..=crate::model::MAX_LAYER_WIDTH).contains(&width) {
                return Err(format!("{name} is {width}; a CellPredX model has 2 to {}", crate::model::MAX_LAYER_WIDTH));
            }
        }
        if shape.embedding_dim != self.training.embedding_dim {
            return Err(format!("shape.embedding_dim is {} but training.embedding_dim is {}", shape.embedding_dim, self.training.embedding_dim));
        }
        if self.class_cells.len() != self.classes.len() || self.class_cells.contains(&0) {
            return Err(format!("class_cells has {} counts for {} classes; each class needs at least one cell", self.class_cells.len(), self.classes.len()));
        }
        let reference_cells: usize = self.class_cells.iter().sum();
        if shape.reference_cells < 0 || shape.reference_cells as usize > reference_cells {
            return Err(format!("shape.reference_cells is {}, and the reference had {reference_cells} cells (class_cells)", shape.reference_cells));
        }
        check_threshold(self.threshold).map_err(|e| e.to_string())?;
        check_unknown_scale(self.unknown_scale).map_err(|e| e.to_string())?;
        if self.novelty_cutoff.is_nan() {
            return Err("novelty_cutoff is not a number".into());
        }
        check_smoothing(self.smoothing).map_err(|e| e.to_string())?;
        check_prior_correction(self.prior_correction).map_err(|e| e.to_string())?;
        check_networks(self.networks.len()).map_err(|e| format!("{} networks: {e}", self.networks.len()))?;
        self.training.validate().map_err(|e| format!("training: {e}"))
    }

    /// The weights file holds exactly the numbers the description's networks need (float32),
    /// plus a header: checked on the file's size, so that a description claiming huge layers
    /// is refused before anything is read or allocated.
    fn check_weights_size(&self, weights: &Path) -> Result<()> {
        let not_these = |why: String| CellPredXError::invalid(format!("{} is missing, truncated or not the weights of this model: {why}", weights.display()));
        let size = std::fs::metadata(weights).map_err(|e| not_these(e.to_string()))?.len();
        let values = self.shape.stored_values().and_then(|v| v.checked_mul(self.networks.len() as i64)).and_then(|v| v.checked_mul(4));
        let needed = values.and_then(|v| u64::try_from(v).ok()).ok_or_else(|| not_these("the model description's sizes overflow".into()))?;
        if size < needed || size > needed.saturating_add(MAX_WEIGHTS_HEADER_BYTES) {
            return Err(not_these(format!(
                "it has {size} bytes, and {} network(s) of the described shape need {needed} bytes of weights",
                self.networks.len()
            )));
        }
        Ok(())
    }
}

/// The feature count up to which `scale: None` scales. On the benchmark pairs, scaling raised
/// the open-set AUROC of both small panels (P4: 227 proteins, P6: 219 genes) and lowered P5's
/// accuracy at 2,000 genes (bench/NOTES.md).
pub const SCALE_AUTO_MAX_FEATURES: usize = 500;

fn is_counts(m: &CsrMatrix) -> bool {
    m.values().iter().all(|&v| v >= 0.0 && v.fract() == 0.0)
}

/// Resolves `Auto` for one side.
fn resolve(normalization: Normalization, m: &CsrMatrix) -> Normalization {
    match normalization {
        Normalization::Auto if is_counts(m) => Normalization::LogNormalize,
        Normalization::Auto => Normalization::AsIs,
        other => other,
    }
}

fn normalize(m: &CsrMatrix, normalization: Normalization) -> CsrMatrix {
    match normalization {
        Normalization::LogNormalize => preprocess::normalize_log1p(m, 1e4),
        Normalization::Clr => preprocess::normalize_clr(m),
        Normalization::Log1p => preprocess::log1p(m),
        Normalization::Binarize => preprocess::binarize(m),
        Normalization::Auto | Normalization::AsIs => m.clone(),
    }
}

/// Every entry of `m` z-scored per feature: a dense matrix in CSR form, which is what scaling
/// makes of sparse data (meant for small feature sets, such as protein panels).
fn scaled(m: &CsrMatrix) -> Result<CsrMatrix> {
    let scaling = FeatureScaling::fit(m, 10.0);
    let mut dense = vec![0f32; m.n_rows() * m.n_cols()];
    for (r, row) in dense.chunks_mut(m.n_cols().max(1)).enumerate().take(m.n_rows()) {
        let (indices, values) = m.row(r);
        for (&c, &v) in indices.iter().zip(values) {
            row[c as usize] = v;
        }
        scaling.apply_row(row);
    }
    CsrMatrix::from_dense_row_major(m.n_rows(), m.n_cols(), &dense)
}

/// The features both sides share, restricted to both sides' highly variable ones if asked.
fn shared_features(reference: &Side<'_>, query: &Side<'_>, variable: Option<usize>) -> Result<preprocess::FeatureMatch> {
    let Some(n_top) = variable else {
        return preprocess::match_features(reference.features, query.features);
    };
    let top = |side: &Side<'_>| -> Vec<String> {
        let mut picked = preprocess::highly_variable_features(side.matrix, n_top);
        picked.sort_unstable();
        picked.into_iter().map(|c| side.features[c].clone()).collect()
    };
    let (ref_top, query_top) = (top(reference), top(query));
    let query_set: std::collections::HashSet<&String> = query_top.iter().collect();
    let kept: Vec<String> = ref_top.into_iter().filter(|f| query_set.contains(f)).collect();
    let all = preprocess::match_features(reference.features, query.features)?;
    let keep: std::collections::HashSet<&String> = kept.iter().collect();
    let picked: Vec<usize> = (0..all.names.len()).filter(|&i| keep.contains(&all.names[i])).collect();
    if picked.len() < preprocess::MIN_SHARED_FEATURES {
        return Err(CellPredXError::invalid(format!(
            "only {} of the top {n_top} variable features are shared by reference and query; at least {} are needed: raise variable_features or keep all shared features",
            picked.len(),
            preprocess::MIN_SHARED_FEATURES
        )));
    }
    Ok(preprocess::FeatureMatch {
        names: picked.iter().map(|&i| all.names[i].clone()).collect(),
        reference: picked.iter().map(|&i| all.reference[i]).collect(),
        query: picked.iter().map(|&i| all.query[i]).collect(),
    })
}

fn query_graph(raw: &CsrMatrix, normalized: &CsrMatrix, config: &PreprocessConfig, metric: Metric, seed: u64, progress: &mut dyn ProgressSink) -> Result<KnnGraph> {
    let svd = match config.graph_reduction {
        GraphReduction::Pca => preprocess::pca(normalized, config.graph_components, seed)?,
        GraphReduction::Lsi => preprocess::lsi(raw, config.graph_components, seed)?,
    };
    let embedding = Array2::from_shape_vec((svd.n_cells, svd.k), svd.embedding)
        .map_err(|_| CellPredXError::invalid("the query reduction has an unexpected shape"))?;
    neighbour_graph(embedding.view(), config, metric, progress)
}

fn neighbour_graph(embedding: ArrayView2<'_, f32>, config: &PreprocessConfig, metric: Metric, progress: &mut dyn ProgressSink) -> Result<KnnGraph> {
    let k = config.graph_neighbours.min(embedding.nrows().saturating_sub(1)).max(1);
    knn_graph(embedding, k, metric, progress)
}

/// Runs a transfer.
pub fn transfer(
    reference: Side<'_>,
    labels: &Labels,
    query: Side<'_>,
    config: &TransferConfig,
    compute: Compute,
    progress: &mut dyn ProgressSink,
) -> Result<Transfer> {
    if labels.codes().len() != reference.matrix.n_rows() {
        return Err(CellPredXError::DimensionMismatch { what: "reference labels".into(), expected: reference.matrix.n_rows(), got: labels.codes().len() });
    }
    reference.validate("the reference")?;
    query.validate("the query")?;
    config.training.validate()?;
    if let Some(networks) = config.networks {
        check_networks(networks)?;
    }
    if let Some(smoothing) = config.smoothing {
        check_smoothing(smoothing)?;
    }
    if let Some(correction) = config.prior_correction {
        check_prior_correction(correction)?;
    }
    check_threshold(config.threshold)?;
    check_unknown_scale(config.unknown_scale)?;
    let matched = shared_features(&reference, &query, config.preprocess.variable_features)?;
    let reference_raw = preprocess::select_columns(reference.matrix, &matched.reference);
    let query_raw = preprocess::select_columns(query.matrix, &matched.query);
    // Cells without counts in the shared features carry no evidence: they neither train nor
    // shape the neighbour graph, and are predicted as such (`with_cells_without_counts`).
    let shared = matched.names.len();
    let (query_raw, has_counts) = keep_rows_with_counts(query_raw, |cells| {
        format!("none of the {cells} query cells has a value above zero in the {shared} features it shares with the reference; check that the query's counts (or normalised values) are in the assay and layer given")
    })?;
    if query_raw.n_rows() < MIN_QUERY_CELLS {
        return Err(CellPredXError::invalid(format!(
            "the query has {} cell(s) with counts; a transfer needs at least {MIN_QUERY_CELLS}, since the query's neighbourhoods shape training. To annotate a few cells, train on a larger query (or the reference's own cells) and predict these with the model",
            query_raw.n_rows()
        )));
    }
    let normalization = [resolve(config.preprocess.normalization, &reference_raw), resolve(config.preprocess.normalization, &query_raw)];
    let mut reference_input = normalize(&reference_raw, normalization[0]);
    drop(reference_raw);
    let mut query_input = normalize(&query_raw, normalization[1]);
    let scale = config.preprocess.scale.unwrap_or(matched.names.len() <= SCALE_AUTO_MAX_FEATURES);
    let networks = config.networks.unwrap_or_else(|| auto_networks(config.scenario, scale));
    let metric = config.preprocess.graph_metric.unwrap_or_else(|| auto_graph_metric(config.scenario, scale));
    let smoothing = config.smoothing.unwrap_or_else(|| auto_smoothing(config.scenario, scale));
    let prior_correction = config.prior_correction.unwrap_or_else(|| auto_prior_correction(config.scenario));
    // Every automatic choice, made once: what the networks are trained with and what the
    // caller is told was run.
    let run = TransferConfig {
        preprocess: PreprocessConfig { scale: Some(scale), graph_metric: Some(metric), ..config.preprocess.clone() },
        training: TrainingConfig {
            contrastive_weight: Some(config.training.contrastive_weight.unwrap_or_else(|| auto_contrastive_weight(config.scenario, scale))),
            max_steps: config.training.step_limit(reference_input.n_rows(), query_input.n_rows()),
            ..config.training.clone()
        },
        smoothing: Some(smoothing),
        networks: Some(networks),
        prior_correction: Some(prior_correction),
        ..config.clone()
    };
    // Each network's neighbour graph comes from a reduction with its own seed, so that the i-th
    // network is the one a single-network transfer with seed + i trains (to the rounding of its
    // share of the threads, `Schedule`).
    let graphs = (0..networks)
        .map(|i| {
            let mut sink = Relabel::stage(progress, "neighbour graph", (networks > 1).then(|| format!("neighbour graph {} of {networks}", i + 1)));
            query_graph(&query_raw, &query_input, &config.preprocess, metric, run.training.seed.wrapping_add(i as u64), &mut sink)
        })
        .collect::<Result<Vec<_>>>()?;
    drop(query_raw);
    if scale {
        reference_input = scaled(&reference_input)?;
        query_input = scaled(&query_input)?;
    }
    let data: Vec<TrainingData<'_>> = (0..networks)
        .map(|i| TrainingData { reference: &reference_input, labels, query: &query_input, query_graph: &graphs[i] })
        .collect();
    let mut ensemble = Ensemble::train(&data, &run.training, compute, progress)?;
    let class_cells = labels.counts();
    ensemble.correct_priors(&class_cells, prior_correction)?;
    let predictions = ensemble.predict(&query_input, smoothing, progress)?.with_cells_without_counts(&has_counts);
    let novelty_cutoff = calibrated_novelty_cutoff(&predictions.novelty, &predictions.no_counts, config.unknown_scale);
    let description = ModelDescription {
        format: MODEL_FORMAT,
        package_version: env!("CARGO_PKG_VERSION").to_string(),
        scenario: config.scenario,
        shape: ensemble.shape(),
        features: matched.names,
        classes: ensemble.classes().to_vec(),
        normalization: config.preprocess.normalization,
        scale,
        unknown: config.unknown,
        unknown_scale: config.unknown_scale,
        threshold: config.threshold,
        novelty_cutoff,
        smoothing,
        class_cells,
        prior_correction,
        training: run.training.clone(),
        networks: ensemble.runs().to_vec(),
    };
    Ok(Transfer { model: TransferModel { ensemble, description }, predictions, normalization, config: run })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use crate::train::tests::toy_pair;
    use tch::Device;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("cellpredx-transfer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn toy_transfer() -> (Transfer, CsrMatrix, Vec<String>) {
        toy_transfer_of(0, None)
    }

    fn toy_transfer_of(seed: u64, networks: Option<usize>) -> (Transfer, CsrMatrix, Vec<String>) {
        toy_transfer_with(|config| {
            config.training.seed = seed;
            config.networks = networks;
        })
    }

    /// A transfer of the toy pair, 30 steps of 32 cells, with `configure`'s changes.
    fn toy_transfer_with(configure: impl FnOnce(&mut TransferConfig)) -> (Transfer, CsrMatrix, Vec<String>) {
        let (reference, labels, query) = toy_pair(80, 60);
        let features: Vec<String> = (0..reference.n_cols()).map(|i| format!("gene{i}")).collect();
        let mut config = TransferConfig::preset(Scenario::RnaRna);
        config.training.max_steps = 30;
        config.training.batch_size = 32;
        // A user's choice (the rna_rna preset corrects nothing), so that saving and loading the
        // correction is tested.
        config.prior_correction = Some(0.5);
        configure(&mut config);
        let result = transfer(
            Side { matrix: &reference, features: &features },
            &labels,
            Side { matrix: &query, features: &features },
            &config,
            Compute::on(Device::Cpu),
            &mut Silent,
        )
        .unwrap();
        (result, query, features)
    }

    #[test]
    fn a_saved_model_predicts_new_cells_as_the_transfer_did() {
        let (result, query, features) = toy_transfer();
        let dir = scratch("roundtrip");
        result.model.save(&dir, false).unwrap();
        let loaded = TransferModel::load(&dir, Compute::on(Device::Cpu)).unwrap();
        assert_eq!(loaded.description, result.model.description);
        // The toy panel is small, so it was scaled and (smoothing, networks: None) smoothed and
        // predicted by an ensemble; new cells are treated the same way, or the comparison below
        // would fail.
        assert!(result.model.description.scale);
        assert_eq!(result.model.description.smoothing, 0.8);
        assert_eq!(result.model.description.networks.len(), DEFAULT_NETWORKS);
        assert_eq!(result.model.description.prior_correction, 0.5);
        assert_eq!(result.model.description.class_cells, [40, 40]);
        for (loaded, trained) in loaded.ensemble.members().iter().zip(result.model.ensemble.members()) {
            assert!(loaded.class_offsets.equal(&trained.class_offsets), "the loaded model corrects the priors as the trained one");
            assert_eq!(f64::try_from(&trained.class_offsets.get(0)).unwrap(), f64::from((0.5 * 0.5 * 40f64.ln()) as f32));
        }

        // The same cells with their features in reverse order plus one the model never saw.
        let order: Vec<usize> = (0..query.n_cols()).rev().collect();
        let mut shuffled_features: Vec<String> = order.iter().map(|&i| features[i].clone()).collect();
        shuffled_features.push("unseen".into());
        let shuffled = preprocess::select_columns(&query, &order);
        let widened = CsrMatrix::try_new(
            shuffled.n_rows(),
            shuffled.n_cols() + 1,
            shuffled.indptr().to_vec(),
            shuffled.indices().to_vec(),
            shuffled.values().to_vec(),
        )
        .unwrap();
        let again = loaded.predict(Side { matrix: &widened, features: &shuffled_features }, &mut Silent).unwrap();
        let max_diff = again
            .probabilities
            .iter()
            .zip(result.predictions.probabilities.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-6, "probabilities differ by {max_diff}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_transfer_records_every_automatic_choice_it_made() {
        // The toy panel of 120 features is scaled, so the rna_rna preset's open weight becomes 0.8.
        let (result, _, _) = toy_transfer();
        assert_eq!(TransferConfig::preset(Scenario::RnaRna).training.contrastive_weight, None);
        assert_eq!(result.model.description.training.contrastive_weight, Some(0.8));
        let run = &result.config;
        assert_eq!((run.smoothing, run.networks, run.preprocess.scale), (Some(0.8), Some(DEFAULT_NETWORKS), Some(true)));
        assert_eq!((run.preprocess.graph_metric, run.training.contrastive_weight), (Some(Metric::Manhattan), Some(0.8)));
    }

    #[test]
    fn an_ensemble_is_the_average_of_the_single_network_transfers_of_its_seeds() {
        let (joint, _, _) = toy_transfer_of(4, Some(2));
        let [(first, _, _), (second, _, _)] = [4, 5].map(|seed| toy_transfer_of(seed, Some(1)));
        assert_eq!(joint.model.description.networks.iter().map(|r| r.seed).collect::<Vec<_>>(), [4, 5]);
        let (p, a, b) = (&joint.predictions, &first.predictions, &second.predictions);
        let mean_gap = |x: &[f32], y: &[f32], z: &[f32]| x.iter().zip(y).zip(z).map(|((x, y), z)| (x - (y + z) / 2.0).abs()).fold(0f32, f32::max);
        // The ensemble's networks train side by side on one thread each, the single networks on
        // all threads, which rounds libtorch's sums differently: equal to float precision, not
        // bitwise (bitwise equality under the same threads is the ensemble module's test).
        assert!(mean_gap(p.probabilities.as_slice().unwrap(), a.probabilities.as_slice().unwrap(), b.probabilities.as_slice().unwrap()) < 1e-6);
        assert!(mean_gap(&p.novelty, &a.novelty, &b.novelty) < 1e-5);
        let gap = |x: ndarray::ArrayView2<f32>, y: &ndarray::Array2<f32>| (&x - y).mapv(f32::abs).fold(0f32, |m, &v| m.max(v));
        assert!(gap(p.embedding.slice(ndarray::s![.., ..64]), &a.embedding) < 1e-5);
        assert!(gap(p.embedding.slice(ndarray::s![.., 64..]), &b.embedding) < 1e-5);
    }

    #[test]
    fn the_settings_as_run_show_the_steps_max_epochs_allowed() {
        // 80 reference cells, 32 a step: 3 passes are 8 steps, fewer than the 30 asked for.
        let (result, _, _) = toy_transfer_with(|config| config.training.max_epochs = 3.0);
        assert_eq!(result.config.training.max_steps, 8);
        assert!(result.model.description.networks.iter().all(|run| run.steps == 8));
    }

    #[test]
    fn smoothing_and_ensembles_go_where_a_cell_carries_little_evidence() {
        for scenario in Scenario::ALL {
            for scaled in [false, true] {
                let rna_to_atac = matches!(scenario, Scenario::RnaAtacMatched | Scenario::RnaAtacUnmatched);
                let little = rna_to_atac || scaled;
                let smoothing = if rna_to_atac { 0.5 } else if scaled { 0.8 } else { 0.0 };
                assert_eq!(auto_smoothing(scenario, scaled), smoothing, "{scenario:?}, scaled {scaled}");
                assert_eq!(auto_networks(scenario, scaled), if little { DEFAULT_NETWORKS } else { 1 }, "{scenario:?}, scaled {scaled}");
                assert_eq!(auto_graph_metric(scenario, scaled), if little { Metric::Manhattan } else { Metric::Cosine }, "{scenario:?}, scaled {scaled}");
            }
        }
        assert_eq!(auto_contrastive_weight(Scenario::RnaRna, true), 0.8);
        assert_eq!(auto_contrastive_weight(Scenario::RnaRna, false), 0.5);
        assert_eq!(auto_contrastive_weight(Scenario::RnaAtacMatched, false), 1.2);
        assert_eq!(auto_contrastive_weight(Scenario::AtacAtac, false), 0.1);
        for scenario in Scenario::ALL {
            assert_eq!(auto_prior_correction(scenario), if scenario == Scenario::RnaAtacMatched { 0.5 } else { 0.0 }, "{scenario:?}");
        }
    }

    #[test]
    fn normalizations_have_one_name_in_settings_files_and_on_the_command_line() {
        for name in ["auto", "lognormalize", "clr", "log1p", "binarize", "none"] {
            let parsed: Normalization = name.parse().unwrap();
            assert_eq!(serde_json::to_string(&parsed).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Normalization>(&format!("\"{name}\"")).unwrap(), parsed);
        }
    }

    #[test]
    fn sides_with_missing_negative_or_unnamed_values_are_refused() {
        let features: Vec<String> = (0..3).map(|i| format!("g{i}")).collect();
        let check = |values: Vec<f32>, names: &[String]| {
            let m = CsrMatrix::try_new(1, 3, vec![0, 3], vec![0, 1, 2], values).unwrap();
            Side { matrix: &m, features: names }.validate("the query").map_err(|e| e.to_string())
        };
        assert!(check(vec![1.0, 0.5, 3.0], &features).is_ok());
        assert!(check(vec![1.0, f32::NAN, f32::INFINITY], &features).unwrap_err().starts_with("2 missing or infinite values in the query"));
        assert!(check(vec![-1.0, 0.5, 3.0], &features).unwrap_err().starts_with("1 negative values in the query"));
        assert!(check(vec![1.0, 0.5, 3.0], &features[..2]).unwrap_err().contains("feature names"));
    }

    #[test]
    fn broken_model_files_are_explained() {
        let (result, query, _) = toy_transfer();
        let dir = scratch("broken");
        let load_error = |dir: &Path| TransferModel::load(dir, Compute::on(Device::Cpu)).err().unwrap().to_string();
        assert!(load_error(&dir).contains("cannot read the model description"));
        result.model.save(&dir, false).unwrap();
        let weights = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
        assert!(load_error(&dir).contains("missing, truncated or not the weights"), "{}", load_error(&dir));
        std::fs::write(dir.join(DESCRIPTION_FILE), format!("{{\"format\": {MODEL_FORMAT}}}")).unwrap();
        assert!(load_error(&dir).contains("is not a CellPredX model description"));
        // A model of format 1 (before the reference sample was kept) lacks fields of this one.
        std::fs::write(dir.join(DESCRIPTION_FILE), "{\"format\": 1, \"scenario\": \"rna_rna\"}").unwrap();
        assert!(load_error(&dir).contains("has model format 1, and this version of CellPredX reads format 5; train the model again"), "{}", load_error(&dir));
        std::fs::write(dir.join(DESCRIPTION_FILE), "[1, 2]").unwrap();
        assert!(load_error(&dir).contains("has model format (none)"), "{}", load_error(&dir));
        let other: Vec<String> = (0..query.n_cols()).map(|i| format!("other{i}")).collect();
        let err = result.model.predict(Side { matrix: &query, features: &other }, &mut Silent).err().unwrap().to_string();
        assert!(err.starts_with("only 0 of the model's 120 features"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
