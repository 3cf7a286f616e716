//! A fixed fork-join pool: `run(f)` calls f(0..threads) once each, f(0) on the caller, and
//! returns when all are done. Persistent threads and futex-backed Mutex/Condvar, so a call
//! allocates nothing (the training loop's no-allocation rule). Without std: one thread.
//! Leaves out: work stealing and nested parallelism (callers split work evenly themselves).

#[cfg(feature = "std")]
mod threaded {
    use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
    use std::thread::JoinHandle;
    use std::vec::Vec;

    type Job = *const (dyn Fn(usize) + Sync);

    struct State {
        generation: u64,
        job: Option<JobPtr>,
        pending: usize,
        panicked: bool,
        shutdown: bool,
    }

    #[derive(Clone, Copy)]
    struct JobPtr(Job);
    // SAFETY: the pointee is Sync and `run` keeps it alive until every worker is done with it.
    unsafe impl Send for JobPtr {}

    struct Shared {
        state: Mutex<State>,
        start: Condvar,
        done: Condvar,
    }

    fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
        // A job that panicked is reported through `panicked`; the state itself stays valid.
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub struct Pool {
        threads: usize,
        shared: Arc<Shared>,
        workers: Vec<JoinHandle<()>>,
    }

    impl Pool {
        pub fn new(threads: usize) -> Self {
            let threads = threads.max(1);
            let shared = Arc::new(Shared {
                state: Mutex::new(State { generation: 0, job: None, pending: 0, panicked: false, shutdown: false }),
                start: Condvar::new(),
                done: Condvar::new(),
            });
            let workers = (1..threads)
                .map(|index| {
                    let shared = Arc::clone(&shared);
                    std::thread::Builder::new()
                        .name(std::format!("mnist-cpu-{index}"))
                        .spawn(move || worker(&shared, index))
                        .expect("cannot start a CPU backend thread")
                })
                .collect();
            Pool { threads, shared, workers }
        }

        pub fn threads(&self) -> usize {
            self.threads
        }

        pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
            if self.threads == 1 {
                f(0);
                return;
            }
            // SAFETY: only the lifetime is erased; `Wait` below blocks (even while unwinding)
            // until every worker has finished with the job, so the borrow outlives its use.
            let job: Job =
                unsafe { core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) };
            {
                let mut state = lock(&self.shared.state);
                state.job = Some(JobPtr(job));
                state.pending = self.threads - 1;
                state.generation = state.generation.wrapping_add(1);
            }
            self.shared.start.notify_all();
            let wait = Wait(&self.shared);
            f(0);
            drop(wait);
            let mut state = lock(&self.shared.state);
            if core::mem::take(&mut state.panicked) {
                drop(state);
                panic!("a CPU backend worker thread panicked");
            }
        }
    }

    /// Waits for the workers on drop, so `run` cannot return or unwind while they run.
    struct Wait<'a>(&'a Shared);
    impl Drop for Wait<'_> {
        fn drop(&mut self) {
            let mut state = lock(&self.0.state);
            while state.pending > 0 {
                state = self.0.done.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            state.job = None;
        }
    }

    fn worker(shared: &Shared, index: usize) {
        let mut seen = 0u64;
        loop {
            let job = {
                let mut state = lock(&shared.state);
                while state.generation == seen && !state.shutdown {
                    state = shared.start.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                if state.shutdown {
                    return;
                }
                seen = state.generation;
                state.job
            };
            let ok = match job {
                // SAFETY: `run` keeps the job alive until `pending` reaches zero.
                Some(JobPtr(job)) => {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*job)(index) })).is_ok()
                }
                None => true,
            };
            let mut state = lock(&shared.state);
            state.panicked |= !ok;
            state.pending -= 1;
            if state.pending == 0 {
                shared.done.notify_all();
            }
        }
    }

    impl Drop for Pool {
        fn drop(&mut self) {
            lock(&self.shared.state).shutdown = true;
            self.shared.start.notify_all();
            for handle in self.workers.drain(..) {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(feature = "std")]
pub use threaded::Pool;

#[cfg(not(feature = "std"))]
pub struct Pool;

#[cfg(not(feature = "std"))]
impl Pool {
    pub fn new(_threads: usize) -> Self {
        Pool
    }
    pub fn threads(&self) -> usize {
        1
    }
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        f(0);
    }
}

/// Item range of part `part` when `items` are split evenly into `parts` contiguous parts.
pub fn part_range(items: usize, parts: usize, part: usize) -> core::ops::Range<usize> {
    (items * part / parts)..(items * (part + 1) / parts)
}

/// A mutable slice that pool parts write through, each to its own disjoint range.
pub struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: core::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: it only hands out disjoint ranges (the callers' contract on `range_mut`).
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    pub fn new(slice: &'a mut [T]) -> Self {
        SharedMut { ptr: slice.as_mut_ptr(), len: slice.len(), _borrow: core::marker::PhantomData }
    }
    /// # Safety
    /// No two live results may overlap (each pool part takes its own range).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range_mut(&self, range: core::ops::Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len, "SharedMut range out of bounds");
        // SAFETY: in bounds (checked above); disjointness is the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(range.start), range.end - range.start) }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_part_runs_once_per_call() {
        let pool = Pool::new(3);
        let counts: [AtomicUsize; 3] = Default::default();
        for _ in 0..1000 {
            pool.run(&|i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
        }
        for c in &counts {
            assert_eq!(c.load(Ordering::Relaxed), 1000);
        }
    }

    #[test]
    fn parts_write_disjoint_ranges() {
        let pool = Pool::new(2);
        let mut v = std::vec![0usize; 101];
        let shared = SharedMut::new(&mut v);
        pool.run(&|part| {
            let range = part_range(101, 2, part);
            // SAFETY: part ranges are disjoint.
            let out = unsafe { shared.range_mut(range.clone()) };
            for (i, x) in range.zip(out) {
                *x = i * 2;
            }
        });
        assert!(v.iter().enumerate().all(|(i, &x)| x == i * 2));
    }

    #[test]
    fn a_panicking_part_is_reported_to_the_caller() {
        let pool = Pool::new(2);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.run(&|i| assert!(i == 0))));
        assert!(result.is_err());
        // The pool still works afterwards.
        let hits = AtomicUsize::new(0);
        pool.run(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
