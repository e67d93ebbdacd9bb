//! The global allocator: mimalloc, counting the bytes each thread allocates, so that the
//! extension runtime can attribute what is allocated while an extension's code runs (see
//! [`allocated`]). Counting is one thread-local addition per allocation.
//!
//! mimalloc instead of the system allocator: a request allocates a few dozen small objects,
//! and glibc's allocator makes their cost depend on what was freed before (its fast bins are
//! consolidated when a larger block is asked for). mimalloc's per-thread free lists keep each
//! allocation cheap and steady. Declared in this library so that every binary built on it —
//! the server and the benchmark alike — uses it.
//!
//! What this cannot do: limit an extension's memory. Extensions share the process heap, and
//! a block allocated during one extension's poll may be freed by anyone later; a hard limit
//! would need an allocator per extension. The count is what can be measured honestly.

// Implementing `GlobalAlloc` is unsafe by definition; every method forwards to mimalloc
// unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

use mimalloc::MiMalloc;

thread_local! {
    // `const`, without a destructor: safe to touch from inside the allocator.
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

/// mimalloc, counting.
#[derive(Debug)]
pub(crate) struct Counting;

#[inline(always)]
fn count(bytes: usize) {
    // `try_with`: a thread being torn down no longer counts.
    let _ = ALLOCATED.try_with(|c| c.set(c.get().wrapping_add(bytes as u64)));
}

/// Bytes this thread has allocated so far (a running total; subtract two readings).
#[inline]
pub(crate) fn allocated() -> u64 {
    ALLOCATED.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: each method forwards its arguments unchanged to mimalloc's implementation, whose
// contract is the same; the counting touches no memory the caller owns.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { MiMalloc.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as above.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (i.e. mimalloc) with `layout`.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size.saturating_sub(layout.size()));
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_on_this_thread_are_counted() {
        let before = allocated();
        let v: Vec<u8> = Vec::with_capacity(10_000);
        std::hint::black_box(&v);
        assert!(allocated() - before >= 10_000);
    }
}
