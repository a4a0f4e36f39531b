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

    /// Calls `f(i, chunk)` for every `chunk_len`-sized chunk `i` of `out`
    /// (the last may be shorter), possibly in parallel.
    fn for_chunks(&self, out: &mut [f32], chunk_len: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync));
}

/// Runs every task on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Serial;

impl Par for Serial {
    fn width(&self) -> usize {
        1
    }
    fn for_chunks(&self, out: &mut [f32], chunk_len: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
        for (i, c) in out.chunks_mut(chunk_len.max(1)).enumerate() {
            f(i, c);
        }
    }
}

/// Rows per task when splitting `rows` rows over `par`: whole register tiles
/// (multiples of `tile`), at least one tile per task.
pub fn rows_per_task(rows: usize, width: usize, tile: usize) -> usize {
    let per = rows.div_ceil(width.max(1));
    per.div_ceil(tile).max(1) * tile
}
