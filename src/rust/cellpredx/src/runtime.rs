//! Compute resources: the thread count shared by libtorch and our own parallel code, the device,
//! and a description of both for users and bug reports.

use crate::error::{CellPredXError, Result};
use std::sync::{Arc, Mutex, OnceLock};

/// The version of the libtorch this build is linked against (recorded by build.rs).
pub const LIBTORCH_VERSION: &str = env!("CELLPREDX_LIBTORCH_VERSION");

struct Threads {
    count: usize,
    pool: Arc<rayon::ThreadPool>,
}

fn threads_state() -> &'static Mutex<Threads> {
    static STATE: OnceLock<Mutex<Threads>> = OnceLock::new();
    STATE.get_or_init(|| {
        let count = max_threads();
        Mutex::new(Threads { count, pool: Arc::new(build_pool(count)) })
    })
}

fn build_pool(count: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(count)
        .thread_name(|i| format!("cellpredx-{i}"))
        .build()
        // Building a pool only fails when the OS refuses to start threads at all.
        .unwrap_or_else(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("one thread"))
}

/// The most compute threads this process may use: the cores the OS gives it (cgroup and affinity
/// limits included). More threads than that only oversubscribe the cores, and thousands of them
/// exhaust the OS's threads and crash the process.
pub fn max_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sets the number of compute threads for libtorch's intra-op parallelism and for the core's own
/// parallel loops alike, so the two never oversubscribe the cores between them. A count above
/// `max_threads()` is capped there; the count in effect is returned so callers can say so.
pub fn set_threads(count: usize) -> Result<usize> {
    if count == 0 {
        return Err(CellPredXError::invalid("threads must be at least 1"));
    }
    let count = count.min(max_threads());
    let mut state = threads_state().lock().map_err(|_| CellPredXError::invalid("thread settings are unavailable"))?;
    if state.count != count {
        state.pool = Arc::new(build_pool(count));
        state.count = count;
    }
    set_libtorch_threads_here(count);
    Ok(count)
}

/// Makes libtorch compute on `count` threads in the calling thread, whatever other threads set
/// later (`set_threads`, and an ensemble's networks, each on a fixed count: `ensemble::Schedule`).
pub fn set_libtorch_threads_here(count: usize) {
    // A thread takes libtorch's process-wide count the first time it computes in parallel, over
    // any count set in it before, and another thread may change that count meanwhile. Asking for
    // the count makes that first time now, so the count set next stays.
    let _ = tch::get_num_threads();
    tch::set_num_threads(count.max(1) as i32);
}

/// The current number of compute threads.
pub fn threads() -> usize {
    threads_state().lock().map_or(1, |s| s.count)
}

thread_local! {
    /// A pool of this thread's own that `in_pool` uses instead of the shared one (`with_pool_threads`).
    static OWN_POOL: std::cell::RefCell<Option<Arc<rayon::ThreadPool>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `work` on the core's thread pool; rayon iterators inside it use that pool.
pub fn in_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let pool = OWN_POOL.with(|own| own.borrow().clone()).or_else(|| threads_state().lock().ok().map(|s| Arc::clone(&s.pool)));
    match pool {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// Runs `work` in the calling thread with `in_pool` using a pool of `count` threads of its own, so
/// that work running side by side in several threads (an ensemble's networks) does not queue for
/// the shared pool.
pub fn with_pool_threads<R>(count: usize, work: impl FnOnce() -> R) -> R {
    /// Gives the thread back its previous pool however `work` ends, a panic included.
    struct Restore(Option<Arc<rayon::ThreadPool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OWN_POOL.with(|own| *own.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(OWN_POOL.with(|own| own.replace(Some(Arc::new(build_pool(count.max(1)))))));
    work()
}

/// Where tensors live. `Auto` takes the first CUDA device when libtorch sees one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

impl std::str::FromStr for DeviceChoice {
    type Err = CellPredXError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            other => Err(CellPredXError::invalid(format!(
                "device must be one of \"auto\", \"cpu\" or \"cuda\", not \"{other}\""
            ))),
        }
    }
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            DeviceChoice::Cuda => Err(CellPredXError::invalid(format!(
                "device = \"cuda\" was requested but libtorch {LIBTORCH_VERSION} sees no CUDA device{}; use device = \"auto\" or \"cpu\"",
                if tch::utils::has_cudart() { "" } else { " (this build has no CUDA support)" }
            ))),
        }
    }
}

/// What this build runs on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeInfo {
    pub libtorch_version: String,
    pub built_with_cuda: bool,
    pub cuda_available: bool,
    pub cuda_device_count: usize,
    pub cuda_device_names: Vec<String>,
    pub threads: usize,
    pub openmp: bool,
    pub mkl: bool,
}

pub fn runtime_info() -> RuntimeInfo {
    let cuda_available = tch::Cuda::is_available();
    RuntimeInfo {
        libtorch_version: LIBTORCH_VERSION.to_string(),
        built_with_cuda: tch::utils::has_cudart(),
        cuda_available,
        cuda_device_count: if cuda_available { tch::Cuda::device_count().max(0) as usize } else { 0 },
        cuda_device_names: if cuda_available { nvidia_device_names() } else { Vec::new() },
        threads: threads(),
        openmp: tch::utils::has_openmp(),
        mkl: tch::utils::has_mkl(),
    }
}

/// libtorch's C API has no device-name call; the NVIDIA driver lists each GPU's model under /proc.
fn nvidia_device_names() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc/driver/nvidia/gpus") else {
        return Vec::new();
    };
    let mut names: Vec<(String, String)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let info = std::fs::read_to_string(entry.path().join("information")).ok()?;
            let model = info.lines().find_map(|l| l.strip_prefix("Model:"))?.trim().to_string();
            Some((entry.file_name().to_string_lossy().into_owned(), model))
        })
        .collect();
    names.sort();
    names.into_iter().map(|(_, model)| model).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_have_a_pool_of_its_own_until_its_work_ends() {
        with_pool_threads(2, || {
            assert_eq!(in_pool(rayon::current_num_threads), 2);
            assert_eq!(with_pool_threads(3, || in_pool(rayon::current_num_threads)), 3);
            assert_eq!(in_pool(rayon::current_num_threads), 2, "the inner pool outlived its work");
            let panicked = std::panic::catch_unwind(|| with_pool_threads(3, || panic!("training failed")));
            assert!(panicked.is_err());
            assert_eq!(in_pool(rayon::current_num_threads), 2, "a panic left the inner pool in place");
        });
    }

    #[test]
    fn threads_apply_to_libtorch_and_the_pool() {
        set_threads(1).unwrap();
        assert_eq!(threads(), 1);
        assert_eq!(tch::get_num_threads(), 1);
        assert_eq!(in_pool(rayon::current_num_threads), 1);
        let two = set_threads(2).unwrap();
        assert_eq!(in_pool(rayon::current_num_threads), two);
        assert!(set_threads(0).is_err());
        // Above the cores: capped there (thousands of threads crashed the process).
        let cores = max_threads();
        assert_eq!(set_threads(1000).unwrap(), cores);
        assert_eq!(threads(), cores);
        assert_eq!(in_pool(rayon::current_num_threads), cores);
        assert_eq!(tch::get_num_threads() as usize, cores);
        set_threads(1).unwrap();
    }

    #[test]
    fn a_thread_keeps_its_libtorch_threads_when_another_changes_the_count() {
        let (set_here, changed_elsewhere) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                set_libtorch_threads_here(1);
                set_here.wait();
                changed_elsewhere.wait();
                tch::get_num_threads()
            });
            set_here.wait();
            tch::set_num_threads(threads() as i32 + 2);
            changed_elsewhere.wait();
            assert_eq!(worker.join().unwrap(), 1);
        });
        tch::set_num_threads(threads() as i32);
    }

    #[test]
    fn device_choices_parse_and_resolve() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap().resolve().unwrap(), tch::Device::Cpu);
        let err = "gpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("\"auto\", \"cpu\" or \"cuda\", not \"gpu\""), "{err}");
        if !tch::Cuda::is_available() {
            let err = DeviceChoice::Cuda.resolve().unwrap_err().to_string();
            assert!(err.contains("sees no CUDA device"), "{err}");
        }
    }

    #[test]
    fn runtime_info_names_the_linked_libtorch() {
        let info = runtime_info();
        assert!(info.libtorch_version.starts_with("2.11.0"), "{}", info.libtorch_version);
        assert_eq!(info.cuda_available, info.cuda_device_count > 0);
    }
}
