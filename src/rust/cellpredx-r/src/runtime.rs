//! Runtime settings and facts: threads, devices, libtorch.

use crate::errors::{guard, r_err};
use cellpredx::runtime;
use extendr_api::prelude::*;

/// What this build runs on, for CellPredXInfo().
#[extendr]
fn runtime_info_() -> extendr_api::Result<List> {
    guard("runtime_info_", || {
        let info = runtime::runtime_info();
        Ok(list!(
            libtorch_version = info.libtorch_version,
            built_with_cuda = info.built_with_cuda,
            cuda_available = info.cuda_available,
            cuda_device_count = info.cuda_device_count as i32,
            cuda_device_names = info.cuda_device_names,
            threads = info.threads as i32,
            openmp = info.openmp,
            mkl = info.mkl
        ))
    })
}

/// Sets the compute threads of libtorch and of the core's parallel loops; returns the count in
/// effect (capped at the cores the process may use).
#[extendr]
fn set_threads_(threads: i32) -> extendr_api::Result<i32> {
    guard("set_threads_", || {
        let threads = usize::try_from(threads).map_err(|_| crate::errors::invalid("threads must be at least 1"))?;
        Ok(runtime::set_threads(threads).map_err(r_err)? as i32)
    })
}

/// The most compute threads this process may use (`runtime::max_threads`).
#[extendr]
fn max_threads_() -> i32 {
    i32::try_from(runtime::max_threads()).unwrap_or(i32::MAX)
}

/// Resolves "auto" / "cpu" / "cuda" to the device the core will use ("cpu" or "cuda:0").
#[extendr]
fn resolve_device_(device: &str) -> extendr_api::Result<String> {
    guard("resolve_device_", || {
        let choice: runtime::DeviceChoice = device.parse().map_err(r_err)?;
        let device = choice.resolve().map_err(r_err)?;
        Ok(if device.is_cuda() { "cuda:0" } else { "cpu" }.to_string())
    })
}

/// Milliseconds per training step of the network on random minibatches (bench/threads.R).
#[extendr]
fn training_step_ms_(features: i32, batch: i32, classes: i32, steps: i32, device: &str) -> extendr_api::Result<f64> {
    guard("training_step_ms_", || {
        let device = device.parse::<runtime::DeviceChoice>().and_then(|d| d.resolve()).map_err(r_err)?;
        let shape = cellpredx::model::NetworkShape::new(features.into(), classes.into());
        let steps = usize::try_from(steps).map_err(|_| crate::errors::invalid("steps must be positive"))?;
        cellpredx::diagnostics::training_step_ms(shape, batch.into(), steps, 5, device).map_err(r_err)
    })
}

/// Panics on purpose, so the test suite can prove that a panic reaches R as an error.
#[extendr]
fn trigger_panic_(message: &str) -> extendr_api::Result<()> {
    guard("trigger_panic_", || panic!("{message}"))
}

extendr_module! {
    mod runtime;
    fn runtime_info_;
    fn set_threads_;
    fn max_threads_;
    fn resolve_device_;
    fn training_step_ms_;
    fn trigger_panic_;
}
