//! A progress sink that forwards core progress to an R callback and turns Ctrl-C into
//! `CellPredXError::Interrupted`.

use cellpredx::progress::{ProgressEvent, ProgressSink};
use cellpredx::CellPredXError;
use extendr_api::prelude::*;
use std::os::raw::{c_int, c_void};
use std::time::{Duration, Instant};

extern "C" {
    // Both are part of R's C API (Rinternals.h, R_ext/Utils.h).
    fn R_ToplevelExec(fun: Option<unsafe extern "C" fn(*mut c_void)>, data: *mut c_void) -> c_int;
    fn R_CheckUserInterrupt();
}

unsafe extern "C" fn check_interrupt(_data: *mut c_void) {
    R_CheckUserInterrupt();
}

/// Whether the user pressed Ctrl-C. R_CheckUserInterrupt would long-jump over Rust frames; run
/// inside R_ToplevelExec the jump ends there instead, which reports it as a FALSE return.
fn interrupt_pending() -> bool {
    unsafe { R_ToplevelExec(Some(check_interrupt), std::ptr::null_mut()) == 0 }
}

/// Forwards at most a few reports per second to the callback (R draws the progress bar); checks
/// for interrupts at every report.
pub struct RProgress {
    callback: Option<Function>,
    last_call: Option<Instant>,
}

const CALLBACK_INTERVAL: Duration = Duration::from_millis(200);

impl RProgress {
    pub fn new(callback: Nullable<Function>) -> Self {
        let callback = match callback {
            Nullable::NotNull(f) => Some(f),
            Nullable::Null => None,
        };
        RProgress { callback, last_call: None }
    }
}

impl ProgressSink for RProgress {
    fn report(&mut self, event: &ProgressEvent<'_>) -> cellpredx::Result<()> {
        if interrupt_pending() {
            return Err(CellPredXError::Interrupted);
        }
        let Some(callback) = &self.callback else { return Ok(()) };
        let finished = event.done >= event.total;
        if !finished && self.last_call.is_some_and(|t| t.elapsed() < CALLBACK_INTERVAL) {
            return Ok(());
        }
        self.last_call = Some(Instant::now());
        let mut metrics = Doubles::from_values(event.metrics.iter().map(|(_, v)| *v));
        metrics
            .set_names(event.metrics.iter().map(|(name, _)| *name))
            .map_err(|e| CellPredXError::Callback(e.to_string()))?;
        callback
            .call(pairlist!(
                stage = event.stage,
                done = event.done as f64,
                total = event.total as f64,
                metrics = metrics
            ))
            .map(|_| ())
            .map_err(|e| CellPredXError::Callback(e.to_string()))
    }
}
