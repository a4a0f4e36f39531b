//! Compiles the int8 model into the firmware.
//!
//! Reads the `.q8` file named by `TAILOR_MODEL` (default
//! `models/default.q8`), checks it with `tailor-core`, writes its raw
//! `repr(C)` image to `$OUT_DIR/model.bin` and a module
//! (`tailor_core::quant::export::write_rust_module`) that puts it in flash
//! (`.rodata`) as `static MODEL`. The layer widths pick the Rust type, so
//! only the shapes listed in `SHAPES` below are supported.
use std::path::PathBuf;
use std::{env, fs};

use tailor_core::quant::export::{write_rust_module, write_rust_module1};
use tailor_core::quant::{QMlp, QMlp1};

fn zeroed<T: tailor_core::Zeroed>() -> Box<T> {
    // SAFETY: `Zeroed` promises that all-zero bytes are a valid T.
    unsafe { Box::<T>::new_zeroed().assume_init() }
}

macro_rules! shapes {
    ($dims:expr, $bytes:expr, $bin:expr; $(QMlp<$a:literal, $b:literal, $c:literal, $d:literal>),*; $(QMlp1<$e:literal, $f:literal, $g:literal>),*) => {{
        let mut src = String::new();
        let mut image = Vec::new();
        let supported = [$(&[$a, $b, $c, $d][..],)* $(&[$e, $f, $g][..],)*];
        match $dims {
            $(
                [$a, $b, $c, $d] => {
                    let mut m = zeroed::<QMlp<$a, $b, $c, $d>>();
                    m.read($bytes).unwrap_or_else(|e| fail(&format!("{e}")));
                    image.resize(QMlp::<$a, $b, $c, $d>::BIN_BYTES, 0);
                    m.write_bin(&mut image);
                    write_rust_module(&m, m.payload_crc(), $bin, &mut src).unwrap();
                }
            )*
            $(
                [$e, $f, $g] => {
                    let mut m = zeroed::<QMlp1<$e, $f, $g>>();
                    m.read($bytes).unwrap_or_else(|e| fail(&format!("{e}")));
                    image.resize(QMlp1::<$e, $f, $g>::BIN_BYTES, 0);
                    m.write_bin(&mut image);
                    write_rust_module1(&m, m.payload_crc(), $bin, &mut src).unwrap();
                }
            )*
            other => fail(&format!("layer widths {other:?} are not compiled into the firmware; supported: {supported:?} (add the shape to firmware-sim/build.rs)")),
        }
        (src, image)
    }};
}

fn fail(msg: &str) -> ! {
    eprintln!("error: TAILOR_MODEL: {msg}");
    panic!("TAILOR_MODEL: {msg}");
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());

    // Linker script: memory.x next to link.x.
    fs::copy(manifest.join("memory.x"), out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");

    println!("cargo:rerun-if-env-changed=TAILOR_MODEL");
    let model = env::var_os("TAILOR_MODEL").map(PathBuf::from).unwrap_or_else(|| manifest.join("models/default.q8"));
    println!("cargo:rerun-if-changed={}", model.display());
    let bytes = fs::read(&model).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", model.display())));
    let dims: Vec<u32> = match tailor_core::format::Header::parse(&bytes, tailor_core::quant::MAGIC) {
        Ok((h, _)) => h.spec.dims().to_vec(),
        Err(e) => fail(&format!("{} is not a valid .q8 int8 model: {e}", model.display())),
    };
    let bin = out.join("model.bin");
    let bin_str = bin.to_str().expect("OUT_DIR is not UTF-8");
    let (src, image) = shapes!(dims.as_slice(), &bytes, bin_str;
        QMlp<784, 512, 512, 10>, QMlp<784, 256, 256, 10>, QMlp<784, 256, 128, 10>, QMlp<784, 128, 128, 10>,
        QMlp<784, 128, 64, 10>, QMlp<784, 64, 64, 10>, QMlp<784, 32, 32, 10>, QMlp<784, 16, 16, 10>;
        QMlp1<784, 256, 10>, QMlp1<784, 128, 10>, QMlp1<784, 64, 10>, QMlp1<784, 32, 10>);
    fs::write(&bin, image).unwrap();
    let src = format!(
        "{src}/// The `.q8` file this firmware was built from.\npub const MODEL_SOURCE: &str = {:?};\n",
        model.display().to_string()
    );
    fs::write(out.join("model.rs"), src).unwrap();
}
