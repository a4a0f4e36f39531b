//! `tailor`: train, evaluate, quantize, export and verify on an emulated MCU.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use tailor::recipe::{OptName, Recipe, SchedName};

#[derive(Parser)]
#[command(
    name = "tailor",
    version,
    about = "Fashion-MNIST MLP: train on the desktop, run the same no_std core on a Cortex-M"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train the 784-512-512-10 MLP and save a checkpoint.
    Train(TrainCli),
    /// Accuracy, loss, per-class accuracy and confusion matrix of a checkpoint.
    Eval {
        model: PathBuf,
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: bool,
    },
    /// Calibrate on training images and write the int8 model (.q8).
    Quantize {
        /// f32 checkpoint from `tailor train`.
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        data: Option<PathBuf>,
        /// Training images used for calibration.
        #[arg(long, default_value_t = tailor::quantize::DEFAULT_CALIB_IMAGES)]
        calib_images: usize,
        /// Activation range: `minmax` or a percentile such as `99.999`.
        #[arg(long, default_value = "99.999")]
        calib: String,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: bool,
    },
    /// Convert a version-1 .q8 (postcard payload) to version 2 (read in place).
    Convert {
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a .q8 model as Rust source, a C header, or the raw flash image.
    Export {
        model: PathBuf,
        #[arg(long, value_parser = ["rust", "c", "bin"])]
        format: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the int8 model on the emulated Cortex-M4 (QEMU) and compare with the host.
    Device {
        model: PathBuf,
        /// Only the first N test images.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value = "semihosting", value_parser = ["semihosting", "uart"])]
        transport: String,
        /// Give up after this many seconds (QEMU hung).
        #[arg(long, default_value_t = 300.0)]
        timeout: f64,
        /// Images per request (default: the device's maximum).
        #[arg(long)]
        batch: Option<usize>,
        #[arg(long)]
        data: Option<PathBuf>,
        /// Run this firmware ELF instead of building one for the model.
        #[arg(long)]
        firmware: Option<PathBuf>,
        /// Show the firmware's defmt log (decoded with defmt-print).
        #[arg(long)]
        log: bool,
        #[arg(long)]
        json: bool,
    },
    /// Throughput of training and inference on this machine.
    Bench {
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Training batches to time (default: one full epoch, 938).
        #[arg(long)]
        train_batches: Option<usize>,
    },
}

#[derive(Args)]
struct TrainCli {
    /// Start from a named recipe; other options override it.
    #[arg(long, value_enum, default_value = "default")]
    recipe: Recipe,
    #[arg(long)]
    epochs: Option<u32>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long, value_enum)]
    optimizer: Option<OptName>,
    #[arg(long)]
    momentum: Option<f32>,
    #[arg(long)]
    weight_decay: Option<f32>,
    #[arg(long, value_enum)]
    schedule: Option<SchedName>,
    #[arg(long)]
    seed: Option<u64>,
    /// Reshuffle the training set every epoch.
    #[arg(long)]
    shuffle: Option<bool>,
    /// Normalize pixels with Fashion-MNIST's mean and std after /255.
    #[arg(long)]
    normalize: Option<bool>,
    #[arg(long)]
    data: Option<PathBuf>,
    /// Checkpoint path (rewritten atomically after every epoch).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Continue from this checkpoint (its settings, unless overridden by --epochs).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Print one final JSON object on stdout (human lines go to stderr).
    #[arg(long)]
    json: bool,
    /// Print the loss every N batches.
    #[arg(long, default_value_t = 100)]
    log_every: usize,
    /// Train on only the first N training images (for quick tests).
    #[arg(long)]
    train_limit: Option<usize>,
}

fn main() {
    let cli = Cli::parse();
    let res: Result<()> = match cli.cmd {
        Cmd::Train(t) => tailor::commands::train(tailor::commands::TrainArgs {
            recipe: t.recipe,
            epochs: t.epochs,
            batch_size: t.batch_size,
            lr: t.lr,
            optimizer: t.optimizer,
            momentum: t.momentum,
            weight_decay: t.weight_decay,
            schedule: t.schedule,
            seed: t.seed,
            shuffle: t.shuffle,
            normalize: t.normalize,
            data: t.data,
            out: t.out,
            threads: t.threads,
            resume: t.resume,
            json: t.json,
            log_every: t.log_every,
            train_limit: t.train_limit,
        })
        .map(|_| ()),
        Cmd::Eval { model, data, threads, json } => {
            tailor::commands::eval(&model, data.as_deref(), threads, json).map(|_| ())
        }
        Cmd::Quantize { model, out, data, calib_images, calib, threads, json } => (|| {
            let method = match calib.as_str() {
                "minmax" => tailor::quantize::CalibMethod::MinMax,
                p => match p.parse::<f64>() {
                    Ok(v) if v > 50.0 && v <= 100.0 => tailor::quantize::CalibMethod::Percentile(v),
                    _ => anyhow::bail!("--calib {p}: expected `minmax` or a percentile in (50, 100]"),
                },
            };
            let mut a = tailor::quantize::QuantizeArgs::new(model, out);
            a.data = data;
            a.calib_images = calib_images;
            a.method = method;
            a.threads = threads;
            a.json = json;
            tailor::quantize::run_quantize(a).map(|_| ())
        })(),
        Cmd::Convert { model, out } => tailor::q8::convert_file(&model, &out).and_then(|q| {
            let m = q.model()?;
            println!(
                "wrote {} ({} {} bytes, payload CRC {:#010x})",
                out.display(),
                m.spec(),
                q.bytes().len(),
                m.payload_crc()
            );
            Ok(())
        }),
        Cmd::Export { model, format, out } => format
            .parse::<tailor::quantize::ExportFormat>()
            .map_err(|e| anyhow::anyhow!("--format: {e}"))
            .and_then(|f| tailor::quantize::run_export(&model, f, &out))
            .map(|files| {
                for f in files {
                    println!("wrote {}", f.display());
                }
            }),
        Cmd::Device { model, limit, transport, timeout, batch, data, firmware, log, json } => (|| {
            let mut a = tailor::device::DeviceArgs::new(model);
            a.limit = limit;
            a.transport = transport.parse().map_err(|e| anyhow::anyhow!("--transport: {e}"))?;
            a.timeout_secs = timeout;
            a.batch = batch;
            a.data = data;
            a.firmware = firmware;
            a.json = json;
            a.log = log;
            let r = tailor::device::run_device(&a)?;
            if json {
                println!("{}", r.to_json());
            } else {
                println!("{r}");
            }
            Ok(())
        })(),
        Cmd::Bench { threads, data, json, train_batches } => {
            tailor::bench::run(threads, data.as_deref(), json, train_batches).map(|_| ())
        }
    };
    if let Err(e) = res {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
