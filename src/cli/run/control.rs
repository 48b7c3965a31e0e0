//! The run's control port and its connection file.
//!
//! Every `spindle run` serves the HTTP API (`spindle-http`): on the
//! `--http` address when given, otherwise on `127.0.0.1:0` (a free port)
//! so that `spindle ctl` can always operate it. The implicit port requires
//! a bearer token, generated per run; an explicit address requires one
//! when it is not loopback (given with `--token` or `SPINDLE_TOKEN`, else
//! generated). The address and token go into the connection file (0600,
//! see `cli/discovery.rs`), removed when the run ends.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use spindle_http::HttpConfig;
use spindle_kernel::Kernel;
use tokio_util::sync::CancellationToken;

use crate::cli::discovery::{self, Connection, Published};

/// Where and how the run serves its API.
pub(super) struct ControlSettings {
    /// `--http`: serve pipelines and the API here.
    pub(super) http: Option<SocketAddr>,
    /// `--token` / `SPINDLE_TOKEN`.
    pub(super) token: Option<String>,
}

/// The serving API and the connection file that names it.
pub(super) struct ControlPort {
    pub(super) address: SocketAddr,
    /// Removes the connection file when dropped; `None` when it could not
    /// be written (the run goes on, reachable on its address).
    _published: Option<Published>,
}

/// Binds, serves the kernel until it begins to shut down, and publishes
/// the connection file.
pub(super) async fn start(
    kernel: &Kernel,
    settings: ControlSettings,
) -> anyhow::Result<ControlPort> {
    let token_given = settings.token.is_some();
    let (address, token) = match settings.http {
        Some(address) => {
            let token = match settings.token {
                Some(token) => Some(token),
                None if address.ip().is_loopback() => None,
                None => Some(discovery::new_token()?),
            };
            (address, token)
        }
        None => (
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(match settings.token {
                Some(token) => token,
                None => discovery::new_token()?,
            }),
        ),
    };
    if token.as_deref().is_some_and(str::is_empty) {
        bail!("the token is empty; give a non-empty --token or none");
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let bound = listener.local_addr().unwrap_or(address);
    if settings.http.is_some() {
        eprintln!(
            "spindle: serving {} pipeline(s) on http://{bound}",
            kernel.graph().pipelines.len()
        );
        if !bound.ip().is_loopback() && !token_given {
            eprintln!(
                "spindle: {bound} is not loopback: every route but the health probes needs the bearer token in the connection file"
            );
        }
    }
    let stop_accepting = CancellationToken::new();
    {
        let kernel = kernel.clone();
        let stop = stop_accepting.clone();
        tokio::spawn(async move {
            kernel.shutting_down().await;
            stop.cancel();
        });
    }
    {
        let kernel = kernel.clone();
        let config = HttpConfig {
            token: token.clone(),
            ..HttpConfig::default()
        };
        tokio::spawn(async move {
            if let Err(error) = spindle_http::serve(listener, kernel, config, stop_accepting).await
            {
                eprintln!("spindle: http: {error}");
            }
        });
    }
    let script = kernel
        .script()
        .map(|script| std::fs::canonicalize(script).unwrap_or_else(|_| script.to_path_buf()))
        .unwrap_or_default();
    let published = discovery::publish(&Connection {
        run_id: kernel.run_id().to_owned(),
        pid: std::process::id(),
        http: bound.to_string(),
        token: token.clone(),
        script,
        data_dir: kernel
            .data_dir()
            .and_then(|dir| std::path::absolute(dir).ok())
            .unwrap_or_default(),
        started_at: kernel
            .started_at()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_secs_f64())
            .unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    });
    let published = match published {
        Ok(published) => Some(published),
        Err(error) => {
            eprintln!(
                "spindle: warning: no connection file, `spindle ctl` will not find this run: {error:#}"
            );
            None
        }
    };
    Ok(ControlPort {
        address: bound,
        _published: published,
    })
}
