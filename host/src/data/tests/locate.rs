use std::ffi::OsString;

use super::*;
use crate::data::locate::{in_dir, locate_with};

fn idx_dir() -> TempDir {
    let d = TempDir::new().unwrap();
    write_idx_dataset(d.path(), &make_split(1, 4), &make_split(1, 4), 2, 2);
    d
}

fn env(p: &Path) -> Option<OsString> {
    Some(p.as_os_str().to_owned())
}

#[test]
fn explicit_data_dir_wins_and_must_hold_data() {
    let (a, b) = (idx_dir(), idx_dir());
    let args = DataArgs::from_dir(Some(a.path()));
    assert_eq!(locate_with(&args, env(b.path())).unwrap().dir, a.path());
    // The bug this fixes: a --data without data fell through to the
    // default directories (and trained on whatever was installed there).
    let empty = TempDir::new().unwrap();
    let e = locate_with(&DataArgs::from_dir(Some(empty.path())), env(b.path())).unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }), "{e}");
    assert_says(&e, &["--data", &empty.path().display().to_string(), "holds no data", TRAIN_IMAGES, "train.csv"]);
    let e = load_with(&DataArgs::from_dir(Some(Path::new("/no/such/dir"))), None).unwrap_err();
    assert_eq!(e.to_string(), "--data /no/such/dir: not a directory");
    // A partial set says what is missing.
    std::fs::remove_file(a.path().join(TEST_LABELS)).unwrap();
    let e = locate_with(&DataArgs::from_dir(Some(a.path())), None).unwrap_err();
    assert_says(&e, &["--data", "missing t10k-labels-idx1-ubyte.gz (IDX)"]);
}

#[test]
fn env_dir_must_hold_data() {
    let (a, empty) = (idx_dir(), TempDir::new().unwrap());
    assert_eq!(locate_with(&DataArgs::default(), env(a.path())).unwrap().dir, a.path());
    let e = locate_with(&DataArgs::default(), env(empty.path())).unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }), "{e}");
    assert_says(&e, &[&format!("${ENV_VAR}={}", empty.path().display()), "holds no data"]);
    let e = load_with(&DataArgs::default(), Some("/no/such/dir".into())).unwrap_err();
    assert_eq!(e.to_string(), "$TAILOR_DATA=/no/such/dir: not a directory");
}

#[test]
fn train_and_test_files() {
    let d = TempDir::new().unwrap();
    std::fs::write(d.path().join("a.csv"), "x,y\n1,0\n").unwrap();
    std::fs::write(d.path().join("b.csv"), "x,y\n2,1\n").unwrap();
    let args = |train: &str, test: &str| DataArgs {
        train: Some(d.path().join(train)),
        test: Some(d.path().join(test)),
        ..DataArgs::default()
    };
    let ds = load_with(&args("a.csv", "b.csv"), None).unwrap();
    assert_eq!((ds.kind, ds.train.len(), ds.test.len()), (Kind::Csv, 1, 1));
    assert_says(&DataError::Args(ds.source), &["a.csv", "b.csv"]);
    let e = load_with(&args("a.csv", "nope.csv"), None).unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }), "{e}");
    assert_says(&e, &["--test", "nope.csv", "missing"]);
    let e = load_with(&args("a_x.npy", "b.csv"), None).unwrap_err();
    assert_says(&e, &["--train", "a_x.npy", "missing", "a_x.npy", "a_y.npy"]);
    let e = load_with(&args("a.txt", "b.csv"), None).unwrap_err();
    assert_says(&e, &["--train", "a.txt", "cannot tell the format"]);
    // IDX by file name, raw, labels beside it.
    let s = make_split(3, 6);
    write_idx_images(&d.path().join("my-images-idx3-ubyte.gz"), 3, 2, 3, bytes(&s)).unwrap();
    write_idx_labels(&d.path().join("my-labels-idx1-ubyte.gz"), &s.labels).unwrap();
    let ds = load_with(&args("my-images-idx3-ubyte.gz", "my-images-idx3-ubyte.gz"), None).unwrap();
    assert_eq!((ds.kind, ds.features, ds.train.clone()), (Kind::Idx, 6, s));
    let e = load_with(&args("my-images-idx3-ubyte.gz", "b.csv"), None).unwrap_err();
    assert_says(&e, &["IDX", "CSV", "one format"]);
}

#[test]
fn train_without_test_and_conflicting_flags() {
    let p = PathBuf::from("x.csv");
    let e = load_with(&DataArgs { train: Some(p.clone()), ..DataArgs::default() }, None).unwrap_err();
    assert_eq!(e.to_string(), "--train needs --test");
    let e = load_with(&DataArgs { test: Some(p.clone()), ..DataArgs::default() }, None).unwrap_err();
    assert_eq!(e.to_string(), "--test needs --train");
    let args = DataArgs { data: Some(p.clone()), train: Some(p.clone()), test: Some(p), ..DataArgs::default() };
    assert_says(&load_with(&args, None).unwrap_err(), &["--data", "not both"]);
    let d = idx_dir();
    let args = DataArgs { label_column: Some("y".into()), ..DataArgs::from_dir(Some(d.path())) };
    assert_says(&load_with(&args, None).unwrap_err(), &["--label-column", "CSV", "IDX"]);
}

#[test]
fn formats_in_a_directory() {
    let d = TempDir::new().unwrap();
    for f in ["train.csv", "train_x.npy"] {
        std::fs::write(d.path().join(f), "").unwrap();
    }
    let e = in_dir(d.path()).unwrap_err();
    assert_eq!(e, "missing test.csv (CSV); missing train_y.npy, test_x.npy, test_y.npy (NPY)");
    std::fs::write(d.path().join("test.csv"), "").unwrap();
    assert_eq!(in_dir(d.path()).unwrap().kind, Kind::Csv);
}

#[test]
fn class_names_are_checked() {
    let d = idx_dir();
    let with = |c: &[&str]| DataArgs {
        classes: Some(c.iter().map(|s| s.to_string()).collect()),
        ..DataArgs::from_dir(Some(d.path()))
    };
    let ds = load_with(&with(&["a", " b "]), None).unwrap();
    assert_eq!((ds.classes, ds.class_names), (2, vec!["a".to_string(), "b".into()]));
    assert_says(&load_with(&with(&["a", "a"]), None).unwrap_err(), &["--classes", "\"a\" appears twice"]);
    assert_says(&load_with(&with(&["a", ""]), None).unwrap_err(), &["--classes", "class 1 has an empty name"]);
    assert_says(&load_with(&with(&[]), None).unwrap_err(), &["--classes", "0 class names"]);
    // make_split's labels are i % 10: one sample, label 0, so 1 name is enough.
    assert!(load_with(&with(&["only"]), None).is_ok());
    std::fs::write(d.path().join(CLASSES_FILE), "x\n\ny\n").unwrap();
    assert_says(&load_dir(d.path()).unwrap_err(), &[CLASSES_FILE, "class 1 has an empty name"]);
}

#[test]
fn not_found_lists_every_place_and_how_to_get_the_files() {
    let searched = vec!["$TAILOR_DATA: not set".to_string(), "./nope: not a directory".into()];
    let msg = DataError::NotFound { searched }.to_string();
    for needle in [
        "--data DIR",
        "--train FILE --test FILE",
        "$TAILOR_DATA: not set",
        "./nope: not a directory",
        "apt-get install dataset-fashion-mnist",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in:\n{msg}");
    }
    // With nothing given the real search runs over the default places;
    // whether it finds data depends on the machine, but a miss lists them.
    if let Err(e) = locate_with(&DataArgs::default(), None) {
        assert_says(&e, &["$TAILOR_DATA: not set", DEFAULT_DIRS[0], DEFAULT_DIRS[1]]);
    }
}
