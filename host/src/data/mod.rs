//! The model's input data: users bring their own (IDX, CSV or NPY), and
//! Fashion-MNIST is what is used when they bring none.
//!
//! [`load`] finds the files ([`locate`]), reads both splits in parallel,
//! checks that they agree, and names the classes. Samples stay raw (`u8` or
//! `f32`) in memory and are normalized one batch at a time ([`norm`]).

pub mod csv;
mod error;
pub mod idx;
mod input;
pub mod locate;
pub mod norm;
pub mod npy;
mod order;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

pub use error::{DataError, Loc};
pub use idx::{write_gz_atomic, write_idx_images, write_idx_labels, IMAGES_MAGIC, LABELS_MAGIC};
pub use locate::{DEFAULT_DIRS, DOWNLOAD_BASE, ENV_VAR, FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
pub use norm::{fill_batch, fill_batch_par, Norm, U8_SCALE};
pub use order::EpochOrder;

/// Fashion-MNIST's features per sample (28×28).
pub const FASHION_MNIST_PIXELS: usize = 784;
pub const CLASS_NAMES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
/// Class names, one per line, read from beside the data when present.
pub const CLASSES_FILE: &str = "classes.txt";

/// Raw features of one split, row-major `[n][features]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Features {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

impl Features {
    /// Number of values (samples × width).
    pub fn len(&self) -> usize {
        match self {
            Features::U8(v) => v.len(),
            Features::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_u8(&self) -> Option<&[u8]> {
        match self {
            Features::U8(v) => Some(v),
            Features::F32(_) => None,
        }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Features::F32(v) => Some(v),
            Features::U8(_) => None,
        }
    }

    /// `"u8"` or `"f32"`, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Features::U8(_) => "u8",
            Features::F32(_) => "f32",
        }
    }
}

/// One split: `len()` samples of `width` features, and the class of each.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub features: Features,
    pub labels: Vec<u8>,
    /// Features per sample.
    pub width: usize,
}

impl Split {
    /// Panics unless `features` holds `labels.len()` rows of `width`.
    pub fn new(features: Features, labels: Vec<u8>, width: usize) -> Split {
        assert_eq!(
            features.len(),
            labels.len() * width,
            "Split::new: features are not {} rows of {width}",
            labels.len()
        );
        Split { features, labels, width }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Row `i` as bytes (`None` for `f32` data). Panics if `i >= len()`
    /// (an indexing bug, like `v[i]`).
    pub fn row_u8(&self, i: usize) -> Option<&[u8]> {
        self.features.as_u8().map(|v| &v[i * self.width..(i + 1) * self.width])
    }

    /// Row `i` as `f32` (`None` for `u8` data). Panics if `i >= len()`.
    pub fn row_f32(&self, i: usize) -> Option<&[f32]> {
        self.features.as_f32().map(|v| &v[i * self.width..(i + 1) * self.width])
    }

    /// Keep only the first `n` samples.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        match &mut self.features {
            Features::U8(v) => v.truncate(n * self.width),
            Features::F32(v) => v.truncate(n * self.width),
        }
        self.labels.truncate(n);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Idx,
    Csv,
    Npy,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Idx => "IDX",
            Kind::Csv => "CSV",
            Kind::Npy => "NPY",
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The directory or files read, for messages.
    pub source: String,
    pub kind: Kind,
    pub train: Split,
    pub test: Split,
    /// Features per sample (the width of both splits).
    pub features: usize,
    /// `class_names.len()`: the names given, else the largest label + 1.
    pub classes: usize,
    pub class_names: Vec<String>,
    /// The data is Fashion-MNIST itself (recognized by its shape and first
    /// labels, wherever it was read from).
    pub fashion_mnist: bool,
    /// Every file read (features, labels), so that no output replaces one.
    pub files: Vec<PathBuf>,
}

impl Dataset {
    /// The normalization to train with when the user picks none:
    /// Fashion-MNIST's published statistics for Fashion-MNIST, one mean/std
    /// over all pixels for other byte (image) data, and per-feature
    /// standardization for `f32` (tabular) data, whose columns have
    /// unrelated units.
    pub fn default_norm(&self) -> Norm {
        match &self.train.features {
            _ if self.fashion_mnist => Norm::fashion_mnist(),
            Features::U8(_) => Norm::per_tensor_stats(&self.train),
            Features::F32(_) => Norm::standardize(&self.train),
        }
    }
}

/// Where the data comes from, as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataArgs {
    /// `--data DIR`: IDX, CSV or NPY files with the standard names.
    pub data: Option<PathBuf>,
    /// `--train FILE`: a `.csv`, a `NAME_x.npy` (with `NAME_y.npy` beside
    /// it) or an IDX images file (labels: "images-idx3" → "labels-idx1").
    pub train: Option<PathBuf>,
    /// `--test FILE`, as `train`.
    pub test: Option<PathBuf>,
    /// CSV only: the label column's name (default: the last column).
    pub label_column: Option<String>,
    /// `--classes a,b,c`: class names, index = label.
    pub classes: Option<Vec<String>>,
}

impl DataArgs {
    /// Just `--data DIR` (or nothing).
    pub fn from_dir(dir: Option<&Path>) -> DataArgs {
        DataArgs { data: dir.map(Path::to_path_buf), ..DataArgs::default() }
    }
}

/// Find, read and check the data `args` names (or the default data).
pub fn load(args: &DataArgs) -> Result<Dataset, DataError> {
    load_with(args, std::env::var_os(ENV_VAR))
}

/// The default data (no flags): `$TAILOR_DATA`, then [`DEFAULT_DIRS`].
pub fn load_default() -> Result<Dataset, DataError> {
    load(&DataArgs::default())
}

/// [`load`] with `$TAILOR_DATA`'s value passed in, so tests need not
/// mutate the process environment.
pub fn load_with(args: &DataArgs, env: Option<OsString>) -> Result<Dataset, DataError> {
    let loc = locate::locate_with(args, env)?;
    if args.label_column.is_some() && loc.kind != Kind::Csv {
        return Err(DataError::Args(format!("--label-column applies to CSV data, but {} is {}", loc.source, loc.kind)));
    }
    let names = class_names(args, &loc.dir)?;
    let limit = names.as_ref().map(Vec::len);
    let label_column = args.label_column.as_deref();
    // The train features dominate; the test split is read meanwhile.
    let (train, test) = std::thread::scope(|s| {
        let test = s.spawn(|| read_split(loc.kind, &loc.test, label_column, limit));
        let train = read_split(loc.kind, &loc.train, label_column, limit);
        (train, test.join().expect("reader thread panicked"))
    });
    let (train, test) = (train?, test?);
    let (train_file, test_file) = (loc.train.features.clone(), loc.test.features.clone());
    if train.width != test.width {
        return Err(DataError::WidthMismatch { train_file, train: train.width, test_file, test: test.width });
    }
    if train.features.type_name() != test.features.type_name() {
        let (train, test) = (train.features.type_name(), test.features.type_name());
        return Err(DataError::TypeMismatch { train_file, train, test_file, test });
    }
    let fashion_mnist = names.is_none() && looks_like_fashion_mnist(loc.kind, &train, &test);
    let class_names = match names {
        Some(n) => n,
        None if fashion_mnist => CLASS_NAMES.map(String::from).to_vec(),
        None => {
            let max = train.labels.iter().chain(&test.labels).max().map_or(0, |&m| m as usize + 1);
            (0..max).map(|c| c.to_string()).collect()
        }
    };
    let files = [&loc.train, &loc.test].into_iter().flat_map(|f| [Some(&f.features), f.labels.as_ref()]);
    let mut files: Vec<PathBuf> = files.flatten().cloned().collect();
    files.push(loc.dir.join(CLASSES_FILE));
    Ok(Dataset {
        files,
        source: loc.source,
        kind: loc.kind,
        features: train.width,
        classes: class_names.len(),
        class_names,
        train,
        test,
        fashion_mnist,
    })
}

fn read_split(
    kind: Kind,
    f: &locate::SplitFiles,
    label_column: Option<&str>,
    limit: Option<usize>,
) -> Result<Split, DataError> {
    let labels = || f.labels.as_deref().expect("IDX and NPY splits have a labels file");
    match kind {
        Kind::Idx => idx::read_split(&f.features, labels(), limit),
        Kind::Csv => csv::read_split(&f.features, label_column, limit),
        Kind::Npy => npy::read_split(&f.features, labels(), limit),
    }
}

/// The first labels of Fashion-MNIST's splits: with the sizes, a
/// fingerprint no other dataset will match by accident (MNIST has the
/// same sizes and file names, but other labels).
const FASHION_TRAIN_HEAD: [u8; 10] = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5];
const FASHION_TEST_HEAD: [u8; 10] = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7];

fn looks_like_fashion_mnist(kind: Kind, train: &Split, test: &Split) -> bool {
    kind == Kind::Idx
        && train.width == FASHION_MNIST_PIXELS
        && (train.len(), test.len()) == (60_000, 10_000)
        && train.labels[..10] == FASHION_TRAIN_HEAD
        && test.labels[..10] == FASHION_TEST_HEAD
        && train.labels.iter().chain(&test.labels).all(|&l| l < 10)
}

/// `--classes`, else a `classes.txt` in `dir`, else none.
fn class_names(args: &DataArgs, dir: &Path) -> Result<Option<Vec<String>>, DataError> {
    if let Some(c) = &args.classes {
        return check_class_names("--classes", c.iter().map(|s| s.trim().to_string()).collect()).map(Some);
    }
    let path = dir.join(CLASSES_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io { file: path.clone(), source })?;
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(String::is_empty) {
        names.pop();
    }
    check_class_names(&path.display().to_string(), names).map(Some)
}

fn check_class_names(origin: &str, names: Vec<String>) -> Result<Vec<String>, DataError> {
    let bad = |problem: String| Err(DataError::Classes { origin: origin.to_string(), problem });
    if names.is_empty() || names.len() > 256 {
        return bad(format!("{} class names, expected 1 to 256", names.len()));
    }
    if let Some(k) = names.iter().position(String::is_empty) {
        return bad(format!("class {k} has an empty name"));
    }
    for (k, n) in names.iter().enumerate() {
        if names[..k].contains(n) {
            return bad(format!("class name {n:?} appears twice"));
        }
    }
    Ok(names)
}

/// Every label below `classes`, when class names fix their number.
fn check_labels(file: &Path, labels: &[u8], classes: Option<usize>) -> Result<(), DataError> {
    let Some(k) = classes else { return Ok(()) };
    match labels.iter().position(|&l| l as usize >= k) {
        None => Ok(()),
        Some(i) => Err(DataError::BadLabel {
            file: file.to_path_buf(),
            at: Loc::Index(i),
            column: None,
            value: labels[i].to_string(),
            expected: format!("a class in 0..{k} (one per class name)"),
        }),
    }
}
