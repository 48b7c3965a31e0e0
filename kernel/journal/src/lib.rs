//! spindle-journal: an append-only journal of everything a kernel did, the
//! raw material of `spindle journal` and `spindle replay`.
//!
//! - [`record`]: what is recorded: each request's admission, each stage's
//!   output and timing, its answer; each service and pipeline event; the
//!   operations and faults a person applied; and explicit gaps.
//! - [`codec`]: the binary frame of one record (length, CRC-32, payload), so
//!   that a crash in the middle of a write loses only that last partial
//!   record: the reader detects it and drops it, and nothing before it.
//! - [`writer`]: the writer thread, fed by a bounded channel, with
//!   size-based rotation into numbered segment files.
//! - [`reader`]: the segments of a journal directory in order, each record
//!   with its place, and the torn tail if there is one.
//!
//! This crate knows no kernel type, no Lua and no JSON; the kernel turns its
//! values into [`Record`]s, the binary turns records into JSON lines.

pub mod codec;
pub mod reader;
pub mod record;
pub mod writer;

pub use reader::{JournalReader, ReadReport, Segment, TornTail, segments};
pub use record::{
    Admitted, Answered, GapRecord, Header, OperationRecord, OutcomeRecord, PipelineRecord, Record,
    ServiceRecord, StageRecord,
};
pub use writer::{Journal, JournalConfig, JournalHandle, JournalStats};

use std::path::PathBuf;

/// Everything that can go wrong with a journal; each names the file and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "cannot use journal directory {path}: {reason} (pass another --journal DIR or fix its permissions)"
    )]
    Directory { path: PathBuf, reason: String },
    #[error("cannot write journal file {path}: {reason} (is the disk full?)")]
    Write { path: PathBuf, reason: String },
    #[error("cannot read journal file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "{path} is not a Spindle journal segment (its first bytes are not the journal's magic); \
         pass the directory `spindle run --journal DIR` wrote, or one of its journal-*.spj files"
    )]
    NotAJournal { path: PathBuf },
    #[error(
        "{path}: record at byte {offset} is corrupt ({reason}) and is not the last one; the \
         segment is read up to it"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("cannot start the journal's writer thread: {0}")]
    Thread(std::io::Error),
}
