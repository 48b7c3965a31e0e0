//! The Jupyter front end's errors; each names what to do about it.

use std::path::PathBuf;

/// What can go wrong serving Jupyter.
#[derive(Debug, thiserror::Error)]
pub enum JupyterError {
    #[error(
        "cannot read the connection file {path}: {reason}; Jupyter writes it before it starts the kernel (check the --connection-file path)"
    )]
    ConnectionFile { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}; check that the folder exists and is writable")]
    Write { path: PathBuf, reason: String },
    #[error(
        "the connection file asks for signature scheme `{0}`; Spindle signs with hmac-sha256 only (the default of every Jupyter client)"
    )]
    SignatureScheme(String),
    #[error("the connection file asks for transport `{0}`; Spindle serves tcp only")]
    Transport(String),
    #[error(
        "cannot bind the {channel} socket to {endpoint}: {reason}; another process may hold the port (let Jupyter pick ports, or pass port 0)"
    )]
    Bind {
        channel: &'static str,
        endpoint: String,
        reason: String,
    },
    #[error(
        "the kernel has no script host: Jupyter cells need a kernel started from a script (spindle run FILE --jupyter, or spindle kernel start)"
    )]
    NoScriptHost,
    #[error("cannot find a Jupyter data folder to install the kernelspec into: {0}")]
    NoDataDir(String),
}
