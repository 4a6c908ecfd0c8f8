//! `dgcn bench`: speed and memory, printed as Markdown tables. On a clip (the default; needs the
//! `video` feature): each stage of the pipeline on real frames, then the whole headless pipeline
//! and an idle camera ([`clip`]). Of the model alone ([`model`]): GCNet's forward per device and
//! batch size, the candidate layouts, and training throughput. Stage timings are medians and 95th
//! percentiles over repeated runs; memory is the process's peak resident set (VmHWM).
#[cfg(feature = "video")]
mod clip;
mod model;

use std::time::Instant;

use anyhow::{Context, Result};

use super::cli::BenchArgs;

/// Runs the benchmark the flags ask for.
pub fn run_bench(args: &BenchArgs) -> Result<()> {
    if args.train {
        return model::run_train_bench(args);
    }
    if args.layouts {
        return model::run_layout_bench(args);
    }
    if args.model {
        return model::run_model_bench(args);
    }
    #[cfg(feature = "video")]
    return clip::run_clip_bench(args);
    #[cfg(not(feature = "video"))]
    Err(anyhow::anyhow!(
        "{}; `dgcn bench --model`, `--layouts` and `--train` measure the model without a clip",
        crate::capture::CaptureError::NotBuilt("video")
    ))
}

/// Prints a bench's report and, with `--out`, writes it there too.
fn finish_report(args: &BenchArgs, report: &str) -> Result<()> {
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// Median and 95th percentile of a set of timings, in ms.
pub fn median_p95(values: &mut [f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95))
}

pub(super) fn time_ms(f: impl FnOnce()) -> f64 {
    let t0 = Instant::now();
    f();
    t0.elapsed().as_secs_f64() * 1000.0
}

/// Peak and current resident memory of this process, in MB (Linux; `None` elsewhere).
pub fn memory_mb() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}
