//! Shared helpers for the end-to-end tests in `tests/tests/`.
//!
//! The tests drive the real `tailor` binary. They use `$TAILOR_BIN` when set
//! (the README's test command builds it and sets it), else
//! `target/release/tailor`, building it first when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

pub fn tailor_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("TAILOR_BIN") {
            return PathBuf::from(p);
        }
        let root = workspace_root();
        let bin = root.join("target/release/tailor");
        if !bin.exists() {
            let st = Command::new(env!("CARGO"))
                .args(["build", "--release", "-p", "tailor"])
                .current_dir(&root)
                .status()
                .expect("running cargo build");
            assert!(st.success(), "cargo build --release -p tailor failed");
        }
        bin
    })
    .clone()
}

/// Runs `tailor args…` and returns its output, whatever the exit status.
pub fn tailor(args: &[&str]) -> Output {
    Command::new(tailor_bin()).args(args).output().expect("starting tailor")
}

/// Runs `tailor args… --json`, requires success, parses the JSON object on
/// the last line of stdout.
pub fn tailor_json(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = tailor(&a);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tailor {args:?} failed ({}):\n{stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("tailor {args:?}: last stdout line is not JSON ({e}): {last:?}"))
}

/// Runs `tailor args…`, requires a clean failure (exit 1, an `error:` line,
/// no panic) and returns stderr.
pub fn tailor_fails(args: &[&str]) -> String {
    let out = tailor(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "tailor {args:?} should fail cleanly, got {}:\n{stderr}", out.status);
    assert!(!stderr.contains("panicked"), "tailor {args:?} panicked:\n{stderr}");
    assert!(stderr.contains("error:"), "no error line:\n{stderr}");
    stderr
}
