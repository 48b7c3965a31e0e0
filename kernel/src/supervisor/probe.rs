//! Health probes: one task per probe of a running instance. It checks every
//! `period` (after `initial_delay`), counts consecutive results against the
//! thresholds and tells the supervisor only when the verdict flips.
//!
//! Readiness starts as failing (not ready until `success_threshold`
//! successes); liveness starts as passing (failing after
//! `failure_threshold` failures).

use std::sync::Arc;
use std::time::Duration;

use spindle_scripting::{ProbeCheck, ProbeSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::event::ProbeResult;
use super::os;
use super::reaper;
use super::runner::Message;
use super::seams::LuaProbes;

/// Which question a probe answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Readiness,
    Liveness,
}

impl ProbeKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ProbeKind::Readiness => "readiness",
            ProbeKind::Liveness => "liveness",
        }
    }
}

/// What a probe task needs besides its spec.
pub(crate) struct ProbeContext {
    pub service: usize,
    pub generation: u64,
    pub kind: ProbeKind,
    /// Directory and environment of the service (exec probes run with them).
    pub cwd: std::path::PathBuf,
    pub env: Arc<Vec<(String, String)>>,
    pub lua: Option<Arc<dyn LuaProbes>>,
    pub messages: mpsc::UnboundedSender<Message>,
    pub cancel: CancellationToken,
    /// Where every check's result goes (the status views), if anywhere.
    pub results: Option<(Arc<str>, mpsc::UnboundedSender<ProbeResult>)>,
}

/// Starts the probe task; it ends when `context.cancel` is cancelled.
pub(crate) fn spawn(spec: ProbeSpec, context: ProbeContext) {
    tokio::spawn(async move {
        context
            .cancel
            .clone()
            .run_until_cancelled(probe_loop(spec, &context))
            .await;
    });
}

async fn probe_loop(spec: ProbeSpec, context: &ProbeContext) {
    let mut passing = context.kind == ProbeKind::Liveness;
    let mut successes = 0u32;
    let mut failures = 0u32;
    let success_threshold = spec.success_threshold.max(1);
    let failure_threshold = spec.failure_threshold.max(1);
    let mut prepared = None;
    tokio::time::sleep(spec.initial_delay).await;
    loop {
        let started = tokio::time::Instant::now();
        let checked = check(&spec, context, &mut prepared);
        let result = match tokio::time::timeout(spec.timeout, checked).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {:?}", spec.timeout)),
        };
        let checked = result.clone();
        match result {
            Ok(()) => {
                successes += 1;
                failures = 0;
                if !passing && successes >= success_threshold {
                    passing = true;
                    report(
                        context,
                        true,
                        format!("{} probe passed", context.kind.name()),
                    );
                }
            }
            Err(detail) => {
                failures += 1;
                successes = 0;
                if passing && failures >= failure_threshold {
                    passing = false;
                    let what = describe(&spec.check);
                    report(
                        context,
                        false,
                        format!(
                            "{} probe failed {failures} time(s): {what}: {detail}",
                            context.kind.name()
                        ),
                    );
                }
            }
        }
        publish(context, checked, passing, started.elapsed());
        tokio::time::sleep_until(started + spec.period).await;
    }
}

/// Hands one check's result to the status views.
fn publish(context: &ProbeContext, checked: Result<(), String>, passing: bool, took: Duration) {
    if let Some((service, results)) = &context.results {
        let _ = results.send(ProbeResult {
            service: service.to_string(),
            probe: context.kind.name(),
            ok: checked.is_ok(),
            detail: checked.err().unwrap_or_default(),
            passing,
            at: std::time::SystemTime::now(),
            took,
        });
    }
}

fn report(context: &ProbeContext, passing: bool, detail: String) {
    let _ = context.messages.send(Message::Probe {
        service: context.service,
        generation: context.generation,
        kind: context.kind,
        passing,
        detail,
    });
}

fn describe(check: &ProbeCheck) -> String {
    match check {
        ProbeCheck::Exec { command } => format!("exec {}", command.join(" ")),
        ProbeCheck::Http { url } => format!("http GET {url}"),
        ProbeCheck::Tcp { address } => format!("tcp {address}"),
        ProbeCheck::Lua { function } => format!("lua function #{}", function.0),
    }
}

/// One check: `Ok` passes, `Err` carries what went wrong. `prepared` keeps
/// an exec probe's command between checks.
async fn check(
    spec: &ProbeSpec,
    context: &ProbeContext,
    prepared: &mut Option<os::PreparedCommand>,
) -> Result<(), String> {
    match &spec.check {
        ProbeCheck::Exec { command } => exec_check(command, context, prepared).await,
        ProbeCheck::Http { url } => http_check(url).await,
        ProbeCheck::Tcp { address } => TcpStream::connect(address.as_str())
            .await
            .map(drop)
            .map_err(|error| error.to_string()),
        ProbeCheck::Lua { function } => {
            let Some(lua) = &context.lua else {
                return Err("no Lua script host to run Lua probes".to_owned());
            };
            let (sender, receiver) = oneshot::channel();
            lua.call_check(
                *function,
                spec.timeout,
                Box::new(move |result| {
                    let _ = sender.send(result);
                }),
            );
            match receiver.await {
                Ok(Ok(true)) => Ok(()),
                Ok(Ok(false)) => Err("returned false".to_owned()),
                Ok(Err(error)) => Err(error),
                Err(_) => Err("the script host dropped the call".to_owned()),
            }
        }
    }
}

/// Runs the command in its own process group, spawned vfork-style and
/// reaped by the reaper; output goes to /dev/null. When the probe's timeout
/// (in `probe_loop`) drops this future, the group is killed.
///
/// The command is prepared (program found in `PATH`, argument and
/// environment strings built) once and kept in `prepared` for the next
/// checks; a command that cannot be prepared (no such program) is tried
/// again at the next check.
async fn exec_check(
    command: &[String],
    context: &ProbeContext,
    prepared: &mut Option<os::PreparedCommand>,
) -> Result<(), String> {
    let prepared = match prepared {
        Some(prepared) => prepared,
        None => prepared.insert(
            os::PreparedCommand::new(&os::CommandSpec {
                command,
                cwd: &context.cwd,
                env: &context.env,
            })
            .map_err(|error| format!("could not run: {error}"))?,
        ),
    };
    let child = reaper::spawn_watched(prepared, os::Output::Discard)
        .map_err(|error| format!("could not run: {error}"))?;
    // Also kills what the command left behind in its group.
    let _kill_group = KillGroupOnDrop(child.pid);
    match child.exit.await {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(status.to_string()),
        Err(_) => Err("lost track of the probe's process".to_owned()),
    }
}

struct KillGroupOnDrop(i32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        os::signal_group(self.0, os::SIGKILL);
    }
}

/// A minimal HTTP/1.1 `GET`: status 200..400 passes.
async fn http_check(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported, not {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = TcpStream::connect(address.as_str())
        .await
        .map_err(|error| error.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: spindle-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| error.to_string())?;
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let read = stream
            .read(&mut byte)
            .await
            .map_err(|error| error.to_string())?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&byte[..read]);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {status_line:?}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP status {code}"))
    }
}
