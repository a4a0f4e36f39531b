//! The int8 model in the board's model region, checked at boot.
//!
//! A missing, corrupt or oversized model is not a fault: the device serves
//! anyway, says why in its `Hello` and answers `Classify` with `NoModel`, so
//! the host can report it.

use core::fmt::Write as _;

use tailor_core::format::FormatError;
use tailor_core::protocol::{ModelState, MAX_DIMS, MAX_OUT};
use tailor_core::quant::{Aligned, QModel};

/// `i16` elements of the inference scratch: room for layers up to 8,191
/// wide (the host checks `scratch_len` against it before flashing).
pub const SCRATCH_LEN: usize = 16 * 1024;

/// The model, or why there is none.
pub enum Loaded {
    Ready(QModel<'static>),
    Failed(ModelState, heapless::String<160>),
}

impl Loaded {
    pub fn model(&self) -> Option<&QModel<'static>> {
        match self {
            Loaded::Ready(m) => Some(m),
            Loaded::Failed(..) => None,
        }
    }
}

fn failed(state: ModelState, args: core::fmt::Arguments<'_>) -> Loaded {
    let mut s = heapless::String::new();
    let _ = s.write_fmt(args);
    Loaded::Failed(state, s)
}

/// Parses the `.q8` at the start of `region` and checks that this firmware
/// can run it with `scratch_len` elements of scratch.
pub fn load(region: &'static [u8], scratch_len: usize) -> Loaded {
    let base = region.as_ptr() as usize;
    let len = match QModel::announced_len(region) {
        Ok(n) => n,
        Err(FormatError::BadMagic { found, .. }) if found == [0; 4] || found == [0xff; 4] => {
            return failed(ModelState::Missing, format_args!("no .q8 model at {base:#x} (flash one there)"))
        }
        Err(FormatError::BadVersion { found: 1, .. }) => {
            return failed(ModelState::Invalid, format_args!("a version-1 .q8: convert it with `tailor convert`"))
        }
        Err(e) => return failed(ModelState::Invalid, format_args!("model at {base:#x}: {e}")),
    };
    if len > region.len() {
        return failed(
            ModelState::TooLarge,
            format_args!("model of {len} bytes > the {}-byte model region", region.len()),
        );
    }
    let m = match QModel::parse(&region[..len]) {
        Ok(m) => m,
        Err(e) => return failed(ModelState::Invalid, format_args!("model at {base:#x}: {e}")),
    };
    let spec = m.spec();
    if m.scratch_len() > scratch_len {
        return failed(
            ModelState::TooLarge,
            format_args!("model {spec} needs {} i16 of scratch, the firmware has {scratch_len}", m.scratch_len()),
        );
    }
    if spec.outputs() > MAX_OUT || spec.dims().len() > MAX_DIMS {
        return failed(ModelState::TooLarge, format_args!("model {spec} has more than {MAX_OUT} classes"));
    }
    Loaded::Ready(m)
}

/// The scratch [`crate::Device`] classifies with.
pub static mut SCRATCH: Aligned<[i16; SCRATCH_LEN]> = Aligned([0; SCRATCH_LEN]);
