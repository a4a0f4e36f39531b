//! The steady-state training step allocates nothing: a counting global
//! allocator watches 20 steps (after warm-up) with 1 and 2 threads, for
//! every optimizer (SGD plain, with momentum and Nesterov, Adam, AdamW,
//! RMSProp plain and centered with momentum).
//!
//! The allocator counts every thread but the process's main thread, which
//! libtest keeps for itself (the test runs on a thread of its own; the main
//! thread allocates to report a test running "for over 60 seconds", which
//! a loaded machine reaches): the pool's workers must not allocate either.
//! The test once flaked under load; besides libtest's report, a worker
//! first scheduled during the counted steps could still be in its start-up,
//! and `Threads::new` now returns only once every worker has started.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tailor::checkpoint::Meta;
use tailor::data::{EpochOrder, Split};
use tailor::par::Threads;
use tailor::train::Trainer;
use tailor_core::optim::{Adam, Optimizer, RmsProp, Sgd};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

/// Counts an allocation unless it is on the main thread (Linux: its thread
/// id is the process id).
fn count() {
    // SAFETY: plain system calls without arguments.
    if unsafe { libc::gettid() != libc::getpid() } {
        ALLOCS.fetch_add(1, SeqCst);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn split(n: usize) -> Split {
    let mut r = tailor_core::rng::Rng::new(9);
    Split {
        features: tailor::data::Features::U8((0..n * 784).map(|_| r.below(256) as u8).collect()),
        labels: (0..n).map(|_| r.below(10) as u8).collect(),
        width: 784,
    }
}

fn meta(optimizer: Optimizer) -> Meta {
    Meta { seed: 1, shuffle: true, ..Meta::fashion(optimizer) }
}

#[test]
fn training_steps_do_not_allocate() {
    // The counter must see this thread's allocations, or the test proves nothing.
    let before = ALLOCS.load(SeqCst);
    drop(std::hint::black_box(vec![1u8; 10]));
    assert!(ALLOCS.load(SeqCst) > before, "allocations on the test's thread are not counted");
    let data = split(64 * 30);
    for threads in [1, 2] {
        for opt in [
            Optimizer::Sgd(Sgd::default()),
            Optimizer::Sgd(Sgd { momentum: 0.9, ..Sgd::default() }),
            Optimizer::Sgd(Sgd { momentum: 0.9, nesterov: true, weight_decay: 1e-4, ..Sgd::default() }),
            Optimizer::Adam(Adam::default()),
            Optimizer::Adam(Adam { weight_decay: 1e-2, decoupled: true, ..Adam::default() }),
            Optimizer::RmsProp(RmsProp::default()),
            Optimizer::RmsProp(RmsProp { momentum: 0.9, centered: true, ..RmsProp::default() }),
        ] {
            let par = Threads::new(threads).unwrap();
            let mut t = Trainer::new(tailor::simd::detect(), tailor::bench::SPEC, meta(opt));
            let order = EpochOrder::new(data.len(), Some(3), 0);
            let batches: Vec<&[u32]> = order.batches(64).collect();
            for idx in &batches[..5] {
                t.step(&par, &data, idx, 1e-3).unwrap();
            }
            let before = ALLOCS.load(SeqCst);
            for idx in &batches[5..25] {
                t.step(&par, &data, idx, 1e-3).unwrap();
            }
            let n = ALLOCS.load(SeqCst) - before;
            assert_eq!(n, 0, "{n} allocations in 20 steps ({threads} threads, {opt:?})");
        }
    }
}
