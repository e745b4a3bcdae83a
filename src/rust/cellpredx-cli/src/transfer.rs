//! `cellpredx transfer`: read a labelled reference and a query, run the method, write
//! predictions, embedding, training history and a run summary.

use cellpredx::graph::Metric;
use cellpredx::io::{self, Dataset};
use cellpredx::labels::Labels;
use cellpredx::losses::CenterWeighting;
use cellpredx::progress::{ProgressEvent, ProgressSink};
use cellpredx::runtime::{self, DeviceChoice};
use cellpredx::predict::{Predictions, UnknownDecision};
use cellpredx::train::{Compute, FirstLayer, Scenario};
use cellpredx::transfer::{self, Side, TransferConfig, TransferModel};
use cellpredx::{CellPredXError, Result};
use clap::Args;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct TransferArgs {
    /// Reference dataset: a MatrixMarket directory (matrix.mtx(.gz), features.tsv, barcodes.tsv, metadata.tsv), a 10x .h5 or an .h5ad file.
    #[arg(long = "ref")]
    reference: PathBuf,
    /// Query dataset, in any of the reference's formats. Its labels, if any, are never read.
    #[arg(long)]
    query: PathBuf,
    /// rna_atac_matched, rna_atac_unmatched, atac_atac or rna_rna.
    #[arg(long)]
    scenario: String,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Reference cell metadata with the labels (default: the reference directory's metadata.tsv, or the .h5ad's obs).
    #[arg(long)]
    ref_labels: Option<PathBuf>,
    /// Column of the reference metadata that holds the cell types.
    #[arg(long, default_value = "cell_type")]
    label_column: String,
    /// Keep only these reference cells: a file with one cell name per line.
    #[arg(long)]
    ref_cells: Option<PathBuf>,
    /// Keep only these query cells: a file with one cell name per line.
    #[arg(long)]
    query_cells: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
    /// Which cells are called "Unknown": calibrated (novelty beyond a cut-off calibrated on the
    /// query's own scores; the default), threshold (confidence below --threshold) or none.
    #[arg(long)]
    unknown: Option<String>,
    /// With --unknown calibrated: robust standard deviations above the median novelty (default 3).
    #[arg(long)]
    unknown_scale: Option<f64>,
    /// With --unknown threshold: the confidence below which a cell is called "Unknown" (0.95).
    #[arg(long)]
    threshold: Option<f64>,
    /// Share of each cell's class probabilities taken from its neighbours in the embedding, each
    /// weighed by its similarity (0 = none; default: 0.5 for RNA → ATAC, 0.8 for panels of at most
    /// 500 features, else 0).
    #[arg(long)]
    smoothing: Option<f64>,
    /// Networks trained with consecutive seeds from --seed, their predictions averaged (default: 3
    /// for RNA → ATAC and for panels of at most 500 features, else 1).
    #[arg(long)]
    networks: Option<usize>,
    /// Share (0 to 1) of the class-balanced sampling's tilt toward small types that prediction
    /// takes back, toward the reference's composition (default: 0.5 for rna_atac_matched, whose
    /// query is the reference's own cells, else 0).
    #[arg(long)]
    prior_correction: Option<f64>,
    /// auto, lognormalize, clr, log1p, binarize or none (default: the scenario's).
    #[arg(long)]
    normalization: Option<String>,
    /// Z-score every feature (dense: meant for small panels; the default scales up to 500 shared features).
    #[arg(long, conflicts_with = "no_scale")]
    scale: bool,
    /// Never z-score the features.
    #[arg(long)]
    no_scale: bool,
    /// Use only the top N highly variable features of each side that both share.
    #[arg(long)]
    variable_features: Option<usize>,
    /// manhattan or cosine, for the query's neighbour graph (default: Manhattan for RNA → ATAC
    /// and for panels of at most 500 features, else cosine).
    #[arg(long)]
    graph_metric: Option<String>,
    #[arg(long)]
    max_steps: Option<usize>,
    /// Also stop after this many passes over the larger side's cells (default 350; a huge
    /// number leaves --max-steps alone in charge).
    #[arg(long)]
    max_epochs: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    learning_rate: Option<f64>,
    /// 0 = draw reference cells uniformly, 1 = every type equally often.
    #[arg(long)]
    class_balance: Option<f64>,
    /// α, weight of the neighbourhood contrastive loss (default: 1.2 for RNA → ATAC, 0.1 for
    /// atac_atac, 0.5 for rna_rna and 0.8 for panels of at most 500 features).
    #[arg(long)]
    contrastive_weight: Option<f64>,
    /// β, weight of the feature alignment loss.
    #[arg(long)]
    alignment_weight: Option<f64>,
    /// γ, weight of the sparse center loss.
    #[arg(long)]
    center_weight: Option<f64>,
    /// τ, temperature of the contrastive loss.
    #[arg(long)]
    temperature: Option<f64>,
    #[arg(long)]
    projection_weight: Option<f64>,
    #[arg(long)]
    l1_weight: Option<f64>,
    /// Fraction of the steps before the center loss starts.
    #[arg(long)]
    center_warmup: Option<f64>,
    /// raw or mean_one.
    #[arg(long)]
    center_weighting: Option<String>,
    /// Add the authors' hinge term to the feature alignment loss.
    #[arg(long)]
    alignment_hinge: bool,
    /// Compute the first layer densely on CPU too (slower; the reference implementation).
    #[arg(long)]
    dense_first_layer: bool,
    /// Also save the trained model (model.safetensors + model.json) in this directory, for `cellpredx predict`.
    #[arg(long)]
    save_model: Option<PathBuf>,
    /// Replace a model already saved in the --save-model directory.
    #[arg(long)]
    overwrite_model: bool,
}

/// What `predict` and `interpret` start from: a saved model and the cells to run it on.
#[derive(Args)]
pub struct SavedModelArgs {
    /// A model directory written by `cellpredx transfer --save-model`.
    #[arg(long)]
    model: PathBuf,
    /// The cells, in any format `transfer` reads.
    #[arg(long)]
    query: PathBuf,
    /// Keep only these cells: a file with one cell name per line.
    #[arg(long)]
    query_cells: Option<PathBuf>,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl SavedModelArgs {
    /// The model on the chosen device, the cells, and the device's name; `--out` is checked
    /// first, so that a path that cannot take the results fails before any work.
    pub fn load(&self) -> Result<(TransferModel, Dataset, String)> {
        check_out_dir(&self.out, "--out")?;
        let device = self.device.parse::<DeviceChoice>()?.resolve()?;
        let model = TransferModel::load(&self.model, Compute::on(device))?;
        let cells = keep_cells(io::read_dataset(&self.query)?, self.query_cells.as_deref())?;
        Ok((model, cells, format!("{device:?}")))
    }
}

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    input: SavedModelArgs,
    /// Which cells are called "Unknown": calibrated, threshold or none (default: the model's).
    #[arg(long)]
    unknown: Option<String>,
    /// With --unknown threshold: the confidence below which a cell is "Unknown" (default: the model's).
    #[arg(long)]
    threshold: Option<f64>,
}

impl TransferArgs {
    fn config(&self) -> Result<TransferConfig> {
        let scenario: Scenario = self.scenario.parse()?;
        let mut config = TransferConfig::preset(scenario);
        let p = &mut config.preprocess;
        if let Some(n) = &self.normalization {
            p.normalization = n.parse()?;
        }
        if self.scale || self.no_scale {
            p.scale = Some(self.scale);
        }
        p.variable_features = self.variable_features;
        if let Some(m) = &self.graph_metric {
            p.graph_metric = Some(m.parse::<Metric>()?);
        }
        let t = &mut config.training;
        t.seed = self.seed;
        let set = |target: &mut f64, value: Option<f64>| {
            if let Some(v) = value {
                *target = v;
            }
        };
        set(&mut t.learning_rate, self.learning_rate);
        set(&mut t.class_balance, self.class_balance);
        t.contrastive_weight = self.contrastive_weight.or(t.contrastive_weight);
        set(&mut t.alignment_weight, self.alignment_weight);
        set(&mut t.center_weight, self.center_weight);
        set(&mut t.temperature, self.temperature);
        set(&mut t.projection_weight, self.projection_weight);
        set(&mut t.l1_weight, self.l1_weight);
        set(&mut config.threshold, self.threshold);
        set(&mut config.unknown_scale, self.unknown_scale);
        if let Some(rule) = &self.unknown {
            config.unknown = rule.parse()?;
        }
        config.smoothing = self.smoothing.or(config.smoothing);
        config.networks = self.networks.or(config.networks);
        config.prior_correction = self.prior_correction.or(config.prior_correction);
        t.max_steps = self.max_steps.unwrap_or(t.max_steps);
        set(&mut t.max_epochs, self.max_epochs);
        t.batch_size = self.batch_size.unwrap_or(t.batch_size);
        set(&mut t.center_warmup, self.center_warmup);
        t.alignment_hinge |= self.alignment_hinge;
        if let Some(w) = &self.center_weighting {
            t.center_weighting = match w.as_str() {
                "raw" => CenterWeighting::Raw,
                "mean_one" => CenterWeighting::MeanOne,
                other => return Err(CellPredXError::invalid(format!("--center-weighting must be raw or mean_one, not \"{other}\""))),
            };
        }
        Ok(config)
    }
}

/// Progress on standard error, about once a second.
pub(crate) struct Console {
    quiet: bool,
    last: Option<Instant>,
}

impl Console {
    pub(crate) fn new(quiet: bool) -> Self {
        Console { quiet, last: None }
    }
}

impl ProgressSink for Console {
    fn report(&mut self, event: &ProgressEvent<'_>) -> Result<()> {
        if self.quiet || (event.done < event.total && self.last.is_some_and(|t| t.elapsed().as_secs_f64() < 1.0)) {
            return Ok(());
        }
        self.last = Some(Instant::now());
        let figures: Vec<String> = event.metrics.iter().map(|(name, v)| format!("{name} {v:.4}")).collect();
        eprintln!("  {} {}/{} {}", event.stage, event.done, event.total, figures.join(" "));
        Ok(())
    }
}

fn read_cell_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| CellPredXError::io(format!("cannot read {}", path.display()), e))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

/// The dataset restricted to the cells listed in `list` (in the list's order).
pub(crate) fn keep_cells(dataset: Dataset, list: Option<&Path>) -> Result<Dataset> {
    let Some(path) = list else { return Ok(dataset) };
    let wanted = read_cell_list(path)?;
    let position: HashMap<&str, usize> = dataset.cells.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let rows = wanted
        .iter()
        .map(|c| {
            position.get(c.as_str()).copied().ok_or_else(|| {
                CellPredXError::invalid(format!("{}: cell '{c}' is not in the dataset", path.display()))
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    if rows.is_empty() {
        return Err(CellPredXError::invalid(format!("{} lists no cells", path.display())));
    }
    Ok(Dataset { matrix: dataset.matrix.select_rows(&rows)?, features: dataset.features, cells: wanted })
}

/// Writes predictions.tsv (label, most probable type, confidence, open-set scores, one
/// probability per type) and embedding.tsv into `out`, which `check_out_dir` made ready.
fn write_predictions(out: &Path, cells: &[String], predictions: &Predictions, decision: &UnknownDecision) -> Result<()> {
    let labels_out = predictions.labels(decision);
    let best = predictions.best();
    let mut header = vec!["cell", "label", "best_type", "confidence", "log_doubt", "prototype_similarity", "reference_distance", "novelty"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    header.extend(predictions.classes.iter().map(|c| format!("p:{c}")));
    let rows = cells.iter().enumerate().map(|(i, cell)| {
        let mut row = vec![
            cell.clone(),
            labels_out[i].to_string(),
            predictions.classes[best[i].0].clone(),
            float(best[i].1),
            float(predictions.log_doubt[i]),
            float(predictions.prototype_similarity[i]),
            float(predictions.reference_distance[i]),
            float(predictions.novelty[i]),
        ];
        row.extend(predictions.probabilities.row(i).iter().map(|&p| float(p)));
        row
    });
    io::write_table(&out.join("predictions.tsv"), &header.iter().map(String::as_str).collect::<Vec<_>>(), rows)?;

    let mut header = vec!["cell".to_string()];
    header.extend((1..=predictions.embedding.ncols()).map(|j| format!("CellPredX_{j}")));
    let rows = cells.iter().enumerate().map(|(i, cell)| {
        std::iter::once(cell.clone()).chain(predictions.embedding.row(i).iter().map(|&v| float(v))).collect()
    });
    io::write_table(&out.join("embedding.tsv"), &header.iter().map(String::as_str).collect::<Vec<_>>(), rows)?;

    Ok(())
}

/// Makes sure results can be written to the directory `flag` names before any work is done, so
/// that a long training is not lost to a path that turns out to be a file or read-only.
pub(crate) fn check_out_dir(path: &Path, flag: &str) -> Result<()> {
    if path.exists() && !path.is_dir() {
        return Err(CellPredXError::invalid(format!("{flag} {} is a file, not a directory; give a directory for the results", path.display())));
    }
    std::fs::create_dir_all(path).map_err(|e| CellPredXError::io(format!("{flag} {}: cannot create the directory", path.display()), e))?;
    let probe = path.join(format!(".cellpredx-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| CellPredXError::io(format!("{flag} {}: cannot write there", path.display()), e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CellPredXError::invalid(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| CellPredXError::io(format!("cannot write {}", path.display()), e))
}

/// Peak resident memory of this process so far, in MB (Linux; `None` elsewhere).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn float(v: f32) -> String {
    format!("{v:.6}")
}

fn optional(v: Option<f64>) -> String {
    v.map_or_else(|| "NA".to_string(), |v| format!("{v:.6}"))
}

pub fn run(args: TransferArgs) -> Result<()> {
    let started = Instant::now();
    let config = args.config()?;
    let device = args.device.parse::<DeviceChoice>()?.resolve()?;
    let compute = if args.dense_first_layer { Compute { device, first_layer: FirstLayer::Dense } } else { Compute::on(device) };
    let say = |msg: String| {
        if !args.quiet {
            eprintln!("{msg}");
        }
    };
    check_out_dir(&args.out, "--out")?;
    if let Some(dir) = &args.save_model {
        check_out_dir(dir, "--save-model")?;
        TransferModel::check_save_target(dir, args.overwrite_model)?;
    }

    let reference = keep_cells(io::read_dataset(&args.reference)?, args.ref_cells.as_deref())?;
    let query = keep_cells(io::read_dataset(&args.query)?, args.query_cells.as_deref())?;
    let label_source = args.ref_labels.clone().unwrap_or_else(|| args.reference.clone());
    let names = io::read_cell_labels(&label_source, &args.label_column, &reference.cells)?;
    let labels = Labels::encode(names.iter().map(|l| Some(l.as_str())), None)?;
    let read_seconds = started.elapsed().as_secs_f64();
    say(format!(
        "cellpredx transfer: {} reference cells ({} types), {} query cells, scenario {}, device {:?}, {} threads",
        reference.cells.len(),
        labels.classes().len(),
        query.cells.len(),
        config.scenario.name(),
        device,
        runtime::threads()
    ));

    let fit_started = Instant::now();
    let mut console = Console::new(args.quiet);
    let result = transfer::transfer(
        Side { matrix: &reference.matrix, features: &reference.features },
        &labels,
        Side { matrix: &query.matrix, features: &query.features },
        &config,
        compute,
        &mut console,
    )?;
    let fit_seconds = fit_started.elapsed().as_secs_f64();

    let decision = result.model.description.unknown_decision(None, None)?;
    write_predictions(&args.out, &query.cells, &result.predictions, &decision)?;
    let labels_out = result.predictions.labels(&decision);
    let header = ["network", "step", "learning_rate", "total", "cross_entropy", "projection", "l1", "alignment", "contrastive", "center"];
    let rows = result.model.ensemble.history().map(|(network, r)| {
        vec![
            network.to_string(),
            r.step.to_string(),
            format!("{}", r.learning_rate),
            optional(Some(r.total)),
            optional(Some(r.cross_entropy)),
            optional(r.projection),
            optional(r.l1),
            optional(r.alignment),
            optional(r.contrastive),
            optional(r.center),
        ]
    });
    io::write_table(&args.out.join("history.tsv"), &header, rows)?;

    let steps: usize = result.model.description.networks.iter().map(|r| r.steps).sum();
    let recoveries: Vec<serde_json::Value> = result
        .model
        .ensemble
        .recoveries()
        .map(|(network, r)| {
            say(format!(
                "network {network}: the loss diverged at step {} ({:e}); went back to step {} and halved the learning rate ({} -> {})",
                r.step, r.loss, r.resumed_from, r.learning_rate, r.new_learning_rate
            ));
            json!({ "network": network, "step": r.step, "loss": r.loss.to_string(), "learning_rate": r.learning_rate, "resumed_from": r.resumed_from, "new_learning_rate": r.new_learning_rate })
        })
        .collect();
    let summary = json!({
        "recoveries": recoveries,
        "scenario": config.scenario.name(),
        "reference_cells": reference.cells.len(),
        "query_cells": query.cells.len(),
        "features": result.model.description.features.len(),
        "classes": result.predictions.classes,
        "normalization": result.normalization,
        "scaled": result.model.description.scale,
        "smoothing": result.model.description.smoothing,
        "steps": steps,
        "networks": result.model.description.networks,
        "device": format!("{device:?}"),
        "threads": runtime::threads(),
        "read_seconds": read_seconds,
        "fit_predict_seconds": fit_seconds,
        "seconds": started.elapsed().as_secs_f64(),
        "peak_rss_mb": peak_rss_mb(),
        "unknown_cells": labels_out.iter().filter(|l| **l == cellpredx::predict::UNKNOWN).count(),
        "config": result.config,
    });
    if let Some(dir) = &args.save_model {
        result.model.save(dir, args.overwrite_model)?;
    }
    write_json(&args.out.join("run.json"), &summary)?;
    say(format!(
        "done in {:.1} s (fit + predict {:.1} s, {} network{}, {steps} steps); results in {}",
        started.elapsed().as_secs_f64(),
        fit_seconds,
        result.model.description.networks.len(),
        if result.model.description.networks.len() == 1 { "" } else { "s" },
        args.out.display()
    ));
    Ok(())
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let (model, query, _) = args.input.load()?;
    let rule = args.unknown.as_deref().map(str::parse).transpose()?;
    let decision = model.description.unknown_decision(rule, args.threshold)?;
    let predictions = model.predict(Side { matrix: &query.matrix, features: &query.features }, &mut Console::new(true))?;
    write_predictions(&args.input.out, &query.cells, &predictions, &decision)
}
