//! `tailor quantize` and `tailor export`: f32 checkpoint → calibrated int8
//! `.q8` model → firmware sources, plus int8 evaluation on the host.
//!
//! The integer math lives in [`tailor_core::quant`]; this module adds the
//! dataset-driven parts (calibration, accuracy, throughput), files and the
//! memory report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use tailor_core::gemm::Kernels;
use tailor_core::par::Par;
use tailor_core::quant::{export, ActRange, Calibration, Classifier, QKernels, SeedQMlp, QBATCH};
use tailor_core::spec::Activation;

use crate::boxed;
use crate::checkpoint::Model;
use crate::data::{self, fill_batch, Features, Norm, Split};

/// The raw bytes of a split of `u8` data (what the device takes).
fn bytes_of(split: &Split) -> &[u8] {
    split.features.as_u8().expect("int8 models take byte inputs")
}
use crate::train::{evaluate, EVAL_BATCH};

/// How the activation range of each hidden layer is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum CalibMethod {
    /// `[0, max]` of everything observed.
    MinMax,
    /// `[0, p-th percentile]` of all post-ReLU values (e.g. 99.99);
    /// larger values saturate at 255.
    Percentile(f64),
}

/// Default: see the report of the quantization issue for the measurements
/// behind it (percentile 99.999 and min/max were within noise of each other;
/// lower percentiles clip too much).
pub const DEFAULT_METHOD: CalibMethod = CalibMethod::Percentile(99.999);
/// Default number of training images used for calibration.
pub const DEFAULT_CALIB_IMAGES: usize = 2000;

/// Calibrates with [`DEFAULT_METHOD`] on the first `n_images` training images.
pub fn calibrate(model: &Model, train: &Split, norm: &Norm, n_images: usize) -> Calibration {
    calibrate_with(model, train, norm, n_images, DEFAULT_METHOD, &tailor_core::par::Serial)
}

/// Runs the f32 model on `n_images` evenly spaced training images
/// (normalized with `norm`) and derives the range of every hidden layer's
/// output.
pub fn hidden_ranges(
    model: &Model,
    train: &Split,
    norm: &Norm,
    n_images: usize,
    method: CalibMethod,
    par: &dyn Par,
) -> Vec<ActRange> {
    let spec = *model.spec();
    let hidden = spec.depth() - 1;
    let n = n_images.clamp(1, train.len().max(1)).min(train.len());
    let step = train.len() as f64 / n.max(1) as f64;
    let idx: Vec<u32> = (0..n).map(|i| (i as f64 * step) as u32).collect();
    let mut ws = crate::train::workspace(spec, EVAL_BATCH);
    let mut labels = [0u8; EVAL_BATCH];
    let kernels = crate::simd::detect();
    let keep = !matches!(method, CalibMethod::MinMax);
    let mut values = vec![Vec::new(); hidden];
    let mut ranges = vec![ActRange::EMPTY; hidden];
    for chunk in idx.chunks(EVAL_BATCH) {
        let m = chunk.len();
        fill_batch(train, chunk, norm, ws.input_mut(m), &mut labels[..m]);
        model.forward(&kernels, par, &mut ws, m);
        for (l, (r, v)) in ranges.iter_mut().zip(values.iter_mut()).enumerate() {
            let h = ws.output(l, m);
            r.observe(h);
            if keep {
                v.extend_from_slice(h);
            }
        }
    }
    for (l, (r, v)) in ranges.iter_mut().zip(values.iter_mut()).enumerate() {
        if let CalibMethod::Percentile(p) = method {
            r.max = percentile(v, p).min(r.max);
        }
        // ReLU outputs: the range always starts at 0 (zero point 0).
        if spec.layer(l).activation == Activation::Relu {
            r.min = 0.0;
        }
    }
    ranges
}

/// [`hidden_ranges`] of a two-hidden-layer model as a [`Calibration`].
pub fn calibrate_with(
    model: &Model,
    train: &Split,
    norm: &Norm,
    n_images: usize,
    method: CalibMethod,
    par: &dyn Par,
) -> Calibration {
    let r = hidden_ranges(model, train, norm, n_images, method, par);
    let mut cal = Calibration::new(norm.mean[0], norm.std[0]);
    cal.h1 = r.first().copied().unwrap_or(ActRange::EMPTY);
    cal.h2 = r.get(1).copied().unwrap_or(ActRange::EMPTY);
    cal
}

fn percentile(v: &mut [f32], p: f64) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let k = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    let k = k.min(v.len() - 1);
    *v.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1
}

/// Quantizes into a fresh heap model (never on the stack).
pub fn quantize_model(model: &Model, calib: &Calibration) -> Box<SeedQMlp> {
    let mut q = boxed::zeroed::<SeedQMlp>();
    q.quantize(model, calib);
    q
}

/// The environment variable that overrides [`best_qkernels`].
pub const QKERNELS_ENV: &str = "TAILOR_QKERNELS";

/// The int8 kernel set called `name` (`naive`, `portable`, `sse2`, `avx2`,
/// `avx512vnni`), if it exists and this CPU runs it.
pub fn qkernels_by_name(name: &str) -> Option<QKernels> {
    match name {
        "naive" => Some(QKernels::NAIVE),
        "portable" => Some(QKernels::PORTABLE),
        #[cfg(target_arch = "x86_64")]
        "sse2" => Some(QKernels::SSE2),
        #[cfg(target_arch = "x86_64")]
        "avx2" if is_x86_feature_detected!("avx2") => {
            // SAFETY: AVX2 detected.
            Some(unsafe { tailor_core::quant::kernels::x86::avx2() })
        }
        #[cfg(target_arch = "x86_64")]
        "avx512vnni"
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni") =>
        {
            // SAFETY: AVX-512F/BW/VL/VNNI detected.
            Some(unsafe { tailor_core::quant::kernels::x86::avx512_vnni() })
        }
        _ => None,
    }
}

/// Every int8 kernel set this CPU runs, slowest first (`naive` included).
pub fn available_qkernels() -> Vec<QKernels> {
    ["naive", "portable", "sse2", "avx2", "avx512vnni"].into_iter().filter_map(qkernels_by_name).collect()
}

/// The fastest int8 kernel set this CPU runs (AVX-512 VNNI → AVX2 →
/// [`QKernels::BEST`]), or the one `TAILOR_QKERNELS` names. All of them give
/// bit-identical results.
pub fn best_qkernels() -> QKernels {
    if let Ok(name) = std::env::var(QKERNELS_ENV) {
        let name = name.trim();
        if !name.is_empty() {
            match qkernels_by_name(name) {
                Some(k) => return k,
                None => eprintln!("warning: {QKERNELS_ENV}={name} is unknown or not supported by this CPU; detecting"),
            }
        }
    }
    ["avx512vnni", "avx2"].into_iter().find_map(qkernels_by_name).unwrap_or(QKernels::BEST)
}

/// Images per rayon task of [`int8_predict_all_seed`].
const RAYON_CHUNK: usize = 4 * QBATCH;

/// Int8 predictions of the seed model for every image of `split`: rayon over
/// chunks of images, each run through [`SeedQMlp::classify_batch`] with
/// [`best_qkernels`]; bit-identical to the device (and to [`int8_predict_all`]).
pub fn int8_predict_all_seed(model: &SeedQMlp, split: &Split) -> Vec<u8> {
    let kern = best_qkernels();
    let mut out = vec![0u8; split.len()];
    out.par_chunks_mut(RAYON_CHUNK).enumerate().for_each(|(c, o)| {
        let px = &bytes_of(split)[c * RAYON_CHUNK * split.width..];
        model.classify_batch(&kern, px, o.len(), |i, cls, _| o[i] = cls as u8);
    });
    out
}

/// Int8 predictions like the f32 inference runs them: `batch` images at a
/// time, each batch split evenly over the threads of `par`.
pub fn int8_predict_par(model: &SeedQMlp, kern: &QKernels, split: &Split, par: &dyn Par, batch: usize) -> Vec<u8> {
    let n = split.len();
    let batch = batch.max(1);
    let mut out = vec![0u8; n];
    // Classes travel through `Par`'s f32 chunks (exact for 0..10).
    let mut cls = vec![0.0f32; batch];
    let mut start = 0;
    while start < n {
        let b = batch.min(n - start);
        let per = b.div_ceil(par.width().max(1));
        par.for_chunks(&mut cls[..b], per, &|ci, c| {
            let px = &bytes_of(split)[(start + ci * per) * split.width..];
            model.classify_batch(kern, px, c.len(), |i, k, _| c[i] = k as f32);
        });
        for (d, &c) in out[start..start + b].iter_mut().zip(&cls[..b]) {
            *d = c as u8;
        }
        start += b;
    }
    out
}

/// Samples per second of int8 inference over the first `limit` images of
/// `split`, `batch` images at a time over `par` (the int8 twin of the f32
/// inference measurement of `tailor bench`).
pub fn int8_infer_pass(
    model: &SeedQMlp,
    kern: &QKernels,
    par: &dyn Par,
    split: &Split,
    batch: usize,
    limit: usize,
) -> f64 {
    let n = split.len().min(limit);
    let part =
        Split::new(Features::U8(bytes_of(split)[..n * split.width].to_vec()), split.labels[..n].to_vec(), split.width);
    let t = Instant::now();
    std::hint::black_box(int8_predict_par(model, kern, &part, par, batch));
    n as f64 / t.elapsed().as_secs_f64()
}

/// Int8 predictions for every image of `split` (rayon, bit-identical to the
/// device). Any [`Classifier`]; see [`int8_predict_all_seed`] for the faster
/// batched path of the seed model.
pub fn int8_predict_all<M: Classifier + Sync>(model: &M, split: &Split) -> Vec<u8> {
    assert_eq!(M::IN, split.width, "model input is not the data's width");
    (0..split.len())
        .into_par_iter()
        .with_min_len(64)
        .map_init(
            || vec![0i32; M::OUT],
            |logits, i| model.classify(split.row_u8(i).expect("byte inputs"), logits) as u8,
        )
        .collect()
}

/// Int8 accuracy (0..1) over `split`.
pub fn int8_accuracy<M: Classifier + Sync>(model: &M, split: &Split) -> f64 {
    let p = int8_predict_all(model, split);
    p.iter().zip(&split.labels).filter(|(a, b)| a == b).count() as f64 / split.len().max(1) as f64
}

/// Samples per second of [`int8_predict_all_seed`] over `split` (best of 3 runs).
pub fn int8_throughput(model: &SeedQMlp, split: &Split) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(int8_predict_all_seed(model, split));
        best = best.min(t.elapsed().as_secs_f64());
    }
    split.len() as f64 / best
}

/// Reads a `.q8` seed model into a heap box.
pub fn load_q8(path: &Path) -> Result<Box<SeedQMlp>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading int8 model {}", path.display()))?;
    let mut q = boxed::zeroed::<SeedQMlp>();
    q.read(&bytes).map_err(|e| {
        if matches!(e, tailor_core::format::FormatError::BadMagic { found, .. } if &found == b"TLRF") {
            anyhow::anyhow!("{}: this is an f32 checkpoint; run `tailor quantize` on it first", path.display())
        } else {
            anyhow::anyhow!("{}: {e}", path.display())
        }
    })?;
    Ok(q)
}

/// `.q8` file image of a model.
pub fn q8_bytes(q: &SeedQMlp) -> Vec<u8> {
    let mut out = vec![0u8; q.encoded_len()];
    let n = q.to_bytes(&mut out);
    out.truncate(n);
    out
}

pub use crate::checkpoint::atomic_write as write_atomic;

/// Arguments of `tailor quantize`.
#[derive(Clone, Debug)]
pub struct QuantizeArgs {
    /// f32 checkpoint (`tailor train` output).
    pub checkpoint: PathBuf,
    /// Where to write the `.q8`.
    pub out: PathBuf,
    /// Data directory (as `data::load`).
    pub data: Option<PathBuf>,
    /// Training images used for calibration ([`DEFAULT_CALIB_IMAGES`]).
    pub calib_images: usize,
    pub method: CalibMethod,
    /// Threads for the f32 passes (0 = all cores).
    pub threads: usize,
    /// Print JSON instead of text.
    pub json: bool,
}

impl QuantizeArgs {
    pub fn new(checkpoint: PathBuf, out: PathBuf) -> Self {
        QuantizeArgs {
            checkpoint,
            out,
            data: None,
            calib_images: DEFAULT_CALIB_IMAGES,
            method: DEFAULT_METHOD,
            threads: 0,
            json: false,
        }
    }
}

/// A microcontroller's memory budget.
#[derive(Clone, Debug, Serialize)]
pub struct BoardFit {
    pub board: &'static str,
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    pub flash_used_pct: f64,
    pub ram_used_pct: f64,
    pub fits: bool,
}

pub const BOARDS: [(&str, u64, u64); 4] = [
    ("nRF52840", 1024 * 1024, 256 * 1024),
    ("STM32F411", 512 * 1024, 128 * 1024),
    ("STM32F746", 1024 * 1024, 320 * 1024),
    ("RP2040", 2048 * 1024, 264 * 1024),
];

/// Estimated code size of an inference-only firmware (kernels, requant,
/// UART protocol, runtime), from the size of a release build of this crate's
/// inference path for thumbv7em. An estimate, not a measurement of the
/// firmware.
pub const CODE_BYTES_ESTIMATE: u64 = 24 * 1024;
/// Stack and statics besides the activations (protocol frame buffer, stack
/// frames of the inference, runtime), an estimate.
pub const RAM_OVERHEAD_ESTIMATE: u64 = 4 * 1024;

#[derive(Clone, Debug, Serialize)]
pub struct QuantizeReport {
    pub f32_accuracy: f64,
    pub int8_accuracy: f64,
    /// Fraction of test images where f32 and int8 predict the same class.
    pub agreement: f64,
    /// Size of the `.q8` file (header + payload).
    pub model_bytes: u64,
    /// Size of the raw image in flash (`export --format bin`).
    pub weights_flash_bytes: u64,
    pub code_bytes_estimate: u64,
    pub flash_bytes: u64,
    /// Peak activation scratch of one inference.
    pub scratch_bytes: u64,
    /// Activation scratch + overhead estimate.
    pub ram_bytes: u64,
    pub payload_crc: String,
    pub calib_images: usize,
    pub calib_method: CalibMethod,
    pub h1_max: f32,
    pub h2_max: f32,
    pub int8_samples_per_sec: f64,
    pub boards: Vec<BoardFit>,
    pub out: PathBuf,
}

/// `tailor quantize`: load, calibrate, quantize, write the `.q8`
/// atomically, compare f32 and int8 on the 10,000 test images, print the
/// memory report (text or `--json`).
pub fn run_quantize(args: QuantizeArgs) -> Result<QuantizeReport> {
    let ck = crate::checkpoint::load(&args.checkpoint)?;
    let ds = data::load(&data::DataArgs::from_dir(args.data.as_deref()))?;
    let pixels = ck.meta.norm.clone();
    let threads = crate::par::Threads::new(args.threads)?;
    let cal = calibrate_with(&ck.model, &ds.train, &pixels, args.calib_images, args.method, &threads);
    let q = quantize_model(&ck.model, &cal);
    let bytes = q8_bytes(&q);
    write_atomic(&args.out, &bytes)?;

    let kernels: Kernels = crate::simd::detect();
    let f = evaluate(&ck.model, &kernels, &threads, &ds.test, &pixels);
    drop(threads);
    let t = Instant::now();
    let preds = int8_predict_all_seed(&q, &ds.test);
    let int8_sps = ds.test.len() as f64 / t.elapsed().as_secs_f64();
    let correct = preds.iter().zip(&ds.test.labels).filter(|(a, b)| a == b).count();
    let agree = preds.iter().zip(&f.predictions).filter(|(a, b)| a == b).count();
    let n = ds.test.len().max(1) as f64;

    let weights_flash = SeedQMlp::BIN_BYTES as u64;
    let flash = weights_flash + CODE_BYTES_ESTIMATE;
    let scratch = <SeedQMlp as Classifier>::SCRATCH_BYTES as u64;
    let ram = scratch + RAM_OVERHEAD_ESTIMATE;
    let boards = BOARDS
        .iter()
        .map(|&(board, fl, rm)| BoardFit {
            board,
            flash_bytes: fl,
            ram_bytes: rm,
            flash_used_pct: 100.0 * flash as f64 / fl as f64,
            ram_used_pct: 100.0 * ram as f64 / rm as f64,
            fits: flash <= fl && ram <= rm,
        })
        .collect();
    let report = QuantizeReport {
        f32_accuracy: f.accuracy(),
        int8_accuracy: correct as f64 / n,
        agreement: agree as f64 / n,
        model_bytes: bytes.len() as u64,
        weights_flash_bytes: weights_flash,
        code_bytes_estimate: CODE_BYTES_ESTIMATE,
        flash_bytes: flash,
        scratch_bytes: scratch,
        ram_bytes: ram,
        payload_crc: format!("{:#010x}", q.payload_crc()),
        calib_images: args.calib_images,
        calib_method: args.method,
        h1_max: cal.h1.max,
        h2_max: cal.h2.max,
        int8_samples_per_sec: int8_sps,
        boards,
        out: args.out.clone(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(report)
}

fn print_report(r: &QuantizeReport) {
    println!("wrote {} ({} bytes, payload CRC {})", r.out.display(), r.model_bytes, r.payload_crc);
    println!(
        "calibration: {} training images, {:?}: h1 range [0, {:.3}], h2 range [0, {:.3}]",
        r.calib_images, r.calib_method, r.h1_max, r.h2_max
    );
    println!(
        "test accuracy   f32 {:6.2} %   int8 {:6.2} %   (Δ {:+.2} points, same class on {:.2} %)",
        100.0 * r.f32_accuracy,
        100.0 * r.int8_accuracy,
        100.0 * (r.int8_accuracy - r.f32_accuracy),
        100.0 * r.agreement
    );
    println!("int8 host throughput: {:.0} samples/s", r.int8_samples_per_sec);
    println!(
        "flash: {} B weights + ~{} B code = {} B    RAM: {} B activations + ~{} B overhead = {} B",
        r.weights_flash_bytes,
        r.code_bytes_estimate,
        r.flash_bytes,
        r.scratch_bytes,
        RAM_OVERHEAD_ESTIMATE,
        r.ram_bytes
    );
    println!("{:<10} {:>9} {:>8} {:>8} {:>8}  fits", "board", "flash KB", "used", "RAM KB", "used");
    for b in &r.boards {
        println!(
            "{:<10} {:>9} {:>7.1}% {:>8} {:>7.1}%  {}",
            b.board,
            b.flash_bytes / 1024,
            b.flash_used_pct,
            b.ram_bytes / 1024,
            b.ram_used_pct,
            if b.fits { "yes" } else { "NO" }
        );
    }
}

/// `tailor export --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Rust module + `<out stem>.bin` raw image beside it.
    Rust,
    /// C header with all arrays.
    C,
    /// Raw `repr(C)` image only.
    Bin,
}

impl std::str::FromStr for ExportFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "rust" | "rs" => Ok(ExportFormat::Rust),
            "c" | "h" => Ok(ExportFormat::C),
            "bin" => Ok(ExportFormat::Bin),
            _ => bail!("unknown export format `{s}` (rust, c or bin)"),
        }
    }
}

/// Raw image of a model (`--format bin`).
pub fn bin_bytes(q: &SeedQMlp) -> Vec<u8> {
    let mut out = vec![0u8; SeedQMlp::BIN_BYTES];
    q.write_bin(&mut out);
    out
}

/// `tailor export`: reads a `.q8` and writes firmware sources. For `rust`,
/// `out` is the `.rs` module and the raw image goes to the same path with
/// extension `.bin` (the module `include_bytes!`es it by file name).
/// Returns the files written.
pub fn run_export(model_q8: &Path, format: ExportFormat, out: &Path) -> Result<Vec<PathBuf>> {
    let q = load_q8(model_q8)?;
    let crc = q.payload_crc();
    match format {
        ExportFormat::Bin => {
            write_atomic(out, &bin_bytes(&q))?;
            Ok(vec![out.to_path_buf()])
        }
        ExportFormat::Rust => {
            let bin = out.with_extension("bin");
            let name = bin.file_name().and_then(|n| n.to_str()).context("output path has no file name")?.to_string();
            write_atomic(&bin, &bin_bytes(&q))?;
            let mut s = String::new();
            export::write_rust_module(&*q, crc, &name, &mut s)?;
            write_atomic(out, s.as_bytes())?;
            Ok(vec![out.to_path_buf(), bin])
        }
        ExportFormat::C => {
            let mut s = String::with_capacity(4 * 1024 * 1024);
            export::write_c_header(&*q, crc, &mut s)?;
            write_atomic(out, s.as_bytes())?;
            Ok(vec![out.to_path_buf()])
        }
    }
}

/// Calibration ranges only (for reports): `(h1, h2)`.
pub fn ranges(c: &Calibration) -> (ActRange, ActRange) {
    (c.h1, c.h2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailor_core::quant::golden;

    fn seed_model(seed: u64) -> Model {
        let mut m = crate::checkpoint::zero_model(tailor_core::Spec::mlp(&[784, 512, 512, 10]));
        m.init(seed);
        m
    }

    /// `n` generated 784-byte images (byte `i` is `i·a mod b`), labels `i mod 10`.
    fn bytes_split(n: usize, a: usize, b: usize) -> Split {
        let px = (0..n * 784).map(|i| (i * a % b) as u8).collect();
        Split::new(Features::U8(px), (0..n).map(|i| (i % 10) as u8).collect(), 784)
    }

    #[test]
    fn quantize_export_roundtrip_on_random_model() {
        let m = seed_model(1);
        let split = bytes_split(64, 37, 251);
        let cal = calibrate(&m, &split, &Norm::fashion_mnist(), 64);
        assert!(cal.h1.max > 0.0 && cal.h2.max > 0.0);
        let q = quantize_model(&m, &cal);
        let bytes = q8_bytes(&q);
        assert!(bytes.len() <= 690_000, "{} bytes", bytes.len());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.q8");
        write_atomic(&p, &bytes).unwrap();
        let back = load_q8(&p).unwrap();
        assert!(*back == *q);
        let preds = int8_predict_all(&*back, &split);
        assert_eq!(preds.len(), 64);
        let mut short = split.clone();
        short.truncate(63);
        assert_eq!(int8_predict_all_seed(&back, &short), preds[..63]);
        let files = run_export(&p, ExportFormat::Rust, &dir.path().join("model.rs")).unwrap();
        let rs = std::fs::read_to_string(&files[0]).unwrap();
        assert!(rs.contains("include_bytes!(\"model.bin\")"));
        assert_eq!(std::fs::metadata(&files[1]).unwrap().len(), SeedQMlp::BIN_BYTES as u64);
        assert!(rs.contains(&format!("{:#010x}", q.payload_crc())));
        run_export(&p, ExportFormat::C, &dir.path().join("model.h")).unwrap();
        // A checkpoint-magic file gets a helpful error.
        let mut bad = bytes.clone();
        bad[..4].copy_from_slice(b"TLRF");
        std::fs::write(&p, &bad).unwrap();
        assert!(load_q8(&p).unwrap_err().to_string().contains("f32 checkpoint"));
    }

    /// Measurements for the report: `TAILOR_Q8_CKPT=path cargo test -p tailor
    /// --lib quantize::tests::measure -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs TAILOR_Q8_CKPT=<f32 checkpoint> and the dataset"]
    fn measure_checkpoint() {
        let ck = std::path::PathBuf::from(std::env::var("TAILOR_Q8_CKPT").expect("TAILOR_Q8_CKPT"));
        let dir = tempfile::tempdir().unwrap();
        for (method, n) in [
            (CalibMethod::MinMax, 2000),
            (CalibMethod::Percentile(99.9), 2000),
            (CalibMethod::Percentile(99.99), 2000),
            (CalibMethod::Percentile(99.999), 2000),
            (CalibMethod::Percentile(99.999), 500),
            (CalibMethod::MinMax, 10000),
        ] {
            let mut a = QuantizeArgs::new(ck.clone(), dir.path().join("m.q8"));
            a.method = method;
            a.calib_images = n;
            a.threads = 1;
            let r = run_quantize(a).unwrap();
            eprintln!(
                "MEASURE {method:?} n={n}: f32 {:.4} int8 {:.4} agree {:.4} bytes {}",
                r.f32_accuracy, r.int8_accuracy, r.agreement, r.model_bytes
            );
        }
    }

    /// `TAILOR_Q8_CKPT=path cargo test --release -p tailor --lib quantize::tests::speed -- --ignored --nocapture`
    #[test]
    #[ignore = "needs TAILOR_Q8_CKPT=<f32 checkpoint> and the dataset"]
    fn speed_int8_vs_f32() {
        let ck = crate::checkpoint::load(std::path::Path::new(&std::env::var("TAILOR_Q8_CKPT").unwrap())).unwrap();
        let ds = data::load_default().unwrap();
        let pixels = ck.meta.norm.clone();
        let cal = calibrate(&ck.model, &ds.train, &pixels, 500);
        let q = quantize_model(&ck.model, &cal);
        let threads = crate::par::Threads::new(0).unwrap();
        let kernels = crate::simd::detect();
        let t = Instant::now();
        let f = evaluate(&ck.model, &kernels, &threads, &ds.test, &pixels);
        let f32_sps = ds.test.len() as f64 / t.elapsed().as_secs_f64();
        drop(threads);
        let i8_sps = int8_throughput(&q, &ds.test);
        for kern in [tailor_core::quant::QKernels::PORTABLE, tailor_core::quant::QKernels::BEST] {
            let t = Instant::now();
            let mut logits = [0i32; 10];
            for i in 0..2000 {
                std::hint::black_box(q.classify_with(&kern, ds.test.row_u8(i).unwrap(), &mut logits));
            }
            eprintln!("SPEED 1 thread {}: {:.1} us/sample", kern.name, t.elapsed().as_secs_f64() / 2000.0 * 1e6);
        }
        eprintln!(
            "SPEED f32 {f32_sps:.0}/s ({:.4})  int8 {i8_sps:.0}/s ({:.4})",
            f.accuracy(),
            int8_accuracy(&*q, &ds.test)
        );
    }

    /// Int8 speed of every kernel set on a random model (1 thread, batch 64
    /// and batch 1; `TAILOR_QKERNELS=name` for one set only): `cargo test
    /// --release -p tailor --lib quantize::tests::int8_kernel_speed --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "needs the dataset; a measurement"]
    fn int8_kernel_speed() {
        let ds = data::load_default().unwrap();
        let m = seed_model(0);
        let cal = calibrate(&m, &ds.train, &Norm::identity(784, true), 500);
        let q = quantize_model(&m, &cal);
        let serial = tailor_core::par::Serial;
        let want = int8_predict_par(&q, &QKernels::BEST, &ds.test, &serial, 64);
        let only = std::env::var(QKERNELS_ENV).ok();
        for kern in available_qkernels().into_iter().skip(2).filter(|k| only.as_deref().is_none_or(|o| o == k.name)) {
            assert_eq!(int8_predict_par(&q, &kern, &ds.test, &serial, 64), want, "{}", kern.name);
            let best = |batch: usize, limit: usize| {
                (0..5).map(|_| int8_infer_pass(&q, &kern, &serial, &ds.test, batch, limit)).fold(0.0, f64::max)
            };
            let (b64, b1) = (best(64, 10_000), best(1, 2000));
            eprintln!("SPEED {:<11} batch 64: {b64:>8.0}/s   batch 1: {b1:>8.0}/s ({:.1} us)", kern.name, 1e6 / b1);
        }
    }

    /// The batched paths (every kernel set, any thread split and batch) give
    /// the per-image predictions.
    #[test]
    fn batched_int8_matches_per_image() {
        let m = seed_model(3);
        let n = 77;
        let split = bytes_split(n, 131, 253);
        let cal = calibrate(&m, &split, &Norm::fashion_mnist(), n);
        let q = quantize_model(&m, &cal);
        let want = int8_predict_all(&*q, &split);
        assert_eq!(int8_predict_all_seed(&q, &split), want);
        let threads = crate::par::Threads::new(2).unwrap();
        for kern in available_qkernels() {
            for batch in [1, 5, 64] {
                assert_eq!(int8_predict_par(&q, &kern, &split, &threads, batch), want, "{} batch {batch}", kern.name);
            }
        }
    }

    #[test]
    fn golden_classifies_on_host() {
        let g = golden::model();
        let mut logits = [0i32; 2];
        assert_eq!(g.classify(&golden::INPUT, &mut logits), golden::EXPECTED_CLASS);
        assert_eq!(logits, golden::EXPECTED_LOGITS);
    }
}
