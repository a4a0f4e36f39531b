//! Issue #14: a hostile but realistic user never loses a file, never sees a
//! panic, and never leaves a process or a temp file behind.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tailor::data::{write_idx_images, write_idx_labels, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use tailor_e2e::{tailor, tailor_bin, tailor_fails, tailor_json};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small IDX dataset of 8x8 images in `dir` (fast to load and train).
fn tiny_idx(dir: &Path, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let px: Vec<u8> = (0..n * 64).map(|i| (i * 37 % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    write_idx_images(&dir.join(TRAIN_IMAGES), n, 8, 8, &px).unwrap();
    write_idx_labels(&dir.join(TRAIN_LABELS), &labels).unwrap();
    write_idx_images(&dir.join(TEST_IMAGES), n, 8, 8, &px).unwrap();
    write_idx_labels(&dir.join(TEST_LABELS), &labels).unwrap();
}

/// A trained checkpoint and its `.q8` on the tiny data.
fn tiny_models(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let data = dir.join("data");
    tiny_idx(&data, 200);
    let (ck, q8) = (dir.join("m.ckpt"), dir.join("m.q8"));
    tailor_json(&["train", "--data", s(&data), "--hidden", "8", "--epochs", "1", "--out", s(&ck)]);
    tailor_json(&["quantize", s(&ck), "--data", s(&data), "--out", s(&q8)]);
    (data, ck, q8)
}

fn temp_files(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.ends_with(".tmp") {
            v.push(n);
        }
        if e.file_type().unwrap().is_dir() {
            v.extend(temp_files(&e.path()));
        }
    }
    v
}

#[test]
fn outputs_never_replace_inputs_or_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ck, q8) = tiny_models(dir.path());
    let (ck_bytes, q8_bytes) = (std::fs::read(&ck).unwrap(), std::fs::read(&q8).unwrap());
    let d = ["--data", s(&data)];

    let e = tailor_fails(&["quantize", s(&ck), d[0], d[1], "--out", s(&ck)]);
    assert!(e.contains("is the input"), "{e}");
    let e = tailor_fails(&["export", s(&q8), "--format", "bin", "--out", s(&q8)]);
    assert!(e.contains("is the input"), "{e}");
    // Rust export writes the .q8 beside the module: here, over the model.
    let e = tailor_fails(&["export", s(&q8), "--format", "rust", "--out", s(&dir.path().join("m.rs"))]);
    assert!(e.contains("is the input"), "{e}");
    let e = tailor_fails(&["convert", s(&q8), "--out", s(&q8)]);
    assert!(e.contains("is the input"), "{e}");
    // Another name for the same inode is the same file.
    let hard = dir.path().join("hard.ckpt");
    std::fs::hard_link(&ck, &hard).unwrap();
    let e = tailor_fails(&["quantize", s(&hard), d[0], d[1], "--out", s(&ck)]);
    assert!(e.contains("is the input"), "{e}");
    let img = data.join(TRAIN_IMAGES);
    let e = tailor_fails(&["train", d[0], d[1], "--hidden", "8", "--epochs", "1", "--out", s(&img)]);
    assert!(e.contains("is the input") && e.contains(TRAIN_IMAGES), "{e}");
    assert_eq!(std::fs::read(&ck).unwrap(), ck_bytes);
    assert_eq!(std::fs::read(&q8).unwrap(), q8_bytes);

    // Special files, refused before the first epoch (no "Epoch 1" line).
    for out in ["/dev/null", "/tmp"] {
        let o = tailor(&["train", d[0], d[1], "--hidden", "8", "--epochs", "1", "--out", out]);
        let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(out) && stderr.contains("not a regular file"), "{stderr}");
        assert!(!stdout.contains("Epoch 1"), "the output was checked only after training started:\n{stdout}");
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(Path::new("/dev/null").metadata().unwrap().file_type().is_char_device());
    let e = tailor_fails(&["export", s(&q8), "--format", "c", "--out", "/dev/null"]);
    assert!(e.contains("not a regular file"), "{e}");
    // An unwritable place fails before training.
    let e = tailor_fails(&["train", d[0], d[1], "--hidden", "8", "--out", s(&ck.join("x.ckpt"))]);
    assert!(e.contains("m.ckpt/x.ckpt") && e.contains("Not a directory"), "{e}");

    // Through a symlink: the target is rewritten, the link stays.
    let link = dir.path().join("link.q8");
    std::os::unix::fs::symlink("m.q8", &link).unwrap();
    tailor_json(&["quantize", s(&ck), d[0], d[1], "--out", s(&link)]);
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&q8).unwrap(), q8_bytes, "same model, same bytes");
    assert!(temp_files(dir.path()).is_empty(), "{:?}", temp_files(dir.path()));
}

#[test]
fn diverging_training_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ck, _) = tiny_models(dir.path());
    let before = std::fs::read(&ck).unwrap();
    let e = tailor_fails(&[
        "train",
        "--data",
        s(&data),
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--optimizer",
        "sgd",
        "--lr",
        "1e30",
        "--out",
        s(&ck),
    ]);
    assert!(e.contains("diverged") && e.contains("epoch 1 step") && e.contains("--lr"), "{e}");
    assert_eq!(std::fs::read(&ck).unwrap(), before, "a diverged run replaced the checkpoint");

    // A NaN weight in a (valid, CRC-correct) checkpoint: eval, quantize refuse it.
    let mut c = tailor::checkpoint::load(&ck).unwrap();
    c.model.params_mut()[5] = f32::NAN;
    let nan = dir.path().join("nan.ckpt");
    std::fs::write(&nan, tailor::checkpoint::encode(&c.model, &c.meta, &c.optim, 0).unwrap()).unwrap();
    for cmd in [vec!["eval", s(&nan)], vec!["quantize", s(&nan), "--out", "/tmp/never.q8"]] {
        let mut a = cmd.clone();
        a.extend(["--data", s(&data)]);
        let e = tailor_fails(&a);
        assert!(e.contains("nan.ckpt") && e.contains("NaN"), "{cmd:?}: {e}");
    }
    assert!(!Path::new("/tmp/never.q8").exists());
}

#[test]
fn optimizer_settings_are_validated_like_pytorch() {
    for (args, flag) in [
        (&["--optimizer", "momentum", "--momentum", "nan"][..], "--momentum NaN"),
        (&["--optimizer", "sgd", "--momentum=-1"], "--momentum -1"),
        (&["--optimizer", "rmsprop", "--momentum", "inf"], "--momentum inf"),
        (&["--momentum", "0.9"], "--momentum applies to"),
        (&["--weight-decay=-1"], "--weight-decay -1"),
        (&["--optimizer", "sgd", "--weight-decay", "nan"], "--weight-decay NaN"),
        (&["--lr", "nan"], "--lr NaN"),
        (&["--lr=-0.1"], "--lr -0.1"),
        (&["--lr", "0"], "--lr 0"),
        (&["--optimizer", "nesterov", "--momentum", "0"], "nesterov"),
    ] {
        let mut a = vec!["train", "--epochs", "1"];
        a.extend(args);
        let e = tailor_fails(&a);
        assert!(e.contains(flag), "{args:?}: {e}");
    }
}

#[test]
fn numeric_flags_are_range_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ck, q8) = tiny_models(dir.path());
    let d = ["--data", s(&data)];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--threads", "1000000"], "--threads 1000000"),
        (vec!["eval", s(&ck), d[0], d[1], "--threads", "257"], "--threads 257"),
        (vec!["train", "--epochs", "0"], "--epochs 0"),
        (vec!["train", "--epochs", "4000000000"], "--epochs 4000000000"),
        (vec!["train", "--batch-size", "0"], "--batch-size 0"),
        (vec!["train", d[0], d[1], "--train-limit", "201"], "--train-limit 201"),
        (vec!["train", d[0], d[1], "--train-limit", "0"], "--train-limit 0"),
        (vec!["quantize", s(&ck), d[0], d[1], "--out", "/tmp/x.q8", "--calib-images", "0"], "--calib-images 0"),
        (vec!["quantize", s(&ck), d[0], d[1], "--out", "/tmp/x.q8", "--calib-images", "201"], "--calib-images 201"),
        (vec!["device", s(&q8), d[0], d[1], "--limit", "201"], "--limit 201"),
        (vec!["device", s(&q8), d[0], d[1], "--limit", "0"], "--limit 0"),
        (vec!["device", s(&q8), d[0], d[1], "--jobs", "0"], "--jobs 0"),
        (vec!["device", s(&q8), d[0], d[1], "--jobs", "65"], "--jobs 65"),
        (vec!["bench", "--data", s(&data), "--train-batches", "0"], "--train-batches 0"),
        (vec!["bench", "--data", s(&data), "--train-batches", "5"], "--train-batches 5"),
    ];
    for (args, msg) in &cases {
        let e = tailor_fails(args);
        assert!(e.contains(msg), "{args:?}: {e}");
    }
    for t in ["inf", "nan", "-1", "0", "1e20"] {
        let e = tailor_fails(&["device", s(&q8), d[0], d[1], &format!("--timeout={t}")]);
        assert!(e.contains("--timeout"), "{t}: {e}");
    }
    // A checkpoint whose settings say batch 0 or 100000 (valid CRC).
    let c = tailor::checkpoint::load(&ck).unwrap();
    for bs in [0u32, 100_000] {
        let meta = tailor::checkpoint::Meta { batch_size: bs, ..c.meta.clone() };
        let bad = dir.path().join(format!("bs{bs}.ckpt"));
        std::fs::write(&bad, tailor::checkpoint::encode(&c.model, &meta, &c.optim, 0).unwrap()).unwrap();
        let e = tailor_fails(&["train", "--resume", s(&bad), d[0], d[1], "--epochs", "3"]);
        assert!(e.contains(&format!("batch size {bs}")), "{e}");
    }
    // Empty splits.
    let empty = dir.path().join("empty");
    tiny_idx(&empty, 0);
    let e = tailor_fails(&["train", "--data", s(&empty), "--epochs", "1"]);
    assert!(e.contains("at least one"), "{e}");
    let e = tailor_fails(&["eval", s(&ck), "--data", s(&empty)]);
    assert!(e.contains("no test samples"), "{e}");
}

#[test]
fn special_and_lying_files_are_refused_without_reading_them() {
    for cmd in ["eval", "quantize", "device", "export", "convert"] {
        let mut a = vec![cmd, "/dev/zero"];
        match cmd {
            "quantize" | "convert" => a.extend(["--out", "/tmp/never.q8"]),
            "export" => a.extend(["--format", "bin", "--out", "/tmp/never.bin"]),
            _ => {}
        }
        let t = Instant::now();
        let e = tailor_fails(&a);
        assert!(e.contains("/dev/zero") && e.contains("not a regular file"), "{cmd}: {e}");
        assert!(t.elapsed() < Duration::from_secs(20), "{cmd} read /dev/zero");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("lie");
    tiny_idx(&d, 10);
    // Labels whose header claims 2^30 items in a 1 MB gzip of 1 MB: must
    // fail as truncated at once, without reserving what the header claims.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let body: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    let header: Vec<u8> = [0x0000_0801u32, 1 << 30].iter().flat_map(|v| v.to_be_bytes()).collect();
    tailor::data::write_gz_atomic(&d.join(TRAIN_LABELS), &[&header, &body]).unwrap();
    assert!(std::fs::metadata(d.join(TRAIN_LABELS)).unwrap().len() > 1_000_000, "the labels must not compress");
    // Address space capped at 512 MiB: reserving what the header claims
    // (or the 1 GiB deflate bound of a 1 MB file) fails, reading the file
    // does not. Peak RSS is measured too.
    let bin = tailor_bin();
    let cmd = format!(
        "ulimit -v 524288; exec /usr/bin/time -f maxrss_kb=%M {} train --data {} --epochs 1",
        bin.display(),
        s(&d)
    );
    let out = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(TRAIN_LABELS) && stderr.contains("truncated"), "{stderr}");
    let kb: u64 = stderr.rsplit("maxrss_kb=").next().unwrap().trim().parse().unwrap();
    assert!(kb < 200_000, "{kb} KB peak for a 1 MB labels file");
}

#[test]
fn a_closed_stdout_ends_training_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("pipe.ckpt");
    let mut child = Command::new(tailor_bin())
        .args(["train", "--hidden", "16", "--epochs", "3", "--train-limit", "2000", "--log-every", "1"])
        .args(["--threads", "1", "--out", s(&ck)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: one line, then the pipe is closed.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(first.starts_with("tailor train"), "{first}");
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    let st = out.status;
    const SIGPIPE: i32 = 13;
    assert!(st.code() == Some(0) || st.signal() == Some(SIGPIPE), "{st}: {stderr}");
    if ck.exists() {
        tailor::checkpoint::load(&ck).expect("the checkpoint is whole");
    }
    assert!(temp_files(dir.path()).is_empty());
}

/// Sends `sig` to `child` with kill(1): the tests use no libc of their own.
fn kill(child: &Child, sig: &str) {
    let st = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap();
    assert!(st.success());
}

/// SIGTERM mid-run: the step finishes, a resumable checkpoint is written,
/// the exit status is 143, and resuming gives the uninterrupted run's bytes.
#[test]
fn sigterm_during_training_saves_a_checkpoint_that_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "--optimizer",
        "adam",
        "--shuffle",
        "true",
        "--train-limit",
        "6000",
        "--threads",
        "1",
        "--hidden",
        "64",
        "--batch-size",
        "16",
        "--log-every",
        "1",
    ];
    let full = dir.path().join("full.ckpt");
    let mut a = vec!["train", "--epochs", "3", "--out", s(&full)];
    a.extend(common);
    tailor_json(&a);

    for (sig, code) in [("TERM", 143), ("INT", 130)] {
        let part = dir.path().join(format!("part-{sig}.ckpt"));
        let mut a = vec!["train", "--epochs", "3", "--out", s(&part)];
        a.extend(common);
        interrupt_in_epoch_2(&a, sig, code);
        let c = tailor::checkpoint::load(&part).unwrap();
        eprintln!("SIG{sig}: stopped after epoch {} + {} batches", c.meta.epoch, c.batch);
        assert!(c.meta.epoch >= 1 && c.meta.epoch < 3, "stopped at epoch {}", c.meta.epoch);
        let mut r = vec!["train", "--resume", s(&part), "--epochs", "3", "--threads", "1", "--train-limit", "6000"];
        r.push("--json");
        let o = tailor(&r);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            std::fs::read(&part).unwrap() == std::fs::read(&full).unwrap(),
            "SIG{sig}: interrupted + resumed differs from the uninterrupted run"
        );
        assert!(temp_files(dir.path()).is_empty());
    }
}

/// Runs `tailor args` (which must log every step) and sends it `sig` a few
/// steps into the second epoch; checks the exit status `code` and that it
/// says how to resume.
fn interrupt_in_epoch_2(args: &[&str], sig: &str, code: i32) {
    let mut child =
        Command::new(tailor_bin()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // stdout is read to its end (a closed pipe would end tailor with
    // SIGPIPE instead); the lines come through a channel.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let _ = tx.send(l.unwrap());
        }
    });
    // After the first epoch's summary, a few steps into the second.
    while !rx.recv().expect("training ended before epoch 1").starts_with("epoch 1:") {}
    for _ in 0..5 {
        rx.recv().unwrap();
    }
    kill(&child, sig);
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "SIG{sig}: {}\n{stderr}", out.status);
    assert!(stderr.contains("--resume"), "{stderr}");
}

/// The default recipe (its optimizer, cosine schedule, shuffling,
/// normalization and the default 784-512-512-10 model) on 2 threads:
/// SIGTERM in epoch 2 of 2, then `--resume`, gives the uninterrupted run's
/// checkpoint byte for byte (a cosine rate depends on the epoch, and the
/// pool on 2 threads must not change a bit).
#[test]
fn default_recipe_on_2_threads_resumes_exactly_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let common =
        ["--recipe", "default", "--epochs", "2", "--train-limit", "3000", "--threads", "2", "--log-every", "1"];
    let full = dir.path().join("full.ckpt");
    let mut a = vec!["train", "--out", s(&full)];
    a.extend(common);
    tailor_json(&a);
    let part = dir.path().join("part.ckpt");
    let mut a = vec!["train", "--out", s(&part)];
    a.extend(common);
    interrupt_in_epoch_2(&a, "TERM", 143);
    let c = tailor::checkpoint::load(&part).unwrap();
    eprintln!("default recipe: stopped after epoch {} + {} batches", c.meta.epoch, c.batch);
    assert!(c.meta.epoch == 1 && c.batch > 0, "stopped at epoch {} batch {}", c.meta.epoch, c.batch);
    assert!(matches!(c.meta.schedule, tailor_core::optim::Schedule::Cosine { .. }), "{:?}", c.meta.schedule);
    let r = ["train", "--resume", s(&part), "--threads", "2", "--train-limit", "3000", "--json"];
    let o = tailor(&r);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&part).unwrap() == std::fs::read(&full).unwrap(),
        "default recipe: SIGTERM + --resume differs from the uninterrupted run"
    );
    assert!(temp_files(dir.path()).is_empty());
}

/// `tailor device`'s QEMU children, found through /proc.
fn qemu_children(pid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // comm is in parentheses and may hold spaces: fields after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let ppid = rest.split_whitespace().nth(1).and_then(|x| x.parse::<u32>().ok());
        if ppid == Some(pid) && head.contains("qemu-system") {
            v.push(p);
        }
    }
    v
}

fn alive(pid: u32) -> bool {
    // A zombie is dead: only its exit status remains.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn killed_device_runs_leave_no_qemu_and_no_fifo_dir() {
    if Command::new("qemu-system-arm").arg("--version").output().is_err() {
        eprintln!("SKIPPED: qemu-system-arm is not installed");
        return;
    }
    let elf = tailor::device::build_firmware().unwrap_or_else(|e| panic!("{e:#}")).0;
    let model = tailor_e2e::workspace_root().join("firmware-sim/models/default.q8");
    // Over semihosting a QEMU left alone also ends when its FIFOs close;
    // over the UART socket it waits for the next connection forever, so
    // only the parent-death signal ends it after SIGKILL.
    for (sig, transport) in [("TERM", "semihosting"), ("INT", "uart"), ("KILL", "semihosting"), ("KILL", "uart")] {
        let child = Command::new(tailor_bin())
            .args(["device", s(&model), "--limit", "10000", "--firmware", s(&elf), "--transport", transport])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        let qemu = loop {
            let q = qemu_children(child.id());
            if !q.is_empty() {
                break q;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "QEMU never started");
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(300));
        let dirs = fifo_dirs(child.id());
        assert!(!dirs.is_empty(), "no FIFO directory for {}", child.id());
        kill(&child, sig);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let t = Instant::now();
        while qemu.iter().any(|&q| alive(q)) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!qemu.iter().any(|&q| alive(q)), "SIG{sig} ({transport}): QEMU {qemu:?} outlived tailor");
        if sig == "KILL" {
            // Nothing ran in tailor to remove it; the next run does.
            let e = tailor_fails(&["device", s(&model), "--limit", "1", "--timeout", "1e-9", "--firmware", s(&elf)]);
            assert!(!e.is_empty());
        }
        for d in &dirs {
            assert!(!d.exists(), "SIG{sig}: {} left behind", d.display());
        }
    }
}

fn fifo_dirs(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("tailor-qemu-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}
