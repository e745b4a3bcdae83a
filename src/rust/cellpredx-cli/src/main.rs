//! `cellpredx`: the CellPredX core from the command line, for benchmarks, GPU machines without R,
//! and users outside R. Errors print one line and exit with status 1; usage errors exit with 2.

use cellpredx::model::NetworkShape;
use cellpredx::runtime::{self, DeviceChoice};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod evaluate;
mod interpret;
mod transfer;

#[derive(Parser)]
#[command(name = "cellpredx", version, about = "Cell type annotation by label transfer (CellPredX)")]
struct Cli {
    /// Compute threads for libtorch and the core (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what this build runs on: libtorch version, CUDA devices, threads.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Transfer labels from an annotated reference to a query and write the predictions.
    Transfer(Box<transfer::TransferArgs>),
    /// Annotate cells with a model saved by `transfer --save-model`.
    Predict(transfer::PredictArgs),
    /// Determinant features of a saved model's predictions (Integrated Gradients).
    Interpret(interpret::InterpretArgs),
    /// Score predictions against the query's true labels (accuracy, macro-F1, AUROC, OSCR).
    Evaluate(evaluate::EvaluateArgs),
    /// Time training steps of the network on random minibatches (milliseconds per step).
    BenchStep {
        #[arg(long, default_value_t = 1677)]
        features: i64,
        #[arg(long, default_value_t = 512)]
        batch: i64,
        #[arg(long, default_value_t = 19)]
        classes: i64,
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// auto, cpu or cuda.
        #[arg(long, default_value = "auto")]
        device: String,
    },
}

fn run(cli: Cli) -> cellpredx::Result<()> {
    if let Some(threads) = cli.threads {
        let used = runtime::set_threads(threads)?;
        if used < threads {
            eprintln!("cellpredx: --threads {threads} is more than the {used} cores this machine gives the process; using {used}");
        }
    }
    match cli.command {
        Command::Info { json } => {
            let info = runtime::runtime_info();
            if json {
                let text = serde_json::to_string_pretty(&info)
                    .map_err(|e| cellpredx::CellPredXError::invalid(e.to_string()))?;
                println!("{text}");
            } else {
                println!("cellpredx {}", env!("CARGO_PKG_VERSION"));
                println!("libtorch:  {}", info.libtorch_version);
                let cuda = if info.cuda_available {
                    format!("yes ({} device(s): {})", info.cuda_device_count, info.cuda_device_names.join(", "))
                } else if info.built_with_cuda {
                    "no (built with CUDA, but no GPU is visible)".to_string()
                } else {
                    "no (CPU-only build)".to_string()
                };
                println!("CUDA:      {cuda}");
                println!("threads:   {}", info.threads);
            }
            Ok(())
        }
        Command::Transfer(args) => transfer::run(*args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Predict(args) => transfer::predict(args),
        Command::Interpret(args) => interpret::run(args),
        Command::BenchStep { features, batch, classes, steps, device } => {
            let device = device.parse::<DeviceChoice>()?.resolve()?;
            let shape = NetworkShape::new(features, classes);
            let ms = cellpredx::diagnostics::training_step_ms(shape, batch, steps, 5, device)?;
            println!("{ms:.3}");
            Ok(())
        }
    }
}

#[cfg(unix)]
extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`cellpredx evaluate ... | head`) would
/// panic; with the default action restored the tool ends quietly, as Unix tools do.
#[cfg(unix)]
fn default_sigpipe() {
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    default_sigpipe();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cellpredx: error: {err}");
            ExitCode::FAILURE
        }
    }
}
