//! Tests of the data module, on small generated files in temporary
//! directories (never the real dataset, except `idx::real_fashion_mnist`).

mod csv;
mod idx;
mod locate;
mod norm;
mod npy;
mod order;

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;

/// A small valid byte split: sample `i` is filled with `i * 7` (mod 256),
/// label `i % 10`.
fn make_split(n: u32, width: usize) -> Split {
    let features = (0..n as usize * width).map(|k| ((k / width) * 7 % 256) as u8).collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Split::new(Features::U8(features), labels, width)
}

fn bytes(s: &Split) -> &[u8] {
    s.features.as_u8().unwrap()
}

/// The four Fashion-MNIST-named files, gzipped, with `rows`×`cols` images.
fn write_idx_dataset(dir: &Path, train: &Split, test: &Split, rows: u32, cols: u32) {
    write_idx_images(&dir.join(TRAIN_IMAGES), train.len() as u32, rows, cols, bytes(train)).unwrap();
    write_idx_labels(&dir.join(TRAIN_LABELS), &train.labels).unwrap();
    write_idx_images(&dir.join(TEST_IMAGES), test.len() as u32, rows, cols, bytes(test)).unwrap();
    write_idx_labels(&dir.join(TEST_LABELS), &test.labels).unwrap();
}

/// `load` of `--data dir` with `$TAILOR_DATA` unset.
fn load_dir(dir: &Path) -> Result<Dataset, DataError> {
    load_with(&DataArgs::from_dir(Some(dir)), None)
}

/// Write `bytes` to `name` in a fresh tempdir.
fn file(name: &str, bytes: &[u8]) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// The message of `e` contains every needle.
#[track_caller]
fn assert_says(e: &DataError, needles: &[&str]) {
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "{n:?} not in message {msg:?}");
    }
}
