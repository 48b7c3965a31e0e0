//! The process's allocator settings for a long-running kernel.
//!
//! glibc's malloc raises its mmap threshold each time a large block served
//! by `mmap` is freed (up to 32 MiB). After the first embedding engine is
//! dropped, the tensors and weights of the next one therefore come from
//! the heap arenas instead of their own mappings, and freeing them leaves
//! holes the arenas keep: RSS stepped between restarts of an embedding
//! service and drifted 12% above its level after warm-up in the soak
//! benchmark. A fixed threshold keeps large blocks in mappings that go
//! back to the system when freed; two arenas instead of one per thread
//! (the runtime's workers, the script host, ONNX Runtime's threads) keep
//! small blocks from spreading. Measured in `cargo bench --bench soak`
//! (docs/benchmarks.md): growth after warm-up 12.0% without, 2.4–3.1% with
//! both, 7.7% with the threshold alone.

/// Large allocations from this size up are always mapped on their own.
pub const MMAP_THRESHOLD: usize = 256 * 1024;
/// Malloc arenas in the whole process.
pub const ARENA_MAX: usize = 2;

/// Applies [`MMAP_THRESHOLD`] and [`ARENA_MAX`] unless the environment
/// already sets them (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_ARENA_MAX`: a
/// user's own tuning wins). Call it first thing in `main`, before threads
/// start; later it still applies to every allocation after it. Does
/// nothing where the C library is not glibc.
pub fn settle_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use crate::supervisor::set_malloc_parameter;
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            set_malloc_parameter(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        }
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            set_malloc_parameter(libc::M_ARENA_MAX, ARENA_MAX as libc::c_int);
        }
    }
}
