//! spindle-jupyter: Spindle as a Jupyter kernel. Cells are Lua 5.4 run on
//! the live kernel's script host (the state scripts and pipelines use);
//! requests from cells go through the `Kernel` handle like any other
//! front end's.
//!
//! - [`serve`] binds the five channels of a connection and serves them
//!   (`server`, `sockets`, `channels`, `session`); every incoming message's
//!   HMAC-SHA256 is checked and a bad one is logged and dropped (`wire`).
//! - `to_proto` writes every message content; `render` turns Lua values
//!   into MIME bundles (HTML tables, SVG charts and service graphs);
//!   `to_data` and `effects` answer cells' questions from the kernel.
//! - [`install_kernelspec`] writes the kernelspec Jupyter launches.
//!
//! Depends on the kernel, the scheduler's and scripting's plain types, and
//! no other front end. The only crate that knows ZeroMQ and Jupyter JSON.

mod cell_path;
mod channels;
mod connection;
mod effects;
mod error;
mod history;
mod kernelspec;
pub mod render;
mod server;
mod session;
mod shared;
mod sockets;
mod to_data;
mod to_proto;
mod wire;

pub use cell_path::{CELL_HASH_SEED, CELL_SUFFIX, cell_dir, cell_path, murmur2};
pub use connection::{
    ConnectionInfo, local_connection, read_connection_file, run_connection_file, runtime_dir,
    write_connection_file,
};
pub use error::JupyterError;
pub use kernelspec::{KernelspecPlace, install_kernelspec, kernelspec_json};
pub use server::{JupyterConfig, JupyterServer, default_history_file, serve};
pub use shared::ShutdownAsked;
pub use to_proto::PROTOCOL_VERSION;
