//! Seams the supervisor calls through for what it cannot do itself: Lua
//! health checks (the script host owns the Lua state) and in-process
//! services such as the embedding engine.
//!
//! The binary implements these with `spindle_scripting::ScriptHost` and the
//! embedding engine; tests implement them in plain Rust.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use spindle_scripting::{FunctionId, ServiceSpec};

/// A boxed future, as the seams return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs Lua probe functions (`s.lua_probe { check = function() ... end }`).
///
/// The signature mirrors `ScriptHost::call_check`: the call is queued on the
/// script's Lua thread and `reply` is called exactly once, with `Ok(true)`
/// when the function returned a truthy value, `Ok(false)` when falsy and
/// `Err` when it raised or ran past `timeout`.
pub trait LuaProbes: Send + Sync {
    fn call_check(
        &self,
        function: FunctionId,
        timeout: Duration,
        reply: Box<dyn FnOnce(Result<bool, String>) + Send>,
    );
}

/// Starts in-process services (kinds other than `process`, e.g.
/// `embedding`). The supervisor treats them like processes: `start` moves
/// the service to running, its probes decide readiness, `finished` ending
/// counts as an exit, and `stop` is called at shutdown or before a restart.
pub trait InProcessRuntime: Send + Sync {
    /// Starts the service `spec` describes. An `Err` is a start failure and
    /// follows the restart policy; its text becomes the event's reason.
    fn start(
        &self,
        spec: &ServiceSpec,
    ) -> BoxFuture<'static, Result<Box<dyn InProcessService>, String>>;
}

/// A started in-process service.
pub trait InProcessService: Send {
    /// Resolves when the service ended by itself: `Ok(())` for a clean end,
    /// `Err(reason)` for a failure. Called once, right after start.
    fn finished(&mut self) -> BoxFuture<'static, Result<(), String>>;
    /// Stops the service within `grace`; resolves when it has stopped.
    fn stop(self: Box<Self>, grace: Duration) -> BoxFuture<'static, ()>;
}
