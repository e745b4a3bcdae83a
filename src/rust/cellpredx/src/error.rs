//! One error type for the whole core. Messages are single lines that carry the numbers a user
//! needs to act on; the R and command-line front ends print them as they are.

/// Everything the core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CellPredXError {
    /// Input data that cannot be used as given (wrong shape, invalid sparse structure, …).
    #[error("{0}")]
    InvalidInput(String),
    /// Two inputs that have to agree do not (dimensions, feature sets, …).
    #[error("{what}: expected {expected}, got {got}")]
    DimensionMismatch { what: String, expected: usize, got: usize },
    /// A long computation stopped because the caller asked it to (Ctrl-C in R).
    #[error("interrupted by the user")]
    Interrupted,
    /// The progress callback supplied by the caller failed.
    #[error("progress callback failed: {0}")]
    Callback(String),
    /// A libtorch operation failed; the first line of its message is kept.
    #[error("libtorch: {0}")]
    Torch(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// The data and the gene annotation name chromosomes in different styles (`1` against
    /// `chr1`), so no region can overlap.
    #[error("no {data} chromosome is in the gene annotation: the {data} name chromosomes like '{data_example}' but the annotation like '{annotation_example}'; {hint}")]
    ChromosomeNaming { data: String, data_example: String, annotation_example: String, hint: String },
    /// Nothing in the data overlaps any gene region, for a reason other than chromosome naming.
    #[error("{0}")]
    NoOverlap(String),
}

impl From<tch::TchError> for CellPredXError {
    fn from(err: tch::TchError) -> Self {
        // libtorch appends a C++ backtrace after the first line; users need only the first.
        let text = err.to_string();
        let first = text.lines().next().unwrap_or("unknown libtorch error");
        CellPredXError::Torch(first.trim_start_matches("Internal torch error: ").to_string())
    }
}

impl CellPredXError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        CellPredXError::InvalidInput(msg.into())
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CellPredXError::Io { context: context.into(), source }
    }
}

pub type Result<T> = std::result::Result<T, CellPredXError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_errors_keep_only_their_first_line() {
        let a = tch::Tensor::zeros([2, 3], (tch::Kind::Float, tch::Device::Cpu));
        let b = tch::Tensor::zeros([4, 5], (tch::Kind::Float, tch::Device::Cpu));
        let err: CellPredXError = a.f_matmul(&b).unwrap_err().into();
        let msg = err.to_string();
        assert!(msg.starts_with("libtorch: "), "{msg}");
        assert!(msg.contains("2x3") && msg.contains("4x5"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn dimension_mismatch_names_both_numbers() {
        let err = CellPredXError::DimensionMismatch { what: "features".into(), expected: 10, got: 7 };
        assert_eq!(err.to_string(), "features: expected 10, got 7");
    }
}
