//! The process CPU figure that `dgcn bench` and the window's status bar report. Alone in its
//! own test binary: getrusage counts every thread of the process, so no other test may run
//! beside it.
use std::time::{Duration, Instant};

use dgcn::cpu_use::CpuSpan;

#[test]
fn busy_work_shows_up_as_cpu_time_and_sleeping_does_not() {
    let span = CpuSpan::start();
    let t0 = Instant::now();
    let mut x = 0u64;
    while t0.elapsed() < Duration::from_millis(400) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    let busy = span.cores().expect("getrusage works on Linux");
    assert!(busy > 0.3, "a spinning thread measured {busy:.2} cores");
    let span = CpuSpan::start();
    std::thread::sleep(Duration::from_millis(400));
    let idle = span.cores().expect("getrusage works on Linux");
    assert!(idle < 0.05, "a sleeping thread measured {idle:.2} cores");
}
