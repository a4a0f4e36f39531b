use std::fs;

use proptest::prelude::*;

use super::*;
use crate::data::idx::{read_images, read_labels, read_split, FEATURES_MAGIC};

fn images_header(magic: u32, n: u32, rows: u32, cols: u32) -> Vec<u8> {
    [magic, n, rows, cols].iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn labels_header(magic: u32, n: u32) -> Vec<u8> {
    [magic, n].iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Gzip raw (decompressed) IDX bytes into `name` in a fresh tempdir.
fn gz_file(name: &str, bytes: &[u8]) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join(name);
    write_gz_atomic(&path, &[bytes]).unwrap();
    (dir, path)
}

#[test]
fn round_trip_and_load_dir() {
    let dir = TempDir::new().unwrap();
    let (train, test) = (make_split(37, 784), make_split(11, 784));
    write_idx_dataset(dir.path(), &train, &test, 28, 28);
    let ds = load(&DataArgs::from_dir(Some(dir.path()))).unwrap();
    assert_eq!(ds.source, dir.path().display().to_string());
    assert_eq!((ds.kind, ds.features, ds.classes), (Kind::Idx, 784, 10));
    assert_eq!(ds.class_names, (0..10).map(|c| c.to_string()).collect::<Vec<_>>());
    assert!(!ds.fashion_mnist);
    assert_eq!(ds.train, train);
    assert_eq!(ds.test, test);
    assert_eq!(ds.train.row_u8(3).unwrap()[0], 21);
    assert_eq!(ds.train.row_u8(36).unwrap()[783], 252); // 36 * 7
    assert_eq!(ds.train.row_f32(0), None);
    // No temp files are left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
}

/// A 5×3 image set with 3 classes, gzipped and raw.
#[test]
fn other_sizes_and_raw_files() {
    for gz in [true, false] {
        let dir = TempDir::new().unwrap();
        let mut train = make_split(7, 15);
        train.labels = vec![0, 1, 2, 2, 1, 0, 2];
        let mut test = make_split(2, 15);
        test.labels = vec![1, 2];
        write_idx_dataset(dir.path(), &train, &test, 5, 3);
        if !gz {
            for f in FILES {
                let p = dir.path().join(f);
                let mut raw = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(fs::File::open(&p).unwrap()), &mut raw)
                    .unwrap();
                fs::write(p.with_extension(""), raw).unwrap();
                fs::remove_file(p).unwrap();
            }
        }
        let ds = load_dir(dir.path()).unwrap();
        assert_eq!((ds.features, ds.classes, ds.train.width), (15, 3, 15), "gz {gz}");
        assert_eq!(ds.class_names, ["0", "1", "2"]);
        assert_eq!((ds.train.clone(), ds.test.clone()), (train, test));
        assert!(matches!(ds.default_norm().per_tensor_values(), Some((_, _))));
    }
}

#[test]
fn two_dim_features_file() {
    let mut bytes = [FEATURES_MAGIC, 2, 3].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    bytes.extend([1, 2, 3, 4, 5, 6]);
    let (_d, p) = file("x-images-idx3-ubyte", &bytes);
    assert_eq!(read_images(&p).unwrap(), (vec![1, 2, 3, 4, 5, 6], 3));
}

#[test]
fn width_mismatch_names_both_files() {
    let dir = TempDir::new().unwrap();
    write_idx_dataset(dir.path(), &make_split(2, 784), &make_split(2, 784), 28, 28);
    write_idx_images(&dir.path().join(TEST_IMAGES), 2, 2, 3, &[0; 12]).unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    assert!(matches!(e, DataError::WidthMismatch { train: 784, test: 6, .. }), "{e}");
    assert_says(&e, &[TRAIN_IMAGES, TEST_IMAGES, "784", "6"]);
}

#[test]
fn empty_split_round_trips() {
    let dir = TempDir::new().unwrap();
    write_idx_dataset(dir.path(), &make_split(0, 784), &make_split(0, 784), 28, 28);
    let ds = load_dir(dir.path()).unwrap();
    assert!(ds.train.is_empty() && ds.test.is_empty());
    assert_eq!(ds.classes, 0);
}

#[test]
fn write_rejects_wrong_pixel_count_and_overwrites_atomically() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join(TRAIN_IMAGES);
    let e = write_idx_images(&path, 2, 28, 28, &[0; 100]).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
    assert!(!path.exists());
    write_idx_images(&path, 1, 28, 28, &[1; 784]).unwrap();
    write_idx_images(&path, 2, 28, 28, &[2; 2 * 784]).unwrap();
    assert_eq!(read_images(&path).unwrap(), (vec![2; 2 * 784], 784));
}

#[test]
fn truncated_header() {
    let (_d, p) = gz_file(TRAIN_IMAGES, &images_header(IMAGES_MAGIC, 1, 28, 28)[..10]);
    let e = read_images(&p).unwrap_err();
    assert!(matches!(e, DataError::Truncated { part: "header", expected: 16, found: 10, .. }), "{e}");
    assert_says(&e, &[TRAIN_IMAGES]);
    let (_d, p) = gz_file(TRAIN_LABELS, &[0, 0, 8]);
    let e = read_labels(&p).unwrap_err();
    assert!(matches!(e, DataError::Truncated { part: "header", expected: 8, found: 3, .. }), "{e}");
    assert_says(&e, &[TRAIN_LABELS]);
}

#[test]
fn truncated_body() {
    let mut bytes = images_header(IMAGES_MAGIC, 3, 28, 28);
    bytes.extend(vec![0; 2 * 784 + 5]);
    let (expected, found) = (16 + 3 * 784, 16 + 2 * 784 + 5);
    // Gzipped (found by reading) and raw (found from the file size).
    for (_d, p) in [gz_file(TEST_IMAGES, &bytes), file("t10k-images-idx3-ubyte", &bytes)] {
        let e = read_images(&p).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { part: "body", expected: x, found: f, .. } if x == expected && f == found),
            "{e}"
        );
        assert_says(&e, &["t10k-images-idx3-ubyte", &format!("expected {expected} bytes, found {found}")]);
    }
    let mut bytes = labels_header(LABELS_MAGIC, 5);
    bytes.extend([1, 2, 3]);
    let (_d, p) = gz_file(TEST_LABELS, &bytes);
    let e = read_labels(&p).unwrap_err();
    assert!(matches!(e, DataError::Truncated { part: "body", expected: 13, found: 11, .. }), "{e}");
}

#[test]
fn trailing_bytes() {
    let mut bytes = images_header(IMAGES_MAGIC, 1, 28, 28);
    bytes.extend(vec![0; 784 + 3]);
    for (_d, p) in [gz_file(TRAIN_IMAGES, &bytes), file("train-images-idx3-ubyte", &bytes)] {
        let e = read_images(&p).unwrap_err();
        assert!(matches!(e, DataError::TrailingData { items: 1, expected: 800, extra: 3, .. }), "{e}");
        assert_says(&e, &["train-images-idx3-ubyte"]);
    }
    let mut bytes = labels_header(LABELS_MAGIC, 2);
    bytes.extend([1, 2, 3]);
    let (_d, p) = gz_file(TRAIN_LABELS, &bytes);
    let e = read_labels(&p).unwrap_err();
    assert!(matches!(e, DataError::TrailingData { items: 2, extra: 1, .. }), "{e}");
}

#[test]
fn wrong_magic_names_both_kinds() {
    // A labels file where the images file should be, and vice versa.
    let mut bytes = labels_header(LABELS_MAGIC, 1);
    bytes.push(0);
    let (_d, p) = gz_file(TRAIN_IMAGES, &bytes);
    let e = read_images(&p).unwrap_err();
    assert!(matches!(e, DataError::BadMagic { found: LABELS_MAGIC, expected: IMAGES_MAGIC, .. }), "{e}");
    assert_eq!(e.to_string(), format!("{}: bad magic 0x00000801, expected 0x00000803 (IDX images)", p.display()));
    let (_d, p) = gz_file(TRAIN_LABELS, &images_header(IMAGES_MAGIC, 0, 28, 28));
    let e = read_labels(&p).unwrap_err();
    assert_eq!(e.to_string(), format!("{}: bad magic 0x00000803, expected 0x00000801 (IDX labels)", p.display()));
}

#[test]
fn zero_dims() {
    let (_d, p) = gz_file(TRAIN_IMAGES, &images_header(IMAGES_MAGIC, 1, 0, 24));
    let e = read_images(&p).unwrap_err();
    assert!(matches!(e, DataError::BadDims { rows: 0, cols: 24, .. }), "{e}");
    assert_says(&e, &[TRAIN_IMAGES, "0x24", "nonzero"]);
}

#[test]
fn count_mismatch_between_images_and_labels() {
    let dir = TempDir::new().unwrap();
    write_idx_dataset(dir.path(), &make_split(4, 784), &make_split(3, 784), 28, 28);
    write_idx_labels(&dir.path().join(TEST_LABELS), &[0, 1]).unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    assert!(matches!(e, DataError::CountMismatch { samples: 3, labels: 2, .. }), "{e}");
    assert_says(&e, &[TEST_IMAGES, TEST_LABELS]);
}

#[test]
fn label_out_of_range_of_the_class_names() {
    let dir = TempDir::new().unwrap();
    let (images, labels) = (dir.path().join(TRAIN_IMAGES), dir.path().join(TRAIN_LABELS));
    write_idx_images(&images, 4, 1, 1, &[0; 4]).unwrap();
    write_idx_labels(&labels, &[0, 9, 10, 3]).unwrap();
    let e = read_split(&images, &labels, Some(10)).unwrap_err();
    assert!(matches!(e, DataError::BadLabel { at: Loc::Index(2), .. }), "{e}");
    assert_says(&e, &[TRAIN_LABELS, "label 10 at index 2", "0..10"]);
    // Without names any byte is a class.
    assert_eq!(read_split(&images, &labels, None).unwrap().labels, [0, 9, 10, 3]);
}

#[test]
fn not_gzip_and_corrupt_gzip() {
    let dir = TempDir::new().unwrap();
    let p = dir.path().join(TRAIN_IMAGES);
    fs::write(&p, images_header(IMAGES_MAGIC, 0, 28, 28)).unwrap();
    let e = read_images(&p).unwrap_err();
    assert!(matches!(e, DataError::NotGzip { .. }), "{e}");
    assert_says(&e, &[TRAIN_IMAGES]);
    fs::write(&p, b"").unwrap();
    assert!(matches!(read_images(&p).unwrap_err(), DataError::NotGzip { .. }));

    // A valid gzip file cut in the middle, and one with a flipped byte.
    write_idx_images(&p, 2, 28, 28, &(0..2 * 784).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>()).unwrap();
    let good = fs::read(&p).unwrap();
    fs::write(&p, &good[..good.len() / 2]).unwrap();
    let e = read_images(&p).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e}");
    assert_says(&e, &[TRAIN_IMAGES]);
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
    assert_says(&e, &[TEST_LABELS]);
}

#[test]
fn huge_count_is_an_error_not_a_crash() {
    let (_d, p) = gz_file(TRAIN_IMAGES, &images_header(IMAGES_MAGIC, u32::MAX, 28, 28));
    let e = read_images(&p).unwrap_err();
    assert!(matches!(e, DataError::TooLarge { .. } | DataError::Truncated { part: "body", .. }), "{e}");
    let (_d, p) = file("train-images-idx3-ubyte", &images_header(IMAGES_MAGIC, u32::MAX, u32::MAX, u32::MAX));
    let e = read_images(&p).unwrap_err();
    assert!(matches!(e, DataError::TooLarge { .. } | DataError::Truncated { part: "body", .. }), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random decompressed content never panics the readers.
    #[test]
    fn readers_never_panic(
        magic in prop_oneof![Just(IMAGES_MAGIC), Just(FEATURES_MAGIC), Just(LABELS_MAGIC), any::<u32>()],
        n in prop_oneof![0u32..4, any::<u32>()],
        dims in prop_oneof![Just(28u32), any::<u32>()],
        tail in proptest::collection::vec(any::<u8>(), 0..2000),
        cut in 0usize..20,
        gz in any::<bool>(),
    ) {
        let mut bytes = images_header(magic, n, dims, 28);
        bytes.extend(tail);
        let bytes = &bytes[cut.min(bytes.len())..];
        let (_d, p) = if gz { gz_file(TRAIN_IMAGES, bytes) } else { file("x-images-idx3-ubyte", bytes) };
        let _ = read_images(&p);
        let _ = read_labels(&p);
    }
}

/// The installed dataset: 60000/10000 images, balanced classes, recognized
/// as Fashion-MNIST. Skipped with a note when absent, unless
/// `TAILOR_REQUIRE_DATA=1`.
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
    assert!(ds.fashion_mnist);
    assert_eq!(ds.class_names, CLASS_NAMES);
    assert_eq!(ds.default_norm(), Norm::fashion_mnist());
    for (split, n) in [(&ds.train, 60_000), (&ds.test, 10_000)] {
        assert_eq!(split.len(), n);
        assert_eq!(split.features.len(), n * 784);
        let mut counts = [0usize; 10];
        for &l in &split.labels {
            counts[l as usize] += 1;
        }
        assert_eq!(counts, [n / 10; 10]);
    }
    assert_eq!(ds.train.labels[..10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(ds.test.labels[..10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(ds.train.row_u8(0).unwrap().iter().map(|&p| p as u32).sum::<u32>(), 76247);
}

/// `cat a.gz b.gz` is one valid gzip stream (RFC 1952 members), as
/// `gzip -d` reads it; garbage after the last member is an error.
#[test]
fn multi_member_gzip_is_one_stream() {
    let (dir, one) = gz_file("one.gz", &labels_header(0x801, 4));
    let (_d2, two) = gz_file("two.gz", &[1, 2, 0, 1]);
    let joined = dir.path().join(TRAIN_LABELS);
    let mut bytes = fs::read(&one).unwrap();
    bytes.extend(fs::read(&two).unwrap());
    fs::write(&joined, &bytes).unwrap();
    assert_eq!(read_labels(&joined).unwrap(), [1, 2, 0, 1]);
    bytes.extend(b"garbage!");
    fs::write(&joined, &bytes).unwrap();
    assert!(read_labels(&joined).is_err(), "garbage after the gzip end was accepted");
}

#[test]
fn special_files_are_not_data() {
    let e = read_labels(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(e.contains("/dev/zero") && e.contains("not a regular file"), "{e}");
}
