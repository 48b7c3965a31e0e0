//! spindle-dap-session: one debug session in the Debug Adapter Protocol's
//! terms, on the [`spindle_kernel::Kernel`] handle, with no transport.
//!
//! A session is an actor ([`Session::start`]): DAP requests go in as JSON
//! values, responses and events come out on one channel in the order the
//! client must see them. DAP threads are the kernel's in-flight requests
//! (named by pipeline, request id and priority); frames, scopes and
//! variables come from the debugger core in `spindle-scripting`.
//!
//! - `protocol`: the DAP messages this session reads and writes (raw JSON
//!   first, then typed arguments; the `dap` crate's types drop
//!   `hitCondition` and `logMessage`, so none are borrowed from it).
//! - `to_dap`: the core's Rust types as DAP bodies.
//! - `session`: the actor and its closed command enum; `handlers`: one
//!   function per DAP request.
//!
//! Two transports use it: the DAP server (`spindle-dap`: stdio, TCP) and
//! Jupyter's debugger (`debug_request`/`debug_event` carry the same DAP
//! bodies). Nothing here knows sockets, framing or another front end.

mod handlers;
pub mod protocol;
mod session;
pub mod to_dap;

pub use session::{Outgoing, Session, SessionConfig, SessionMode};
