//! Maps core errors and panics to the one-line messages R shows.

use cellpredx::CellPredXError;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The text R matches to turn a core `Interrupted` back into an R interrupt (R/utils-rust.R).
pub const INTERRUPTED: &str = "interrupted by the user";

pub fn r_err(err: CellPredXError) -> extendr_api::Error {
    match err {
        CellPredXError::Interrupted => extendr_api::Error::Other(INTERRUPTED.to_string()),
        other => extendr_api::Error::Other(other.to_string()),
    }
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
            Err(extendr_api::Error::Other(format!(
                "internal error in {context}: {detail}. This is a bug in CellPredX; please report it with the code that triggered it"
            )))
        }
    }
}
