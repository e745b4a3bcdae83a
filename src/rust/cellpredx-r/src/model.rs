//! Fitted models kept in R: predict new cells, save, load.

use crate::convert::{csr_from_r, strings_from_r};
use crate::errors::{guard, r_err};
use crate::progress::RProgress;
use crate::transfer::predictions_to_r;
use cellpredx::predict::UnknownRule;
use cellpredx::runtime::DeviceChoice;
use cellpredx::train::Compute;
use cellpredx::transfer::{Side, TransferModel};
use extendr_api::prelude::*;
use std::path::Path;

/// The model behind an R handle. A handle restored by readRDS() points nowhere: say how to keep
/// models across sessions.
pub(crate) fn model_of(handle: &Robj) -> extendr_api::Result<&ExternalPtr<TransferModel>> {
    <&ExternalPtr<TransferModel>>::try_from(handle).map_err(|_| {
        crate::errors::invalid(
            "this CellPredX model has no weights in this R session (saveRDS() does not keep them); save models with SaveCellPredX() and read them back with LoadCellPredX()",
        )
    })
}

/// Predictions for new cells (features x cells, with feature names), labelled by the model's
/// Unknown rule or by `unknown` / `threshold` where given.
#[extendr]
fn model_predict_(handle: Robj, cells: Robj, features: Strings, unknown: Nullable<String>, threshold: Nullable<f64>, progress: Nullable<Function>) -> extendr_api::Result<List> {
    guard("model_predict_", || {
        let model = model_of(&handle)?;
        let rule = unknown.into_option().map(|rule| rule.parse::<UnknownRule>()).transpose().map_err(r_err)?;
        let decision = model.description.unknown_decision(rule, threshold.into_option()).map_err(r_err)?;
        let matrix = csr_from_r(&cells, "newdata")?;
        let features = strings_from_r(&features);
        let predictions = model.predict(Side { matrix: &matrix, features: &features }, &mut RProgress::new(progress)).map_err(r_err)?;
        Ok(predictions_to_r(&predictions, &decision))
    })
}

#[extendr]
fn model_save_(handle: Robj, path: &str, overwrite: bool) -> extendr_api::Result<()> {
    guard("model_save_", || model_of(&handle)?.save(Path::new(path), overwrite).map_err(r_err))
}

/// A saved model and its description (JSON).
#[extendr]
fn model_load_(path: &str, device: &str) -> extendr_api::Result<List> {
    guard("model_load_", || {
        let device = device.parse::<DeviceChoice>().map_err(r_err)?.resolve().map_err(r_err)?;
        let model = TransferModel::load(Path::new(path), Compute::on(device)).map_err(r_err)?;
        let description = serde_json::to_string(&model.description).map_err(|e| crate::errors::invalid(e.to_string()))?;
        Ok(list!(model = ExternalPtr::new(model), description = description))
    })
}

extendr_module! {
    mod model;
    fn model_predict_;
    fn model_save_;
    fn model_load_;
}
