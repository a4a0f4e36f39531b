//! A `.q8` model read in place from the caller's bytes (flash or RAM), its
//! sizes, and integer-only classification with the target's best int8
//! kernel (SMLAD on a Cortex-M4/M7).

use core::ffi::c_void;
use core::mem::{align_of, size_of};

use tailor_core::quant::{QKernels, QModel};

use crate::args::{get, get_mut, slice, slice_mut};
use crate::status::{of_format, TAILOR_ERR_LENGTH, TAILOR_ERR_NOT_LOADED, TAILOR_ERR_NULL, TAILOR_OK};

/// 64-bit words of a `TailorModel`'s storage (room for the core's view of
/// a model on 32- and 64-bit targets).
pub const TAILOR_MODEL_WORDS: usize = 40;

/// Bytes a model's array should be aligned to: every layer's weights then
/// start on a 64-byte boundary, which the host's SIMD kernels load fastest
/// (`tailor_model_load` itself needs 4).
pub const TAILOR_MODEL_ALIGN: usize = 64;

/// Most classes `tailor_classify_batch` takes with `logits` NULL (it then
/// keeps one sample's logits on its stack).
pub const TAILOR_BATCH_OWN_LOGITS: usize = 64;
const OWN_LOGITS: usize = TAILOR_BATCH_OWN_LOGITS;

const LOADED: u32 = u32::from_le_bytes(*b"TLQm");

/// A loaded model: `tailor_model_load` fills it, the other calls read it.
/// It points into the model's bytes, which must stay in place and unchanged
/// while it is used. Plain data: it may be copied, and needs no freeing.
/// Its fields are private.
#[repr(C)]
pub struct TailorModel {
    /// Set by a successful load.
    tag: u32,
    storage: [u64; TAILOR_MODEL_WORDS],
}

const _: () = assert!(size_of::<QModel<'static>>() <= 8 * TAILOR_MODEL_WORDS);
const _: () = assert!(align_of::<QModel<'static>>() <= align_of::<u64>());

impl TailorModel {
    pub(crate) fn loaded(&self) -> Result<&QModel<'static>, i32> {
        if self.tag != LOADED {
            return Err(TAILOR_ERR_NOT_LOADED);
        }
        // SAFETY: the tag is only set after a QModel was written to the
        // storage, which is large and aligned enough (asserted above).
        Ok(unsafe { &*(self.storage.as_ptr() as *const QModel<'static>) })
    }
}

/// What a loaded model is, for sizing buffers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailorModelInfo {
    /// Input bytes of one sample (784 for a Fashion-MNIST image).
    pub inputs: u32,
    /// Classes: the logits of one sample.
    pub outputs: u32,
    /// Dense layers.
    pub layers: u32,
    /// Bytes of the `.q8` (header + payload).
    pub model_bytes: u32,
    /// Bytes of scratch `tailor_classify` needs.
    pub scratch_bytes: u32,
    /// CRC-32 of the payload (as `tailor device` and the header report it).
    pub payload_crc: u32,
    /// Bytes `tailor_model_features` writes per sample: the last hidden
    /// layer's width (0 without a hidden layer).
    pub features: u32,
}

fn loaded<'a>(model: *const TailorModel) -> Result<&'a QModel<'static>, i32> {
    // SAFETY: the caller's contract for a `const TailorModel *`.
    unsafe { get(model) }?.loaded()
}

fn status(r: Result<i32, i32>) -> i32 {
    r.unwrap_or_else(|e| e)
}

/// Checks the `.q8` at `bytes` and fills `*model` with a view of it.
///
/// `bytes` must be 4-byte aligned (`TAILOR_MODEL_ALIGN`, 64, is best:
/// `tailor export --format c` aligns its array so) and stay unchanged while
/// `*model` is used. `len` may exceed the model (e.g. a whole flash region):
/// the header says where it ends. Everything is checked (magic, version,
/// both CRCs, every length and field) before `*model` is marked loaded; on
/// an error `*model` is left not loaded.
///
/// Returns `TAILOR_OK` or a `TAILOR_ERR_*` code.
///
/// # Safety
/// `model` is NULL or points to a writable `TailorModel`; `bytes` is NULL
/// or points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn tailor_model_load(model: *mut TailorModel, bytes: *const u8, len: usize) -> i32 {
    if model.is_null() {
        return TAILOR_ERR_NULL;
    }
    if !(model as usize).is_multiple_of(align_of::<TailorModel>()) {
        return crate::status::TAILOR_ERR_MISALIGNED;
    }
    // Not loaded until every check passed (the struct may be uninitialized:
    // written through the raw pointer, never read).
    // SAFETY: non-null, aligned, writable by the caller's contract.
    unsafe { core::ptr::addr_of_mut!((*model).tag).write(0) };
    let r = (|| {
        // SAFETY: the caller's contract for `bytes`.
        let b: &'static [u8] = unsafe { slice(bytes, len) }?;
        let n = QModel::announced_len(b).map_err(of_format)?;
        let q = QModel::parse(b.get(..n).ok_or(crate::status::TAILOR_ERR_TRUNCATED)?).map_err(of_format)?;
        // SAFETY: the storage holds a QModel (asserted size and alignment).
        unsafe {
            (core::ptr::addr_of_mut!((*model).storage) as *mut QModel<'static>).write(q);
            core::ptr::addr_of_mut!((*model).tag).write(LOADED);
        }
        Ok(TAILOR_OK)
    })();
    status(r)
}

/// Fills `*info` with the loaded model's sizes. Returns `TAILOR_OK` or a
/// `TAILOR_ERR_*` code.
///
/// # Safety
/// Each pointer is NULL or valid for its type.
#[no_mangle]
pub unsafe extern "C" fn tailor_model_info(model: *const TailorModel, info: *mut TailorModelInfo) -> i32 {
    status((|| {
        let m = loaded(model)?;
        // SAFETY: the caller's contract for `info`.
        let out = unsafe { get_mut(info) }?;
        let spec = m.spec();
        *out = TailorModelInfo {
            inputs: spec.inputs() as u32,
            outputs: spec.outputs() as u32,
            layers: spec.depth() as u32,
            model_bytes: m.encoded_len() as u32,
            scratch_bytes: (2 * m.scratch_len()) as u32,
            payload_crc: m.payload_crc(),
            features: if spec.depth() < 2 { 0 } else { spec.layer(spec.depth() - 1).inputs as u32 },
        };
        Ok(TAILOR_OK)
    })())
}

/// Bytes of scratch `tailor_classify` needs for this model (0 if `model`
/// is not a loaded model). `tailor export --format c` also writes it as
/// `TAILOR_MODEL_SCRATCH_BYTES`, for a `static` buffer.
///
/// # Safety
/// `model` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tailor_scratch_size(model: *const TailorModel) -> usize {
    loaded(model).map_or(0, |m| 2 * m.scratch_len())
}

/// Classifies one sample: `input` holds exactly the model's `inputs` bytes
/// (raw pixels for an image model). Writes the model's `outputs` int32
/// logits to `logits` (at least that many) and returns the class, the
/// first index of the largest logit (≥ 0), or a `TAILOR_ERR_*` code.
///
/// `scratch`: at least `tailor_scratch_size` bytes, 2-byte aligned, not
/// overlapping the other buffers; its contents need no initialization and
/// are overwritten. Integer-only: every target gives the same logits.
///
/// # Safety
/// Each pointer is NULL or valid for its length.
#[no_mangle]
pub unsafe extern "C" fn tailor_classify(
    model: *const TailorModel,
    input: *const u8,
    input_len: usize,
    scratch: *mut c_void,
    scratch_bytes: usize,
    logits: *mut i32,
    logits_len: usize,
) -> i32 {
    status((|| {
        let m = loaded(model)?;
        // SAFETY: the caller's contract for each buffer.
        let (x, s, l) = unsafe {
            (
                slice(input, input_len)?,
                slice_mut(scratch as *mut i16, scratch_bytes / 2)?,
                slice_mut(logits, logits_len)?,
            )
        };
        classify(m, x, s, l)
    })())
}

fn classify(m: &QModel<'_>, x: &[u8], scratch: &mut [i16], logits: &mut [i32]) -> Result<i32, i32> {
    let spec = m.spec();
    if x.len() != spec.inputs() || scratch.len() < m.scratch_len() || logits.len() < spec.outputs() {
        return Err(TAILOR_ERR_LENGTH);
    }
    Ok(m.classify(&QKernels::BEST, x, scratch, logits) as i32)
}

/// Classifies `n` samples stored back to back in `inputs` (`inputs_len` =
/// `n` × the model's inputs), one at a time (the fastest path on a
/// Cortex-M): `classes[i]` gets sample `i`'s class and, unless `logits` is
/// NULL, `logits[i × outputs ..]` its logits (`logits_len` ≥ `n` × outputs;
/// NULL only for models of at most `TAILOR_BATCH_OWN_LOGITS` classes).
/// `scratch` as for `tailor_classify`. Returns `n` or a `TAILOR_ERR_*` code
/// (then nothing was classified).
///
/// # Safety
/// Each pointer is NULL or valid for its length.
#[no_mangle]
pub unsafe extern "C" fn tailor_classify_batch(
    model: *const TailorModel,
    inputs: *const u8,
    inputs_len: usize,
    n: usize,
    scratch: *mut c_void,
    scratch_bytes: usize,
    classes: *mut u32,
    logits: *mut i32,
    logits_len: usize,
) -> i32 {
    status((|| {
        let m = loaded(model)?;
        let (n_in, n_out) = (m.spec().inputs(), m.spec().outputs());
        let count = i32::try_from(n).map_err(|_| TAILOR_ERR_LENGTH)?;
        if n.checked_mul(n_in) != Some(inputs_len) {
            return Err(TAILOR_ERR_LENGTH);
        }
        // SAFETY: the caller's contract for each buffer.
        let (x, s, c) = unsafe {
            (slice(inputs, inputs_len)?, slice_mut(scratch as *mut i16, scratch_bytes / 2)?, slice_mut(classes, n)?)
        };
        let mut l = if logits.is_null() {
            None
        } else {
            if n.checked_mul(n_out).is_none_or(|need| logits_len < need) {
                return Err(TAILOR_ERR_LENGTH);
            }
            // SAFETY: the caller's contract for `logits`.
            Some(unsafe { slice_mut(logits, n * n_out) }?)
        };
        if s.len() < m.scratch_len() || (l.is_none() && n_out > OWN_LOGITS) {
            return Err(TAILOR_ERR_LENGTH);
        }
        let mut own = [0i32; OWN_LOGITS];
        for (i, (xi, ci)) in x.chunks_exact(n_in).zip(c.iter_mut()).enumerate() {
            let li = match l.as_deref_mut() {
                Some(l) => &mut l[i * n_out..(i + 1) * n_out],
                None => &mut own[..n_out],
            };
            *ci = classify(m, xi, s, li)? as u32;
        }
        Ok(count)
    })())
}
