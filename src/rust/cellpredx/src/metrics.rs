//! Benchmark scores for a transfer: accuracy and macro-F1 on the query cells whose type the
//! reference knows, and AUROC and OSCR for telling novel types apart.

use crate::error::{CellPredXError, Result};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationScores {
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Cells whose true type is a reference class; only these are scored.
    pub n_scored: usize,
    /// The reference classes present among the scored cells, in reference order.
    pub per_class: Vec<ClassScore>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassScore {
    pub class: String,
    pub support: usize,
    pub predicted: usize,
    pub correct: usize,
    pub recall: f64,
    pub precision: f64,
    pub f1: f64,
}

/// Scores the cells whose true type is among `reference_classes`; any other prediction, such as
/// "Unknown", is wrong for them. Macro-F1 is sklearn's `f1_score(average = "macro")` with
/// `labels` = the shared classes present in the scored truth.
pub fn classification_scores(truth: &[&str], predicted: &[&str], reference_classes: &[&str]) -> Result<ClassificationScores> {
    if truth.len() != predicted.len() {
        return Err(CellPredXError::DimensionMismatch {
            what: "predicted labels (one per query cell)".into(),
            expected: truth.len(),
            got: predicted.len(),
        });
    }
    let mut class_index: HashMap<&str, usize> = HashMap::new();
    for &c in reference_classes {
        let next = class_index.len();
        class_index.entry(c).or_insert(next);
    }
    let n_classes = class_index.len();
    let (mut support, mut predicted_count, mut correct) = (vec![0; n_classes], vec![0; n_classes], vec![0; n_classes]);
    let mut n_scored = 0;
    for (&t, &p) in truth.iter().zip(predicted) {
        let Some(&ti) = class_index.get(t) else { continue };
        n_scored += 1;
        support[ti] += 1;
        if let Some(&pi) = class_index.get(p) {
            predicted_count[pi] += 1;
        }
        correct[ti] += usize::from(t == p);
    }
    if n_scored == 0 {
        return Err(CellPredXError::invalid(format!(
            "none of the {} query cells has a true type among the {n_classes} reference classes, so there is nothing to score",
            truth.len()
        )));
    }
    let mut classes: Vec<(&str, usize)> = class_index.into_iter().filter(|&(_, i)| support[i] > 0).collect();
    classes.sort_by_key(|&(_, i)| i);
    let per_class: Vec<ClassScore> = classes
        .into_iter()
        .map(|(name, i)| class_score(name, support[i], predicted_count[i], correct[i]))
        .collect();
    Ok(ClassificationScores {
        accuracy: correct.iter().sum::<usize>() as f64 / n_scored as f64,
        macro_f1: per_class.iter().map(|c| c.f1).sum::<f64>() / per_class.len() as f64,
        n_scored,
        per_class,
    })
}

/// A class never predicted has precision 0, and F1 0 when recall or precision is 0 (sklearn's
/// `zero_division = 0`).
fn class_score(class: &str, support: usize, predicted: usize, correct: usize) -> ClassScore {
    let ratio = |a: usize, b: usize| if b > 0 { a as f64 / b as f64 } else { 0.0 };
    let recall = ratio(correct, support);
    let precision = ratio(correct, predicted);
    let f1 = if recall + precision > 0.0 { 2.0 * recall * precision / (recall + precision) } else { 0.0 };
    ClassScore { class: class.to_string(), support, predicted, correct, recall, precision, f1 }
}

/// Area under the ROC curve as the Mann–Whitney statistic: the chance that a random positive
/// scores above a random negative, ties counting half.
pub fn auroc(scores: &[f64], positive: &[bool]) -> Result<f64> {
    if scores.len() != positive.len() {
        return Err(CellPredXError::DimensionMismatch { what: "AUROC labels".into(), expected: scores.len(), got: positive.len() });
    }
    check_finite(scores, "AUROC scores")?;
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(CellPredXError::invalid(format!(
            "AUROC needs both groups, got {n_pos} positive and {n_neg} negative cells"
        )));
    }
    // Over groups of equal scores in increasing order: each positive beats the negatives below
    // its group and ties with those inside it.
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut negatives_below, mut wins) = (0usize, 0.0f64);
    for group in tie_groups(&order, scores) {
        let pos = group.iter().filter(|&&i| positive[i]).count();
        let neg = group.len() - pos;
        wins += pos as f64 * (negatives_below as f64 + 0.5 * neg as f64);
        negatives_below += neg;
    }
    Ok(wins / (n_pos as f64 * n_neg as f64))
}

/// Consecutive runs of equal scores along `order`.
fn tie_groups<'a>(order: &'a [usize], scores: &'a [f64]) -> impl Iterator<Item = &'a [usize]> {
    order.chunk_by(move |&a, &b| scores[a] == scores[b])
}

fn check_finite(scores: &[f64], what: &str) -> Result<()> {
    match scores.iter().position(|s| !s.is_finite()) {
        Some(i) => Err(CellPredXError::invalid(format!("{what}: value {} at position {} is not finite", scores[i], i + 1))),
        None => Ok(()),
    }
}

/// Open-set classification rate (Dhamija, Günther & Boult 2018): the area under the correct
/// classification rate of known-type cells against the false positive rate of novel-type cells
/// as the acceptance threshold on the confidence score falls from the highest score to the
/// lowest. Equal scores enter together, so ties make a straight segment.
pub fn oscr(known_correct: &[bool], known_scores: &[f64], novel_scores: &[f64]) -> Result<f64> {
    if known_correct.len() != known_scores.len() {
        return Err(CellPredXError::DimensionMismatch {
            what: "OSCR scores of known-type cells".into(),
            expected: known_correct.len(),
            got: known_scores.len(),
        });
    }
    check_finite(known_scores, "OSCR scores of known-type cells")?;
    check_finite(novel_scores, "OSCR scores of novel-type cells")?;
    let (n_known, n_novel) = (known_scores.len(), novel_scores.len());
    if n_known == 0 || n_novel == 0 {
        return Err(CellPredXError::invalid(format!(
            "OSCR needs both known-type and novel-type cells, got {n_known} known and {n_novel} novel"
        )));
    }
    let scores: Vec<f64> = known_scores.iter().chain(novel_scores).copied().collect();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut correct, mut false_positives, mut area) = (0usize, 0usize, 0.0f64);
    for group in tie_groups(&order, &scores) {
        let ccr_before = correct as f64 / n_known as f64;
        let novel = group.iter().filter(|&&i| i >= n_known).count();
        correct += group.iter().filter(|&&i| i < n_known && known_correct[i]).count();
        false_positives += novel;
        let ccr_after = correct as f64 / n_known as f64;
        area += novel as f64 / n_novel as f64 * (ccr_before + ccr_after) / 2.0;
    }
    debug_assert_eq!(false_positives, n_novel);
    Ok(area)
}

/// Everything a transfer is scored on: the classification scores and, when the query has cells
/// of types the reference lacks (and cells of types it has), how well the open-set score tells
/// them apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub scores: ClassificationScores,
    pub n_novel: usize,
    pub auroc: Option<f64>,
    pub oscr: Option<f64>,
}

/// Scores each cell's most probable type `best` against `truth`; `doubt` is the open-set score
/// (higher = more likely a novel type), e.g. ln(1 − max p).
pub fn evaluate(truth: &[&str], best: &[&str], reference_classes: &[&str], doubt: &[f64]) -> Result<Evaluation> {
    if doubt.len() != truth.len() {
        return Err(CellPredXError::DimensionMismatch { what: "open-set scores (one per query cell)".into(), expected: truth.len(), got: doubt.len() });
    }
    let scores = classification_scores(truth, best, reference_classes)?;
    let novel: Vec<bool> = truth.iter().map(|t| !reference_classes.contains(t)).collect();
    let n_novel = novel.iter().filter(|&&n| n).count();
    let (auroc, oscr) = if n_novel > 0 && n_novel < truth.len() {
        let known: Vec<usize> = (0..truth.len()).filter(|&i| !novel[i]).collect();
        let known_correct: Vec<bool> = known.iter().map(|&i| best[i] == truth[i]).collect();
        let known_scores: Vec<f64> = known.iter().map(|&i| -doubt[i]).collect();
        let novel_scores: Vec<f64> = (0..truth.len()).filter(|&i| novel[i]).map(|i| -doubt[i]).collect();
        (Some(auroc(doubt, &novel)?), Some(oscr(&known_correct, &known_scores, &novel_scores)?))
    } else {
        (None, None)
    };
    Ok(Evaluation { scores, n_novel, auroc, oscr })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn macro_f1_matches_sklearn_on_a_hand_worked_example() {
        // truth     A A A B B C(novel) A
        // predicted A B Unk B A A     A
        // Scored: the six cells whose truth is A or B. Accuracy 3/6.
        // A: support 4, predicted 3 (cells 1, 5 and 7; cell 6 is unscored), correct 2:
        //    recall 1/2, precision 2/3, F1 4/7.
        // B: support 2, predicted 2, correct 1: recall 1/2, precision 1/2, F1 1/2.
        // sklearn.metrics.f1_score(t, p, labels=["A", "B"], average="macro") on the six scored
        // cells = (4/7 + 1/2) / 2 = 15/28. "T" is a reference class absent from the truth: not averaged.
        let truth = ["A", "A", "A", "B", "B", "C", "A"];
        let predicted = ["A", "B", "Unknown", "B", "A", "A", "A"];
        let s = classification_scores(&truth, &predicted, &["B", "A", "T"]).unwrap();
        assert_eq!(s.n_scored, 6);
        assert!(close(s.accuracy, 0.5));
        assert!(close(s.macro_f1, 15.0 / 28.0), "{}", s.macro_f1);
        let classes: Vec<&str> = s.per_class.iter().map(|c| c.class.as_str()).collect();
        assert_eq!(classes, ["B", "A"]);
        let a = &s.per_class[1];
        assert_eq!((a.support, a.predicted, a.correct), (4, 3, 2));
        assert!(close(a.recall, 0.5) && close(a.precision, 2.0 / 3.0) && close(a.f1, 4.0 / 7.0));
    }

    #[test]
    fn evaluate_scores_open_set_only_when_the_query_has_both_kinds() {
        // Novel cell C has the highest doubt: AUROC 1. Known cells ranked by confidence (−doubt):
        // cell 0 (correct), then cell 1 (wrong); the novel cell is accepted last, so OSCR = 1/2 · 1.
        let e = evaluate(&["A", "B", "C"], &["A", "A", "A"], &["A", "B"], &[-3.0, -2.0, -0.1]).unwrap();
        assert_eq!(e.n_novel, 1);
        assert!(close(e.auroc.unwrap(), 1.0));
        assert!(close(e.oscr.unwrap(), 0.5), "{:?}", e.oscr);
        assert!(close(e.scores.accuracy, 0.5));
        let closed = evaluate(&["A", "B"], &["A", "B"], &["A", "B"], &[-1.0, -1.0]).unwrap();
        assert_eq!((closed.auroc, closed.oscr, closed.n_novel), (None, None, 0));
        assert!(evaluate(&["A"], &["A"], &["A"], &[]).unwrap_err().to_string().contains("open-set"));
    }

    #[test]
    fn a_class_never_predicted_scores_zero() {
        let s = classification_scores(&["A", "B"], &["A", "A"], &["A", "B"]).unwrap();
        let b = &s.per_class[1];
        assert_eq!((b.precision, b.recall, b.f1), (0.0, 0.0, 0.0));
        // A: recall 1, precision 1/2, F1 2/3; macro (2/3 + 0) / 2.
        assert!(close(s.macro_f1, 1.0 / 3.0));
    }

    #[test]
    fn classification_inputs_are_checked() {
        let err = classification_scores(&["A"], &[], &["A"]).unwrap_err().to_string();
        assert!(err.contains("expected 1, got 0"), "{err}");
        let err = classification_scores(&["X", "Y"], &["A", "A"], &["A"]).unwrap_err().to_string();
        assert!(err.contains("none of the 2 query cells") && err.contains("1 reference classes"), "{err}");
    }

    #[test]
    fn auroc_of_perfect_reversed_and_tied_scores() {
        let positive = [true, true, false, false];
        assert!(close(auroc(&[0.9, 0.8, 0.2, 0.1], &positive).unwrap(), 1.0));
        assert!(close(auroc(&[0.1, 0.2, 0.8, 0.9], &positive).unwrap(), 0.0));
        assert!(close(auroc(&[0.5; 4], &positive).unwrap(), 0.5));
        // Pairs (pos, neg): (0.9,0.5) win, (0.9,0.1) win, (0.5,0.5) tie, (0.5,0.1) win → 3.5 / 4.
        assert!(close(auroc(&[0.9, 0.5, 0.5, 0.1], &positive).unwrap(), 0.875));
    }

    #[test]
    fn auroc_inputs_are_checked() {
        assert!(auroc(&[0.1, 0.2], &[true, true]).unwrap_err().to_string().contains("2 positive and 0 negative"));
        assert!(auroc(&[0.1], &[true, false]).is_err());
        assert!(auroc(&[f64::NAN, 0.2], &[true, false]).unwrap_err().to_string().contains("position 1"));
    }

    #[test]
    fn oscr_is_the_known_accuracy_when_novel_cells_score_lowest() {
        let known_correct = [true, false, true, true];
        let s = oscr(&known_correct, &[0.9, 0.8, 0.7, 0.6], &[0.5, 0.1, 0.3]).unwrap();
        assert!(close(s, 0.75), "{s}");
    }

    #[test]
    fn oscr_is_zero_when_novel_cells_score_highest() {
        let s = oscr(&[true, true], &[0.1, 0.2], &[0.9, 0.8]).unwrap();
        assert!(close(s, 0.0), "{s}");
    }

    #[test]
    fn oscr_by_hand_with_interleaved_and_tied_scores() {
        // Descending: 0.9 known ✓ → (0, 1/2); 0.7 novel → (1/2, 1/2), area 1/4;
        // 0.5 known ✗ + novel tied → (1, 1/2), area 1/4. Total 1/2.
        let s = oscr(&[true, false], &[0.9, 0.5], &[0.7, 0.5]).unwrap();
        assert!(close(s, 0.5), "{s}");
        // A tie of a correct known and a novel cell is a diagonal: (0,0) → (1,1), area 1/2.
        assert!(close(oscr(&[true], &[0.5], &[0.5]).unwrap(), 0.5));
    }

    #[test]
    fn oscr_inputs_are_checked() {
        assert!(oscr(&[true], &[0.5], &[]).unwrap_err().to_string().contains("1 known and 0 novel"));
        assert!(oscr(&[true, false], &[0.5], &[0.1]).is_err());
    }
}
