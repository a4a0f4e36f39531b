//! Heap allocation of the core's big fixed-size structs without a stack
//! temporary: `Box::new(SeedMlp::ZERO)` would build 2.7 MB on the stack
//! first (and overflow it in debug builds).

use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};
use tailor_core::Zeroed;

/// A zero-initialized `Box<T>`, allocated directly on the heap.
pub fn zeroed<T: Zeroed>() -> Box<T> {
    let layout = Layout::new::<T>();
    assert!(layout.size() > 0, "zero-sized types need no boxing");
    // SAFETY: layout is non-zero-sized; `T: Zeroed` promises all-zero bytes
    // are a valid T, and the pointer comes from the global allocator with
    // T's layout, which is what Box::from_raw requires.
    unsafe {
        let p = alloc_zeroed(layout) as *mut T;
        if p.is_null() {
            handle_alloc_error(layout);
        }
        Box::from_raw(p)
    }
}

/// A boxed copy of `src` (clone without a stack temporary).
pub fn copy_of<T: Zeroed + tailor_core::Flat>(src: &T) -> Box<T> {
    let mut b = zeroed::<T>();
    b.flat_mut().copy_from_slice(src.flat());
    b
}
