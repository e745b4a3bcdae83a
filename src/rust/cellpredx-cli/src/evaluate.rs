//! `cellpredx evaluate`: score a `transfer`'s predictions against the query's true labels.
//! Accuracy and macro-F1 count the cells whose true type the reference has (argmax calls, no
//! threshold, as the peers are scored); AUROC and OSCR score how well an open-set score (by
//! default `novelty`) tells the novel types apart, when the query has any.

use cellpredx::io;
use cellpredx::metrics;
use cellpredx::{CellPredXError, Result};
use clap::Args;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct EvaluateArgs {
    /// predictions.tsv written by `cellpredx transfer`.
    #[arg(long)]
    pred: PathBuf,
    /// The query's metadata with the true labels (a metadata.tsv, a dataset directory or an .h5ad).
    #[arg(long)]
    truth: PathBuf,
    #[arg(long, default_value = "cell_type")]
    column: String,
    /// Two-column TSV (header `from`, `to`) renaming predicted types before scoring, e.g. to collapse
    /// "Naive CD4 T" and "Memory CD4 T" into the query's "CD4 T cells".
    #[arg(long)]
    map: Option<PathBuf>,
    /// The column of open-set scores (higher = more likely a type the reference lacks) that AUROC
    /// and OSCR rank cells by; `transfer` writes
    /// `novelty` (the default), `reference_distance` and `log_doubt`.
    #[arg(long, default_value = "novelty")]
    score: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn read_map(path: &Path) -> Result<HashMap<String, String>> {
    let table = io::read_table(path)?;
    let from = table.column("from")?;
    let to = table.column("to")?;
    Ok(from.into_iter().zip(to).map(|(f, t)| (f.to_string(), t.to_string())).collect())
}

fn numbers(table: &io::Table, column: &str) -> Result<Vec<f64>> {
    table
        .column(column)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.parse::<f64>().map_err(|_| {
                CellPredXError::invalid(format!("{}: row {}: {column} '{v}' is not a number", table.path.display(), i + 1))
            })
        })
        .collect()
}

pub fn run(args: EvaluateArgs) -> Result<()> {
    let table = io::read_table(&args.pred)?;
    let cells: Vec<String> = table.column("cell")?.into_iter().map(str::to_string).collect();
    let doubt = numbers(&table, &args.score)?;
    let map = match &args.map {
        Some(path) => read_map(path)?,
        None => HashMap::new(),
    };
    let rename = |label: &str| map.get(label).cloned().unwrap_or_else(|| label.to_string());
    let best: Vec<String> = table.column("best_type")?.into_iter().map(rename).collect();
    // Renaming can merge types (two CD4 T subsets into one): keep each name once, first place.
    let mut classes: Vec<String> = Vec::new();
    for class in table.columns.iter().filter_map(|c| c.strip_prefix("p:")).map(rename) {
        if !classes.contains(&class) {
            classes.push(class);
        }
    }
    if classes.is_empty() {
        return Err(CellPredXError::invalid(format!("{} has no probability columns (p:<type>); is it a cellpredx predictions file?", args.pred.display())));
    }
    let truth = io::read_cell_labels(&args.truth, &args.column, &cells)?;

    let truth_refs: Vec<&str> = truth.iter().map(String::as_str).collect();
    let best_refs: Vec<&str> = best.iter().map(String::as_str).collect();
    let class_refs: Vec<&str> = classes.iter().map(String::as_str).collect();
    let metrics::Evaluation { scores, n_novel, auroc, oscr } = metrics::evaluate(&truth_refs, &best_refs, &class_refs, &doubt)?;

    if args.json {
        let per_class: Vec<_> = scores
            .per_class
            .iter()
            .map(|c| json!({"type": c.class, "support": c.support, "predicted": c.predicted, "correct": c.correct, "recall": c.recall, "precision": c.precision, "f1": c.f1}))
            .collect();
        let out = json!({
            "accuracy": scores.accuracy, "macro_f1": scores.macro_f1, "auroc": auroc, "oscr": oscr,
            "scored_cells": scores.n_scored, "novel_cells": n_novel, "per_type": per_class,
        });
        println!("{out}");
    } else {
        println!("accuracy  {:.4}  ({} cells of shared types)", scores.accuracy, scores.n_scored);
        println!("macro-F1  {:.4}", scores.macro_f1);
        if let (Some(auroc), Some(oscr)) = (auroc, oscr) {
            println!("AUROC     {auroc:.4}  ({n_novel} cells of novel types)");
            println!("OSCR      {oscr:.4}");
        }
        println!("{:<28} {:>7} {:>7} {:>7} {:>7}", "type", "support", "correct", "recall", "F1");
        for c in &scores.per_class {
            println!("{:<28} {:>7} {:>7} {:>7.3} {:>7.3}", c.class, c.support, c.correct, c.recall, c.f1);
        }
    }
    Ok(())
}
