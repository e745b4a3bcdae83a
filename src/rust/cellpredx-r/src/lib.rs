//! R bindings of the CellPredX core. Each module converts R objects for one capability, calls the
//! core, and converts the results back; nothing here computes. Every entry point returns a
//! `Result` and runs inside `guard`, so neither a core error nor a panic ever unwinds into R.

use extendr_api::prelude::*;

mod convert;
mod errors;
mod evaluate;
mod gene_activity;
mod graph;
mod interpret;
mod model;
mod progress;
mod read_data;
mod runtime;
mod transfer;

extendr_module! {
    mod CellPredX;
    use convert;
    use evaluate;
    use gene_activity;
    use graph;
    use interpret;
    use model;
    use read_data;
    use runtime;
    use transfer;
}
