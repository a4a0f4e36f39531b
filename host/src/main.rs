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
    /// Train an MLP (default: the tutorial's 784-512-512-10) and save a checkpoint.
    Train(TrainCli),
    /// Accuracy, loss, per-class accuracy and confusion matrix of a model
    /// (a checkpoint, or a PyTorch state dict as .safetensors).
    Eval {
        model: PathBuf,
        /// Also write every test sample's logits here (NPY, float32 [N, classes]).
        #[arg(long)]
        logits: Option<PathBuf>,
        #[command(flatten)]
        data: DataCli,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: bool,
        /// Draw the confusion matrix (class names on both axes) to FILE.svg or FILE.png.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
    /// Calibrate on training images and write the int8 model (.q8).
    Quantize {
        /// f32 model: a checkpoint from `tailor train`, or a .safetensors state dict.
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        data: DataCli,
        /// Training images used for calibration (default 2000, or all of a
        /// smaller training set).
        #[arg(long)]
        calib_images: Option<usize>,
        /// Activation range: `minmax` or a percentile such as `99.999`.
        #[arg(long, default_value = "99.999")]
        calib: String,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: bool,
        /// Draw per-layer weight ranges and int8 error to FILE.svg or FILE.png.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
    /// Convert a version-1 .q8 (postcard payload) to version 2 (read in place).
    Convert {
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a .q8 model as Rust source, a C header or the raw flash image;
    /// or an f32 model (checkpoint) as a safetensors state dict or ONNX.
    Export {
        /// A .q8 for rust|c|bin; a checkpoint (or a safetensors file with
        /// tailor's metadata) for safetensors|onnx.
        model: PathBuf,
        #[arg(long, value_parser = ["rust", "c", "bin", "safetensors", "onnx"])]
        format: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the int8 model on the emulated Cortex-M4 (QEMU) and compare with the host.
    Device {
        /// A .q8, or an f32 model (checkpoint, .safetensors) to quantize in memory first.
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
        #[command(flatten)]
        data: DataCli,
        /// Run this firmware ELF instead of building one for the model.
        #[arg(long)]
        firmware: Option<PathBuf>,
        /// Show the firmware's defmt log (decoded with defmt-print).
        #[arg(long)]
        log: bool,
        /// With --json: each image's confidence (percent) in `confidence.per_image`.
        #[arg(long)]
        per_image: bool,
        #[arg(long)]
        json: bool,
        /// Emulated devices streaming at once, each with a share of the
        /// images (default: one per CPU).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Train on the emulated Cortex-M4 and check its weights against the
    /// host's, bit for bit.
    DeviceTrain {
        /// `full`: a fresh f32 model learns on the device; `head`: a new
        /// classifier head learns on the features of MODEL.q8, which stays
        /// frozen in flash.
        #[arg(long, default_value = "full", value_parser = ["full", "head"])]
        mode: String,
        /// The int8 backbone of `--mode head`.
        model: Option<PathBuf>,
        /// Hidden layer widths (the device holds up to about 26,000 parameters).
        #[arg(long, default_value = "32")]
        hidden: String,
        #[arg(long, default_value_t = 1)]
        epochs: u32,
        /// `sgd` or `momentum` (SGD with momentum 0.9 unless --momentum).
        #[arg(long, default_value = "momentum", value_parser = ["sgd", "momentum"])]
        optimizer: String,
        #[arg(long, default_value_t = 0.01)]
        lr: f32,
        /// `linear`: the learning rate falls to 0 over the run, batch by batch.
        #[arg(long, default_value = "linear", value_parser = ["linear", "constant"])]
        schedule: String,
        #[arg(long)]
        momentum: Option<f32>,
        /// Samples per update (at most what the device holds: 8 for 784-32-10).
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Train on the first N samples of each epoch's shuffled order.
        #[arg(long)]
        limit: Option<usize>,
        /// Test on the first N test samples.
        #[arg(long)]
        test_limit: Option<usize>,
        /// Save the device's trained weights as a checkpoint.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 3600.0)]
        timeout: f64,
        #[command(flatten)]
        data: DataCli,
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
        /// Hidden layer widths of the model to time (default 512,512).
        #[arg(long)]
        hidden: Option<String>,
        /// The optimizer to train with: `sgd` (lr 1e-3, PyTorch's tutorial)
        /// or `adam` (PyTorch's defaults).
        #[arg(long, value_enum, default_value = "sgd")]
        optimizer: tailor::bench::BenchOpt,
        /// Read the training batches in a shuffled order (as
        /// `torch_mlp.py --shuffle`).
        #[arg(long)]
        shuffle: bool,
    },
}

/// Where the data comes from (`tailor train`, `eval`).
#[derive(Args, Clone, Default)]
struct DataCli {
    /// A directory with Fashion-MNIST-style IDX files, train.csv + test.csv,
    /// or train_x.npy/train_y.npy/test_x.npy/test_y.npy.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training set: a .csv, NAME_x.npy (labels in NAME_y.npy) or IDX images file.
    #[arg(long, requires = "test")]
    train: Option<PathBuf>,
    /// Test set, as --train.
    #[arg(long, requires = "train")]
    test: Option<PathBuf>,
    /// CSV: the label column's name (default: the last column).
    #[arg(long)]
    label_column: Option<String>,
    /// Class names, comma-separated, in label order.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
}

impl DataCli {
    fn args(self) -> tailor::data::DataArgs {
        tailor::data::DataArgs {
            data: self.data,
            train: self.train,
            test: self.test,
            label_column: self.label_column,
            classes: self.classes,
        }
    }
}

#[derive(Args)]
struct TrainCli {
    /// Start from a named recipe; other options override it.
    #[arg(long, value_enum, default_value = "default")]
    recipe: Recipe,
    /// Hidden layer widths, comma-separated (default 512,512, the tutorial's
    /// model; "" for none: multinomial logistic regression).
    #[arg(long)]
    hidden: Option<String>,
    /// Leave these classes' samples out of training (comma-separated labels).
    #[arg(long, value_delimiter = ',')]
    withhold: Vec<u8>,
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
    /// Normalize inputs: Fashion-MNIST's pixel mean and std after /255, other
    /// images by their training-set mean and std, tabular features each by
    /// its own (default recipe: true; tutorial: false).
    #[arg(long)]
    normalize: Option<bool>,
    #[command(flatten)]
    data: DataCli,
    /// Checkpoint path (rewritten atomically after every epoch).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Continue from this checkpoint (its settings, unless overridden by --epochs).
    #[arg(long, conflicts_with = "init")]
    resume: Option<PathBuf>,
    /// Start from these weights (a checkpoint, or a PyTorch state dict as
    /// .safetensors) with a fresh optimizer; the model's shape and input
    /// normalization come from the file.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Print one final JSON object on stdout (human lines go to stderr).
    #[arg(long)]
    json: bool,
    /// Print the loss every N batches.
    #[arg(long, default_value_t = 100)]
    log_every: usize,
    /// Train on only the first N training images (for quick tests).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Draw loss and accuracy per epoch to FILE.svg or FILE.png (rewritten every epoch).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Write per-epoch metrics (epoch, lr, train_loss, test_loss, test_accuracy, seconds) as CSV.
    #[arg(long, value_name = "FILE.csv")]
    metrics: Option<PathBuf>,
}

/// Longest `device --timeout`, in seconds (a day).
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

fn main() {
    // A closed stdout (`tailor train | head -1`) ends tailor as it ends
    // cat or grep: SIGPIPE's default action, a quiet exit with status 141.
    // Rust ignores SIGPIPE, so println! would panic instead. Nothing is
    // lost: checkpoints are written atomically and no write to stdout
    // happens while a temp file exists.
    // SAFETY: signal(2) with SIG_DFL, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tailor::signals::install();
    let cli = Cli::parse();
    let res: Result<()> = match cli.cmd {
        Cmd::Train(t) => t
            .hidden
            .as_deref()
            .map(tailor::commands::parse_hidden)
            .transpose()
            .and_then(|hidden| {
                tailor::commands::train(tailor::commands::TrainArgs {
                    recipe: t.recipe,
                    hidden,
                    withhold: t.withhold,
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
                    data: t.data.args(),
                    out: t.out,
                    threads: t.threads,
                    resume: t.resume,
                    init: t.init,
                    json: t.json,
                    log_every: t.log_every,
                    train_limit: t.train_limit,
                    plot: t.plot,
                    metrics: t.metrics,
                })
            })
            .map(|_| ()),
        Cmd::Eval { model, logits, data, threads, json, plot } => {
            tailor::commands::eval(&model, &data.args(), threads, json, plot.as_deref(), logits.as_deref()).map(|_| ())
        }
        Cmd::Quantize { model, out, data, calib_images, calib, threads, json, plot } => (|| {
            let method = match calib.as_str() {
                "minmax" => tailor::quantize::CalibMethod::MinMax,
                p => match p.parse::<f64>() {
                    Ok(v) if v > 50.0 && v <= 100.0 => tailor::quantize::CalibMethod::Percentile(v),
                    _ => anyhow::bail!("--calib {p}: expected `minmax` or a percentile in (50, 100]"),
                },
            };
            let mut a = tailor::quantize::QuantizeArgs::new(model, out);
            a.data = data.args();
            a.calib_images = calib_images;
            a.method = method;
            a.threads = threads;
            a.json = json;
            a.plot = plot;
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
        Cmd::Export { model, format, out } if format == "safetensors" || format == "onnx" => {
            let f = if format == "onnx" {
                tailor::interop::F32Format::Onnx
            } else {
                tailor::interop::F32Format::Safetensors
            };
            tailor::interop::export(&model, f, &out).map(|()| println!("wrote {}", out.display()))
        }
        Cmd::Export { model, format, out } => format
            .parse::<tailor::quantize::ExportFormat>()
            .map_err(|e| anyhow::anyhow!("--format: {e}"))
            .and_then(|f| tailor::quantize::run_export(&model, f, &out))
            .map(|files| {
                for f in files {
                    println!("wrote {}", f.display());
                }
            }),
        Cmd::Device { model, limit, transport, timeout, batch, data, firmware, log, per_image, json, jobs } => (|| {
            let mut a = tailor::device::DeviceArgs::new(model);
            a.limit = limit;
            a.transport = transport.parse().map_err(|e| anyhow::anyhow!("--transport: {e}"))?;
            if !(timeout > 0.0 && timeout <= MAX_TIMEOUT_SECS) {
                anyhow::bail!("--timeout {timeout}: expected seconds in (0, {MAX_TIMEOUT_SECS}]");
            }
            a.timeout_secs = timeout;
            a.batch = batch;
            a.data = data.args();
            a.firmware = firmware;
            a.json = json;
            a.log = log;
            a.per_image = per_image;
            if let Some(j) = jobs {
                if !(1..=tailor::device::MAX_JOBS).contains(&j) {
                    anyhow::bail!("--jobs {j}: expected 1..={}", tailor::device::MAX_JOBS);
                }
            }
            a.jobs = jobs;
            let r = tailor::device::run_device(&a)?;
            if json {
                println!("{}", r.to_json());
            } else {
                println!("{r}");
            }
            Ok(())
        })(
        ),
        Cmd::DeviceTrain {
            mode,
            model,
            hidden,
            epochs,
            optimizer,
            lr,
            schedule,
            momentum,
            batch_size,
            seed,
            limit,
            test_limit,
            out,
            timeout,
            data,
            json,
        } => (|| {
            let backbone = match (mode.as_str(), model) {
                ("head", Some(m)) => Some(m),
                ("head", None) => {
                    anyhow::bail!("--mode head needs the int8 model: tailor device-train --mode head MODEL.q8")
                }
                (_, Some(m)) => {
                    anyhow::bail!("{}: --mode full trains a fresh model; use --mode head to train on it", m.display())
                }
                (_, None) => None,
            };
            let momentum = match (optimizer.as_str(), momentum) {
                ("sgd", Some(m)) if m != 0.0 => {
                    anyhow::bail!("--momentum {m} with --optimizer sgd: use --optimizer momentum")
                }
                ("sgd", _) => 0.0,
                (_, m) => m.unwrap_or(0.9),
            };
            let a = tailor::device_train::DeviceTrainArgs {
                backbone,
                hidden: tailor::commands::parse_hidden(&hidden)?,
                epochs,
                lr,
                decay: schedule == "linear",
                momentum,
                batch: batch_size,
                seed,
                limit,
                test_limit,
                out,
                timeout_secs: timeout,
                data: data.args(),
                progress: !json,
            };
            let r = tailor::device_train::run(&a)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "device-train {:?}: {} images trained; device {:.2} %, host {:.2} % on {} test images (confidence {:.1} % right, {:.1} % wrong); bit-identical: {}; {} bytes of RAM; {:.2} instructions/MAC; {:.1} s",
                    r.dims,
                    r.images_trained,
                    100.0 * r.device_accuracy,
                    100.0 * r.host_accuracy,
                    r.images_tested,
                    100.0 * r.mean_confidence_correct,
                    100.0 * r.mean_confidence_wrong,
                    r.bit_identical,
                    r.ram_bytes,
                    r.instructions_per_mac,
                    r.wall_secs
                );
                if let Some(f) = r.f32_features_accuracy {
                    println!("the same head trained on the host from the backbone's f32 features: {:.2} %", 100.0 * f);
                }
            }
            Ok(())
        })(),
        Cmd::Bench { threads, data, json, train_batches, hidden, optimizer, shuffle } => (|| {
            let hidden = hidden.as_deref().map(tailor::commands::parse_hidden).transpose()?;
            tailor::bench::run(threads, data.as_deref(), json, train_batches, hidden.as_deref(), optimizer, shuffle)
                .map(|_| ())
        })(),
    };
    if let Err(e) = res {
        if let Some(i) = e.downcast_ref::<tailor::commands::Interrupted>() {
            std::process::exit(tailor::signals::exit_code(i.0));
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
