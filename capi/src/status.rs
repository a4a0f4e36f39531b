//! Status codes: every function returns `TAILOR_OK` (0), a count or class
//! index (≥ 0), or one of these negative codes.

use core::ffi::c_char;

use tailor_core::format::FormatError;

/// Success.
pub const TAILOR_OK: i32 = 0;
/// A pointer the call needs is NULL.
pub const TAILOR_ERR_NULL: i32 = -1;
/// A pointer is not aligned as the call documents (model bytes: 4 bytes;
/// scratch: 2 bytes; outputs: their element type).
pub const TAILOR_ERR_MISALIGNED: i32 = -2;
/// A buffer is shorter than the model needs, or an input is not exactly
/// the model's input size.
pub const TAILOR_ERR_LENGTH: i32 = -3;
/// The `TailorModel` was not filled by a successful `tailor_model_load`.
pub const TAILOR_ERR_NOT_LOADED: i32 = -4;
/// The model bytes end before the length their header announces.
pub const TAILOR_ERR_TRUNCATED: i32 = -5;
/// The bytes are not a `.q8` model (magic `TLQ8`).
pub const TAILOR_ERR_MAGIC: i32 = -6;
/// A `.q8` of another format version (version 1: `tailor convert` it).
pub const TAILOR_ERR_VERSION: i32 = -7;
/// The header's or the payload's CRC-32 does not match (corrupt bytes).
pub const TAILOR_ERR_CHECKSUM: i32 = -8;
/// Any other inconsistency of the `.q8` (layer table, lengths, fields).
pub const TAILOR_ERR_CORRUPT: i32 = -9;

/// The code of a `.q8` parse error.
pub(crate) fn of_format(e: FormatError) -> i32 {
    match e {
        FormatError::Truncated { .. } => TAILOR_ERR_TRUNCATED,
        FormatError::BadMagic { .. } => TAILOR_ERR_MAGIC,
        FormatError::BadVersion { .. } | FormatError::Layout { found: 1 } => TAILOR_ERR_VERSION,
        FormatError::HeaderChecksum { .. } | FormatError::Checksum { .. } => TAILOR_ERR_CHECKSUM,
        FormatError::Misaligned => TAILOR_ERR_MISALIGNED,
        _ => TAILOR_ERR_CORRUPT,
    }
}

/// A static, NUL-terminated English message for `status` (any value; codes
/// ≥ 0 are successes).
#[no_mangle]
pub extern "C" fn tailor_status_str(status: i32) -> *const c_char {
    let s: &'static core::ffi::CStr = match status {
        s if s >= 0 => c"ok",
        TAILOR_ERR_NULL => c"a required pointer is NULL",
        TAILOR_ERR_MISALIGNED => c"a pointer is not aligned as required",
        TAILOR_ERR_LENGTH => c"a buffer is too short, or the input is not the model's input size",
        TAILOR_ERR_NOT_LOADED => c"the model was not loaded by tailor_model_load",
        TAILOR_ERR_TRUNCATED => c"the .q8 bytes are shorter than their header announces",
        TAILOR_ERR_MAGIC => c"not a .q8 model (magic TLQ8)",
        TAILOR_ERR_VERSION => c"a .q8 of another format version (convert it with `tailor convert`)",
        TAILOR_ERR_CHECKSUM => c"the .q8 checksum does not match (corrupt bytes)",
        TAILOR_ERR_CORRUPT => c"the .q8 is inconsistent (layer table, lengths or fields)",
        crate::train::TAILOR_ERR_SETTING => c"unusable training settings (dims, optimizer, input, learning rate)",
        crate::train::TAILOR_ERR_LABEL => c"a label is not one of the model's classes",
        _ => c"unknown status code",
    };
    s.as_ptr()
}
