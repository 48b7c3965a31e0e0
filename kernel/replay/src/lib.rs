//! spindle-replay: a journal applied again to a fresh kernel.
//!
//! - [`timeline`]: a journal's records as a timeline: each request as it
//!   was admitted (with its recorded answer, when there is one) and each
//!   operation (a fault, a cancel, a service command), in time order.
//! - [`mod@replay`]: the timeline applied to a [`spindle_kernel::Kernel`] at the
//!   recorded times (or as fast as possible), every answer collected.
//! - [`mod@compare`]: a replayed answer against the recorded one (outcome,
//!   text, fields, vectors by cosine), as a list of differences.
//! - [`mod@transcript`]: the replay as stable text (no ids, pids, times or raw
//!   vectors), for snapshot tests.
//! - [`admit`]: a submission polled once, so that it is in the kernel
//!   before the next step.
//! - [`scenario_run`]: a scenario script's timeline (evaluated by
//!   `spindle-scripting`) applied to a kernel, with every answer and event;
//!   [`scenario_expect`] checks its expectations; [`mod@scenario_transcript`]
//!   prints it for snapshot tests.
//!
//! Knows the kernel's handle, the journal's records and the scenario's
//! plain spec; no front end, no file format (that is `spindle-journal`)
//! and no JSON.

pub mod admit;
pub mod compare;
pub mod replay;
pub mod scenario_expect;
pub mod scenario_run;
pub mod scenario_transcript;
pub mod timeline;
pub mod transcript;

pub use compare::{Difference, compare};
pub use replay::{OperationResult, ReplayConfig, ReplayReport, ReplayedRequest, Timing, replay};
pub use scenario_expect::ExpectationResult;
pub use scenario_run::{ScenarioReport, request_path_config, run_scenario};
pub use scenario_transcript::scenario_transcript;
pub use timeline::{RecordedRequest, Step, Timeline};
pub use transcript::transcript;

/// What keeps a replay from running; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Journal(#[from] spindle_journal::JournalError),
    #[error(
        "the journal has no request and no operation to replay (was the kernel idle while it recorded?)"
    )]
    Empty,
    #[error(
        "the journal does not name a script (its kernel ran a graph built in Rust)\n  hint: pass the script with --script FILE"
    )]
    NoScript,
}
