//! What every command that runs the model shares, set up one way: the device, libtorch's and
//! ONNX Runtime's threads, and the face detector. Built from the command line by `app`, passed
//! as plain data to the pipeline and the window.
use std::path::PathBuf;

use anyhow::Result;
use tch::Device;

use crate::device::{choose_device, Precision};
use crate::face::detect::BlazeFaceVariant;
use crate::face::{Detector, DetectorConfig};

#[derive(Debug, Clone)]
pub struct Runtime {
    /// `auto`, `cpu` or `cuda`.
    pub device: String,
    /// Threads for libtorch and ONNX Runtime (0: all cores).
    pub threads: usize,
    /// BlazeFace model file (None: `$DGCN_BLAZEFACE`, `~/.rust_faces`, or download).
    pub detector_model: Option<PathBuf>,
    pub detector_variant: BlazeFaceVariant,
    /// The number format of the model at inference.
    pub precision: Precision,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            device: "auto".into(),
            threads: 0,
            detector_model: None,
            detector_variant: BlazeFaceVariant::B640,
            precision: Precision::Auto,
        }
    }
}

impl Runtime {
    /// The thread count asked for, or all cores when it is 0.
    pub fn threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
    }

    /// For each of the live pipeline's two compute stages (detection, model), unless a thread
    /// count was given: they run at the same time, so each gets half the cores (measured on 2
    /// cores: 1 thread each gave 101 fps and 10.4 ms median latency against 77 fps and 14.4 ms
    /// with 2 each, see `dgcn bench`).
    pub fn per_stage(&self) -> Runtime {
        Runtime {
            threads: if self.threads > 0 {
                self.threads
            } else {
                (self.threads() / 2).max(1)
            },
            ..self.clone()
        }
    }

    /// Sets libtorch's threads and chooses the device (loading CUDA first, see `device`).
    pub fn device(&self) -> Result<Device> {
        tch::set_num_threads(self.threads() as i32);
        choose_device(&self.device)
    }

    pub fn detector(&self) -> Result<Detector> {
        Ok(Detector::new(&DetectorConfig {
            model_path: self.detector_model.clone(),
            variant: self.detector_variant,
            threads: self.threads(),
            ..DetectorConfig::default()
        })?)
    }
}

/// Largest block glibc's allocator takes from its heap instead of mapping fresh pages (its
/// maximum on 64-bit systems).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_BLOCKS_UP_TO: usize = 32 << 20;

/// Keeps libtorch's tensor buffers (up to 32 MB) in the allocator's heap for reuse. By default
/// glibc maps every block over 128 KB–32 MB afresh from the kernel and unmaps it when freed, so
/// each new activation of a batch page-faults its memory in zeroed pages: measured on this 2-core
/// machine, 16 % of a training run's CPU time was spent in the kernel, and the first convolution
/// at batch 64 took 20 ms instead of 2.5 ms. Called once at start, before any thread allocates.
/// Returns whether the allocator accepted the settings (other platforms: nothing to do).
pub fn keep_tensor_buffers_in_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let blocks = HEAP_BLOCKS_UP_TO as libc::c_int;
        // SAFETY: mallopt only changes the allocator's thresholds; it is called before the
        // program's other threads start.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, blocks) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 8 * blocks) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_allocator_accepts_the_heap_thresholds() {
        assert!(super::keep_tensor_buffers_in_heap());
    }
}
