//! The whole method in one call (METHOD.md from "Preprocessing" to "Prediction"): match the
//! features, normalise both sides, build the query's neighbour graph, train, predict. The R
//! package and the command-line tool both go through here, so a transfer means the same thing
//! in either.

use crate::error::{CellPredXError, Result};
use crate::graph::{knn_graph, KnnGraph, Metric};
use crate::labels::Labels;
use crate::predict::{Predictions, DEFAULT_THRESHOLD};
use crate::preprocess::{self, FeatureScaling};
use crate::progress::ProgressSink;
use crate::sparse::CsrMatrix;
use crate::train::{train, Compute, Scenario, TrainedModel, TrainingConfig, TrainingData};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// How counts become the network's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// Counts (non-negative integers) get `LogNormalize`; anything else is taken as already
    /// normalised and left as it is.
    Auto,
    /// Per-cell library size to 10,000, then ln(1 + x).
    LogNormalize,
    Log1p,
    /// x > 0 → 1.
    Binarize,
    /// The values as given.
    AsIs,
}

impl std::str::FromStr for Normalization {
    type Err = CellPredXError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Normalization::Auto),
            "lognormalize" => Ok(Normalization::LogNormalize),
            "log1p" => Ok(Normalization::Log1p),
            "binarize" => Ok(Normalization::Binarize),
            "none" => Ok(Normalization::AsIs),
            other => Err(CellPredXError::invalid(format!(
                "normalization must be one of auto, lognormalize, log1p, binarize, none; not \"{other}\""
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
    pub graph_metric: Metric,
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
            graph_metric: Metric::Manhattan,
        }
    }
}

/// Everything a transfer is set up with; `TransferConfig::preset` gives a scenario's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferConfig {
    pub scenario: Scenario,
    pub preprocess: PreprocessConfig,
    pub training: TrainingConfig,
    /// Confidence below which a cell is called "Unknown".
    pub threshold: f64,
}

impl TransferConfig {
    pub fn preset(scenario: Scenario) -> Self {
        TransferConfig {
            scenario,
            preprocess: PreprocessConfig::preset(scenario),
            training: TrainingConfig::preset(scenario),
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

/// One side of a transfer: cells × features with the features' names.
pub struct Side<'a> {
    pub matrix: &'a CsrMatrix,
    pub features: &'a [String],
}

/// The result of a transfer: the fitted model with the features it was trained on (in order),
/// the query's predictions and the neighbour graph the contrastive loss used.
pub struct Transfer {
    pub model: TrainedModel,
    pub features: Vec<String>,
    pub predictions: Predictions,
    pub query_graph: KnnGraph,
    pub normalization: [Normalization; 2],
    pub scaled: bool,
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

fn normalize(m: CsrMatrix, normalization: Normalization) -> CsrMatrix {
    match normalization {
        Normalization::LogNormalize => preprocess::normalize_log1p(&m, 1e4),
        Normalization::Log1p => preprocess::log1p(&m),
        Normalization::Binarize => preprocess::binarize(&m),
        Normalization::Auto | Normalization::AsIs => m,
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

fn query_graph(raw: &CsrMatrix, normalized: &CsrMatrix, config: &PreprocessConfig, seed: u64, progress: &mut dyn ProgressSink) -> Result<KnnGraph> {
    let svd = match config.graph_reduction {
        GraphReduction::Pca => preprocess::pca(normalized, config.graph_components, seed)?,
        GraphReduction::Lsi => preprocess::lsi(raw, config.graph_components, seed)?,
    };
    let embedding = Array2::from_shape_vec((svd.n_cells, svd.k), svd.embedding)
        .map_err(|_| CellPredXError::invalid("the query reduction has an unexpected shape"))?;
    neighbour_graph(embedding.view(), config, progress)
}

fn neighbour_graph(embedding: ArrayView2<'_, f32>, config: &PreprocessConfig, progress: &mut dyn ProgressSink) -> Result<KnnGraph> {
    let k = config.graph_neighbours.min(embedding.nrows().saturating_sub(1)).max(1);
    knn_graph(embedding, k, config.graph_metric, progress)
}

/// Runs a transfer. `query_embedding`, when given (cells × components, e.g. the query object's
/// own LSI), replaces the reduction the neighbour graph is built on.
pub fn transfer(
    reference: Side<'_>,
    labels: &Labels,
    query: Side<'_>,
    query_embedding: Option<ArrayView2<'_, f32>>,
    config: &TransferConfig,
    compute: Compute,
    progress: &mut dyn ProgressSink,
) -> Result<Transfer> {
    if labels.codes().len() != reference.matrix.n_rows() {
        return Err(CellPredXError::DimensionMismatch { what: "reference labels".into(), expected: reference.matrix.n_rows(), got: labels.codes().len() });
    }
    for (side, what) in [(&reference, "reference"), (&query, "query")] {
        if side.features.len() != side.matrix.n_cols() {
            return Err(CellPredXError::DimensionMismatch { what: format!("{what} feature names"), expected: side.matrix.n_cols(), got: side.features.len() });
        }
    }
    if let Some(e) = &query_embedding {
        if e.nrows() != query.matrix.n_rows() {
            return Err(CellPredXError::DimensionMismatch { what: "rows of the query embedding".into(), expected: query.matrix.n_rows(), got: e.nrows() });
        }
    }
    config.training.validate()?;
    let matched = shared_features(&reference, &query, config.preprocess.variable_features)?;
    let reference_raw = preprocess::select_columns(reference.matrix, &matched.reference);
    let query_raw = preprocess::select_columns(query.matrix, &matched.query);
    let normalization = [resolve(config.preprocess.normalization, &reference_raw), resolve(config.preprocess.normalization, &query_raw)];
    let mut reference_input = normalize(reference_raw, normalization[0]);
    let mut query_input = normalize(query_raw.clone(), normalization[1]);
    let query_graph = match query_embedding {
        Some(e) => neighbour_graph(e, &config.preprocess, progress)?,
        None => query_graph(&query_raw, &query_input, &config.preprocess, config.training.seed, progress)?,
    };
    drop(query_raw);
    let scale = config.preprocess.scale.unwrap_or(matched.names.len() <= SCALE_AUTO_MAX_FEATURES);
    if scale {
        reference_input = scaled(&reference_input)?;
        query_input = scaled(&query_input)?;
    }
    let data = TrainingData { reference: &reference_input, labels, query: &query_input, query_graph: &query_graph };
    let model = train(&data, &config.training, compute, progress)?;
    let predictions = model.predict(&query_input, progress)?;
    Ok(Transfer { model, features: matched.names, predictions, query_graph, normalization, scaled: scale })
}
