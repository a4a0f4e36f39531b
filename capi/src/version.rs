//! Versions: of this library, of its C API, and of the `.q8` format it reads.

use core::ffi::c_char;

/// The C API's version: bumped when a function, a struct or a code changes
/// meaning. A program compares `tailor_version().api` with the
/// `TAILOR_API_VERSION` of the header it was compiled against.
pub const TAILOR_API_VERSION: u32 = 1;

/// What `tailor_version` returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TailorVersion {
    /// The library's (tailor's) semantic version.
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
    /// The `.q8` format version read (the file header's).
    pub q8_version: u16,
    /// The `.q8` payload layout read (the payload's first word).
    pub q8_layout: u32,
    /// `TAILOR_API_VERSION` of this library.
    pub api: u32,
}

const fn parse(s: &str) -> u16 {
    let b = s.as_bytes();
    let mut v = 0u16;
    let mut i = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u16;
        i += 1;
    }
    v
}

const VERSION: TailorVersion = TailorVersion {
    major: parse(env!("CARGO_PKG_VERSION_MAJOR")),
    minor: parse(env!("CARGO_PKG_VERSION_MINOR")),
    patch: parse(env!("CARGO_PKG_VERSION_PATCH")),
    q8_version: tailor_core::quant::VERSION,
    q8_layout: tailor_core::quant::LAYOUT_ID,
    api: TAILOR_API_VERSION,
};

/// The library's, API's and `.q8` format's versions.
#[no_mangle]
pub extern "C" fn tailor_version() -> TailorVersion {
    VERSION
}

/// `"tailor X.Y.Z"`, static and NUL-terminated.
#[no_mangle]
pub extern "C" fn tailor_version_string() -> *const c_char {
    const S: &core::ffi::CStr =
        match core::ffi::CStr::from_bytes_with_nul(concat!("tailor ", env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(s) => s,
            Err(_) => panic!("a version string without NUL"),
        };
    S.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_the_crates_and_the_formats() {
        let v = tailor_version();
        let s = unsafe { core::ffi::CStr::from_ptr(tailor_version_string()) }.to_str().unwrap();
        assert_eq!(s, std::format!("tailor {}.{}.{}", v.major, v.minor, v.patch));
        assert_eq!(s, concat!("tailor ", env!("CARGO_PKG_VERSION")));
        assert_eq!((v.q8_version, v.q8_layout, v.api), (2, 3, TAILOR_API_VERSION));
    }
}
