//! Runs one kernel `REPS` times at a seed-model shape, for counting
//! instructions where time means nothing (aarch64 under QEMU user mode, see
//! `scripts/aarch64-insns.sh`): the count of a run with more repetitions
//! minus one with fewer, divided by the MACs between them, is the kernel's
//! instructions per multiply-accumulate.
//!
//! `kernel_insns KERNELS PRODUCT REPS` with `KERNELS` a `TAILOR_KERNELS`
//! name (`q:NAME` for an int8 set, as `TAILOR_QKERNELS`) and `PRODUCT` one
//! of [`PRODUCTS`]; prints the MACs per repetition.
use anyhow::{bail, Context};
use tailor_core::gemm::{pack_panels, Rule};
use tailor_core::optim::Adam;

/// Name, (m, n, k).
const PRODUCTS: [(&str, (usize, usize, usize)); 13] = [
    ("forward", (64, 512, 784)),
    ("forward_thin", (64, 10, 512)),
    ("forward_panels", (64, 512, 784)),
    ("forward_panels_1", (1, 512, 784)),
    // `_relu`: inputs (forward) or gradients `dy` (the others) as behind a
    // ReLU: half are exact zeros, which the SIMD sets skip. MACs are
    // counted as dense.
    ("forward_panels_relu", (64, 512, 784)),
    ("input_grad", (64, 512, 512)),
    ("input_grad_relu", (64, 512, 512)),
    ("weight_grad", (64, 512, 784)),
    ("weight_grad_relu", (64, 512, 784)),
    ("weight_grad_sgd", (64, 512, 784)),
    ("weight_grad_sgd_relu", (64, 512, 784)),
    ("weight_grad_adam", (64, 512, 784)),
    ("int8_gemm", (64, 512, 784)),
];

fn fill(seed: u64, n: usize) -> Vec<f32> {
    let mut r = tailor_core::rng::Rng::new(seed);
    (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kern, product, reps] = &args[..] else {
        bail!("usage: kernel_insns KERNELS PRODUCT REPS (products: {:?})", PRODUCTS.map(|p| p.0));
    };
    let reps: usize = reps.parse().context("REPS: expected a count")?;
    let Some(&(_, (m, n, k))) = PRODUCTS.iter().find(|p| p.0 == product) else {
        bail!("unknown product {product}; expected one of {:?}", PRODUCTS.map(|p| p.0));
    };
    if product == "int8_gemm" {
        let name = kern.strip_prefix("q:").context("int8_gemm takes an int8 kernel set, q:NAME")?;
        let q = tailor::quantize::qkernels_by_name(name).with_context(|| format!("no int8 kernel set {name}"))?;
        let x: Vec<u8> = fill(1, m * k).iter().map(|v| (v.max(0.0) * 255.0) as u8).collect();
        let w: Vec<i8> = fill(2, n * k).iter().map(|v| (v * 127.0) as i8).collect();
        let mut out = vec![0i32; m * n];
        for _ in 0..reps {
            (q.gemm)(&x, k, m, &w, n, k, &mut out);
        }
        std::hint::black_box(&out);
        println!("{}", m * n * k);
        return Ok(());
    }
    let ks = tailor::simd::by_name(kern).with_context(|| format!("no kernel set {kern} on this CPU"))?;
    let (mut x, w, b, mut dy) = (fill(1, m * k), fill(2, n * k), fill(3, n), fill(4, m * n));
    let op = product.strip_suffix("_relu").unwrap_or(product);
    if op != product {
        let zeroed = if op.starts_with("forward") { &mut x } else { &mut dy };
        zeroed.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    let mut y = vec![0.0f32; m * n.max(k)];
    let mut wm = w.clone();
    let mut scratch = vec![0.0f32; n * k];
    let (mut sm, mut sv) = (vec![0.0f32; n * k], vec![0.0f32; n * k]);
    let mut packed = vec![0.0f32; n * k];
    pack_panels(&w, n, k, ks.panel, &mut packed);
    let adam = Adam::default().coefs(1e-3, 1);
    for _ in 0..reps {
        match op {
            "forward" | "forward_thin" => (ks.forward)(&x, &w, &b, &mut y, m, n, k, true),
            // SAFETY: y holds m rows of n outputs.
            "forward_panels" | "forward_panels_1" => unsafe {
                (ks.forward_panels)(&x, &packed, &b, y.as_mut_ptr(), n, m, n, k, true)
            },
            "input_grad" => (ks.input_grad)(&dy, &w, &mut y, Some(&x), m, n, k),
            "weight_grad" => (ks.weight_grad)(&dy, n, &x, &mut scratch, m, n, k),
            "weight_grad_sgd" => {
                let rule = Rule::Sgd { lr: 1e-3, weight_decay: 0.0 };
                (ks.weight_grad_step)(&dy, n, &x, &mut scratch, &mut wm, [&mut [], &mut []], rule, m, n, k)
            }
            "weight_grad_adam" => {
                let rule = Rule::Adam(&adam);
                (ks.weight_grad_step)(&dy, n, &x, &mut scratch, &mut wm, [&mut sm, &mut sv], rule, m, n, k)
            }
            _ => unreachable!(),
        }
    }
    std::hint::black_box((&y, &wm, &scratch));
    println!("{}", m * n * k);
    Ok(())
}
