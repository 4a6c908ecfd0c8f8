//! The process's CPU use, as the bench and the window's status bar report it: CPU time of all
//! threads (user + system, `getrusage`) per second of wall time, in cores.
use std::time::{Duration, Instant};

/// CPU time used so far by every thread of this process.
pub fn process_cpu_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage struct into the pointer it is given, which is valid and
    // large enough; the result is read only when the call reports success.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let secs = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Cores used over a stretch of wall time: `cores()` since `start()`.
#[derive(Debug, Clone, Copy)]
pub struct CpuSpan {
    wall: Instant,
    cpu: Option<Duration>,
}

impl CpuSpan {
    pub fn start() -> CpuSpan {
        CpuSpan {
            wall: Instant::now(),
            cpu: process_cpu_time(),
        }
    }

    /// Average cores in use since `start` (None where the platform does not say).
    pub fn cores(&self) -> Option<f64> {
        let wall = self.wall.elapsed().as_secs_f64();
        let used = process_cpu_time()?.checked_sub(self.cpu?)?;
        (wall > 0.0).then(|| used.as_secs_f64() / wall)
    }
}

/// A figure for a status bar: cores in use, refreshed about once a second.
#[derive(Debug)]
pub struct CpuMeter {
    span: CpuSpan,
    last: Option<f64>,
}

impl Default for CpuMeter {
    fn default() -> Self {
        CpuMeter {
            span: CpuSpan::start(),
            last: None,
        }
    }
}

impl CpuMeter {
    /// The latest figure; starts a new second's measurement when the current one is complete.
    pub fn cores(&mut self) -> Option<f64> {
        if self.span.wall.elapsed() >= Duration::from_secs(1) {
            self.last = self.span.cores();
            self.span = CpuSpan::start();
        }
        self.last
    }
}
