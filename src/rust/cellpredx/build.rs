//! Makes the crate's own test binaries (and, through `links`, the command-line binary) find
//! libtorch at run time, and records the libtorch version for `runtime::RuntimeInfo`.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib_dir = Path::new(&lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:libtorch_lib={}", lib_dir.display());
    let version = libtorch_version(lib_dir).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CELLPREDX_LIBTORCH_VERSION={version}");
    println!("cargo:libtorch_version={version}");
}

/// The PyPI wheel carries `torch/version.py`; a plain libtorch zip carries `build-version`.
fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        return text
            .lines()
            .find_map(|l| l.strip_prefix("__version__ = "))
            .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_string());
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|v| v.trim().to_string())
}
