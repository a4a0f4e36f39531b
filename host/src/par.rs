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
//!   counter, so `threads = N` means N threads compute;
//! - never waits for a worker that has not started: a worker must *join* a
//!   job (a counted CAS) before it touches it, and the caller *closes* the
//!   job once every chunk is claimed, then waits only for the joined ones.
//!   On a loaded machine a descheduled worker thus costs nothing: the caller
//!   does its chunks (before, the caller spun until the worker was scheduled
//!   again, and 2 threads ran slower than 1).
//!
//! Results do not depend on the thread count: each chunk is computed by
//! exactly one thread with the same code.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tailor_core::par::{Par, Serial};

type TaskFn = dyn Fn(usize) + Sync;

/// A published job. A raw pointer because the closure lives on the
/// caller's stack; [`Threads::for_tasks`] does not return before every
/// worker is done with it.
#[derive(Clone, Copy)]
struct Job {
    f: *const TaskFn,
    chunks: usize,
}

struct Shared {
    generation: AtomicU64,
    job: UnsafeCell<Option<Job>>,
    next_chunk: AtomicUsize,
    /// Chunks claimed (bit i), for jobs of at most 64 chunks.
    claimed: AtomicU64,
    /// Workers inside the current job, plus [`CLOSED`] once no more may join.
    state: AtomicUsize,
    parked: AtomicUsize,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    /// Workers past their start-up; [`Threads::new`] waits for all of them.
    started: AtomicUsize,
}

/// `state` bit: the job takes no more workers.
const CLOSED: usize = 1 << (usize::BITS - 1);

// SAFETY: `job` is written only by the caller while the previous job is
// closed with no worker inside (so nobody reads it), and read by workers
// only after joining the open job (an AcqRel CAS on `state`, which the
// caller opens with a Release store after writing `job`).
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    /// Claims and runs chunks until none are left. Thread `me` of `width`
    /// first takes its own chunks (`i ≡ me mod width`), then any left: the
    /// core splits every product of a layer the same way (its weight rows),
    /// so each thread keeps finding its share of the weights in its own L2.
    /// A late thread's chunks are still taken by the others.
    fn work(&self, job: &Job, me: usize, width: usize) {
        if job.chunks <= 64 {
            let all = if job.chunks == 64 { u64::MAX } else { (1u64 << job.chunks) - 1 };
            let mut own = 0u64;
            let mut i = me;
            while i < job.chunks {
                own |= 1 << i;
                i += width;
            }
            for pass in [own, all] {
                loop {
                    let free = pass & !self.claimed.load(Acquire);
                    if free == 0 {
                        break;
                    }
                    let i = free.trailing_zeros() as usize;
                    if self.claimed.fetch_or(1 << i, AcqRel) & (1 << i) == 0 {
                        self.run(job, i);
                    }
                }
            }
            return;
        }
        loop {
            let i = self.next_chunk.fetch_add(1, AcqRel);
            if i >= job.chunks {
                return;
            }
            self.run(job, i);
        }
    }

    /// Task i is handed out exactly once (its bit's fetch_or, or the
    /// counter's fetch_add).
    fn run(&self, job: &Job, i: usize) {
        // SAFETY: the closure outlives the job (see `Job`).
        unsafe { (*job.f)(i) };
    }
}

pub struct Threads {
    width: usize,
    shared: Option<Arc<Shared>>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes callers: one job at a time.
    call: Mutex<()>,
}

/// Spins (about 50 ns each) before an idle worker parks: long enough to
/// bridge the serial gaps of a training step, short enough not to steal a
/// loaded machine's time from the threads doing the work.
const SPINS: u32 = 4_000;

/// Flushes subnormal f32 results and inputs to zero (MXCSR FTZ + DAZ) on
/// the calling thread. Optimizer state of dead ReLU units decays into the
/// subnormal range (0.9ⁿ passes 1e-38 after ~850 steps), and every x86
/// operation touching a subnormal takes a microcode assist of ~100 cycles;
/// with SIMD, one subnormal lane stalls the whole vector. Values that small
/// carry no information for training, so, like most ML runtimes, we flush
/// them. Every thread of a pool gets the same mode, so results still do not
/// depend on the thread count.
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr only read and write the MXCSR register of
        // this thread; FTZ (bit 15) and DAZ (bit 6) exist on every x86-64 CPU.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= (1 << 15) | (1 << 6);
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
        }
    }
}

fn worker(shared: Arc<Shared>, me: usize, width: usize) {
    flush_denormals();
    shared.started.fetch_add(1, Release);
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
        if shared.join() {
            // SAFETY: joined an open job: it was published before the
            // caller opened `state`, and stays put until we leave.
            if let Some(job) = unsafe { *shared.job.get() } {
                shared.work(&job, me, width);
            }
            shared.state.fetch_sub(1, Release);
        }
    }
}

impl Shared {
    /// Enters the current job unless it is closed (then it is over, or it
    /// will be: nothing to do).
    fn join(&self) -> bool {
        let mut s = self.state.load(Acquire);
        loop {
            if s & CLOSED != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(s, s + 1, AcqRel, Acquire) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }
}

/// Most `--threads`: far beyond any core count that helps, and low
/// enough that spawning them cannot exhaust the process's thread limit.
pub const MAX_THREADS: usize = 256;

impl Threads {
    /// `n` threads in all, the caller's included (0 = all cores). Sets
    /// [`flush_denormals`] on the calling thread and on every worker.
    pub fn new(n: usize) -> anyhow::Result<Self> {
        if n > MAX_THREADS {
            anyhow::bail!("--threads {n}: expected 0 (all cores) to {MAX_THREADS}");
        }
        flush_denormals();
        let n = if n == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { n };
        if n == 1 {
            return Ok(Threads { width: 1, shared: None, workers: Vec::new(), call: Mutex::new(()) });
        }
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            next_chunk: AtomicUsize::new(0),
            claimed: AtomicU64::new(0),
            state: AtomicUsize::new(CLOSED),
            parked: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            started: AtomicUsize::new(0),
        });
        let mut workers = Vec::new();
        for i in 1..n {
            let s = Arc::clone(&shared);
            workers.push(std::thread::Builder::new().name(format!("tailor-{i}")).spawn(move || worker(s, i, n))?);
        }
        // A new thread allocates in std's start-up code (its thread-locals)
        // whenever the OS first runs it, which on a loaded machine can be
        // well into training: wait for that, so the pool never allocates
        // once `new` returns.
        while shared.started.load(Acquire) < n - 1 {
            std::thread::yield_now();
        }
        Ok(Threads { width: n, shared: Some(shared), workers, call: Mutex::new(()) })
    }
}

impl Par for Threads {
    fn width(&self) -> usize {
        self.width
    }

    fn for_tasks(&self, chunks: usize, f: &(dyn Fn(usize) + Sync)) {
        let Some(shared) = self.shared.as_ref().filter(|_| chunks > 1) else {
            return Serial.for_tasks(chunks, f);
        };
        let _one_at_a_time = self.call.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the previous job is closed and no worker is inside it (we
        // waited for that), and no worker can join before `state` is opened
        // below, so nobody reads `job` now. The lifetime of `f` is erased; we
        // wait for every worker that joined before returning.
        let f: *const (dyn Fn(usize) + Sync + '_) = f;
        let f: *const TaskFn = unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const TaskFn>(f) };
        unsafe { *shared.job.get() = Some(Job { f, chunks }) };
        shared.next_chunk.store(0, Relaxed);
        shared.claimed.store(0, Relaxed);
        shared.state.store(0, Release);
        shared.generation.fetch_add(1, SeqCst);
        if shared.parked.load(SeqCst) > 0 {
            drop(shared.lock.lock().unwrap_or_else(|e| e.into_inner()));
            shared.wake.notify_all();
        }
        // SAFETY: as for the workers.
        let job = unsafe { (*shared.job.get()).expect("job just published") };
        shared.work(&job, 0, self.width);
        // Every chunk is claimed: let no one else in, then wait for the
        // workers still running theirs. Spin first (they finish within
        // microseconds), then yield so an oversubscribed machine still moves.
        shared.state.fetch_or(CLOSED, AcqRel);
        let mut spins = 0u32;
        while shared.state.load(Acquire) != CLOSED {
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
