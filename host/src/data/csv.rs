//! CSV files: a header row, numeric feature columns, one integer label
//! column (the last, or the one named by `--label-column`).

use std::path::Path;

use super::{DataError, Features, Loc, Split};

/// Read one CSV split. Labels must be below `classes` when given (and fit a
/// `u8` always).
pub fn read_split(path: &Path, label_column: Option<&str>, classes: Option<usize>) -> Result<Split, DataError> {
    let file = || path.to_path_buf();
    let mut rd = ::csv::ReaderBuilder::new()
        .has_headers(false)
        // Ragged rows get our own message (with the header's count).
        .flexible(true)
        .from_path(path)
        .map_err(|e| csv_err(path, e))?;
    let mut records = rd.records();
    let header = match records.next() {
        None => return Err(DataError::EmptyFile { file: file() }),
        Some(r) => r.map_err(|e| csv_err(path, e))?,
    };
    // Spreadsheets often start a UTF-8 file with a byte-order mark.
    let names: Vec<String> = header.iter().map(|s| s.trim_start_matches('\u{feff}').trim().to_string()).collect();
    check_header(path, &names)?;
    let label = match label_column {
        None => names.len() - 1,
        Some(name) => names.iter().position(|c| c == name).ok_or_else(|| DataError::UnknownColumn {
            file: file(),
            name: name.to_string(),
            columns: names.clone(),
        })?,
    };
    let width = names.len() - 1;
    let limit = classes.unwrap_or(256);
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for rec in records {
        let rec = rec.map_err(|e| csv_err(path, e))?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.len() != names.len() {
            return Err(DataError::Ragged { file: file(), line, expected: names.len(), found: rec.len() });
        }
        for (k, cell) in rec.iter().enumerate() {
            let cell = cell.trim();
            if k == label {
                labels.push(parse_label(path, line, &names[k], cell, limit, classes.is_some())?);
                continue;
            }
            let column = || names[k].clone();
            let v: f32 = cell.parse().map_err(|_| DataError::NotANumber {
                file: file(),
                line,
                column: column(),
                value: cell.to_string(),
            })?;
            if !v.is_finite() {
                return Err(DataError::NotFinite {
                    file: file(),
                    at: Loc::Line(line),
                    column: column(),
                    value: cell.into(),
                });
            }
            features.push(v);
        }
    }
    if labels.is_empty() {
        return Err(DataError::NoRows { file: file() });
    }
    Ok(Split { features: Features::F32(features), labels, width })
}

fn csv_err(path: &Path, e: ::csv::Error) -> DataError {
    let line = e.position().map_or(0, |p| p.line());
    let problem = e.to_string();
    match e.into_kind() {
        ::csv::ErrorKind::Io(source) => DataError::Io { file: path.to_path_buf(), source },
        _ => DataError::Csv { file: path.to_path_buf(), line, problem },
    }
}

fn check_header(path: &Path, names: &[String]) -> Result<(), DataError> {
    let bad = |problem: String| Err(DataError::BadHeader { file: path.to_path_buf(), problem });
    if names.len() < 2 {
        return bad(format!("{} column(s), expected at least one feature column and a label column", names.len()));
    }
    if let Some(k) = names.iter().position(String::is_empty) {
        return bad(format!("column {} has no name", k + 1));
    }
    for (k, n) in names.iter().enumerate() {
        if names[..k].contains(n) {
            return bad(format!("column name {n:?} appears twice"));
        }
    }
    Ok(())
}

fn parse_label(path: &Path, line: u64, column: &str, cell: &str, limit: usize, named: bool) -> Result<u8, DataError> {
    let expected = if named {
        format!("an integer class in 0..{limit} (one per class name)")
    } else {
        "an integer class in 0..=255".to_string()
    };
    match cell.parse::<i64>() {
        Ok(v) if (0..limit as i64).contains(&v) => Ok(v as u8),
        _ => Err(DataError::BadLabel {
            file: path.to_path_buf(),
            at: Loc::Line(line),
            column: Some(column.to_string()),
            value: format!("{cell:?}"),
            expected,
        }),
    }
}
