//! spindle-dap: the Debug Adapter Protocol server.
//!
//! - `transport`: Content-Length framing over any byte stream (stdio, TCP,
//!   an in-memory pair for tests); malformed frames are reported, counted
//!   and skipped, never fatal.
//! - `server`: a [`spindle_dap_session::Session`] on a `Kernel` served over
//!   a transport, and the debug port of `spindle run --debug-port`
//!   (loopback only, a token required).
//! - `adapter`: what `spindle dap` runs: `launch` starts `spindle run` on
//!   the program with a debug port and relays DAP to it; `attach`
//!   connects to a running one; `restart`, `terminate` and `disconnect`
//!   (detach leaves the graph serving) are handled here.
//!
//! The session logic (DAP requests on the kernel) lives in
//! `spindle-dap-session`, which Jupyter's debugger shares. This crate
//! depends on no other front end.

pub mod adapter;
pub mod server;
pub mod transport;

pub use adapter::run_adapter;
pub use server::{DebugPort, serve_debug_port, serve_session};
pub use transport::{Frame, FrameReader, FrameWriter};
