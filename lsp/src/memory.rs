//! Giving memory back to the system after an evaluation.
//!
//! An evaluation builds a whole Lua state (tens of MiB for a large script)
//! and drops it; glibc keeps what was freed in the thread's arena unless
//! asked to trim. A server that evaluates many open files would otherwise
//! sit on the peak of every thread that ever evaluated. Large blocks (a
//! document's text, a tokenizer's buffers) are mapped on their own at a
//! fixed threshold, so that freeing one returns it whole instead of leaving
//! a hole among the small blocks that stay. These are the crate's only
//! `unsafe` calls.

/// Returns freed heap memory to the system (glibc's `malloc_trim`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back_freed_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes
    // no pointers from us and may be called at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back_freed_memory() {}

/// Blocks from this size up get a mapping of their own.
pub const OWN_MAPPING_FROM: usize = 128 * 1024;

/// Fixes glibc's threshold for blocks with a mapping of their own at
/// [`OWN_MAPPING_FROM`] (its default; but glibc raises it after the first
/// such block is freed, up to 32 MiB, and from then on a freed text stays
/// in the arena, fragmenting it). Called once, when the server starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn map_large_blocks_on_their_own() {
    // SAFETY: mallopt only sets an allocator parameter; it takes no
    // pointers and may be called at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_FROM as libc::c_int);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn map_large_blocks_on_their_own() {}
