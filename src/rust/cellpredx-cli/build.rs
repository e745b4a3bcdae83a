//! The binary finds libtorch through an rpath, and keeps libtorch's CUDA library linked (nothing
//! references it directly, so the linker would drop it and the GPU would stay invisible).
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(lib_dir) = std::env::var_os("DEP_CELLPREDX_LIBTORCH_LIB") {
        let lib_dir = Path::new(&lib_dir);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
        if lib_dir.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
}
