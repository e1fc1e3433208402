//! A global allocator that counts the bytes the extension holds, for the memory figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

pub struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            HELD.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        new
    }
}

/// Bytes currently allocated by Rust code in this extension (all engines together).
pub fn held_bytes() -> isize {
    HELD.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Far more than the other tests, running at the same time, hold: their allocations
    /// move the shared count by much less than `SLACK`.
    const SIZE: usize = 1 << 28;
    const SLACK: isize = 1 << 26;

    fn near(moved: isize, expected: isize) -> bool {
        (moved - expected).abs() < SLACK
    }

    #[test]
    fn held_bytes_follow_allocations() {
        let layout = Layout::from_size_align(SIZE, 8).unwrap();
        let bigger = Layout::from_size_align(2 * SIZE, 8).unwrap();
        unsafe {
            let start = held_bytes();
            let one = Counting.alloc(layout);
            assert!(!one.is_null());
            assert!(near(held_bytes() - start, SIZE as isize));
            let two = Counting.alloc_zeroed(layout);
            assert!(!two.is_null());
            assert!(near(held_bytes() - start, 2 * SIZE as isize));
            let one = Counting.realloc(one, layout, 2 * SIZE);
            assert!(!one.is_null());
            assert!(near(held_bytes() - start, 3 * SIZE as isize));
            Counting.dealloc(two, layout);
            Counting.dealloc(one, bigger);
            assert!(near(held_bytes() - start, 0));
        }
    }
}
