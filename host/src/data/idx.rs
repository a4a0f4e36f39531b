//! IDX files (the MNIST format), gzipped or raw, big-endian:
//!
//! ```text
//! images:   magic 0x00000803 (u8, 3 dims), n, rows, cols, n·rows·cols bytes
//! features: magic 0x00000802 (u8, 2 dims), n, width,      n·width bytes
//! labels:   magic 0x00000801 (u8, 1 dim),  n,             n labels
//! ```
//!
//! Every byte of a file is accounted for: a short header, a short body or
//! bytes after the body are errors, never silently accepted.

use std::io::{self, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::input::Input;
use super::{check_labels, DataError, Features, Split};

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// A 2-D `[n, width]` features file, for data that is not an image.
pub const FEATURES_MAGIC: u32 = 0x0000_0802;
pub const LABELS_MAGIC: u32 = 0x0000_0801;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The magic, then the rest of a header of `dims` sizes. The magic is
/// checked first (if at least 4 bytes exist) since "wrong kind of file"
/// says more than "too short".
fn header(r: &mut Input, accept: &[u32], kind: &'static str) -> Result<Vec<u32>, DataError> {
    let mut m = [0u8; 4];
    let got = r.read_full(&mut m)?;
    let magic = be32(&m, 0);
    if got == 4 && !accept.contains(&magic) {
        return Err(DataError::BadMagic { file: r.file.clone(), found: magic, expected: accept[0], kind });
    }
    let dims = if got == 4 { (magic & 0xff) as u64 } else { accept[0] as u64 & 0xff };
    let len = 4 + 4 * dims;
    if got < 4 {
        return Err(DataError::Truncated { file: r.file.clone(), part: "header", expected: len, found: got as u64 });
    }
    let rest = r.header_bytes(4 * dims, "header")?;
    Ok((0..dims as usize).map(|i| be32(&rest, 4 * i)).collect())
}

/// Read an IDX images (3-D) or features (2-D) file: `(n·width row-major
/// bytes, width)`.
pub fn read_images(path: &Path) -> Result<(Vec<u8>, usize), DataError> {
    let mut r = Input::open(path)?;
    let dims = header(&mut r, &[IMAGES_MAGIC, FEATURES_MAGIC], "IDX images")?;
    let (rows, cols) = (dims[1], dims.get(2).copied().unwrap_or(1));
    let width = rows as u64 * cols as u64;
    if width == 0 {
        return Err(DataError::BadDims { file: path.to_path_buf(), rows, cols });
    }
    let width = usize::try_from(width).map_err(|_| DataError::TooLarge { file: path.to_path_buf(), items: width })?;
    Ok((r.body(dims[0] as u64, width)?, width))
}

/// Read an IDX labels file. Any byte is a label; [`read_split`] checks them
/// against the number of classes.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut r = Input::open(path)?;
    let dims = header(&mut r, &[LABELS_MAGIC], "IDX labels")?;
    r.body(dims[0] as u64, 1)
}

/// Read an images file and its labels file into a checked [`Split`];
/// labels must be below `classes` when given.
pub fn read_split(images: &Path, labels: &Path, classes: Option<usize>) -> Result<Split, DataError> {
    let (features, width) = read_images(images)?;
    let l = read_labels(labels)?;
    let n = features.len() / width;
    if n != l.len() {
        return Err(DataError::CountMismatch {
            features_file: images.to_path_buf(),
            samples: n,
            labels_file: labels.to_path_buf(),
            labels: l.len(),
        });
    }
    check_labels(labels, &l, classes)?;
    Ok(Split { features: Features::U8(features), labels: l, width })
}

fn invalid(path: &Path, msg: String) -> DataError {
    DataError::Io { file: path.to_path_buf(), source: io::Error::new(io::ErrorKind::InvalidInput, msg) }
}

/// Write `n` images of `rows`×`cols` (`pixels.len() == n·rows·cols`) as a
/// gzipped IDX file, atomically: a crash leaves the old file or the new
/// one, never half of one.
pub fn write_idx_images(path: &Path, n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Result<(), DataError> {
    let per = rows as u64 * cols as u64;
    if pixels.len() as u64 != n as u64 * per {
        return Err(invalid(path, format!("{} pixel bytes is not {n} images of {rows}x{cols}", pixels.len())));
    }
    let header: Vec<u8> = [IMAGES_MAGIC, n, rows, cols].iter().flat_map(|v| v.to_be_bytes()).collect();
    write_gz_atomic(path, &[&header, pixels])
}

/// Write labels as a gzipped IDX file, atomically. Labels are written as
/// given, so tests can build bad files too.
pub fn write_idx_labels(path: &Path, labels: &[u8]) -> Result<(), DataError> {
    let n = u32::try_from(labels.len()).map_err(|_| invalid(path, "more than 2^32 labels".into()))?;
    let header: Vec<u8> = [LABELS_MAGIC, n].iter().flat_map(|v| v.to_be_bytes()).collect();
    write_gz_atomic(path, &[&header, labels])
}

/// Gzip the concatenation of `parts` and write it to `path` as every output
/// is written ([`crate::output::write`]: a synced `.NAME.PID.tmp` renamed
/// over it, never over a special file).
pub fn write_gz_atomic(path: &Path, parts: &[&[u8]]) -> Result<(), DataError> {
    let io_err = |source| DataError::Io { file: path.to_path_buf(), source };
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    for part in parts {
        gz.write_all(part).map_err(io_err)?;
    }
    let bytes = gz.finish().map_err(io_err)?;
    crate::output::write(path, &bytes, &[]).map_err(|e| io_err(io::Error::other(format!("{e:#}"))))
}
