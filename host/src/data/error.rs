//! [`DataError`]: everything that can go wrong finding or reading data.
//! Each message names the file (or the flag) and says what was expected and
//! what was found, so a user can fix their data without reading this code.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::locate::not_found_message;

/// Where a bad value sits. CSV errors give the line an editor shows; the
/// binary formats give the 0-based sample index, which is what `numpy`
/// users index with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    Line(u64),
    Index(usize),
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Line(l) => write!(f, "line {l}"),
            Loc::Index(i) => write!(f, "index {i}"),
        }
    }
}

fn in_column(column: &Option<String>) -> String {
    column.as_ref().map_or_else(String::new, |c| format!(", column {c:?}"))
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", .file.display())]
    Io { file: PathBuf, source: io::Error },
    /// A `.gz` file that does not start with the gzip magic `1f 8b`.
    #[error("{}: not a gzip file (starts with {found:02x?}, expected [1f, 8b])", .file.display())]
    NotGzip { file: PathBuf, found: Vec<u8> },
    /// The gzip stream is corrupt or cut short.
    #[error("{}: gzip decode failed: {source}", .file.display())]
    Gzip { file: PathBuf, source: io::Error },
    #[error("{}: bad magic {found:#010x}, expected {expected:#010x} ({kind})", .file.display())]
    BadMagic { file: PathBuf, found: u32, expected: u32, kind: &'static str },
    /// An IDX features file with a zero dimension (no features per sample).
    #[error("{}: samples are {rows}x{cols}, expected nonzero dimensions", .file.display())]
    BadDims { file: PathBuf, rows: u32, cols: u32 },
    /// Fewer bytes than the header, or than the header promises.
    #[error("{}: truncated {part}: expected {expected} bytes, found {found}", .file.display())]
    Truncated { file: PathBuf, part: &'static str, expected: u64, found: u64 },
    /// Bytes after the items the header announces.
    #[error("{}: {extra} trailing bytes after the {items} items the header announces (expected {expected} bytes in total)", .file.display())]
    TrailingData { file: PathBuf, items: u64, expected: u64, extra: u64 },
    /// The header announces more data than this machine can hold.
    #[error("{}: header announces {items} items, too large to allocate", .file.display())]
    TooLarge { file: PathBuf, items: u64 },
    /// A label that is not a class: negative, not an integer, ≥ 256, or
    /// not below the number of class names given.
    #[error("{}: label {value} at {at}{}, expected {expected}", .file.display(), in_column(.column))]
    BadLabel { file: PathBuf, at: Loc, column: Option<String>, value: String, expected: String },
    #[error("{}: {value} at {at}, column {column:?}: expected a finite number (NaN and infinities are not allowed)", .file.display())]
    NotFinite { file: PathBuf, at: Loc, column: String, value: String },
    #[error("{}: {value:?} at line {line}, column {column:?}: expected a number", .file.display())]
    NotANumber { file: PathBuf, line: u64, column: String, value: String },
    #[error("{}: line {line} has {found} fields, expected {expected} like the header", .file.display())]
    Ragged { file: PathBuf, line: u64, expected: usize, found: usize },
    /// The `csv` crate's own complaint (bad UTF-8, bad quoting, ...).
    #[error("{}: line {line}: {problem}", .file.display())]
    Csv { file: PathBuf, line: u64, problem: String },
    #[error("{}: empty file, expected a header row followed by data rows", .file.display())]
    EmptyFile { file: PathBuf },
    #[error("{}: only a header row, expected data rows after it", .file.display())]
    NoRows { file: PathBuf },
    #[error("{}: bad header: {problem}", .file.display())]
    BadHeader { file: PathBuf, problem: String },
    #[error("{}: no column named {name:?} (--label-column); the columns are {}", .file.display(), .columns.join(", "))]
    UnknownColumn { file: PathBuf, name: String, columns: Vec<String> },
    #[error("{}: not an NPY file (starts with {found:02x?}, expected \\x93NUMPY)", .file.display())]
    NpyMagic { file: PathBuf, found: Vec<u8> },
    #[error("{}: NPY format version {major}.{minor}, expected 1.0, 2.0 or 3.0", .file.display())]
    NpyVersion { file: PathBuf, major: u8, minor: u8 },
    #[error("{}: malformed NPY header: {problem}", .file.display())]
    NpyHeader { file: PathBuf, problem: String },
    #[error("{}: array is in Fortran order, expected C order (save np.ascontiguousarray(a))", .file.display())]
    NpyFortran { file: PathBuf },
    #[error("{}: dtype {found:?}, expected one of {accepted}", .file.display())]
    NpyDtype { file: PathBuf, found: String, accepted: &'static str },
    #[error("{}: shape {shape:?}, expected {expected}", .file.display())]
    BadShape { file: PathBuf, shape: Vec<u64>, expected: &'static str },
    #[error("{} has {samples} samples but {} has {labels} labels, expected equal counts", .features_file.display(), .labels_file.display())]
    CountMismatch { features_file: PathBuf, samples: usize, labels_file: PathBuf, labels: usize },
    #[error("{} has {train} features per sample but {} has {test}, expected the same width", .train_file.display(), .test_file.display())]
    WidthMismatch { train_file: PathBuf, train: usize, test_file: PathBuf, test: usize },
    #[error("{} holds {train} features but {} holds {test}, expected the same type", .train_file.display(), .test_file.display())]
    TypeMismatch { train_file: PathBuf, train: &'static str, test_file: PathBuf, test: &'static str },
    /// Bad class names (`--classes` or a `classes.txt`).
    #[error("{origin}: {problem}")]
    Classes { origin: String, problem: String },
    /// Nothing explicit was given and no default directory holds data;
    /// `searched` says what was wrong with each place, in search order.
    #[error("{}", not_found_message(.searched))]
    NotFound { searched: Vec<String> },
    /// An explicit place (`--data`, `--train`, `$TAILOR_DATA`) lacks its files.
    #[error("{place}: {problem}")]
    Missing { place: String, problem: String },
    /// Flags that do not fit together.
    #[error("{0}")]
    Args(String),
}
