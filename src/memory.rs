//! Heap accounting for `memory_limit`, the way mosquitto does it: every allocation is counted,
//! so the broker knows what it holds (buffers, queues, subscriptions, retained messages,
//! sessions, wills) without charging each structure by hand, and a limit check is one load and
//! one comparison.
//!
//! The limit is soft: the broker checks it before taking on work a client asks for (a new
//! connection, a publish, a subscription, queueing) and refuses that work when it is reached;
//! allocations themselves never fail here, so the broker never aborts for lack of memory
//! while it is under the limit's headroom.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crate::config::MemoryLimit;

/// The system allocator, counting the bytes it hands out.
///
/// The count is per thread: the broker is one thread, and a thread-local add costs a couple of
/// instructions where an atomic read-modify-write on every allocation and free would cost tens
/// of cycles on the hot path. Memory freed by a thread that did not allocate it (only tests do
/// that) makes that thread's count drift; `heap_used` clamps it at zero.
pub struct CountingAlloc;

thread_local! {
    // Const-initialised and without a destructor, so it is usable from inside the allocator
    // (no lazy registration that could allocate).
    static HEAP_USED: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: usize) {
    let _ = HEAP_USED.try_with(|c| c.set(c.get().wrapping_add(bytes as isize)));
}

fn sub(bytes: usize) {
    let _ = HEAP_USED.try_with(|c| c.set(c.get().wrapping_sub(bytes as isize)));
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the counter is only bookkeeping and never influences what is returned.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's (valid, non-zero-size) layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (hence `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        sub(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr`/`layout` come from this allocator; `new_size` is the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                add(new_size - layout.size());
            } else {
                sub(layout.size() - new_size);
            }
        }
        p
    }
}

/// Bytes of heap held by allocations made on this thread (the broker's) and not freed (0 if
/// `CountingAlloc` is not the global allocator). O(1).
pub fn heap_used() -> usize {
    usize::try_from(HEAP_USED.try_with(Cell::get).unwrap_or(0)).unwrap_or(0)
}

/// The limit in bytes, or `None` for no limit. `Auto` is half of physical memory or of the
/// cgroup's memory limit, whichever is lower (the rest is for the kernel's socket buffers, the
/// binary and allocator overhead); `None` if neither can be read.
pub fn resolve_limit(limit: MemoryLimit) -> Option<usize> {
    match limit {
        MemoryLimit::Unlimited => None,
        MemoryLimit::Bytes(n) => Some(n),
        MemoryLimit::Auto => {
            let physical = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| parse_meminfo_total(&s));
            let cgroup = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
                .iter()
                .find_map(|p| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok()));
            let total = match (physical, cgroup) {
                (Some(p), Some(c)) => p.min(c),
                (p, c) => p.or(c)?,
            };
            usize::try_from(total / 2).ok()
        }
    }
}

/// `MemTotal` from /proc/meminfo, in bytes.
fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Bytes as a short human-readable figure for log lines, one decimal (integer arithmetic: no
/// float formatting code in the binary for a log line).
pub fn human(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    // usize -> u128 is lossless; u128 keeps `* 10` from overflowing.
    let value = bytes as u128;
    let mut unit = 0;
    let mut scale: u128 = 1;
    while value >= scale * 1024 && unit + 1 < UNITS.len() {
        scale *= 1024;
        unit += 1;
    }
    let tenths = (value * 10 + scale / 2) / scale;
    match UNITS.get(unit) {
        Some(u) if unit == 0 => format!("{bytes} {u}"),
        Some(u) => format!("{}.{} {u}", tenths / 10, tenths % 10),
        None => format!("{bytes} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_allocations_and_frees() {
        let before = heap_used();
        let big = vec![1u8; 64 << 20];
        assert!(heap_used() >= before + (60 << 20), "allocator not counting");
        drop(big);
        assert!(heap_used() < before + (32 << 20), "free not counted");
    }

    #[test]
    fn limits_resolve() {
        assert_eq!(resolve_limit(MemoryLimit::Unlimited), None);
        assert_eq!(resolve_limit(MemoryLimit::Bytes(5)), Some(5));
        assert!(resolve_limit(MemoryLimit::Auto).is_some_and(|n| n > 0), "this machine has /proc/meminfo");
        assert_eq!(parse_meminfo_total("MemTotal:       24683568 kB\nMemFree: 1 kB\n"), Some(24683568 * 1024));
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(usize::MAX), "17179869184.0 GiB");
    }
}
