//! The training loop allocates nothing per step: a counting global allocator watches a whole
//! epoch (steps, shuffling, validation) after the first one has sized every buffer.

use mnist_core::train::{Control, Event, Observer, TrainConfig, Trainer};
use mnist_core::{Config, CpuBackend, Dataset};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Quiet;
impl Observer for Quiet {
    fn on_event(&mut self, _: &Event) -> Control {
        Control::Continue
    }
}

#[test]
fn an_epoch_after_the_first_allocates_nothing() {
    let n = 300; // two full batches of 128 and a partial one of 44
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let images: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
    let data = Dataset::new(images, labels, 28, 28, 1).unwrap();
    let test = data.take(200);
    let config = TrainConfig { epochs: 2, metrics_every: 1, ..Default::default() };
    let mut trainer = Trainer::new(CpuBackend::new(2), Config::default(), config, &data, Some(&test)).unwrap();
    trainer.run_epoch(&mut Quiet).unwrap();
    assert_eq!(trainer.history().len(), 1);
    COUNTING.store(true, Ordering::SeqCst);
    let result = trainer.run_epoch(&mut Quiet);
    COUNTING.store(false, Ordering::SeqCst);
    result.unwrap();
    let count = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(count, 0, "the second epoch made {count} allocations");
}
