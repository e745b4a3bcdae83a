//! Progress reporting and cancellation for long computations.
//!
//! A long core function takes a `&mut dyn ProgressSink` and reports to it between units of work
//! (a training step, a chunk of cells) at least about once a second. The sink returning an error
//! stops the computation with that error: this is how Ctrl-C in R and failing callbacks end a
//! call cleanly. Sinks are only ever called from the thread that called the core function, never
//! from worker threads, so a sink may call into a single-threaded host such as R.

use crate::error::Result;

/// One report: which stage, how far along, and any named figures (losses, …).
#[derive(Debug, Clone, Copy)]
pub struct ProgressEvent<'a> {
    pub stage: &'a str,
    pub done: usize,
    pub total: usize,
    pub metrics: &'a [(&'a str, f64)],
}

pub trait ProgressSink {
    fn report(&mut self, event: &ProgressEvent<'_>) -> Result<()>;
}

/// Passes progress on with one stage renamed (e.g. "neighbour graph" → "neighbour graph 2 of 3",
/// so that each network's graph gets its own progress bar); `None` renames nothing.
pub struct Relabel<'a> {
    inner: &'a mut dyn ProgressSink,
    from: &'static str,
    to: Option<String>,
}

impl<'a> Relabel<'a> {
    pub fn stage(inner: &'a mut dyn ProgressSink, from: &'static str, to: Option<String>) -> Self {
        Relabel { inner, from, to }
    }
}

impl ProgressSink for Relabel<'_> {
    fn report(&mut self, event: &ProgressEvent<'_>) -> Result<()> {
        match &self.to {
            Some(stage) if event.stage == self.from => self.inner.report(&ProgressEvent { stage, ..*event }),
            _ => self.inner.report(event),
        }
    }
}

/// A sink for callers that want neither progress nor cancellation.
pub struct Silent;

impl ProgressSink for Silent {
    fn report(&mut self, _event: &ProgressEvent<'_>) -> Result<()> {
        Ok(())
    }
}
