//! Label transfer: R matrices and settings in, predictions, embedding and training record out.
//! Settings travel as JSON so that every field of the core's `TransferConfig` can be set from R
//! by name without a line of glue per field.

use crate::convert::{csr_from_r, labels_from_r, strings_from_r};
use crate::errors::{guard, r_err};
use crate::progress::RProgress;
use cellpredx::runtime::DeviceChoice;
use cellpredx::train::{Compute, Scenario};
use cellpredx::predict::{Predictions, UnknownDecision};
use cellpredx::transfer::{transfer, Side, TransferConfig};
use extendr_api::prelude::*;

fn json_error(e: serde_json::Error) -> Error {
    crate::errors::invalid(format!("settings: {e}"))
}

/// The scenario's preset settings as JSON (`{"preprocess": {...}, "training": {...}, ...}`).
#[extendr]
fn transfer_preset_(scenario: &str) -> extendr_api::Result<String> {
    guard("transfer_preset_", || {
        let scenario: Scenario = scenario.parse().map_err(r_err)?;
        serde_json::to_string(&TransferConfig::preset(scenario)).map_err(json_error)
    })
}

/// The sections of the settings, as `CellPredXPresets()` shows them; a setting is named by its
/// field alone or inside its section (`list(training = list(max_steps = 30))`).
const SECTIONS: [&str; 2] = ["preprocess", "training"];

/// Overrides `settings` (a JSON object of field → value, each field found in `preprocess` or
/// `training` or at the top level, or a section holding such fields) on the scenario's preset.
/// Each error names the setting and the value given.
fn config_from(scenario: Scenario, overrides: &str) -> extendr_api::Result<TransferConfig> {
    let preset = serde_json::to_value(TransferConfig::preset(scenario)).map_err(json_error)?;
    let overrides: serde_json::Map<String, serde_json::Value> = serde_json::from_str(overrides).map_err(json_error)?;
    let mut fields: Vec<(String, serde_json::Value)> = Vec::new();
    for (name, value) in overrides {
        match value {
            serde_json::Value::Object(inner) if SECTIONS.contains(&name.as_str()) => fields.extend(inner),
            value => fields.push((name, value)),
        }
    }
    let mut config = preset.clone();
    for (name, value) in &fields {
        // Where the setting lives, as a JSON pointer (setting names hold no '/' or '~').
        let pointer = match SECTIONS.into_iter().find(|s| preset[*s].get(name).is_some()) {
            Some(section) => format!("/{section}/{name}"),
            None if preset.get(name).is_some() && !SECTIONS.contains(&name.as_str()) && name != "scenario" => format!("/{name}"),
            None => return Err(crate::errors::invalid(format!("unknown setting `{name}`; see CellPredXPresets() for the settings there are"))),
        };
        // Each value alone on the preset first, so that a wrong one is named.
        let mut alone = preset.clone();
        if let Some(slot) = alone.pointer_mut(&pointer) {
            *slot = value.clone();
        }
        if let Err(e) = serde_json::from_value::<TransferConfig>(alone) {
            let expected = preset.pointer(&pointer).map_or("a value of its type (see CellPredXPresets())", expected_kind);
            let given = if value.is_null() { "NA or NULL".to_string() } else { value.to_string() };
            return Err(crate::errors::invalid(format!("setting `{name}` must be {expected}, not {given} ({e})")));
        }
        if let Some(slot) = config.pointer_mut(&pointer) {
            *slot = value.clone();
        }
    }
    serde_json::from_value(config).map_err(|e| crate::errors::invalid(format!("the settings do not fit together: {e}")))
}

/// What a setting takes, judged from its preset value.
fn expected_kind(preset: &serde_json::Value) -> &'static str {
    match preset {
        serde_json::Value::Number(n) if n.is_u64() => "a whole number of at least 0",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Bool(_) => "TRUE or FALSE",
        serde_json::Value::String(_) => "one of its named choices (see CellPredXPresets())",
        _ => "a value of its type (see CellPredXPresets())",
    }
}

/// Labels after the Unknown decision, probabilities (classes x cells), embedding (cells x
/// dimensions) and open-set scores.
pub fn predictions_to_r(p: &Predictions, decision: &UnknownDecision) -> List {
    let (cells, classes) = p.probabilities.dim();
    list!(
        labels = p.labels(decision).into_iter().map(String::from).collect::<Vec<_>>(),
        classes = p.classes.clone(),
        probabilities = RMatrix::new_matrix(classes, cells, |k, i| p.probabilities[[i, k]] as f64),
        embedding = RMatrix::new_matrix(cells, p.embedding.ncols(), |i, j| p.embedding[[i, j]] as f64),
        log_doubt = p.log_doubt.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        prototype_similarity = p.prototype_similarity.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        reference_distance = p.reference_distance.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        novelty = p.novelty.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        no_counts = p.no_counts.clone()
    )
}

/// Runs a transfer on features x cells matrices. Returns the predictions (`predictions_to_r`),
/// the features used, the training history (one vector per loss, all networks one after
/// another), the recoveries from a diverging loss (one vector per field), how each network's
/// training ended, the resolved settings as
/// JSON, and the model (an external pointer) with its description as JSON.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn transfer_(
    reference: Robj,
    reference_features: Strings,
    labels: Robj,
    query: Robj,
    query_features: Strings,
    scenario: &str,
    settings: &str,
    device: &str,
    progress: Nullable<Function>,
) -> extendr_api::Result<List> {
    guard("transfer_", || {
        let scenario: Scenario = scenario.parse().map_err(r_err)?;
        let config = config_from(scenario, settings)?;
        let device = device.parse::<DeviceChoice>().map_err(r_err)?.resolve().map_err(r_err)?;
        let reference = csr_from_r(&reference, "ref")?;
        let query = csr_from_r(&query, "query")?;
        let labels = labels_from_r(&labels, "ref.labels")?;
        let (reference_features, query_features) = (strings_from_r(&reference_features), strings_from_r(&query_features));
        let result = transfer(
            Side { matrix: &reference, features: &reference_features },
            &labels,
            Side { matrix: &query, features: &query_features },
            &config,
            Compute::on(device),
            &mut RProgress::new(progress),
        )
        .map_err(r_err)?;

        let history: Vec<(usize, &cellpredx::train::StepRecord)> = result.model.ensemble.history().collect();
        let column = |f: &dyn Fn(&cellpredx::train::StepRecord) -> Option<f64>| -> Vec<Option<f64>> { history.iter().map(|(_, r)| f(r)).collect() };
        let history = list!(
            network = history.iter().map(|(network, _)| *network as i32).collect::<Vec<_>>(),
            step = history.iter().map(|(_, r)| r.step as i32).collect::<Vec<_>>(),
            learning_rate = column(&|r| Some(r.learning_rate)),
            total = column(&|r| Some(r.total)),
            cross_entropy = column(&|r| Some(r.cross_entropy)),
            projection = column(&|r| r.projection),
            l1 = column(&|r| r.l1),
            alignment = column(&|r| r.alignment),
            contrastive = column(&|r| r.contrastive),
            center = column(&|r| r.center)
        );
        let recoveries: Vec<(usize, &cellpredx::train::Recovery)> = result.model.ensemble.recoveries().collect();
        let recoveries = list!(
            network = recoveries.iter().map(|(network, _)| *network as i32).collect::<Vec<_>>(),
            step = recoveries.iter().map(|(_, r)| r.step as i32).collect::<Vec<_>>(),
            loss = recoveries.iter().map(|(_, r)| r.loss).collect::<Vec<_>>(),
            learning_rate = recoveries.iter().map(|(_, r)| r.learning_rate).collect::<Vec<_>>(),
            resumed_from = recoveries.iter().map(|(_, r)| r.resumed_from as i32).collect::<Vec<_>>(),
            new_learning_rate = recoveries.iter().map(|(_, r)| r.new_learning_rate).collect::<Vec<_>>()
        );
        let resolved = serde_json::to_string(&result.config).map_err(json_error)?;
        let description = serde_json::to_string(&result.model.description).map_err(json_error)?;
        Ok(list!(
            predictions = predictions_to_r(&result.predictions, &result.model.description.unknown_decision(None, None).map_err(r_err)?),
            features = result.model.description.features.clone(),
            normalization = serde_json::to_string(&result.normalization).map_err(json_error)?,
            scaled = result.model.description.scale,
            smoothing = result.model.description.smoothing,
            history = history,
            recoveries = recoveries,
            networks = serde_json::to_string(&result.model.description.networks).map_err(json_error)?,
            settings = resolved,
            device = format!("{device:?}"),
            model = ExternalPtr::new(result.model),
            description = description
        ))
    })
}

extendr_module! {
    mod transfer;
    fn transfer_preset_;
    fn transfer_;
}
