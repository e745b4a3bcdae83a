//! Determinant features of a fitted model's predictions (Integrated Gradients), for R/interpret.R.

use crate::convert::{csr_from_r, strings_from_r};
use crate::errors::{guard, r_err};
use crate::model::model_of;
use crate::progress::RProgress;
use cellpredx::interpret::{Attributions, IntegratedGradientsConfig, PathSpace, Ranking, Target};
use cellpredx::transfer::Side;
use extendr_api::prelude::*;

/// Integrated Gradients of `cells` (features x cells, with feature names) under a model. Indices
/// in the result are 1-based (classes into the model's classes, features into its features):
/// per cell the explained class, f(x) − f(baseline) and the attributions' sum; per cell its top
/// features (long form); per type the determinant features under both rankings (long form).
#[extendr]
#[allow(clippy::too_many_arguments)]
fn model_interpret_(
    handle: Robj,
    cells: Robj,
    features: Strings,
    steps: i32,
    baseline: Nullable<Vec<f64>>,
    target: Nullable<i32>,
    cell_features: i32,
    per_type: i32,
    cells_per_pass: Nullable<i32>,
    path_space: &str,
    progress: Nullable<Function>,
) -> extendr_api::Result<List> {
    guard("model_interpret_", || {
        let model = model_of(&handle)?;
        let matrix = csr_from_r(&cells, "newdata")?;
        let features = strings_from_r(&features);
        let config = IntegratedGradientsConfig {
            steps: steps.max(0) as usize,
            baseline: match baseline {
                Nullable::NotNull(values) => Some(values.iter().map(|&v| v as f32).collect()),
                Nullable::Null => None,
            },
            target: match target {
                Nullable::NotNull(class) => Target::Class((class.max(1) - 1) as usize),
                Nullable::Null => Target::Predicted,
            },
            cell_features: cell_features.max(0) as usize,
            cells_per_pass: match cells_per_pass {
                Nullable::NotNull(n) => Some(n.max(1) as usize),
                Nullable::Null => None,
            },
            path_space: match path_space {
                "embedding" => PathSpace::Embedding,
                "input" => PathSpace::Input,
                other => return Err(crate::errors::invalid(format!("unknown path space {other:?}; use \"embedding\" or \"input\""))),
            },
            ..Default::default()
        };
        let attributions =
            model.interpret(Side { matrix: &matrix, features: &features }, &config, &mut RProgress::new(progress)).map_err(r_err)?;
        Ok(list!(
            target = attributions.targets.iter().map(|&k| k as i32 + 1).collect::<Vec<_>>(),
            prediction_change = attributions.prediction_change.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            attribution_sum = attributions.attribution_sum.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            cell_top = cell_top_to_r(&attributions),
            frequency = determinants_to_r(&attributions, Ranking::Frequency, per_type.max(0) as usize),
            mean_attribution = determinants_to_r(&attributions, Ranking::MeanAttribution, per_type.max(0) as usize)
        ))
    })
}

fn cell_top_to_r(a: &Attributions) -> List {
    let (mut cell, mut rank, mut feature, mut value) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, top) in a.cell_top.iter().enumerate() {
        for (r, &(f, v)) in top.iter().enumerate() {
            cell.push(i as i32 + 1);
            rank.push(r as i32 + 1);
            feature.push(f as i32 + 1);
            value.push(v as f64);
        }
    }
    list!(cell = cell, rank = rank, feature = feature, attribution = value)
}

fn determinants_to_r(a: &Attributions, ranking: Ranking, per_type: usize) -> List {
    let d = a.determinants(ranking, per_type);
    list!(
        class = d.iter().map(|x| x.class as i32 + 1).collect::<Vec<_>>(),
        rank = d.iter().map(|x| x.rank as i32).collect::<Vec<_>>(),
        feature = d.iter().map(|x| x.feature as i32 + 1).collect::<Vec<_>>(),
        frequency = d.iter().map(|x| x.frequency as f64).collect::<Vec<_>>(),
        mean_attribution = d.iter().map(|x| x.mean_attribution as f64).collect::<Vec<_>>(),
        cells = d.iter().map(|x| a.class_cells[x.class] as i32).collect::<Vec<_>>()
    )
}

extendr_module! {
    mod interpret;
    fn model_interpret_;
}
