//! `cellpredx interpret`: determinant features of a saved model's predictions (Integrated
//! Gradients, as `DeterminantGenes()` in R), for users outside R and for timing on machines
//! without R.

use crate::transfer::{float, peak_rss_mb, write_json, Console, SavedModelArgs};
use cellpredx::interpret::{IntegratedGradientsConfig, PathSpace, Ranking, DEFAULT_CELL_FEATURES, DEFAULT_STEPS};
use cellpredx::io;
use cellpredx::runtime;
use cellpredx::transfer::Side;
use cellpredx::{CellPredXError, Result};
use clap::Args;
use serde_json::json;
use std::time::Instant;

#[derive(Args)]
pub struct InterpretArgs {
    #[command(flatten)]
    input: SavedModelArgs,
    /// Steps along the path from the baseline (zero) to each cell.
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    steps: usize,
    /// Features kept per cell, by |attribution|.
    #[arg(long, default_value_t = DEFAULT_CELL_FEATURES)]
    top: usize,
    /// Determinant features listed per type and ranking.
    #[arg(long, default_value_t = 50)]
    per_type: usize,
    /// Cells per forward/backward pass (default: as many as fit the memory budget).
    #[arg(long)]
    cells_per_pass: Option<usize>,
    /// embedding (exact for this network, fast) or input (the textbook path through the inputs).
    #[arg(long, default_value = "embedding")]
    path_space: String,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

/// Writes determinants.tsv (per type and ranking: rank, feature, frequency, mean attribution),
/// cell_top.tsv (per cell: its explained type and top features) and interpret.json (timings,
/// completeness) into `out`.
pub fn run(args: InterpretArgs) -> Result<()> {
    let started = Instant::now();
    let path_space = match args.path_space.as_str() {
        "embedding" => PathSpace::Embedding,
        "input" => PathSpace::Input,
        other => return Err(CellPredXError::invalid(format!("--path-space must be embedding or input, not \"{other}\""))),
    };
    let (model, cells, device) = args.input.load()?;
    let config = IntegratedGradientsConfig {
        steps: args.steps,
        cell_features: args.top,
        cells_per_pass: args.cells_per_pass,
        path_space,
        ..Default::default()
    };
    let ig_started = Instant::now();
    let attributions = model.interpret(Side { matrix: &cells.matrix, features: &cells.features }, &config, &mut Console::new(args.quiet))?;
    let ig_seconds = ig_started.elapsed().as_secs_f64();

    let features = &model.description.features;
    let classes = &attributions.classes;
    let mut rows = Vec::new();
    for (ranking, name) in [(Ranking::Frequency, "frequency"), (Ranking::MeanAttribution, "mean_attribution")] {
        rows.extend(attributions.determinants(ranking, args.per_type).into_iter().map(|d| {
            vec![classes[d.class].clone(), name.to_string(), d.rank.to_string(), features[d.feature as usize].clone(), float(d.frequency), float(d.mean_attribution)]
        }));
    }
    io::write_table(&args.input.out.join("determinants.tsv"), &["type", "ranking", "rank", "feature", "frequency", "mean_attribution"], rows.into_iter())?;
    let rows = attributions.cell_top.iter().enumerate().flat_map(|(i, top)| {
        let (cell, class) = (&cells.cells[i], &classes[attributions.targets[i]]);
        top.iter().enumerate().map(move |(r, &(f, v))| vec![cell.clone(), class.clone(), (r + 1).to_string(), features[f as usize].clone(), float(v)])
    });
    io::write_table(&args.input.out.join("cell_top.tsv"), &["cell", "type", "rank", "feature", "attribution"], rows)?;

    // Completeness: each cell's attributions add up to f(x) − f(baseline); the gap over all cells
    // relative to the total change.
    let (gap, change) = attributions
        .prediction_change
        .iter()
        .zip(&attributions.attribution_sum)
        .fold((0.0, 0.0), |(gap, total), (&change, &sum)| (gap + f64::from((sum - change).abs()), total + f64::from(change.abs())));
    let completeness_gap = gap / change.max(f64::MIN_POSITIVE);
    let summary = json!({
        "cells": cells.cells.len(),
        "features": features.len(),
        "steps": args.steps,
        "path_space": args.path_space,
        "cells_per_pass": args.cells_per_pass,
        "device": device,
        "threads": runtime::threads(),
        "ig_seconds": ig_seconds,
        "seconds": started.elapsed().as_secs_f64(),
        "peak_rss_mb": peak_rss_mb(),
        "completeness_relative_gap": completeness_gap,
    });
    write_json(&args.input.out.join("interpret.json"), &summary)?;
    if !args.quiet {
        eprintln!(
            "cellpredx interpret: {} cells x {} features x {} steps in {ig_seconds:.2} s on {device}; attributions add up to the change in probability within {:.2} %; results in {}",
            cells.cells.len(),
            features.len(),
            args.steps,
            100.0 * completeness_gap,
            args.input.out.display()
        );
    }
    Ok(())
}
