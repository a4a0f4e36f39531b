//! Finding the data: which files, in which format. Anything the user names
//! (`--data`, `--train`/`--test`, `$TAILOR_DATA`) must hold data or it is an
//! error; only when nothing is named are the default directories searched,
//! so a typo never silently trains on some other dataset.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{DataArgs, DataError, Kind};

pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";
/// Fashion-MNIST's four files, as published.
pub const FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];
/// Where Zalando publishes the files (append a name from [`FILES`]).
pub const DOWNLOAD_BASE: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
/// Environment variable naming the default data directory.
pub const ENV_VAR: &str = "TAILOR_DATA";
/// Directories searched when no data is named, in order.
pub const DEFAULT_DIRS: [&str; 2] = ["./data/fashion-mnist", "/usr/share/datasets/fashion-mnist"];
pub const CSV_FILES: [&str; 2] = ["train.csv", "test.csv"];
pub const NPY_FILES: [&str; 4] = ["train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy"];

/// The files of one split: features, and labels unless they share the
/// features' file (CSV).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitFiles {
    pub features: PathBuf,
    pub labels: Option<PathBuf>,
}

/// Data found: its format, files, a description for messages, and the
/// directory a `classes.txt` may sit in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub kind: Kind,
    pub train: SplitFiles,
    pub test: SplitFiles,
    pub source: String,
    pub dir: PathBuf,
}

/// IDX files may be gzipped (as published) or not (as some mirrors unpack them).
fn idx_file(dir: &Path, gz_name: &str) -> Option<PathBuf> {
    let raw = gz_name.strip_suffix(".gz").unwrap_or(gz_name);
    [gz_name, raw].into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn pair(features: PathBuf, labels: PathBuf) -> SplitFiles {
    SplitFiles { features, labels: Some(labels) }
}

/// The data in `dir`, or why there is none. IDX wins over CSV over NPY when
/// a directory holds several complete sets.
pub fn in_dir(dir: &Path) -> Result<Located, String> {
    if !dir.is_dir() {
        return Err("not a directory".into());
    }
    let found = |kind, train, test| Located { kind, train, test, source: dir.display().to_string(), dir: dir.into() };
    let idx = FILES.map(|f| idx_file(dir, f));
    if let [Some(a), Some(b), Some(c), Some(d)] = idx.clone() {
        return Ok(found(Kind::Idx, pair(a, b), pair(c, d)));
    }
    let [a, b] = CSV_FILES.map(|f| dir.join(f));
    if a.is_file() && b.is_file() {
        let one = |p| SplitFiles { features: p, labels: None };
        return Ok(found(Kind::Csv, one(a), one(b)));
    }
    let [a, b, c, d] = NPY_FILES.map(|f| dir.join(f));
    if [&a, &b, &c, &d].iter().all(|p| p.is_file()) {
        return Ok(found(Kind::Npy, pair(a, b), pair(c, d)));
    }
    // Say what the formats the user seems to have tried lack.
    let idx_names: Vec<String> = FILES.iter().map(|f| f.to_string()).collect();
    let sets = [
        ("IDX", idx_names, idx.iter().map(Option::is_some).collect::<Vec<_>>()),
        ("CSV", CSV_FILES.map(String::from).to_vec(), CSV_FILES.iter().map(|f| dir.join(f).is_file()).collect()),
        ("NPY", NPY_FILES.map(String::from).to_vec(), NPY_FILES.iter().map(|f| dir.join(f).is_file()).collect()),
    ];
    let partial: Vec<String> = sets
        .iter()
        .filter(|(_, _, have)| have.contains(&true))
        .map(|(kind, names, have)| {
            let missing: Vec<&str> = names.iter().zip(have).filter(|(_, h)| !**h).map(|(n, _)| n.as_str()).collect();
            format!("missing {} ({kind})", missing.join(", "))
        })
        .collect();
    if !partial.is_empty() {
        return Err(partial.join("; "));
    }
    Err(format!(
        "holds no data: expected {} (IDX, .gz optional), or {} (CSV), or {} (NPY)",
        FILES.join(", "),
        CSV_FILES.join(" and "),
        NPY_FILES.join(", ")
    ))
}

/// The format of `--train`/`--test` `path` from its name, and its labels file.
fn split_files(flag: &str, path: &Path) -> Result<(Kind, SplitFiles), DataError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let place = || format!("{flag} {}", path.display());
    let (kind, labels) = if name.ends_with(".csv") {
        (Kind::Csv, None)
    } else if let Some(stem) = name.strip_suffix("_x.npy") {
        (Kind::Npy, Some(path.with_file_name(format!("{stem}_y.npy"))))
    } else if name.contains("images-idx3") {
        (Kind::Idx, Some(path.with_file_name(name.replace("images-idx3", "labels-idx1"))))
    } else {
        let problem = "cannot tell the format from the name: expected FILE.csv, NAME_x.npy (with NAME_y.npy \
                       beside it), or an IDX file named *images-idx3* (with *labels-idx1* beside it)";
        return Err(DataError::Missing { place: place(), problem: problem.into() });
    };
    let missing: Vec<String> = [Some(path), labels.as_deref()]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        return Err(DataError::Missing { place: place(), problem: format!("missing {}", missing.join(", ")) });
    }
    Ok((kind, SplitFiles { features: path.to_path_buf(), labels }))
}

fn from_files(train: &Path, test: &Path) -> Result<Located, DataError> {
    let (kind, tr) = split_files("--train", train)?;
    let (test_kind, te) = split_files("--test", test)?;
    if kind != test_kind {
        return Err(DataError::Args(format!(
            "--train {} is {kind} but --test {} is {test_kind}; give both in one format",
            train.display(),
            test.display()
        )));
    }
    let source = format!("{} and {}", train.display(), test.display());
    let dir = train.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    Ok(Located { kind, train: tr, test: te, source, dir })
}

/// Where the data is, from `args` and `env` (the value of `$TAILOR_DATA`).
pub fn locate_with(args: &DataArgs, env: Option<OsString>) -> Result<Located, DataError> {
    match (&args.data, &args.train, &args.test) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(DataError::Args("give either --data DIR or --train FILE --test FILE, not both".into()))
        }
        (None, Some(train), Some(test)) => return from_files(train, test),
        (None, Some(_), None) => return Err(DataError::Args("--train needs --test".into())),
        (None, None, Some(_)) => return Err(DataError::Args("--test needs --train".into())),
        (Some(dir), None, None) => {
            return in_dir(dir)
                .map_err(|problem| DataError::Missing { place: format!("--data {}", dir.display()), problem })
        }
        (None, None, None) => {}
    }
    let mut searched = Vec::with_capacity(1 + DEFAULT_DIRS.len());
    match env.filter(|v| !v.is_empty()) {
        Some(v) => {
            let dir = PathBuf::from(v);
            let place = format!("${ENV_VAR}={}", dir.display());
            return in_dir(&dir).map_err(|problem| DataError::Missing { place, problem });
        }
        None => searched.push(format!("${ENV_VAR}: not set")),
    }
    for d in DEFAULT_DIRS {
        match in_dir(Path::new(d)) {
            Ok(found) => return Ok(found),
            Err(why) => searched.push(format!("{d}: {why}")),
        }
    }
    Err(DataError::NotFound { searched })
}

pub fn not_found_message(searched: &[String]) -> String {
    let mut s = format!(
        "no data given (--data DIR, or --train FILE --test FILE) and Fashion-MNIST not found: \
         no default directory holds all of {}. Searched, in order:\n",
        FILES.join(", ")
    );
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
