//! The host's [`Par`]: row blocks of each product run on a rayon pool.

use rayon::prelude::*;
use tailor_core::par::{Par, Serial};

pub struct Threads {
    pool: Option<rayon::ThreadPool>,
    width: usize,
}

impl Threads {
    /// `n` worker threads (0 = all cores). One thread runs inline, with no
    /// pool at all.
    pub fn new(n: usize) -> anyhow::Result<Self> {
        let n = if n == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { n };
        if n == 1 {
            return Ok(Threads { pool: None, width: 1 });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("tailor-{i}"))
            .build()?;
        Ok(Threads { pool: Some(pool), width: n })
    }
}

impl Par for Threads {
    fn width(&self) -> usize {
        self.width
    }

    fn for_chunks(&self, out: &mut [f32], chunk_len: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
        match &self.pool {
            Some(pool) if out.len() > chunk_len => {
                pool.install(|| out.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c)))
            }
            _ => Serial.for_chunks(out, chunk_len, f),
        }
    }
}
