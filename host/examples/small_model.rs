//! Trains a small 784-64-64-10 MLP with the core's const-generic API and
//! writes its int8 model: the firmware's default model
//! (`firmware-sim/models/default.q8`), small enough that the firmware and
//! the full 10,000-image device test stay fast.
//!
//! ```sh
//! cargo run --release -p tailor --example small_model -- firmware-sim/models/default.q8
//! ```
//!
//! It is also the example of using `tailor-core` directly for a shape the
//! CLI does not train: every buffer is a caller-owned fixed-size struct.

use std::path::PathBuf;

use anyhow::Result;
use tailor::data::{self, EpochOrder, Pixels};
use tailor_core::gemm::Kernels;
use tailor_core::optim::{Adam, Optimizer, Schedule};
use tailor_core::quant::{ActRange, FloatLayer};
use tailor_core::spec::Activation;
use tailor_core::{loss, Flat, Mlp, Workspace};

const H: usize = 64;
const B: usize = 64;
type Small = Mlp<784, H, H, 10>;
type SmallWs = Workspace<B, 784, H, H, 10>;

fn main() -> Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "firmware-sim/models/default.q8".into()));
    let epochs = 8;
    let ds = data::load(None)?;
    let kern: Kernels = tailor::simd::detect();
    let par = tailor::par::Threads::new(0)?;
    let pixels = Pixels::FASHION_MNIST;

    let mut model = tailor::boxed::zeroed::<Small>();
    model.init(0);
    let mut grad = tailor::boxed::zeroed::<Small>();
    let (mut m, mut v) = (tailor::boxed::zeroed::<Small>(), tailor::boxed::zeroed::<Small>());
    let mut ws = tailor::boxed::zeroed::<SmallWs>();
    let opt = Optimizer::Adam(Adam { lr: 2e-3, ..Adam::default() });
    let sched = Schedule::Cosine { t_max: epochs, eta_min: 0.0 };
    let mut labels = [0u8; B];
    let mut step = 0;
    for epoch in 0..epochs {
        let lr = sched.lr(opt.lr(), epoch);
        for idx in EpochOrder::new(ds.train.len(), Some(0), epoch).batches(B) {
            let n = idx.len();
            data::fill_batch(&ds.train, idx, &pixels, &mut ws.x[..n], &mut labels[..n]);
            model.loss_and_grad(&kern, &par, &mut ws, &labels[..n], &mut grad).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            step += 1;
            opt.step(lr, step, model.flat_mut(), grad.flat(), &mut [m.flat_mut(), v.flat_mut()]);
        }
        let acc = accuracy(&model, &kern, &par, &mut ws, &ds.test, &pixels);
        println!("epoch {}: f32 test accuracy {:.2}%", epoch + 1, 100.0 * acc);
    }

    // Calibrate the post-ReLU ranges on 2,000 training images (min/max).
    let mut ranges = [ActRange::EMPTY; 2];
    let idx: Vec<u32> = (0..2000).map(|i| i * 30).collect();
    for chunk in idx.chunks(B) {
        let n = chunk.len();
        data::fill_batch(&ds.train, chunk, &pixels, &mut ws.x[..n], &mut labels[..n]);
        model.forward(&kern, &par, &mut ws, n);
        ranges[0].observe(ws.h1[..n].as_flattened());
        ranges[1].observe(ws.h2[..n].as_flattened());
    }
    for r in &mut ranges {
        r.min = 0.0;
    }
    let layer = |i, o, activation, weight, bias| FloatLayer { inputs: i, outputs: o, activation, weight, bias };
    let layers = [
        layer(784, H, Activation::Relu, model.l1.weight.as_flattened(), &model.l1.bias[..]),
        layer(H, H, Activation::Relu, model.l2.weight.as_flattened(), &model.l2.bias[..]),
        layer(H, 10, Activation::None, model.l3.weight.as_flattened(), &model.l3.bias[..]),
    ];
    let q8 = tailor::quantize::quantize_layers(&layers, &pixels, &ranges)?;
    let bytes = q8.bytes();
    let int8 = tailor::quantize::int8_accuracy(&q8.model()?, &ds.test);
    tailor::checkpoint::atomic_write(&out, bytes)?;
    println!("int8 test accuracy {:.2}%; wrote {} ({} bytes)", 100.0 * int8, out.display(), bytes.len());
    Ok(())
}

fn accuracy(
    model: &Small,
    k: &Kernels,
    par: &dyn tailor_core::par::Par,
    ws: &mut SmallWs,
    split: &data::Split,
    px: &Pixels,
) -> f64 {
    let mut labels = [0u8; B];
    let mut correct = 0;
    let idx: Vec<u32> = (0..split.len() as u32).collect();
    for chunk in idx.chunks(B) {
        let n = chunk.len();
        data::fill_batch(split, chunk, px, &mut ws.x[..n], &mut labels[..n]);
        model.forward(k, par, ws, n);
        correct += ws.logits[..n].iter().zip(&labels[..n]).filter(|(z, &y)| loss::argmax(&z[..]) == y as usize).count();
    }
    correct as f64 / split.len() as f64
}
