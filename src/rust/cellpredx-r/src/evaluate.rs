//! Scores of a transfer against known labels, for R/evaluate.R.

use crate::convert::strings_from_r;
use crate::errors::{guard, r_err};
use cellpredx::metrics;
use extendr_api::prelude::*;

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Accuracy, macro-F1 and per-type figures of `best` against `truth` over the types in `classes`;
/// AUROC and OSCR of `doubt` when the truth has types outside `classes` (NULL otherwise).
#[extendr]
fn evaluate_labels_(truth: Strings, best: Strings, classes: Strings, doubt: Vec<f64>) -> extendr_api::Result<List> {
    guard("evaluate_labels_", || {
        let (truth, best, classes) = (strings_from_r(&truth), strings_from_r(&best), strings_from_r(&classes));
        let e = metrics::evaluate(&refs(&truth), &refs(&best), &refs(&classes), &doubt).map_err(r_err)?;
        let per = &e.scores.per_class;
        Ok(list!(
            accuracy = e.scores.accuracy,
            macro_f1 = e.scores.macro_f1,
            auroc = e.auroc,
            oscr = e.oscr,
            scored_cells = e.scores.n_scored as i32,
            novel_cells = e.n_novel as i32,
            per_type = list!(
                cell_type = per.iter().map(|c| c.class.clone()).collect::<Vec<_>>(),
                support = per.iter().map(|c| c.support as i32).collect::<Vec<_>>(),
                predicted = per.iter().map(|c| c.predicted as i32).collect::<Vec<_>>(),
                correct = per.iter().map(|c| c.correct as i32).collect::<Vec<_>>(),
                recall = per.iter().map(|c| c.recall).collect::<Vec<_>>(),
                precision = per.iter().map(|c| c.precision).collect::<Vec<_>>(),
                f1 = per.iter().map(|c| c.f1).collect::<Vec<_>>()
            )
        ))
    })
}

extendr_module! {
    mod evaluate;
    fn evaluate_labels_;
}
