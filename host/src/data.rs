//! Fashion-MNIST IDX loading and the DataLoader-like batch stream.
//!
//! The dataset stays as raw `u8` pixels (55 MB for both splits): the RSS
//! budget is 96 MiB, so an `f32` copy (220 MB) is out of the question. Pixels
//! become `f32` one batch at a time in [`fill_batch`], with the same
//! arithmetic as torchvision's `ToTensor` + `Normalize`.
//!
//! IDX files are gzip-compressed, big-endian:
//!
//! ```text
//! images: magic 0x00000803 (u8, 3 dims), n: u32, rows: u32 (28), cols: u32 (28), n·784 pixels
//! labels: magic 0x00000801 (u8, 1 dim),  n: u32, n labels (0..10)
//! ```
//!
//! Every byte of a file is accounted for: a short header, a short body or
//! bytes after the body are errors, never silently accepted.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use tailor_core::rng::Rng;

pub const IMAGE_ROWS: usize = 28;
pub const IMAGE_COLS: usize = 28;
pub const IMAGE_PIXELS: usize = IMAGE_ROWS * IMAGE_COLS;
pub const NUM_CLASSES: usize = 10;
pub const CLASS_NAMES: [&str; NUM_CLASSES] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";
/// The four files a data directory must hold.
pub const FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];
/// Where Zalando publishes the files (append a name from [`FILES`]).
pub const DOWNLOAD_BASE: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
/// Environment variable naming a data directory (after `--data`).
pub const ENV_VAR: &str = "TAILOR_DATA";
/// Directories searched after `--data` and `$TAILOR_DATA`, in order.
pub const DEFAULT_DIRS: [&str; 2] = ["./data/fashion-mnist", "/usr/share/datasets/fashion-mnist"];

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_HEADER: usize = 16;
const LABELS_HEADER: usize = 8;

/// Everything that can go wrong finding or reading the dataset. Each message
/// names the file and says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", .file.display())]
    Io { file: PathBuf, source: io::Error },
    /// The file does not start with the gzip magic `1f 8b`.
    #[error("{}: not a gzip file (starts with {found:02x?}, expected [1f, 8b])", .file.display())]
    NotGzip { file: PathBuf, found: Vec<u8> },
    /// The gzip stream is corrupt or cut short.
    #[error("{}: gzip decode failed: {source}", .file.display())]
    Gzip { file: PathBuf, source: io::Error },
    #[error("{}: bad magic {found:#010x}, expected {expected:#010x} ({kind})", .file.display())]
    BadMagic { file: PathBuf, found: u32, expected: u32, kind: &'static str },
    #[error("{}: images are {rows}x{cols}, expected {IMAGE_ROWS}x{IMAGE_COLS}", .file.display())]
    BadDims { file: PathBuf, rows: u32, cols: u32 },
    /// Fewer (decompressed) bytes than the header, or than the header promises.
    #[error("{}: truncated {part}: expected {expected} bytes, found {found}", .file.display())]
    Truncated { file: PathBuf, part: &'static str, expected: u64, found: u64 },
    /// Bytes after the `n` items the header announces.
    #[error("{}: {extra} trailing bytes after the {items} items the header announces (expected {expected} bytes in total)", .file.display())]
    TrailingData { file: PathBuf, items: u32, expected: u64, extra: u64 },
    /// The header announces more data than this machine can hold.
    #[error("{}: header announces {items} items, too large to allocate", .file.display())]
    TooLarge { file: PathBuf, items: u32 },
    #[error("{}: label {label} at index {index}, expected a class in 0..{NUM_CLASSES}", .file.display())]
    BadLabel { file: PathBuf, index: usize, label: u8 },
    #[error("{} has {images} images but {} has {labels} labels, expected equal counts", .images_file.display(), .labels_file.display())]
    CountMismatch { images_file: PathBuf, images: usize, labels_file: PathBuf, labels: usize },
    /// No searched directory holds all four files; `searched` says what was
    /// wrong with each place, in search order.
    #[error("{}", not_found_message(.searched))]
    NotFound { searched: Vec<String> },
}

fn not_found_message(searched: &[String]) -> String {
    let mut s =
        format!("Fashion-MNIST not found: no directory holds all of {}. Searched, in order:\n", FILES.join(", "));
    for place in searched {
        s.push_str("  ");
        s.push_str(place);
        s.push('\n');
    }
    s.push_str(
        "Get the files with `apt-get install dataset-fashion-mnist` (Debian), \
         or download them into ./data/fashion-mnist (or any DIR, then pass --data DIR or set $TAILOR_DATA):\n",
    );
    for f in FILES {
        s.push_str("  ");
        s.push_str(DOWNLOAD_BASE);
        s.push_str(f);
        s.push('\n');
    }
    s.pop();
    s
}

/// One split: `images` holds `len()` row-major 28×28 images, `labels` the
/// class of each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i`. Panics if `i >= len()` (an indexing bug, like `v[i]`).
    pub fn image(&self, i: usize) -> &[u8; IMAGE_PIXELS] {
        let start = i * IMAGE_PIXELS;
        self.images[start..start + IMAGE_PIXELS].try_into().expect("slice is IMAGE_PIXELS long")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// The directory the files were read from (to tell the user).
    pub dir: PathBuf,
    pub train: Split,
    pub test: Split,
}

/// The directories to search, in order, each with how to describe it.
fn candidates(explicit: Option<&Path>, env: Option<OsString>) -> Vec<(String, Option<PathBuf>)> {
    let mut c = Vec::with_capacity(2 + DEFAULT_DIRS.len());
    if let Some(dir) = explicit {
        c.push((format!("--data {}", dir.display()), Some(dir.to_path_buf())));
    }
    match env.filter(|v| !v.is_empty()) {
        Some(v) => {
            let dir = PathBuf::from(v);
            c.push((format!("${ENV_VAR}={}", dir.display()), Some(dir)));
        }
        None => c.push((format!("${ENV_VAR}"), None)),
    }
    for d in DEFAULT_DIRS {
        c.push((d.to_string(), Some(PathBuf::from(d))));
    }
    c
}

/// The first candidate holding all four files, or a `NotFound` that says
/// why each one was passed over.
fn locate_in(candidates: Vec<(String, Option<PathBuf>)>) -> Result<PathBuf, DataError> {
    let mut searched = Vec::with_capacity(candidates.len());
    for (place, dir) in candidates {
        let Some(dir) = dir else {
            searched.push(format!("{place}: not set"));
            continue;
        };
        if !dir.is_dir() {
            searched.push(format!("{place}: not a directory"));
            continue;
        }
        let missing: Vec<&str> = FILES.into_iter().filter(|f| !dir.join(f).is_file()).collect();
        if missing.is_empty() {
            return Ok(dir);
        }
        searched.push(format!("{place}: missing {}", missing.join(", ")));
    }
    Err(DataError::NotFound { searched })
}

/// The data directory: `explicit` (`--data DIR`), then `$TAILOR_DATA`, then
/// [`DEFAULT_DIRS`]; the first that holds all four [`FILES`] wins.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, DataError> {
    locate_in(candidates(explicit, std::env::var_os(ENV_VAR)))
}

/// [`locate`], then read and check all four files (in parallel: the train
/// images dominate, so this takes about as long as decompressing them).
pub fn load(explicit: Option<&Path>) -> Result<Dataset, DataError> {
    let dir = locate(explicit)?;
    load_dir(&dir)
}

/// Read and check the four files in `dir`.
pub fn load_dir(dir: &Path) -> Result<Dataset, DataError> {
    let p = |f: &str| dir.join(f);
    let (train, test) = std::thread::scope(|s| {
        let train_images = s.spawn(|| read_images(&p(TRAIN_IMAGES)));
        let test = s.spawn(|| read_split(&p(TEST_IMAGES), &p(TEST_LABELS)));
        let train_labels = read_labels(&p(TRAIN_LABELS));
        let train_images = train_images.join().expect("reader thread panicked");
        let test = test.join().expect("reader thread panicked");
        (split(&p(TRAIN_IMAGES), train_images, &p(TRAIN_LABELS), train_labels), test)
    });
    Ok(Dataset { dir: dir.to_path_buf(), train: train?, test: test? })
}

/// Read an images file and its labels file into a checked [`Split`].
pub fn read_split(images: &Path, labels: &Path) -> Result<Split, DataError> {
    split(images, read_images(images), labels, read_labels(labels))
}

fn split(
    images_file: &Path,
    images: Result<Vec<u8>, DataError>,
    labels_file: &Path,
    labels: Result<Vec<u8>, DataError>,
) -> Result<Split, DataError> {
    let (images, labels) = (images?, labels?);
    let n = images.len() / IMAGE_PIXELS;
    if n != labels.len() {
        return Err(DataError::CountMismatch {
            images_file: images_file.to_path_buf(),
            images: n,
            labels_file: labels_file.to_path_buf(),
            labels: labels.len(),
        });
    }
    Ok(Split { images, labels })
}

/// Read a gzipped IDX images file: `n·784` row-major pixels (`n` is the
/// length / [`IMAGE_PIXELS`]).
pub fn read_images(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut r = IdxReader::open(path)?;
    let header = r.header::<IMAGES_HEADER>(IMAGES_MAGIC, "IDX images")?;
    let n = be32(&header, 4);
    let (rows, cols) = (be32(&header, 8), be32(&header, 12));
    if (rows as usize, cols as usize) != (IMAGE_ROWS, IMAGE_COLS) {
        return Err(DataError::BadDims { file: path.to_path_buf(), rows, cols });
    }
    r.body(n, IMAGE_PIXELS)
}

/// Read a gzipped IDX labels file; every label must be a class in `0..10`.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut r = IdxReader::open(path)?;
    let header = r.header::<LABELS_HEADER>(LABELS_MAGIC, "IDX labels")?;
    let labels = r.body(be32(&header, 4), 1)?;
    if let Some(index) = labels.iter().position(|&l| l as usize >= NUM_CLASSES) {
        return Err(DataError::BadLabel { file: path.to_path_buf(), index, label: labels[index] });
    }
    Ok(labels)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A decompressing reader that knows its file name and how many
/// decompressed bytes it has delivered, for error messages.
struct IdxReader {
    file: PathBuf,
    gz: GzDecoder<BufReader<File>>,
    header_len: usize,
}

impl IdxReader {
    fn open(path: &Path) -> Result<Self, DataError> {
        let file = path.to_path_buf();
        let f = File::open(path).map_err(|source| DataError::Io { file: file.clone(), source })?;
        // 256 KiB: few syscalls for a 26 MB file, negligible memory.
        let mut br = BufReader::with_capacity(256 << 10, f);
        let start = br.fill_buf().map_err(|source| DataError::Io { file: file.clone(), source })?;
        if start.len() < 2 || start[..2] != [0x1f, 0x8b] {
            let found = start[..start.len().min(2)].to_vec();
            return Err(DataError::NotGzip { file, found });
        }
        Ok(IdxReader { file, gz: GzDecoder::new(br), header_len: 0 })
    }

    fn gzip_err(&self, source: io::Error) -> DataError {
        DataError::Gzip { file: self.file.clone(), source }
    }

    /// Read up to `buf.len()` bytes; fewer only at the end of the stream.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, DataError> {
        let mut got = 0;
        while got < buf.len() {
            match self.gz.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.gzip_err(e)),
            }
        }
        Ok(got)
    }

    /// The `N`-byte header, after checking its magic. The magic is checked
    /// first (if at least 4 bytes exist) since "wrong kind of file" says
    /// more than "too short".
    fn header<const N: usize>(&mut self, magic: u32, kind: &'static str) -> Result<[u8; N], DataError> {
        let mut h = [0u8; N];
        let got = self.read_full(&mut h)?;
        if got >= 4 && be32(&h, 0) != magic {
            return Err(DataError::BadMagic { file: self.file.clone(), found: be32(&h, 0), expected: magic, kind });
        }
        if got < N {
            return Err(DataError::Truncated {
                file: self.file.clone(),
                part: "header",
                expected: N as u64,
                found: got as u64,
            });
        }
        self.header_len = N;
        Ok(h)
    }

    /// The `n` items of `item_len` bytes after the header, then a check that
    /// nothing follows them. Allocates exactly once, and only as much as the
    /// stream really delivers is ever touched.
    fn body(&mut self, n: u32, item_len: usize) -> Result<Vec<u8>, DataError> {
        let too_large = || DataError::TooLarge { file: self.file.clone(), items: n };
        let len = (n as usize).checked_mul(item_len).ok_or_else(too_large)?;
        let mut body = Vec::new();
        body.try_reserve_exact(len).map_err(|_| too_large())?;
        let got = loop {
            match (&mut self.gz).take(len as u64).read_to_end(&mut body) {
                Ok(_) => break body.len(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.gzip_err(e)),
            }
        };
        let total = (self.header_len + len) as u64;
        if got < len {
            return Err(DataError::Truncated {
                file: self.file.clone(),
                part: "body",
                expected: total,
                found: (self.header_len + got) as u64,
            });
        }
        let extra = io::copy(&mut self.gz, &mut io::sink()).map_err(|e| self.gzip_err(e))?;
        if extra > 0 {
            return Err(DataError::TrailingData { file: self.file.clone(), items: n, expected: total, extra });
        }
        Ok(body)
    }
}

/// Write `n` images (`pixels.len() == n·784`) as a gzipped IDX file,
/// atomically: a crash leaves the old file or the new one, never half of one.
pub fn write_idx_images(path: &Path, n: u32, pixels: &[u8]) -> Result<(), DataError> {
    if pixels.len() as u64 != n as u64 * IMAGE_PIXELS as u64 {
        let msg = format!("{} pixel bytes is not {n} images of {IMAGE_PIXELS}", pixels.len());
        return Err(DataError::Io {
            file: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, msg),
        });
    }
    let mut header = [0u8; IMAGES_HEADER];
    for (i, v) in [IMAGES_MAGIC, n, IMAGE_ROWS as u32, IMAGE_COLS as u32].into_iter().enumerate() {
        header[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    write_gz_atomic(path, &[&header, pixels])
}

/// Write labels as a gzipped IDX file, atomically. Labels are written as
/// given (even ≥ 10), so tests can build bad files too.
pub fn write_idx_labels(path: &Path, labels: &[u8]) -> Result<(), DataError> {
    let n = u32::try_from(labels.len()).map_err(|_| DataError::Io {
        file: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "more than 2^32 labels"),
    })?;
    let mut header = [0u8; LABELS_HEADER];
    header[..4].copy_from_slice(&LABELS_MAGIC.to_be_bytes());
    header[4..].copy_from_slice(&n.to_be_bytes());
    write_gz_atomic(path, &[&header, labels])
}

/// Gzip the concatenation of `parts` into a temporary file next to `path`,
/// sync it, then rename it over `path`.
pub fn write_gz_atomic(path: &Path, parts: &[&[u8]]) -> Result<(), DataError> {
    let io_err = |source| DataError::Io { file: path.to_path_buf(), source };
    let name = path.file_name().ok_or_else(|| io_err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let write = || -> io::Result<()> {
        let mut gz = GzEncoder::new(BufWriter::new(File::create(&tmp)?), Compression::default());
        for part in parts {
            gz.write_all(part)?;
        }
        let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(e)
    })
}

/// Pixel transform: torchvision's `ToTensor` (`x / 255`) followed by
/// `Normalize(mean, std)` (`(x - mean) / std`), in `f32` in that order, so
/// the values are bit-identical to PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pixels {
    pub mean: f32,
    pub std: f32,
}

impl Pixels {
    /// `ToTensor` alone: pixels in `[0, 1]`.
    pub const TO_TENSOR: Pixels = Pixels { mean: 0.0, std: 1.0 };
    /// `Normalize((0.2860,), (0.3530,))`, Fashion-MNIST's training-set
    /// pixel mean and standard deviation.
    pub const FASHION_MNIST: Pixels = Pixels { mean: 0.2860, std: 0.3530 };

    /// The transformed value of one pixel.
    pub fn value(&self, byte: u8) -> f32 {
        (byte as f32 / 255.0 - self.mean) / self.std
    }

    /// [`Self::value`] of every byte; a lookup is cheaper than a division per
    /// pixel when a batch is converted.
    pub fn lut(&self) -> [f32; 256] {
        core::array::from_fn(|b| self.value(b as u8))
    }

    pub fn apply(&self, src: &[u8; IMAGE_PIXELS], dst: &mut [f32; IMAGE_PIXELS]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = self.value(s);
        }
    }
}

/// Sample order for one epoch, like `DataLoader(batch_size, shuffle)` with
/// `drop_last=False`: the last batch may be short (60000 / 64 → 938 batches).
///
/// The shuffle depends only on `(seed, epoch)`, never on earlier epochs, so
/// a run resumed at epoch `e` sees the same order as an uninterrupted one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochOrder {
    order: Vec<u32>,
}

/// SplitMix64's finalizer: a bijection on `u64` that mixes every bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl EpochOrder {
    /// Indices `0..n`, shuffled with a seed derived from `(seed, epoch)` when
    /// `shuffle_seed` is set, in order otherwise.
    ///
    /// Panics if `n` exceeds `u32::MAX` (datasets here are far smaller).
    pub fn new(n: usize, shuffle_seed: Option<u64>, epoch: u32) -> Self {
        let n32 = u32::try_from(n).expect("EpochOrder: more than u32::MAX samples");
        let mut order: Vec<u32> = (0..n32).collect();
        if let Some(seed) = shuffle_seed {
            Rng::new(Self::epoch_seed(seed, epoch)).shuffle(&mut order);
        }
        EpochOrder { order }
    }

    /// The RNG seed for one epoch's shuffle. `mix64` is a bijection, so
    /// different epochs of one run never share a seed, and the XOR with a
    /// mixed epoch keeps epoch `e` of seed `s` unrelated to epoch `e+1` of
    /// seed `s-1` (as `seed + epoch` would not).
    pub fn epoch_seed(seed: u64, epoch: u32) -> u64 {
        mix64(seed ^ mix64(u64::from(epoch) ^ 0x5348_5546_464c_4531))
    }

    /// All indices in this epoch's order.
    pub fn indices(&self) -> &[u32] {
        &self.order
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Consecutive batches of `batch_size` indices; the last one may be
    /// shorter. Panics if `batch_size` is 0 (the CLI rejects it first).
    pub fn batches(&self, batch_size: usize) -> impl ExactSizeIterator<Item = &[u32]> + '_ {
        assert!(batch_size > 0, "EpochOrder::batches: batch_size must be > 0");
        self.order.chunks(batch_size)
    }

    /// How many batches [`Self::batches`] yields for `n` samples (0 if
    /// `batch_size` is 0).
    pub fn num_batches(n: usize, batch_size: usize) -> usize {
        n.checked_div(batch_size).map_or(0, |_| n.div_ceil(batch_size))
    }
}

/// Input normalization `x_k = (raw_k · scale − mean_k) / std_k`, in f32 in
/// that order (for bytes with `scale = 1/255` this is torchvision's
/// `ToTensor` + `Normalize`, bit for bit).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Norm {
    pub scale: f32,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Norm {
    /// One mean and std for every feature.
    pub fn per_tensor(features: usize, scale: f32, mean: f32, std: f32) -> Norm {
        Norm { scale, mean: vec![mean; features], std: vec![std; features] }
    }

    /// `Normalize((0.2860,), (0.3530,))` after `/255`: Fashion-MNIST's
    /// training-set pixel mean and standard deviation.
    pub fn fashion_mnist() -> Norm {
        Norm::per_tensor(IMAGE_PIXELS, 1.0 / 255.0, 0.2860, 0.3530)
    }

    /// The transformed value of feature `k`.
    pub fn value(&self, k: usize, raw: f32) -> f32 {
        (raw * self.scale - self.mean[k]) / self.std[k]
    }
}

/// Fill the first `idx.len()` rows of `x` (row-major, `IMAGE_PIXELS` wide)
/// and `labels` with the normalized images and labels of `split` at `idx`.
///
/// Panics if `x` or `labels` is shorter than `idx`, or an index is out of
/// range: those are bugs in the caller, not bad input.
pub fn fill_batch(split: &Split, idx: &[u32], norm: &Norm, x: &mut [f32], labels: &mut [u8]) {
    fill_batch_par(&tailor_core::par::Serial, split, idx, norm, x, labels)
}

/// [`fill_batch`] with the rows split over `par`'s threads.
pub fn fill_batch_par(
    par: &dyn tailor_core::par::Par,
    split: &Split,
    idx: &[u32],
    norm: &Norm,
    x: &mut [f32],
    labels: &mut [u8],
) {
    let n = idx.len();
    assert!(
        x.len() >= n * IMAGE_PIXELS && labels.len() >= n,
        "fill_batch: {n} indices but room for {} floats and {} labels",
        x.len(),
        labels.len()
    );
    let pixels = Pixels { mean: norm.mean[0], std: norm.std[0] };
    let lut = pixels.lut();
    let rows = tailor_core::par::rows_per_task(n, par.width(), 1);
    par.for_chunks(&mut x[..n * IMAGE_PIXELS], rows * IMAGE_PIXELS, &|t, chunk| {
        for (row, &i) in chunk.chunks_exact_mut(IMAGE_PIXELS).zip(&idx[t * rows..]) {
            for (d, &s) in row.iter_mut().zip(split.image(i as usize)) {
                *d = lut[s as usize];
            }
        }
    });
    for (&i, label) in idx.iter().zip(labels.iter_mut()) {
        *label = split.labels[i as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tempfile::TempDir;

    /// A small valid dataset: image `i` is filled with `i * 7` (mod 256),
    /// label `i % 10`.
    fn make_split(n: u32) -> Split {
        let images = (0..n as usize * IMAGE_PIXELS).map(|k| ((k / IMAGE_PIXELS) * 7 % 256) as u8).collect();
        let labels = (0..n).map(|i| (i % 10) as u8).collect();
        Split { images, labels }
    }

    fn write_dataset(dir: &Path, train: &Split, test: &Split) {
        write_idx_images(&dir.join(TRAIN_IMAGES), train.len() as u32, &train.images).unwrap();
        write_idx_labels(&dir.join(TRAIN_LABELS), &train.labels).unwrap();
        write_idx_images(&dir.join(TEST_IMAGES), test.len() as u32, &test.images).unwrap();
        write_idx_labels(&dir.join(TEST_LABELS), &test.labels).unwrap();
    }

    fn images_header(magic: u32, n: u32, rows: u32, cols: u32) -> Vec<u8> {
        [magic, n, rows, cols].iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    fn labels_header(magic: u32, n: u32) -> Vec<u8> {
        [magic, n].iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    /// Write raw (decompressed) IDX bytes to `name` in a fresh tempdir.
    fn raw_file(name: &str, bytes: &[u8]) -> (TempDir, PathBuf) {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(name);
        write_gz_atomic(&path, &[bytes]).unwrap();
        (dir, path)
    }

    fn assert_names_file(e: &DataError, name: &str) {
        let msg = e.to_string();
        assert!(msg.contains(name), "message {msg:?} does not name {name}");
    }

    #[test]
    fn round_trip_and_load_dir() {
        let dir = TempDir::new().unwrap();
        let (train, test) = (make_split(37), make_split(11));
        write_dataset(dir.path(), &train, &test);
        let ds = load(Some(dir.path())).unwrap();
        assert_eq!(ds.dir, dir.path());
        assert_eq!(ds.train, train);
        assert_eq!(ds.test, test);
        assert_eq!(ds.train.len(), 37);
        assert!(!ds.train.is_empty());
        assert_eq!(ds.train.image(3)[0], 21);
        assert_eq!(ds.train.image(36)[783], 252); // 36 * 7
                                                  // No temp files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn empty_split_round_trips() {
        let dir = TempDir::new().unwrap();
        write_dataset(dir.path(), &make_split(0), &make_split(0));
        let ds = load_dir(dir.path()).unwrap();
        assert!(ds.train.is_empty() && ds.test.is_empty());
    }

    #[test]
    fn write_rejects_wrong_pixel_count_and_overwrites_atomically() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(TRAIN_IMAGES);
        let e = write_idx_images(&path, 2, &[0; 100]).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }), "{e}");
        assert!(!path.exists());
        write_idx_images(&path, 1, &[1; IMAGE_PIXELS]).unwrap();
        write_idx_images(&path, 2, &[2; 2 * IMAGE_PIXELS]).unwrap();
        assert_eq!(read_images(&path).unwrap(), vec![2; 2 * IMAGE_PIXELS]);
    }

    #[test]
    fn truncated_header() {
        let (_d, p) = raw_file(TRAIN_IMAGES, &images_header(IMAGES_MAGIC, 1, 28, 28)[..10]);
        let e = read_images(&p).unwrap_err();
        assert!(matches!(e, DataError::Truncated { part: "header", expected: 16, found: 10, .. }), "{e}");
        assert_names_file(&e, TRAIN_IMAGES);
        let (_d, p) = raw_file(TRAIN_LABELS, &[0, 0, 8]);
        let e = read_labels(&p).unwrap_err();
        assert!(matches!(e, DataError::Truncated { part: "header", expected: 8, found: 3, .. }), "{e}");
        assert_names_file(&e, TRAIN_LABELS);
    }

    #[test]
    fn truncated_body() {
        let mut bytes = images_header(IMAGES_MAGIC, 3, 28, 28);
        bytes.extend(vec![0; 2 * IMAGE_PIXELS + 5]);
        let (_d, p) = raw_file(TEST_IMAGES, &bytes);
        let e = read_images(&p).unwrap_err();
        let (expected, found) = (16 + 3 * 784, 16 + 2 * 784 + 5);
        assert!(
            matches!(e, DataError::Truncated { part: "body", expected: x, found: f, .. } if x == expected && f == found),
            "{e}"
        );
        assert_names_file(&e, TEST_IMAGES);
        assert!(e.to_string().contains(&format!("expected {expected} bytes, found {found}")), "{e}");

        let mut bytes = labels_header(LABELS_MAGIC, 5);
        bytes.extend([1, 2, 3]);
        let (_d, p) = raw_file(TEST_LABELS, &bytes);
        let e = read_labels(&p).unwrap_err();
        assert!(matches!(e, DataError::Truncated { part: "body", expected: 13, found: 11, .. }), "{e}");
    }

    #[test]
    fn trailing_bytes() {
        let mut bytes = images_header(IMAGES_MAGIC, 1, 28, 28);
        bytes.extend(vec![0; IMAGE_PIXELS + 3]);
        let (_d, p) = raw_file(TRAIN_IMAGES, &bytes);
        let e = read_images(&p).unwrap_err();
        assert!(matches!(e, DataError::TrailingData { items: 1, expected: 800, extra: 3, .. }), "{e}");
        assert_names_file(&e, TRAIN_IMAGES);

        let mut bytes = labels_header(LABELS_MAGIC, 2);
        bytes.extend([1, 2, 3]);
        let (_d, p) = raw_file(TRAIN_LABELS, &bytes);
        let e = read_labels(&p).unwrap_err();
        assert!(matches!(e, DataError::TrailingData { items: 2, extra: 1, .. }), "{e}");
    }

    #[test]
    fn wrong_magic_names_both_kinds() {
        // A labels file where the images file should be, and vice versa.
        let mut bytes = labels_header(LABELS_MAGIC, 1);
        bytes.push(0);
        let (_d, p) = raw_file(TRAIN_IMAGES, &bytes);
        let e = read_images(&p).unwrap_err();
        assert!(matches!(e, DataError::BadMagic { found: LABELS_MAGIC, expected: IMAGES_MAGIC, .. }), "{e}");
        assert_eq!(e.to_string(), format!("{}: bad magic 0x00000801, expected 0x00000803 (IDX images)", p.display()));
        let (_d, p) = raw_file(TRAIN_LABELS, &images_header(IMAGES_MAGIC, 0, 28, 28));
        let e = read_labels(&p).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: bad magic 0x00000803, expected 0x00000801 (IDX labels)", p.display()));
    }

    #[test]
    fn wrong_dims() {
        let mut bytes = images_header(IMAGES_MAGIC, 1, 32, 24);
        bytes.extend(vec![0; 32 * 24]);
        let (_d, p) = raw_file(TRAIN_IMAGES, &bytes);
        let e = read_images(&p).unwrap_err();
        assert!(matches!(e, DataError::BadDims { rows: 32, cols: 24, .. }), "{e}");
        assert_names_file(&e, TRAIN_IMAGES);
        assert!(e.to_string().contains("32x24, expected 28x28"), "{e}");
    }

    #[test]
    fn count_mismatch_between_images_and_labels() {
        let dir = TempDir::new().unwrap();
        write_dataset(dir.path(), &make_split(4), &make_split(3));
        write_idx_labels(&dir.path().join(TEST_LABELS), &[0, 1]).unwrap();
        let e = load_dir(dir.path()).unwrap_err();
        assert!(matches!(e, DataError::CountMismatch { images: 3, labels: 2, .. }), "{e}");
        assert_names_file(&e, TEST_IMAGES);
        assert_names_file(&e, TEST_LABELS);
    }

    #[test]
    fn label_out_of_range() {
        let dir = TempDir::new().unwrap();
        let p = dir.path().join(TRAIN_LABELS);
        write_idx_labels(&p, &[0, 9, 10, 3]).unwrap();
        let e = read_labels(&p).unwrap_err();
        assert!(matches!(e, DataError::BadLabel { index: 2, label: 10, .. }), "{e}");
        assert_names_file(&e, TRAIN_LABELS);
        assert!(e.to_string().contains("label 10 at index 2"), "{e}");
    }

    #[test]
    fn not_gzip_and_corrupt_gzip() {
        let dir = TempDir::new().unwrap();
        let p = dir.path().join(TRAIN_IMAGES);
        fs::write(&p, images_header(IMAGES_MAGIC, 0, 28, 28)).unwrap();
        let e = read_images(&p).unwrap_err();
        assert!(matches!(e, DataError::NotGzip { .. }), "{e}");
        assert_names_file(&e, TRAIN_IMAGES);
        fs::write(&p, b"").unwrap();
        assert!(matches!(read_images(&p).unwrap_err(), DataError::NotGzip { .. }));

        // A valid gzip file cut in the middle, and one with a flipped byte.
        write_idx_images(&p, 2, &(0..2 * IMAGE_PIXELS).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>()).unwrap();
        let good = fs::read(&p).unwrap();
        fs::write(&p, &good[..good.len() / 2]).unwrap();
        let e = read_images(&p).unwrap_err();
        assert!(matches!(e, DataError::Gzip { .. }), "{e}");
        assert_names_file(&e, TRAIN_IMAGES);
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        fs::write(&p, &bad).unwrap();
        assert!(read_images(&p).is_err());
    }

    #[test]
    fn missing_file_is_io_error_naming_it() {
        let dir = TempDir::new().unwrap();
        let p = dir.path().join(TEST_LABELS);
        let e = read_labels(&p).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }), "{e}");
        assert_names_file(&e, TEST_LABELS);
    }

    #[test]
    fn huge_count_is_an_error_not_a_crash() {
        let (_d, p) = raw_file(TRAIN_IMAGES, &images_header(IMAGES_MAGIC, u32::MAX, 28, 28));
        let e = read_images(&p).unwrap_err();
        assert!(matches!(e, DataError::TooLarge { .. } | DataError::Truncated { part: "body", .. }), "{e}");
    }

    fn dirs_with_data(k: usize) -> Vec<TempDir> {
        (0..k)
            .map(|_| {
                let d = TempDir::new().unwrap();
                write_dataset(d.path(), &make_split(1), &make_split(1));
                d
            })
            .collect()
    }

    #[test]
    fn search_order_explicit_then_env_then_defaults() {
        let d = dirs_with_data(2);
        let (a, b) = (d[0].path(), d[1].path());
        let found = |explicit: Option<&Path>, env: Option<&Path>| {
            locate_in(candidates(explicit, env.map(|p| p.as_os_str().to_owned())))
        };
        assert_eq!(found(Some(a), Some(b)).unwrap(), a);
        assert_eq!(found(None, Some(b)).unwrap(), b);
        // A place without the files is passed over.
        let empty = TempDir::new().unwrap();
        assert_eq!(found(Some(empty.path()), Some(b)).unwrap(), b);
        // An empty $TAILOR_DATA counts as unset.
        let c = candidates(None, Some(OsString::new()));
        assert_eq!(c[0], (format!("${ENV_VAR}"), None));
        assert_eq!(c[1].1.as_deref(), Some(Path::new(DEFAULT_DIRS[0])));
        assert_eq!(c[2].1.as_deref(), Some(Path::new(DEFAULT_DIRS[1])));
        // The public entry point: an explicit directory wins over anything.
        assert_eq!(locate(Some(a)).unwrap(), a);
    }

    #[test]
    fn not_found_lists_every_place_and_how_to_get_the_files() {
        let partial = TempDir::new().unwrap();
        write_idx_labels(&partial.path().join(TRAIN_LABELS), &[1]).unwrap();
        let missing_dir = partial.path().join("nope");
        let c = vec![
            ("--data X".to_string(), Some(partial.path().to_path_buf())),
            ("$TAILOR_DATA".to_string(), None),
            ("./nope".to_string(), Some(missing_dir.clone())),
        ];
        let e = locate_in(c).unwrap_err();
        let DataError::NotFound { searched } = &e else { panic!("{e}") };
        assert_eq!(searched.len(), 3);
        let msg = e.to_string();
        for needle in [
            "--data X: missing train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz",
            "$TAILOR_DATA: not set",
            "./nope: not a directory",
            "apt-get install dataset-fashion-mnist",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz",
        ] {
            assert!(msg.contains(needle), "{needle:?} not in:\n{msg}");
        }
        // The real search lists the default places too (pointed elsewhere,
        // since the installed dataset may well be there).
        let c = candidates(Some(Path::new("/nonexistent/x")), None)
            .into_iter()
            .map(|(place, dir)| (place, dir.map(|_| missing_dir.clone())))
            .collect();
        let msg = locate_in(c).unwrap_err().to_string();
        for needle in ["--data /nonexistent/x", DEFAULT_DIRS[0], DEFAULT_DIRS[1], "$TAILOR_DATA"] {
            assert!(msg.contains(needle), "{needle:?} not in:\n{msg}");
        }
    }

    #[test]
    fn epoch_order_keeps_short_last_batch() {
        let o = EpochOrder::new(10, None, 0);
        let sizes: Vec<usize> = o.batches(4).map(<[u32]>::len).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(o.indices(), (0..10).collect::<Vec<u32>>());
        assert_eq!(EpochOrder::num_batches(10, 4), 3);
        assert_eq!(EpochOrder::num_batches(60000, 64), 938);
        assert_eq!(EpochOrder::num_batches(64, 64), 1);
        assert_eq!(EpochOrder::num_batches(0, 64), 0);
        assert_eq!(EpochOrder::num_batches(5, 0), 0);
        assert_eq!(EpochOrder::new(60000, Some(1), 0).batches(64).len(), 938);
    }

    #[test]
    fn epoch_order_is_deterministic_per_seed_and_epoch() {
        let o = |seed, epoch| EpochOrder::new(1000, Some(seed), epoch);
        assert_eq!(o(7, 3), o(7, 3));
        assert_ne!(o(7, 3), o(7, 4));
        assert_ne!(o(7, 3), o(8, 3));
        assert_ne!(o(7, 0).indices(), EpochOrder::new(1000, None, 0).indices());
        // Unshuffled order ignores the epoch.
        assert_eq!(EpochOrder::new(5, None, 0), EpochOrder::new(5, None, 9));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn epoch_order_is_a_permutation_batched_in_order(
            n in 0usize..300, seed in any::<u64>(), epoch in 0u32..100, bs in 1usize..70
        ) {
            let o = EpochOrder::new(n, Some(seed), epoch);
            let mut sorted = o.indices().to_vec();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>());
            let batches: Vec<&[u32]> = o.batches(bs).collect();
            prop_assert_eq!(batches.len(), EpochOrder::num_batches(n, bs));
            prop_assert!(batches.iter().all(|b| b.len() == bs || b.len() == n % bs));
            prop_assert_eq!(batches.concat(), o.indices());
        }

        /// Random decompressed content never panics the readers.
        #[test]
        fn readers_never_panic(
            magic in prop_oneof![Just(IMAGES_MAGIC), Just(LABELS_MAGIC), any::<u32>()],
            n in prop_oneof![0u32..4, any::<u32>()],
            dims in prop_oneof![Just(28u32), any::<u32>()],
            tail in proptest::collection::vec(any::<u8>(), 0..2000),
            cut in 0usize..20,
        ) {
            let mut bytes = images_header(magic, n, dims, 28);
            bytes.extend(tail);
            let bytes = &bytes[cut.min(bytes.len())..];
            let (_d, p) = raw_file(TRAIN_IMAGES, bytes);
            let _ = read_images(&p);
            let _ = read_labels(&p);
        }
    }

    #[test]
    fn pixels_match_torchvision_arithmetic() {
        let t = Pixels::TO_TENSOR;
        assert_eq!(t.value(0), 0.0);
        assert_eq!(t.value(255), 1.0);
        assert_eq!(t.value(51), 51.0f32 / 255.0);
        let f = Pixels::FASHION_MNIST;
        assert_eq!(f.value(0), (0.0 - 0.2860f32) / 0.3530);
        assert!((f.value(255) - (1.0 - 0.2860) / 0.3530).abs() < 1e-6);
        let src: [u8; IMAGE_PIXELS] = core::array::from_fn(|i| (i * 13 % 256) as u8);
        let mut dst = [0.0; IMAGE_PIXELS];
        f.apply(&src, &mut dst);
        let lut = f.lut();
        for (d, s) in dst.iter().zip(src) {
            assert_eq!(d.to_bits(), lut[s as usize].to_bits());
        }
    }

    #[test]
    fn fill_batch_gathers_rows_and_labels() {
        let split = make_split(20);
        let idx = [5u32, 0, 19];
        let mut x = vec![[-1.0f32; IMAGE_PIXELS]; 4];
        let mut labels = [99u8; 4];
        fill_batch(&split, &idx, &Norm::per_tensor(IMAGE_PIXELS, 1.0 / 255.0, 0.0, 1.0), x.as_flattened_mut(), &mut labels);
        assert_eq!(labels, [5, 0, 9, 99]);
        assert_eq!(x[0][100], 35.0 / 255.0);
        assert_eq!(x[1][0], 0.0);
        assert_eq!(x[2][783], 133.0 / 255.0); // 19 * 7
        assert!(x[3].iter().all(|&v| v == -1.0), "rows past idx.len() are untouched");
        let mut want = [0.0; IMAGE_PIXELS];
        Pixels::FASHION_MNIST.apply(split.image(19), &mut want);
        fill_batch(&split, &idx, &Norm::fashion_mnist(), x.as_flattened_mut(), &mut labels);
        assert_eq!(x[2], want);
    }

    /// The installed dataset: 60000/10000 images, balanced classes. Skipped
    /// with a note when absent, unless `TAILOR_REQUIRE_DATA=1`.
    #[test]
    fn real_fashion_mnist() {
        let dir = Path::new(DEFAULT_DIRS[1]);
        if !FILES.iter().all(|f| dir.join(f).is_file()) {
            let msg = format!("real_fashion_mnist: {} not found", dir.display());
            if std::env::var_os("TAILOR_REQUIRE_DATA").is_some_and(|v| v == "1") {
                panic!("{msg} and TAILOR_REQUIRE_DATA=1");
            }
            eprintln!("SKIPPED {msg} (apt-get install dataset-fashion-mnist)");
            return;
        }
        let t = std::time::Instant::now();
        let ds = load_dir(dir).unwrap();
        eprintln!("loaded Fashion-MNIST in {:?}", t.elapsed());
        for (split, n) in [(&ds.train, 60_000), (&ds.test, 10_000)] {
            assert_eq!(split.len(), n);
            assert_eq!(split.images.len(), n * IMAGE_PIXELS);
            let mut counts = [0usize; NUM_CLASSES];
            for &l in &split.labels {
                counts[l as usize] += 1;
            }
            assert_eq!(counts, [n / NUM_CLASSES; NUM_CLASSES]);
        }
        assert_eq!(ds.train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
        assert_eq!(ds.test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
        assert_eq!(ds.train.image(0).iter().map(|&p| p as u32).sum::<u32>(), 76247);
    }
}
