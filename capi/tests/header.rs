//! `include/tailor.h` is cbindgen's output for this crate, byte for byte:
//! the header C code compiles against cannot drift from the library.
//! After changing the API: `TAILOR_BLESS=1 cargo test -p tailor-capi --test header`.

use std::path::Path;

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("capi/cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut generated);
    let path = dir.join("include/tailor.h");
    if std::env::var_os("TAILOR_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale (or missing): regenerate it with `TAILOR_BLESS=1 cargo test -p tailor-capi --test header`\n\
         --- generated ---\n{}",
        path.display(),
        String::from_utf8_lossy(&generated)
    );
}
