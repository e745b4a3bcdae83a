//! CellPredX core: cell type annotation by transferring labels from an annotated reference to an
//! unannotated query (Liu et al., PLoS Comput Biol, doi 10.1371/journal.pcbi.1013824).
//!
//! No R inside: the R package and the command-line tool are thin front ends over this crate.

pub mod diagnostics;
pub mod ensemble;
pub mod error;
pub mod gene_activity;
pub mod graph;
pub mod interpret;
pub mod io;
pub mod labels;
pub mod losses;
pub mod metrics;
pub mod model;
pub mod open_set;
pub mod predict;
pub mod preprocess;
pub mod progress;
pub mod rng;
pub mod runtime;
pub mod sparse;
pub mod sparse_linear;
pub mod train;
pub mod transfer;

pub use error::{CellPredXError, Result};
