//! Wires the binary to the libtorch and ONNX Runtime that `scripts/setup.sh` installs, so that
//! `cargo run` and the built binary work without any variable exported by hand:
//! - an rpath to libtorch's lib folder (torch-sys tells us where it linked from);
//! - `libtorch_cuda` linked with `--no-as-needed` when the wheel ships it *and* its CUDA
//!   libraries resolve, since the linker otherwise drops it and CUDA is never seen;
//! - the ONNX Runtime library path baked in as a default for `ORT_DYLIB_PATH`.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    println!("cargo:rerun-if-env-changed=DGCN_NO_CUDA_LINK");

    if let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let lib_dir = PathBuf::from(lib_dir);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
        let cuda = lib_dir.join("libtorch_cuda.so");
        if std::env::var_os("DGCN_NO_CUDA_LINK").is_none() && cuda_libraries_resolve(&cuda) {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
            println!("cargo:rustc-env=DGCN_CUDA_LINKED=1");
        } else {
            println!("cargo:rustc-env=DGCN_CUDA_LINKED=0");
        }
    } else {
        println!("cargo:rustc-env=DGCN_CUDA_LINKED=0");
    }

    let ort = std::env::var("ORT_DYLIB_PATH").unwrap_or_default();
    println!("cargo:rustc-env=DGCN_DEFAULT_ORT_DYLIB={ort}");
}

/// True when `libtorch_cuda.so` exists and `ldd` finds every library it needs. A CPU-only set-up
/// (torch wheel without the CUDA packages) ships the file but not cuBLAS/cuDNN: linking it there
/// would make the binary fail to start.
fn cuda_libraries_resolve(cuda: &Path) -> bool {
    if !cuda.exists() {
        return false;
    }
    match Command::new("ldd").arg(cuda).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let missing: Vec<&str> = text.lines().filter(|l| l.contains("not found")).collect();
            if missing.is_empty() {
                true
            } else {
                println!(
                    "cargo:warning=libtorch_cuda.so present but {} of its libraries are missing (CPU-only install): building for CPU",
                    missing.len()
                );
                false
            }
        }
        _ => false,
    }
}
