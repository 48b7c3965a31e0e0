//! Where a cell's code lives as a file: the path Jupyter's debugger
//! computes for a cell, `prefix + MurmurHash2(UTF-8 code, seed) + suffix`.
//! The kernel names each cell's chunk by this path (so errors, tracebacks
//! and breakpoints in cells match what the front end shows) and writes the
//! code there, so a debugger can open it.

use std::path::{Path, PathBuf};

/// The hash seed the front end is told (`debugInfo.hashSeed`).
pub const CELL_HASH_SEED: u32 = 0xc70f_6907;
/// The file suffix of cells (`debugInfo.tmpFileSuffix`).
pub const CELL_SUFFIX: &str = ".lua";

/// MurmurHash2, 32-bit (Austin Appleby), over `data`.
pub fn murmur2(data: &[u8], seed: u32) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut hash = seed ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M);
        hash ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        hash ^= u32::from(tail[0]);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    hash
}

/// The cells' folder of this kernel process (`debugInfo.tmpFilePrefix` is
/// this folder with a trailing `/`).
pub fn cell_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(format!("cells-{}", std::process::id()))
}

/// The path of a cell with this code.
pub fn cell_path(dir: &Path, code: &str) -> PathBuf {
    dir.join(format!(
        "{}{CELL_SUFFIX}",
        murmur2(code.as_bytes(), CELL_HASH_SEED)
    ))
}

/// Writes the cell's code to its path unless it is there already (same
/// path, same code). Failing to write only costs the debugger its source.
pub fn write_cell(path: &Path, code: &str) {
    if path.exists() {
        return;
    }
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(error) = std::fs::write(path, code) {
        tracing::debug!("cannot write the cell file {}: {error}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    #[test]
    fn murmur2_matches_the_reference_values() {
        // Values of ipykernel's `murmur2_x86`, which JupyterLab's
        // debugger matches.
        assert_eq!(murmur2(b"", 0), 0);
        assert_eq!(murmur2(b"", 1), 0x5bd1_5e36);
        assert_eq!(murmur2(b"a", 0), 0x9268_5f5e);
        assert_eq!(murmur2(b"abcd", 0), 0x2687_3021);
        assert_eq!(murmur2(b"Hello, world!", 0), 0x403c_1e05);
        assert_eq!(murmur2("é".as_bytes(), 0), 0x3439_c65d);
    }
}
