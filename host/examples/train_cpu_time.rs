//! Training samples per CPU-second of this process (CLOCK_PROCESS_CPUTIME_ID),
//! 784-512-512-10, batch 64, one thread, as `tailor bench` trains: a
//! loaded machine's time slices don't count. Pair with
//! `scripts/torch-cpu-time.py` for PyTorch on the same clock.
//! `cargo run --release -p tailor --example train_cpu_time -- [sgd|adam] [batches]`
use tailor::checkpoint::Meta;
use tailor::data::EpochOrder;
use tailor::train::Trainer;
use tailor_core::optim::{Adam, Optimizer, Sgd};

fn cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let adam = args.next().as_deref() == Some("adam");
    let batches: usize = args.next().map_or(Ok(938), |s| s.parse())?;
    let par = tailor::par::Threads::new(1)?;
    let ds = tailor::data::load_default()?;
    let opt = if adam { Optimizer::Adam(Adam::default()) } else { Optimizer::Sgd(Sgd { lr: 1e-3, ..Sgd::default() }) };
    let meta = Meta { norm: tailor::data::Norm::identity(784, true), ..Meta::fashion(opt) };
    let mut t = Trainer::new(tailor::simd::detect(), tailor::bench::SPEC, meta);
    // Adam as `torch_mlp.py --optimizer adam --shuffle`, SGD in order.
    let order = EpochOrder::new(ds.train.len(), adam.then_some(0), 0);
    for idx in order.batches(64).take(5) {
        t.step(&par, &ds.train, idx, 1e-3)?;
    }
    let (c, mut n) = (cpu(), 0);
    for idx in order.batches(64).take(batches) {
        t.step(&par, &ds.train, idx, 1e-3)?;
        n += idx.len();
    }
    let secs = cpu() - c;
    println!("{} {} {:.0} samples per CPU-second", t.kernels.name, if adam { "adam" } else { "sgd" }, n as f64 / secs);
    Ok(())
}
