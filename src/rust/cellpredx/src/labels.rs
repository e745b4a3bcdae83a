//! Cell type labels as integer codes plus the class names they stand for.

use crate::error::{CellPredXError, Result};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    codes: Vec<u32>,
    classes: Vec<String>,
}

impl Labels {
    /// Encodes one label per cell. Classes come in the order given by `levels` (an R factor's
    /// levels) with the unused ones dropped, or sorted when there are no levels. Missing (`None`)
    /// and empty labels are refused with the position of the first one.
    pub fn encode<'a>(labels: impl IntoIterator<Item = Option<&'a str>>, levels: Option<&[&str]>) -> Result<Self> {
        let labels: Vec<&str> = labels
            .into_iter()
            .enumerate()
            .map(|(i, label)| match label {
                Some(l) if !l.trim().is_empty() => Ok(l),
                Some(_) => Err(CellPredXError::invalid(format!("label of cell {} is empty", i + 1))),
                None => Err(CellPredXError::invalid(format!("label of cell {} is missing (NA)", i + 1))),
            })
            .collect::<Result<_>>()?;
        let mut used: BTreeMap<&str, usize> = BTreeMap::new();
        for label in &labels {
            *used.entry(label).or_default() += 1;
        }
        let classes: Vec<String> = match levels {
            Some(levels) => levels.iter().filter(|l| used.contains_key(*l)).map(|l| l.to_string()).collect(),
            None => used.keys().map(|l| l.to_string()).collect(),
        };
        if classes.len() != used.len() {
            return Err(CellPredXError::invalid("some labels are not among the given levels"));
        }
        let index: BTreeMap<&str, u32> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as u32)).collect();
        let codes = labels.iter().map(|l| index[l]).collect();
        Ok(Labels { codes, classes })
    }

    pub fn codes(&self) -> &[u32] {
        &self.codes
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Cells per class, in class order.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &c in &self.codes {
            counts[c as usize] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_get_sorted_classes() {
        let l = Labels::encode(["T", "B", "T", "NK"].map(Some), None).unwrap();
        assert_eq!(l.classes(), ["B", "NK", "T"]);
        assert_eq!(l.codes(), [2, 0, 2, 1]);
        assert_eq!(l.counts(), [1, 1, 2]);
    }

    #[test]
    fn levels_keep_their_order_and_unused_ones_are_dropped() {
        let l = Labels::encode(["T", "B", "T"].map(Some), Some(&["T", "Mono", "B"])).unwrap();
        assert_eq!(l.classes(), ["T", "B"]);
        assert_eq!(l.codes(), [0, 1, 0]);
    }

    #[test]
    fn missing_and_empty_labels_are_refused_by_position() {
        let err = Labels::encode([Some("T"), None], None).unwrap_err();
        assert_eq!(err.to_string(), "label of cell 2 is missing (NA)");
        let err = Labels::encode([Some(" "), Some("B")], None).unwrap_err();
        assert_eq!(err.to_string(), "label of cell 1 is empty");
        assert!(Labels::encode([Some("X")], Some(&["T"])).is_err());
    }
}
