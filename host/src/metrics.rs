//! `tailor train --metrics FILE.csv`: one row per epoch, for pandas and
//! spreadsheets.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::commands::EpochReport;

/// One CSV row; the column names are the header.
#[derive(Serialize)]
struct Row {
    epoch: u32,
    lr: f32,
    train_loss: f32,
    test_loss: f64,
    test_accuracy: f64,
    seconds: f64,
}

/// The CSV text of `history`. Numbers are written in their shortest form
/// that reads back to the same value, as the JSON's are, so the two agree
/// exactly.
pub fn csv(history: &[EpochReport]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for e in history {
        w.serialize(Row {
            epoch: e.epoch,
            lr: e.lr,
            train_loss: e.train_loss,
            test_loss: e.test_avg_loss,
            test_accuracy: e.test_accuracy,
            seconds: e.train_seconds,
        })?;
    }
    w.into_inner().context("writing metrics CSV")
}

/// Writes [`csv`] of `history` to `path` atomically, never over one of
/// `inputs` (the run's data and checkpoint) or a special file.
pub fn write(path: &Path, history: &[EpochReport], inputs: &[std::path::PathBuf]) -> Result<()> {
    crate::output::write(path, &csv(history)?, inputs).with_context(|| format!("--metrics {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_epoch_that_reads_back_exactly() {
        let h: Vec<EpochReport> = (1..=3)
            .map(|e| EpochReport {
                epoch: e,
                lr: 0.001 / 3.0 * e as f32,
                train_loss: 0.1 + 1.0 / (7.0 * e as f32),
                test_accuracy: 0.8123 + e as f64 * 1e-4,
                test_avg_loss: 1.0 / 3.0 + e as f64,
                train_seconds: 2.7057175989999998,
            })
            .collect();
        let text = String::from_utf8(csv(&h).unwrap()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("epoch,lr,train_loss,test_loss,test_accuracy,seconds"));
        for (line, e) in lines.zip(&h) {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f[0].parse::<u32>().unwrap(), e.epoch);
            assert_eq!(f[1].parse::<f32>().unwrap(), e.lr);
            assert_eq!(f[2].parse::<f32>().unwrap(), e.train_loss);
            assert_eq!(f[3].parse::<f64>().unwrap(), e.test_avg_loss);
            assert_eq!(f[4].parse::<f64>().unwrap(), e.test_accuracy);
            assert_eq!(f[5].parse::<f64>().unwrap(), e.train_seconds);
        }
        assert_eq!(text.lines().count(), 4);
    }
}
