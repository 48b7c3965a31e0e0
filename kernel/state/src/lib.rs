//! spindle-state: the durable state behind `s.state`, scoped keys with
//! values, atomic compare-and-swap and increment, TTLs that are enforced,
//! and listing by prefix.
//!
//! One thread owns the redb database ([`StateStore`]); commands reach it on a
//! channel and carry a callback for their answer, so callers on any thread
//! (the kernel's runtime, the Lua host) wait without blocking anything.
//! The thread applies every command waiting in the channel in one write
//! transaction and answers after its commit (group commit): an answered
//! write is on disk, and many writers cost one `fsync`.
//!
//! Keys are plain strings; the kernel composes the scope into them
//! ([`StateKey`]). Values are [`StateValue`]s. Time comes from a [`Clock`]
//! so that tests can move it.
//!
//! Knows no workspace crate, no async runtime, no Lua and no JSON.

mod clock;
mod store;
mod value;

pub use clock::{Clock, ManualClock, SystemClock};
pub use store::{StateConfig, StateReply, StateStore};
pub use value::{StateKey, StateOp, StateResult, StateScope, StateValue};

use std::path::PathBuf;

/// What can go wrong with state; each message says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error(
        "cannot open the state store {path}: {reason} (another spindle may hold it; each run needs its own data directory)"
    )]
    Open { path: PathBuf, reason: String },
    #[error("the state store failed: {0}")]
    Storage(String),
    #[error(
        "key `{key}` holds {found}, not an integer: increment works on integers only (set it to a number first, or use another key)"
    )]
    NotAnInteger { key: String, found: &'static str },
    #[error("the state store has stopped (the kernel is shutting down)")]
    Stopped,
    #[error("a stored value of key `{key}` does not decode: {reason}")]
    Decode { key: String, reason: String },
}
