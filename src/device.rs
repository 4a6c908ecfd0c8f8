//! Where the model runs. libtorch keeps its CUDA half in `libtorch_cuda.so`, which registers
//! itself with `libtorch_cpu.so` when it is loaded; a binary that was linked without it (a
//! CPU-only build machine, or `--as-needed` dropping it) never sees a GPU. So before the first
//! tch call the binary loads `libtorch_cuda.so` itself, from the folder of the libtorch it runs
//! with; why it could not is logged once (`DGCN_LOG=debug`), printed by `dgcn doctor` and
//! given in the error of `--device cuda`. Device choice (`--device auto|cpu|cuda`) and the
//! facts `dgcn doctor` prints live here too.
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tch::Device;

/// What loading CUDA at start-up found.
#[derive(Debug, Clone, PartialEq)]
pub enum CudaLoad {
    /// `libtorch_cuda.so` is loaded (by the linker or by us) and registered with libtorch.
    Loaded(PathBuf),
    /// The libtorch in use has no CUDA half (a CPU-only libtorch).
    NotShipped(PathBuf),
    /// It is there but did not load, usually because cuBLAS/cuDNN or the driver are missing.
    Failed { path: PathBuf, reason: String },
    /// libtorch's folder could not be found in this process (not Linux, or not loaded).
    Unknown,
}

impl std::fmt::Display for CudaLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CudaLoad::Loaded(p) => write!(f, "loaded ({})", p.display()),
            CudaLoad::NotShipped(dir) => {
                write!(f, "not part of this libtorch ({}: CPU-only)", dir.display())
            }
            CudaLoad::Failed { path, reason } => {
                write!(f, "{} did not load: {reason}", path.display())
            }
            CudaLoad::Unknown => write!(f, "libtorch's folder not found in this process"),
        }
    }
}

/// Loads `libtorch_cuda.so` once per process (later calls return the first answer).
pub fn load_cuda() -> &'static CudaLoad {
    static LOAD: OnceLock<CudaLoad> = OnceLock::new();
    LOAD.get_or_init(|| {
        let load = try_load_cuda();
        // Said once, at debug level: a CPU-only install is normal. `--device cuda` puts the
        // reason into its error and `dgcn doctor` prints it.
        tracing::debug!("libtorch_cuda: {load}");
        load
    })
}

fn try_load_cuda() -> CudaLoad {
    // Make sure libtorch itself is loaded and initialised before looking for its folder.
    let _ = tch::get_num_threads();
    let Some(dir) = libtorch_dir() else {
        return CudaLoad::Unknown;
    };
    let path = dir.join("libtorch_cuda.so");
    if !path.exists() {
        return CudaLoad::NotShipped(dir);
    }
    match dlopen_global(&path) {
        Ok(()) => CudaLoad::Loaded(path),
        Err(reason) => CudaLoad::Failed { path, reason },
    }
}

/// The folder of the `libtorch_cpu.so` mapped into this process (Linux: /proc/self/maps).
pub fn libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libtorch_cpu"))
        })
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// The version of the libtorch in use, from the `version.py` a PyTorch wheel keeps beside it.
pub fn libtorch_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.parent()?.join("version.py")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("__version__"))
        .and_then(|rest| rest.split(['\'', '"']).nth(1))
        .map(str::to_string)
}

fn dlopen_global(path: &Path) -> Result<(), String> {
    let c = CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: dlopen with a valid NUL-terminated path; the handle is kept for the life of the
    // process (libtorch's CUDA hooks must stay loaded), and dlerror is read right after a
    // failure on this thread.
    unsafe {
        let handle = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if handle.is_null() {
            let err = libc::dlerror();
            return Err(if err.is_null() {
                "unknown dlopen error".into()
            } else {
                CStr::from_ptr(err).to_string_lossy().into_owned()
            });
        }
    }
    Ok(())
}

/// `cuda` when asked for or when `auto` finds a GPU, else the CPU.
pub fn choose_device(request: &str) -> anyhow::Result<Device> {
    let load = load_cuda();
    match request {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            anyhow::ensure!(
                tch::Cuda::is_available(),
                "--device cuda: no CUDA device visible to libtorch (libtorch_cuda {load})"
            );
            Ok(Device::Cuda(0))
        }
        "auto" => Ok(Device::cuda_if_available()),
        other => anyhow::bail!("--device {other}: expected auto, cpu or cuda"),
    }
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Cpu => "cpu".into(),
        other => format!("{other:?}"),
    }
}

/// Name and memory (bytes) of each GPU, from the CUDA driver (`libcuda.so.1`); empty when
/// there is no driver or no device.
pub fn gpus() -> Vec<(String, u64)> {
    type Init = unsafe extern "C" fn(u32) -> i32;
    type Count = unsafe extern "C" fn(*mut i32) -> i32;
    type Get = unsafe extern "C" fn(*mut i32, i32) -> i32;
    type Name = unsafe extern "C" fn(*mut libc::c_char, i32, i32) -> i32;
    type Mem = unsafe extern "C" fn(*mut usize, i32) -> i32;
    let mut out = Vec::new();
    // SAFETY: symbols are looked up by their documented names and called with the signatures
    // of the CUDA driver API (CUresult = int, CUdevice = int); buffers are sized as passed.
    unsafe {
        let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if lib.is_null() {
            return out;
        }
        let sym = |name: &CStr| libc::dlsym(lib, name.as_ptr());
        let (init, count, get, name, mem) = (
            sym(c"cuInit"),
            sym(c"cuDeviceGetCount"),
            sym(c"cuDeviceGet"),
            sym(c"cuDeviceGetName"),
            sym(c"cuDeviceTotalMem_v2"),
        );
        if [init, count, get, name, mem].iter().any(|p| p.is_null()) {
            return out;
        }
        let init: Init = std::mem::transmute(init);
        let count: Count = std::mem::transmute(count);
        let get: Get = std::mem::transmute(get);
        let name: Name = std::mem::transmute(name);
        let mem: Mem = std::mem::transmute(mem);
        let mut n = 0;
        if init(0) != 0 || count(&mut n) != 0 {
            return out;
        }
        for i in 0..n {
            let mut dev = 0;
            if get(&mut dev, i) != 0 {
                continue;
            }
            let mut buf = [0 as libc::c_char; 256];
            let mut bytes = 0usize;
            if name(buf.as_mut_ptr(), buf.len() as i32, dev) == 0 && mem(&mut bytes, dev) == 0 {
                let s = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
                out.push((s, bytes as u64));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_auto_is_bf16_only_on_a_cpu_that_computes_it() {
        assert_eq!(Precision::F32.kind_on(Device::Cpu), tch::Kind::Float);
        assert_eq!(Precision::Bf16.kind_on(Device::Cpu), tch::Kind::BFloat16);
        assert_eq!(Precision::Auto.kind_on(Device::Cuda(0)), tch::Kind::Float);
        let native = std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| s.contains(" avx512_bf16"))
            .unwrap_or(false);
        let expected = if native {
            tch::Kind::BFloat16
        } else {
            tch::Kind::Float
        };
        assert_eq!(Precision::Auto.kind_on(Device::Cpu), expected);
    }

    #[test]
    fn libtorch_is_found_in_this_process_and_cuda_loading_answers() {
        let dir = libtorch_dir().expect("libtorch_cpu mapped into the test binary");
        assert!(dir.join("libtorch_cpu.so").exists(), "{}", dir.display());
        let version = libtorch_version(&dir).expect("torch/version.py beside lib/");
        assert!(version.starts_with("2."), "{version}");
        match load_cuda() {
            // This machine's CPU-only wheel ships libtorch_cuda.so without cuBLAS/cuDNN.
            CudaLoad::Failed { reason, .. } => assert!(!reason.is_empty()),
            CudaLoad::Loaded(_) | CudaLoad::NotShipped(_) => {}
            CudaLoad::Unknown => panic!("libtorch found above, then not"),
        }
        // Whatever CUDA did, the CPU is always there and `auto` never fails.
        assert_eq!(choose_device("cpu").expect("cpu"), Device::Cpu);
        let auto = choose_device("auto").expect("auto");
        assert_eq!(auto == Device::Cpu, !tch::Cuda::is_available());
        assert!(choose_device("tpu").is_err());
        if !tch::Cuda::is_available() {
            let err = choose_device("cuda").expect_err("no GPU here").to_string();
            assert!(err.contains("libtorch_cuda"), "{err}");
        }
    }
}

/// The number format the model runs in at inference. Training always keeps its weights in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Precision {
    /// On a CPU with native bf16 arithmetic (AVX-512 BF16 or AMX) whichever of f32 and bf16 runs
    /// the weights faster there, timed when they are loaded (`infer::Predictor::load`); f32
    /// elsewhere. Where the weights are not timed (`kind_on`), the candidate: bf16 on such a CPU.
    #[default]
    Auto,
    F32,
    /// bfloat16 weights and activations: on two of this project's 2-core AVX-512 BF16 machines
    /// GCNet's forward took ≈ 15–25 % less time at batch 1 than f32, on a third ≈ 40 % more
    /// (`dgcn bench --model`); without native support libtorch emulates it, slower than f32.
    Bf16,
}

impl Precision {
    /// What `dgcn bench` times on `device`: f32, and bf16 too where `Auto` would choose it.
    pub fn benched_on(device: Device) -> Vec<Precision> {
        let mut formats = vec![Precision::F32];
        if Precision::Auto.kind_on(device) == tch::Kind::BFloat16 {
            formats.push(Precision::Bf16);
        }
        formats
    }

    /// The name of the number format this asks for on `device` ("f32" or "bf16").
    pub fn format_on(self, device: Device) -> &'static str {
        match self.kind_on(device) {
            tch::Kind::BFloat16 => "bf16",
            _ => "f32",
        }
    }

    /// Whether loading weights in this precision times f32 against bf16 on `device` and keeps
    /// the faster (`Auto` on a CPU with native bf16; `infer::Predictor::load`).
    pub fn is_timed_on(self, device: Device) -> bool {
        self == Precision::Auto && self.kind_on(device) == tch::Kind::BFloat16
    }

    /// The tensor kind the model's weights take on `device`.
    pub fn kind_on(self, device: Device) -> tch::Kind {
        match self {
            Precision::F32 => tch::Kind::Float,
            Precision::Bf16 => tch::Kind::BFloat16,
            Precision::Auto if device == Device::Cpu && cpu_has_native_bf16() => {
                tch::Kind::BFloat16
            }
            Precision::Auto => tch::Kind::Float,
        }
    }
}

/// Whether this CPU computes in bf16 natively (x86-64: AVX-512 BF16, which every CPU with
/// AMX-BF16 has too).
pub fn cpu_has_native_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
