use proptest::prelude::*;

use super::*;
use crate::data::csv::read_split;

fn csv(text: &str) -> (TempDir, PathBuf) {
    file("train.csv", text.as_bytes())
}

#[track_caller]
fn err(text: &str, label_column: Option<&str>, classes: Option<usize>) -> DataError {
    let (_d, p) = csv(text);
    read_split(&p, label_column, classes).unwrap_err()
}

#[test]
fn label_column_last_by_default() {
    let (_d, p) = csv("a,b,y\n1,2.5,0\n-3e2, 4 ,2\n");
    let s = read_split(&p, None, None).unwrap();
    assert_eq!(s, Split::new(Features::F32(vec![1.0, 2.5, -300.0, 4.0]), vec![0, 2], 2));
    assert_eq!(s.row_f32(1), Some(&[-300.0, 4.0][..]));
    assert_eq!(s.row_u8(1), None);
}

#[test]
fn label_column_by_name() {
    let (_d, p) = csv("y,a,b\n1,0.5,7\n0,8,9\n");
    let s = read_split(&p, Some("y"), None).unwrap();
    assert_eq!(s, Split::new(Features::F32(vec![0.5, 7.0, 8.0, 9.0]), vec![1, 0], 2));
}

#[test]
fn unknown_label_column_lists_the_columns() {
    let e = err("a,b,y\n1,2,0\n", Some("label"), None);
    assert!(matches!(e, DataError::UnknownColumn { .. }), "{e}");
    assert_says(&e, &["train.csv", "\"label\"", "a, b, y"]);
}

#[test]
fn ragged_row() {
    let e = err("a,b,y\n1,2,0\n1,2\n", None, None);
    assert!(matches!(e, DataError::Ragged { line: 3, expected: 3, found: 2, .. }), "{e}");
    assert_says(&e, &["train.csv", "line 3", "2 fields", "expected 3"]);
}

#[test]
fn non_numeric_cell() {
    let e = err("a,b,y\n1,2,0\n1,x2,1\n", None, None);
    assert!(matches!(e, DataError::NotANumber { line: 3, .. }), "{e}");
    assert_says(&e, &["train.csv", "\"x2\"", "line 3", "column \"b\"", "expected a number"]);
}

#[test]
fn nan_and_infinite_cells() {
    for bad in ["NaN", "inf", "-inf", "infinity"] {
        let e = err(&format!("a,b,y\n{bad},2,0\n"), None, None);
        assert!(matches!(e, DataError::NotFinite { at: Loc::Line(2), .. }), "{e}");
        assert_says(&e, &["train.csv", bad, "line 2", "column \"a\"", "finite"]);
    }
}

#[test]
fn bad_labels() {
    for (label, expected) in [("-1", "0..=255"), ("256", "0..=255"), ("1.5", "0..=255"), ("cat", "0..=255")] {
        let e = err(&format!("a,y\n1,0\n2,{label}\n"), None, None);
        assert!(matches!(e, DataError::BadLabel { at: Loc::Line(3), .. }), "{e}");
        assert_says(&e, &["train.csv", label, "line 3", "column \"y\"", expected]);
    }
    // With class names, labels must name one of them.
    let e = err("a,y\n1,0\n2,3\n", None, Some(3));
    assert_says(&e, &["train.csv", "label \"3\" at line 3", "0..3"]);
    let (_d, p) = csv("a,y\n1,0\n2,255\n");
    assert_eq!(read_split(&p, None, None).unwrap().labels, [0, 255]);
}

#[test]
fn empty_file_and_header_only() {
    let e = err("", None, None);
    assert!(matches!(e, DataError::EmptyFile { .. }), "{e}");
    assert_says(&e, &["train.csv", "empty file", "header"]);
    let e = err("a,b,y\n", None, None);
    assert!(matches!(e, DataError::NoRows { .. }), "{e}");
    assert_says(&e, &["train.csv", "only a header", "data rows"]);
}

#[test]
fn bad_headers() {
    for (text, needle) in [
        ("a,a,y\n1,2,0\n", "\"a\" appears twice"),
        ("a,,y\n1,2,0\n", "column 2 has no name"),
        ("y\n1\n", "at least one feature"),
    ] {
        let e = err(text, None, None);
        assert!(matches!(e, DataError::BadHeader { .. }), "{e}");
        assert_says(&e, &["train.csv", needle]);
    }
}

#[test]
fn byte_order_mark_is_not_part_of_the_first_name() {
    let (_d, p) = csv("\u{feff}y,a\n1,2\n");
    assert_eq!(read_split(&p, Some("y"), None).unwrap().labels, [1]);
}

#[test]
fn csv_dataset_with_names_from_flag_and_file() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("train.csv"), "a,b,label\n1,2,0\n3,4,1\n5,6,1\n").unwrap();
    std::fs::write(dir.path().join("test.csv"), "a,b,label\n7,8,0\n").unwrap();
    let ds = load_dir(dir.path()).unwrap();
    assert_eq!((ds.kind, ds.features, ds.classes, ds.train.len(), ds.test.len()), (Kind::Csv, 2, 2, 3, 1));
    assert_eq!(ds.class_names, ["0", "1"]);
    std::fs::write(dir.path().join(CLASSES_FILE), "cat\ndog\nbird\n\n").unwrap();
    let ds = load_dir(dir.path()).unwrap();
    assert_eq!((ds.classes, ds.class_names.clone()), (3, vec!["cat".to_string(), "dog".into(), "bird".into()]));
    let args = DataArgs { data: Some(dir.path().into()), classes: Some(vec!["x".into()]), ..DataArgs::default() };
    let e = load_with(&args, None).unwrap_err();
    assert_says(&e, &["train.csv", "label \"1\" at line 3", "0..1"]);
    let args = DataArgs { label_column: Some("a".into()), classes: Some(vec!["x".into(), "y".into()]), ..args };
    let e = load_with(&args, None).unwrap_err();
    assert_says(&e, &["train.csv", "label \"3\" at line 3", "column \"a\""]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any finite floats written with Rust's shortest round-trip format
    /// come back bit for bit.
    #[test]
    fn round_trip_of_finite_floats(
        rows in proptest::collection::vec(
            (proptest::collection::vec(any::<f32>().prop_filter("finite", |v| v.is_finite()), 3), 0u8..=255),
            1..20,
        )
    ) {
        let mut text = String::from("f0,f1,f2,class\n");
        for (f, l) in &rows {
            text.push_str(&format!("{},{},{},{l}\n", f[0], f[1], f[2]));
        }
        let (_d, p) = csv(&text);
        let s = read_split(&p, None, None).unwrap();
        let want: Vec<u32> = rows.iter().flat_map(|(f, _)| f.iter().map(|v| v.to_bits())).collect();
        let got: Vec<u32> = s.features.as_f32().unwrap().iter().map(|v| v.to_bits()).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(s.labels, rows.iter().map(|r| r.1).collect::<Vec<_>>());
    }
}
