//! Turning the C caller's pointers and lengths into slices, with every
//! check that makes that sound: not NULL, aligned for the element type, and
//! a length that fits the address space.

use crate::status::{TAILOR_ERR_LENGTH, TAILOR_ERR_MISALIGNED, TAILOR_ERR_NULL};

fn check<T>(p: *const T, len: usize) -> Result<(), i32> {
    if p.is_null() {
        return Err(TAILOR_ERR_NULL);
    }
    if !(p as usize).is_multiple_of(core::mem::align_of::<T>()) {
        return Err(TAILOR_ERR_MISALIGNED);
    }
    let bytes = len.checked_mul(core::mem::size_of::<T>()).ok_or(TAILOR_ERR_LENGTH)?;
    if bytes > isize::MAX as usize || (p as usize).checked_add(bytes).is_none() {
        return Err(TAILOR_ERR_LENGTH);
    }
    Ok(())
}

/// `len` elements at `p`.
///
/// # Safety
/// If `p` is not NULL, `len` elements from it are readable and not written
/// during `'a` (the C API's documented contract).
pub(crate) unsafe fn slice<'a, T>(p: *const T, len: usize) -> Result<&'a [T], i32> {
    check(p, len)?;
    // SAFETY: checked above; readable by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(p, len) })
}

/// `len` writable elements at `p`.
///
/// # Safety
/// If `p` is not NULL, `len` elements from it are writable and not accessed
/// otherwise during `'a`.
pub(crate) unsafe fn slice_mut<'a, T>(p: *mut T, len: usize) -> Result<&'a mut [T], i32> {
    check(p, len)?;
    // SAFETY: checked above; exclusive by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, len) })
}

/// The object at `p`.
///
/// # Safety
/// As [`slice`] for one element.
pub(crate) unsafe fn get<'a, T>(p: *const T) -> Result<&'a T, i32> {
    Ok(&unsafe { slice(p, 1) }?[0])
}

/// The object at `p`, writable.
///
/// # Safety
/// As [`slice_mut`] for one element.
pub(crate) unsafe fn get_mut<'a, T>(p: *mut T) -> Result<&'a mut T, i32> {
    Ok(&mut unsafe { slice_mut(p, 1) }?[0])
}
