use super::*;
use crate::data::npy::{npy_bytes, read_features, read_labels, read_split};

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `train_x.npy` and `train_y.npy` in a fresh tempdir.
fn pair(x: &[u8], y: &[u8]) -> (TempDir, PathBuf, PathBuf) {
    let dir = TempDir::new().unwrap();
    let (px, py) = (dir.path().join("train_x.npy"), dir.path().join("train_y.npy"));
    std::fs::write(&px, x).unwrap();
    std::fs::write(&py, y).unwrap();
    (dir, px, py)
}

#[test]
fn u8_features_with_i64_labels() {
    let x = npy_bytes("|u1", &[3, 2, 2], &(0..12).collect::<Vec<u8>>());
    let y = npy_bytes("<i8", &[3], &[2i64, 0, 1].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
    let (_d, px, py) = pair(&x, &y);
    let s = read_split(&px, &py, None).unwrap();
    assert_eq!(s, Split::new(Features::U8((0..12).collect()), vec![2, 0, 1], 4));
}

#[test]
fn f32_features_with_u8_labels() {
    let x = npy_bytes("<f4", &[2, 3], &f32_bytes(&[0.5, -1.0, 3e7, 0.0, 1e-30, -0.0]));
    let y = npy_bytes("|u1", &[2], &[1, 255]);
    let (_d, px, py) = pair(&x, &y);
    let s = read_split(&px, &py, None).unwrap();
    assert_eq!(s.width, 3);
    assert_eq!(s.row_f32(0), Some(&[0.5, -1.0, 3e7][..]));
    assert_eq!(s.labels, [1, 255]);
}

#[test]
fn every_label_dtype() {
    for (descr, size) in
        [("|u1", 1), ("|i1", 1), ("<i2", 2), ("<i4", 4), ("<i8", 8), ("<u2", 2), ("<u4", 4), ("<u8", 8)]
    {
        let data: Vec<u8> =
            [7u8, 200].iter().flat_map(|&v| (0..size).map(move |k| if k == 0 { v } else { 0 })).collect();
        let (_d, p) = file("y.npy", &npy_bytes(descr, &[2], &data));
        let want: &[u8] = if descr == "|i1" { &[7] } else { &[7, 200] };
        match read_labels(&p) {
            Ok(l) => assert_eq!(l, want, "{descr}"),
            // 200 as an i8 is -56.
            Err(e) => assert_says(&e, &["y.npy", "label -56 at index 1", "0..=255"]),
        }
    }
}

#[test]
fn bad_magic_and_version() {
    let (_d, p) = file("x.npy", b"PK\x03\x04 a zip file");
    let e = read_features(&p).unwrap_err();
    assert!(matches!(e, DataError::NpyMagic { .. }), "{e}");
    assert_says(&e, &["x.npy", "not an NPY file", "\\x93NUMPY"]);
    let mut b = npy_bytes("|u1", &[1, 1], &[0]);
    b[6] = 4;
    let (_d, p) = file("x.npy", &b);
    let e = read_features(&p).unwrap_err();
    assert!(matches!(e, DataError::NpyVersion { major: 4, minor: 0, .. }), "{e}");
    assert_says(&e, &["x.npy", "version 4.0", "1.0, 2.0 or 3.0"]);
}

#[test]
fn fortran_order() {
    let mut b = npy_bytes("|u1", &[1, 1], &[0]);
    let at = b.windows(5).position(|w| w == b"False").unwrap();
    b[at..at + 5].copy_from_slice(b"True ");
    let (_d, p) = file("x.npy", &b);
    let e = read_features(&p).unwrap_err();
    assert!(matches!(e, DataError::NpyFortran { .. }), "{e}");
    assert_says(&e, &["x.npy", "Fortran", "C order"]);
}

#[test]
fn wrong_dtypes() {
    let (_d, p) = file("x.npy", &npy_bytes("<f8", &[1, 1], &[0; 8]));
    let e = read_features(&p).unwrap_err();
    assert!(matches!(e, DataError::NpyDtype { .. }), "{e}");
    assert_says(&e, &["x.npy", "\"<f8\"", "'|u1'", "'<f4'"]);
    let (_d, p) = file("y.npy", &npy_bytes("<f4", &[1], &[0; 4]));
    let e = read_labels(&p).unwrap_err();
    assert_says(&e, &["y.npy", "\"<f4\"", "'<i8'", "'|u1'"]);
}

#[test]
fn wrong_ndim() {
    let (_d, p) = file("x.npy", &npy_bytes("|u1", &[4], &[0; 4]));
    let e = read_features(&p).unwrap_err();
    assert!(matches!(e, DataError::BadShape { .. }), "{e}");
    assert_says(&e, &["x.npy", "[4]", "[N, features]"]);
    let (_d, p) = file("y.npy", &npy_bytes("|u1", &[2, 2], &[0; 4]));
    let e = read_labels(&p).unwrap_err();
    assert_says(&e, &["y.npy", "[2, 2]", "[N]"]);
    let (_d, p) = file("x.npy", &npy_bytes("|u1", &[4, 0], &[]));
    assert_says(&read_features(&p).unwrap_err(), &["x.npy", "at least one feature"]);
}

#[test]
fn count_mismatch_names_both_files() {
    let (_d, px, py) = pair(&npy_bytes("|u1", &[3, 1], &[0; 3]), &npy_bytes("|u1", &[2], &[0; 2]));
    let e = read_split(&px, &py, None).unwrap_err();
    assert!(matches!(e, DataError::CountMismatch { samples: 3, labels: 2, .. }), "{e}");
    assert_says(&e, &["train_x.npy", "train_y.npy", "3 samples", "2 labels"]);
}

#[test]
fn truncated_and_trailing_data() {
    let (_d, p) = file("x.npy", &npy_bytes("<f4", &[2, 2], &[0; 15]));
    let e = read_features(&p).unwrap_err();
    assert!(matches!(e, DataError::Truncated { part: "body", .. }), "{e}");
    assert_says(&e, &["x.npy", "truncated body", "expected 144 bytes, found 143"]);
    let (_d, p) = file("x.npy", &npy_bytes("|u1", &[2, 2], &[0; 5]));
    let e = read_features(&p).unwrap_err();
    assert!(matches!(e, DataError::TrailingData { extra: 1, .. }), "{e}");
    assert_says(&e, &["x.npy", "1 trailing bytes"]);
    let (_d, p) = file("x.npy", &npy_bytes("|u1", &[2, 2], &[])[..20]);
    let e = read_features(&p).unwrap_err();
    assert_says(&e, &["x.npy", "truncated header"]);
}

#[test]
fn huge_shape_is_bounded_by_the_file_size() {
    let (_d, p) = file("x.npy", &npy_bytes("<f4", &[1 << 40, 1 << 20], &[]));
    let e = read_features(&p).unwrap_err();
    assert!(matches!(e, DataError::TooLarge { .. } | DataError::Truncated { .. }), "{e}");
    let (_d, p) = file("x.npy", &npy_bytes("|u1", &[u64::MAX, 3], &[]));
    assert!(read_features(&p).is_err());
}

#[test]
fn labels_out_of_range() {
    let y = npy_bytes("<i4", &[3], &[0i32, -5, 9].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>());
    let (_d, p) = file("y.npy", &y);
    let e = read_labels(&p).unwrap_err();
    assert!(matches!(e, DataError::BadLabel { at: Loc::Index(1), .. }), "{e}");
    assert_says(&e, &["y.npy", "label -5 at index 1", "0..=255"]);
    let y = npy_bytes("<u2", &[2], &[1, 0, 0, 1]);
    let (_d, p) = file("y.npy", &y);
    assert_says(&read_labels(&p).unwrap_err(), &["y.npy", "label 256 at index 1"]);
    let (_d, px, py) = pair(&npy_bytes("|u1", &[3, 1], &[0; 3]), &npy_bytes("|u1", &[3], &[0, 1, 2]));
    assert_says(&read_split(&px, &py, Some(2)).unwrap_err(), &["train_y.npy", "label 2 at index 2", "0..2"]);
}

#[test]
fn nan_and_inf_features() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let (_d, p) = file("x.npy", &npy_bytes("<f4", &[2, 2], &f32_bytes(&[0.0, 1.0, 2.0, bad])));
        let e = read_features(&p).unwrap_err();
        assert!(matches!(e, DataError::NotFinite { at: Loc::Index(1), .. }), "{e}");
        assert_says(&e, &["x.npy", "index 1", "feature 1", &bad.to_string(), "finite"]);
    }
}

#[test]
fn header_variants_numpy_writes() {
    // Version 2.0 (4-byte header length), double quotes, Python 2 longs,
    // keys in another order.
    let dict = "{\"shape\": (2L, 1L), 'fortran_order': False, 'descr': '|u1'}  \n";
    let mut b = b"\x93NUMPY\x02\x00".to_vec();
    b.extend((dict.len() as u32).to_le_bytes());
    b.extend(dict.as_bytes());
    b.extend([5, 6]);
    let (_d, p) = file("x.npy", &b);
    assert_eq!(read_features(&p).unwrap(), (Features::U8(vec![5, 6]), 1));
    for (dict, needle) in [
        ("{'descr': '|u1', 'shape': (1, 1)}", "no 'fortran_order' key"),
        ("{'descr': '|u1', 'fortran_order': 0, 'shape': (1, 1)}", "unexpected value"),
        ("{'descr': '|u1', 'fortran_order': False, 'shape': (1, x)}", "bad dimension"),
        ("['descr']", "expected '{'"),
    ] {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((dict.len() as u16).to_le_bytes());
        b.extend(dict.as_bytes());
        let (_d, p) = file("x.npy", &b);
        let e = read_features(&p).unwrap_err();
        assert!(matches!(e, DataError::NpyHeader { .. }), "{e}");
        assert_says(&e, &["x.npy", "malformed NPY header", needle]);
    }
}

#[test]
fn npy_dataset_in_a_directory() {
    let dir = TempDir::new().unwrap();
    let w = |name: &str, b: Vec<u8>| std::fs::write(dir.path().join(name), b).unwrap();
    w("train_x.npy", npy_bytes("<f4", &[2, 2], &f32_bytes(&[1.0, 2.0, 3.0, 4.0])));
    w("train_y.npy", npy_bytes("|u1", &[2], &[0, 4]));
    w("test_x.npy", npy_bytes("<f4", &[1, 2], &f32_bytes(&[5.0, 6.0])));
    w("test_y.npy", npy_bytes("|u1", &[1], &[1]));
    let ds = load_dir(dir.path()).unwrap();
    assert_eq!((ds.kind, ds.features, ds.classes), (Kind::Npy, 2, 5));
    assert_eq!(ds.default_norm(), Norm::standardize(&ds.train));
    // A byte test set beside an f32 train set.
    w("test_x.npy", npy_bytes("|u1", &[1, 2], &[5, 6]));
    let e = load_dir(dir.path()).unwrap_err();
    assert!(matches!(e, DataError::TypeMismatch { train: "f32", test: "u8", .. }), "{e}");
    assert_says(&e, &["train_x.npy", "test_x.npy"]);
}
