//! Shared by the timing examples (included with `#[path]`; not an example itself): the
//! calling thread's CPU time, which ignores the time other processes hold the core.

/// This thread's CPU time in seconds (Linux): unlike the wall clock, it does not count the
/// time other processes hold the core.
pub fn cpu_seconds() -> f64 {
    #[repr(C)]
    struct Timespec {
        seconds: i64,
        nanoseconds: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut t = Timespec { seconds: 0, nanoseconds: 0 };
    // SAFETY: libc's clock_gettime writes one timespec (two 64-bit fields on x86-64 Linux).
    assert_eq!(unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) }, 0);
    t.seconds as f64 + t.nanoseconds as f64 * 1e-9
}
