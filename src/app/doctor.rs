//! `dgcn doctor`: which libtorch, device, weights, detector and ONNX Runtime a run would use.
use anyhow::Result;

use super::cli::CommonArgs;
use crate::device::device_name;
use crate::infer::{default_weights_path, Predictor};
use crate::VERSION_LINE;

pub fn run_doctor(common: &CommonArgs) -> Result<()> {
    println!("dgcn {VERSION_LINE}");
    let load = crate::device::load_cuda();
    match crate::device::libtorch_dir() {
        Some(dir) => println!(
            "libtorch: {} ({})",
            crate::device::libtorch_version(&dir).unwrap_or_else(|| "version unknown".into()),
            dir.display()
        ),
        None => println!("libtorch: folder not found in this process"),
    }
    println!("libtorch CUDA: {load}");
    println!(
        "CUDA available to libtorch: {} ({} device(s))",
        tch::Cuda::is_available(),
        tch::Cuda::device_count()
    );
    let gpus = crate::device::gpus();
    if gpus.is_empty() {
        println!("GPU: none found by the CUDA driver");
    }
    for (i, (name, bytes)) in gpus.iter().enumerate() {
        println!(
            "GPU {i}: {name}, {:.1} GiB",
            *bytes as f64 / (1u64 << 30) as f64
        );
    }
    match common.runtime().device() {
        Ok(d) => {
            println!("model device: {}", device_name(d));
            // What the app would run: with `auto` on a CPU with native bf16, the faster of the
            // two on the default weights, timed as the app times them.
            let timed = common.precision.is_timed_on(d);
            let format = match Predictor::load(&default_weights_path(), d, common.precision) {
                Ok(p) => p.format.format_on(d),
                Err(_) => common.precision.format_on(d),
            };
            let asked = clap::ValueEnum::to_possible_value(&common.precision)
                .map(|v| v.get_name().to_string())
                .unwrap_or_default();
            println!(
                "model number format: {format} (--precision {asked}; CPU with native bf16: {}{})",
                crate::device::cpu_has_native_bf16(),
                if timed {
                    "; the faster of f32 and bf16 on the default weights, timed here"
                } else {
                    ""
                }
            );
        }
        Err(e) => println!("model device: error: {e:#}"),
    }
    println!("libtorch threads: {}", tch::get_num_threads());
    let weights = default_weights_path();
    match crate::model::weights::read_sidecar(&weights) {
        Ok(s) => println!(
            "weights: {} (sha256 {})",
            weights.display(),
            s.sha256.chars().take(16).collect::<String>()
        ),
        Err(e) => println!("weights: {e}"),
    }
    match common.runtime().detector() {
        Ok(d) => println!(
            "face detector: {} ({} subnormal weights flushed to zero)",
            d.model_path.display(),
            d.subnormal_weights_flushed()
        ),
        Err(e) => println!("face detector: {e:#}"),
    }
    println!(
        "ONNX Runtime: {}",
        std::env::var("ORT_DYLIB_PATH")
            .unwrap_or_else(|_| env!("DGCN_DEFAULT_ORT_DYLIB").to_string())
    );
    Ok(())
}
