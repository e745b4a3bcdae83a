//! Maps core errors and panics to R errors that carry their kind, so that R raises a condition of
//! class `cellpredx_error_<kind>` and branches on the class, never on the message's words.

use cellpredx::CellPredXError;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Separates the kind from the message in the text of an error crossing to R; a character that
/// no message contains, so R splits on it unambiguously (R/utils-rust.R, `rust_error_mark`).
pub const KIND_MARK: char = '\u{1e}';

/// The kind R turns into the condition class `cellpredx_error_<kind>`.
pub fn kind_of(err: &CellPredXError) -> &'static str {
    match err {
        CellPredXError::InvalidInput(_) | CellPredXError::DimensionMismatch { .. } => "invalid_input",
        CellPredXError::Interrupted => "interrupted",
        CellPredXError::Callback(_) => "callback",
        CellPredXError::Torch(_) => "torch",
        CellPredXError::Io { .. } => "io",
        CellPredXError::ChromosomeNaming { .. } => "chromosome_naming",
        CellPredXError::NoOverlap(_) => "no_overlap",
    }
}

fn tagged(kind: &str, message: &str) -> extendr_api::Error {
    // The mark must stay the only one: a message (file text, say) could hold it.
    let message = message.replace(KIND_MARK, " ");
    extendr_api::Error::Other(format!("{KIND_MARK}{kind}{KIND_MARK}{message}"))
}

pub fn r_err(err: CellPredXError) -> extendr_api::Error {
    tagged(kind_of(&err), &err.to_string())
}

/// An invalid-input error raised by the glue itself (a value R passed that the core cannot take).
pub fn invalid(message: impl AsRef<str>) -> extendr_api::Error {
    tagged("invalid_input", message.as_ref())
}

/// Runs an entry point so that a panic anywhere below becomes an ordinary R error that names
/// the entry point, instead of unwinding into R's C code.
pub fn guard<T>(context: &str, work: impl FnOnce() -> extendr_api::Result<T>) -> extendr_api::Result<T> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            Err(tagged(
                "internal",
                &format!("internal error in {context}: {detail}. This is a bug in CellPredX; please report it with the code that triggered it"),
            ))
        }
    }
}
