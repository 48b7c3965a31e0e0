//! Connection files: where the kernel's five sockets listen and the key
//! that signs every message. Jupyter writes one before it launches
//! `spindle kernel start --connection-file FILE`; `spindle run --jupyter`
//! writes its own into [`runtime_dir`], where front ends and
//! `spindle ps` find running kernels.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use jupyter_protocol::ConnectionInfo;
use jupyter_protocol::connection_info::Transport;

use crate::error::JupyterError;

/// Reads and checks a connection file.
pub fn read_connection_file(path: &Path) -> Result<ConnectionInfo, JupyterError> {
    let fail = |reason: String| JupyterError::ConnectionFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|error| fail(error.to_string()))?;
    let info: ConnectionInfo = serde_json::from_str(&text)
        .map_err(|error| fail(format!("not a connection file: {error}")))?;
    check(&info)?;
    Ok(info)
}

/// What Spindle can serve: tcp, hmac-sha256 (or no key at all).
pub fn check(info: &ConnectionInfo) -> Result<(), JupyterError> {
    if info.transport != Transport::TCP {
        return Err(JupyterError::Transport(info.transport.to_string()));
    }
    if !info.key.is_empty() && info.signature_scheme != "hmac-sha256" {
        return Err(JupyterError::SignatureScheme(info.signature_scheme.clone()));
    }
    Ok(())
}

/// Writes a connection file readable by its owner only (it holds the key).
pub fn write_connection_file(path: &Path, info: &ConnectionInfo) -> Result<(), JupyterError> {
    let fail = |error: std::io::Error| JupyterError::Write {
        path: path.to_path_buf(),
        reason: error.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let text = serde_json::to_string_pretty(info).expect("a connection file serialises");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    Ok(())
}

/// A fresh connection for 127.0.0.1 with every port 0 (the sockets pick
/// free ports when they bind) and a random key.
pub fn local_connection(kernel_name: &str) -> ConnectionInfo {
    ConnectionInfo {
        ip: "127.0.0.1".to_owned(),
        transport: Transport::TCP,
        shell_port: 0,
        iopub_port: 0,
        stdin_port: 0,
        control_port: 0,
        hb_port: 0,
        key: uuid::Uuid::new_v4().simple().to_string(),
        signature_scheme: "hmac-sha256".to_owned(),
        kernel_name: Some(kernel_name.to_owned()),
    }
}

/// Where running kernels leave their connection files:
/// `$XDG_RUNTIME_DIR/spindle`, else `/tmp/spindle-<uid>`.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("spindle"),
        _ => {
            use std::os::unix::fs::MetadataExt;
            let uid = std::fs::metadata("/proc/self").map_or(0, |meta| meta.uid());
            std::env::temp_dir().join(format!("spindle-{uid}"))
        }
    }
}

/// The connection file of `spindle run --jupyter` for run `run_id`.
pub fn run_connection_file(run_id: &str) -> PathBuf {
    runtime_dir().join(format!("kernel-{run_id}.json"))
}
