//! The script host: a thread that owns a script's Lua state for as long as a
//! graph runs, so that Lua probes can be called. Work reaches it as jobs on a
//! channel; each job carries the callback that receives its answer, so the
//! caller may bridge to any runtime it likes.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mlua::{Function, HookTriggers, Lua, Value, VmState};

use crate::eval::{self, Loaded};
use crate::spec::FunctionId;
use crate::{Evaluation, ScriptError};

/// The answer to a Lua check: pass, or fail with a reason.
pub type CheckResult = Result<bool, String>;

/// A callback that receives a check's answer on the host thread.
pub type CheckReply = Box<dyn FnOnce(CheckResult) + Send>;

enum Job {
    Check {
        function: FunctionId,
        timeout: Duration,
        reply: CheckReply,
    },
}

/// A handle to the thread that runs a script's Lua. Dropping every handle
/// ends the thread once its queued jobs are done.
#[derive(Clone)]
pub struct ScriptHost {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for ScriptHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScriptHost")
    }
}

impl ScriptHost {
    /// Starts the host thread and evaluates `path` on it.
    pub fn start(path: &Path) -> Result<(ScriptHost, Evaluation), ScriptError> {
        let (jobs, job_receiver) = mpsc::channel::<Job>();
        let (evaluated, evaluation) = mpsc::channel::<Evaluation>();
        let path = path.to_path_buf();
        thread::Builder::new()
            .name("spindle-lua".to_owned())
            .spawn(move || {
                let loaded = eval::load(&path);
                let _ = evaluated.send(loaded.evaluation.clone());
                serve(&loaded, job_receiver);
            })
            .map_err(ScriptError::Thread)?;
        let evaluation = evaluation.recv().map_err(|_| ScriptError::HostGone)?;
        Ok((ScriptHost { jobs }, evaluation))
    }

    /// Calls a Lua check function; `reply` runs on the host thread with the
    /// result. A check that runs past `timeout` is stopped and fails.
    pub fn call_check(&self, function: FunctionId, timeout: Duration, reply: CheckReply) {
        if let Err(mpsc::SendError(Job::Check { reply, .. })) = self.jobs.send(Job::Check {
            function,
            timeout,
            reply,
        }) {
            reply(Err("the script host has stopped".to_owned()));
        }
    }
}

fn serve(loaded: &Loaded, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        match job {
            Job::Check {
                function,
                timeout,
                reply,
            } => {
                let result = match loaded.functions.get(function.0 as usize) {
                    Some(check) => call_with_deadline(&loaded.lua, check, timeout),
                    None => Err(format!("no Lua function with id {}", function.0)),
                };
                reply(result);
            }
        }
    }
}

/// Calls `check` with an instruction-count hook that stops it at the
/// deadline; the hook exists only for the duration of the call.
fn call_with_deadline(lua: &Lua, check: &Function, timeout: Duration) -> CheckResult {
    let deadline = Instant::now() + timeout;
    let hooked = lua.set_hook(
        HookTriggers::new().every_nth_instruction(10_000),
        move |_, debug| {
            if Instant::now() < deadline {
                return Ok(VmState::Continue);
            }
            let file = debug
                .source()
                .source
                .map(|s| s.trim_start_matches('@').to_owned());
            let line = debug.current_line().unwrap_or(0);
            Err(mlua::Error::runtime(format!(
                "{}:{line}: the check ran past its timeout of {timeout:?}",
                file.unwrap_or_default()
            )))
        },
    );
    let result = check.call::<Value>(());
    if hooked.is_ok() {
        lua.remove_hook();
    }
    match result {
        Ok(Value::Nil | Value::Boolean(false)) => Ok(false),
        Ok(_) => Ok(true),
        Err(error) => {
            let diagnostic = eval::lua_error_diagnostic(&error, Path::new(""));
            Err(format!(
                "{}:{}: {}",
                diagnostic.file.display(),
                diagnostic.line,
                diagnostic.message
            ))
        }
    }
}
