//! Giving memory back to the system after an evaluation.
//!
//! An evaluation builds a whole Lua state (tens of MiB for a large script)
//! and drops it; glibc keeps what was freed in the thread's arena unless
//! asked to trim. A server that evaluates many open files would otherwise
//! sit on the peak of every thread that ever evaluated. This is the crate's
//! only `unsafe`.

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
