//! How the core asks for parallelism without owning threads.
//!
//! The math splits each product into independent row blocks of its output
//! and hands them to a [`Par`]. [`Serial`] runs them in order (firmware,
//! tests); the host implements `Par` over its thread pool. Results do not
//! depend on the split: every output element is computed by exactly one task
//! with the same summation order.

pub trait Par: Sync {
    /// How many tasks are worth creating (the number of threads).
    fn width(&self) -> usize;

    /// Calls `f(i)` for every `i < n`, possibly in parallel, each exactly
    /// once; returns when all are done.
    fn for_tasks(&self, n: usize, f: &(dyn Fn(usize) + Sync));

    /// Calls `f(i, chunk)` for every `chunk_len`-sized chunk `i` of `out`
    /// (the last may be shorter), possibly in parallel.
    fn for_chunks(&self, out: &mut [f32], chunk_len: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
        let chunk_len = chunk_len.max(1);
        let (ptr, len) = (SyncPtr(out.as_mut_ptr()), out.len());
        self.for_tasks(len.div_ceil(chunk_len), &|i| {
            let ptr = &ptr;
            let start = i * chunk_len;
            // SAFETY: task i alone gets chunk i, chunks are disjoint and
            // inside `out`, which is borrowed mutably for the whole call.
            let chunk = unsafe { core::slice::from_raw_parts_mut(ptr.0.add(start), chunk_len.min(len - start)) };
            f(i, chunk)
        });
    }
}

struct SyncPtr(*mut f32);
// SAFETY: only used to hand disjoint chunks to tasks (see `for_chunks`).
unsafe impl Sync for SyncPtr {}

/// Runs every task on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Serial;

impl Par for Serial {
    fn width(&self) -> usize {
        1
    }
    fn for_tasks(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        (0..n).for_each(f)
    }
}

/// Rows per task when splitting `rows` rows over `par`: whole register tiles
/// (multiples of `tile`), at least one tile per task.
pub fn rows_per_task(rows: usize, width: usize, tile: usize) -> usize {
    let per = rows.div_ceil(width.max(1));
    per.div_ceil(tile).max(1) * tile
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_buffer_once() {
        let mut v = [0.0f32; 10];
        Serial.for_chunks(&mut v, 3, &|i, c| c.iter_mut().for_each(|x| *x += i as f32 + 1.0));
        assert_eq!(v, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0]);
    }
}
