//! The host's [`Par`]: a tiny persistent thread pool for the core's row blocks.
//!
//! Why not rayon's `install`: every call from outside its pool goes through
//! a global injector queue that allocates blocks, and it wakes sleeping
//! workers through a condition variable each time. A training step makes
//! about ten parallel calls of 0.1–1 ms each, so wake-up latency and
//! allocation matter. This pool
//! - spawns its workers once and never allocates afterwards;
//! - publishes a job by bumping a generation counter; workers spin briefly,
//!   then park on a condvar (woken only if someone is parked);
//! - lets the caller's thread work too, claiming chunks from a shared
//!   counter, so `threads = N` means N threads compute.
//!
//! Results do not depend on the thread count: each chunk is computed by
//! exactly one thread with the same code.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tailor_core::par::{Par, Serial};

type TaskFn = dyn Fn(usize, &mut [f32]) + Sync;

/// A published job. Raw pointers because the closure and buffer live on the
/// caller's stack; [`Threads::for_chunks`] does not return before every
/// worker is done with them.
#[derive(Clone, Copy)]
struct Job {
    f: *const TaskFn,
    ptr: *mut f32,
    len: usize,
    chunk_len: usize,
    chunks: usize,
}

struct Shared {
    generation: AtomicU64,
    job: UnsafeCell<Option<Job>>,
    next_chunk: AtomicUsize,
    busy_workers: AtomicUsize,
    parked: AtomicUsize,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the caller while no worker reads it (all
// workers finished the previous generation), and read by workers only after
// observing the new generation with Acquire ordering.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    /// Claims and runs chunks until none are left.
    fn work(&self, job: &Job) {
        loop {
            let i = self.next_chunk.fetch_add(1, AcqRel);
            if i >= job.chunks {
                return;
            }
            let start = i * job.chunk_len;
            let len = job.chunk_len.min(job.len - start);
            // SAFETY: chunk i is handed out exactly once (fetch_add), chunks
            // are disjoint, and the buffer outlives the job.
            let chunk = unsafe { std::slice::from_raw_parts_mut(job.ptr.add(start), len) };
            // SAFETY: the closure outlives the job (see `Job`).
            unsafe { (*job.f)(i, chunk) };
        }
    }
}

pub struct Threads {
    width: usize,
    shared: Option<Arc<Shared>>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes callers: one job at a time.
    call: Mutex<()>,
}

const SPINS: u32 = 50_000;

fn worker(shared: Arc<Shared>) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0;
        loop {
            let g = shared.generation.load(Acquire);
            if g != seen {
                seen = g;
                break;
            }
            if shared.shutdown.load(Acquire) {
                return;
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.parked.fetch_add(1, SeqCst);
            let mut guard = guard;
            while shared.generation.load(SeqCst) == seen && !shared.shutdown.load(SeqCst) {
                guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            shared.parked.fetch_sub(1, SeqCst);
            drop(guard);
            spins = 0;
        }
        // SAFETY: published before the generation bump (Release/Acquire).
        if let Some(job) = unsafe { *shared.job.get() } {
            shared.work(&job);
        }
        shared.busy_workers.fetch_sub(1, AcqRel);
    }
}

impl Threads {
    /// `n` threads in all, the caller's included (0 = all cores).
    pub fn new(n: usize) -> anyhow::Result<Self> {
        let n = if n == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { n };
        if n == 1 {
            return Ok(Threads { width: 1, shared: None, workers: Vec::new(), call: Mutex::new(()) });
        }
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            next_chunk: AtomicUsize::new(0),
            busy_workers: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut workers = Vec::new();
        for i in 1..n {
            let s = Arc::clone(&shared);
            workers.push(std::thread::Builder::new().name(format!("tailor-{i}")).spawn(move || worker(s))?);
        }
        Ok(Threads { width: n, shared: Some(shared), workers, call: Mutex::new(()) })
    }
}

impl Par for Threads {
    fn width(&self) -> usize {
        self.width
    }

    fn for_chunks(&self, out: &mut [f32], chunk_len: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
        let chunk_len = chunk_len.max(1);
        let chunks = out.len().div_ceil(chunk_len);
        let Some(shared) = self.shared.as_ref().filter(|_| chunks > 1) else {
            return Serial.for_chunks(out, chunk_len, f);
        };
        let _one_at_a_time = self.call.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: every worker finished the previous job (we waited for
        // busy_workers == 0), so nobody reads `job` now. The lifetime of `f`
        // is erased; we wait for all workers before returning.
        let f: *const (dyn Fn(usize, &mut [f32]) + Sync + '_) = f;
        let f: *const TaskFn =
            unsafe { std::mem::transmute::<*const (dyn Fn(usize, &mut [f32]) + Sync + '_), *const TaskFn>(f) };
        unsafe { *shared.job.get() = Some(Job { f, ptr: out.as_mut_ptr(), len: out.len(), chunk_len, chunks }) };
        shared.next_chunk.store(0, SeqCst);
        shared.busy_workers.store(self.workers.len(), SeqCst);
        shared.generation.fetch_add(1, SeqCst);
        if shared.parked.load(SeqCst) > 0 {
            drop(shared.lock.lock().unwrap_or_else(|e| e.into_inner()));
            shared.wake.notify_all();
        }
        // SAFETY: as for the workers.
        let job = unsafe { (*shared.job.get()).expect("job just published") };
        shared.work(&job);
        // Spin first (the common case: the worker finishes within
        // microseconds), then yield so an oversubscribed machine still moves.
        let mut spins = 0u32;
        while shared.busy_workers.load(Acquire) != 0 {
            if spins < 2_000 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.shutdown.store(true, SeqCst);
            drop(s.lock.lock().unwrap_or_else(|e| e.into_inner()));
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_runs_once_with_any_thread_count() {
        for n in [1, 2, 3, 4] {
            let t = Threads::new(n).unwrap();
            for round in 0..200 {
                let len = 1 + round * 7 % 500;
                let mut v = vec![0.0f32; len];
                t.for_chunks(&mut v, 1 + round % 13, &|i, c| {
                    for x in c.iter_mut() {
                        *x += 1.0 + i as f32;
                    }
                });
                let chunk = 1 + round % 13;
                for (j, x) in v.iter().enumerate() {
                    assert_eq!(*x, 1.0 + (j / chunk) as f32, "n={n} round={round} j={j}");
                }
            }
        }
    }

    #[test]
    fn workers_wake_after_parking() {
        let t = Threads::new(2).unwrap();
        let mut v = vec![0.0f32; 100];
        t.for_chunks(&mut v, 10, &|_, c| c.fill(1.0));
        std::thread::sleep(std::time::Duration::from_millis(50));
        t.for_chunks(&mut v, 10, &|_, c| c.fill(2.0));
        assert!(v.iter().all(|&x| x == 2.0));
    }
}
