//! The only `unsafe` code of the script host: the raw Lua calls that mlua
//! does not offer.
//!
//! - A stop hook installed on a running coroutine from another thread (the
//!   watchdog or an [`crate::Interrupter`]), the technique of lua.c's Ctrl-C
//!   handler: `lua_sethook` is written so that it may be called
//!   asynchronously, and the hook it installs raises an error on the Lua
//!   thread at the coroutine's next instruction.
//! - Lua's `debug` library opened as a table that only Rust holds, so the
//!   debugger can read a paused coroutine's frames and locals.
//!
//! This module knows nothing of requests, budgets or registries; it must
//! not depend on anything but mlua.

use std::io::Write;
use std::os::raw::c_int;

use mlua::{Lua, Table, Thread, ffi};

/// A coroutine's raw state, handed to another thread so that it can stop
/// the coroutine. It is only a pointer: whoever installs a hook through it
/// must know that the coroutine is alive (see [`install_stop_hook`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawThread(*mut ffi::lua_State);

// SAFETY: a `RawThread` is an address. It is dereferenced only by
// `install_stop_hook`, whose contract makes the caller prove that the state
// is alive; `lua_sethook` is the one Lua call designed to be made
// asynchronously to the thread running the state.
unsafe impl Send for RawThread {}

impl RawThread {
    pub(crate) fn of(thread: &Thread) -> RawThread {
        RawThread(thread.state())
    }
}

/// Why a stop hook stops the coroutine; each has its own hook function, so
/// the hook needs no data besides the state it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopHook {
    /// The stage ran past its time budget.
    Budget,
    /// Someone raised the interrupt (Jupyter's interrupt, a user's Ctrl-C).
    Interrupt,
}

/// The text after `file:line:` in the error a stop hook raises.
pub(crate) const BUDGET_MESSAGE: &str = "ran past its budget";
pub(crate) const INTERRUPT_MESSAGE: &str = "interrupted";

/// Installs a count hook with a count of one on `thread`: at its next VM
/// instruction the coroutine raises `<file>:<line>: <reason>`. The hook
/// stays installed, so a stage that catches the error with `pcall` is
/// stopped again at its next instruction; the host removes it (mlua's
/// `Thread::remove_hook`) once the coroutine has left.
///
/// # Safety
///
/// `thread` must be alive for the whole call: the caller holds a lock that
/// the Lua thread must take before it may drop or reuse the coroutine. The
/// coroutine may be running on the Lua thread meanwhile: `lua_sethook`
/// writes the hook pointer, the count and the one-byte mask (each written
/// whole on every platform Lua supports), then sets the `trap` flag of the
/// coroutine's Lua call frames. Lua's own source (ldebug.c) documents the
/// call as safe to make asynchronously under those assumptions; lua.c
/// relies on it from a signal handler.
pub(crate) unsafe fn install_stop_hook(thread: RawThread, hook: StopHook) {
    let function: ffi::lua_Hook = match hook {
        StopHook::Budget => budget_hook,
        StopHook::Interrupt => interrupt_hook,
    };
    // SAFETY: the caller guarantees the state is alive (see above).
    unsafe { ffi::lua_sethook(thread.0, Some(function), ffi::LUA_MASKCOUNT, 1) };
}

/// Opens Lua's `debug` library into a table that is returned to Rust and
/// never stored where scripts can reach it.
pub(crate) fn debug_library(lua: &Lua) -> mlua::Result<Table> {
    // SAFETY: `luaopen_debug` only builds the library's table. Its
    // functions are unsafe for mlua when scripts can call them (they reach
    // the registry, metatables of mlua's own userdata, and hooks); the host
    // keeps the table private and calls only `getinfo`, `getlocal` and
    // `getupvalue`, on user coroutines and Lua functions.
    let open = unsafe { lua.create_c_function(ffi::luaopen_debug) }?;
    open.call(())
}

unsafe extern "C-unwind" fn budget_hook(state: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) {
    // SAFETY: Lua calls a hook on the Lua thread with its own state and
    // activation record.
    unsafe { raise_at_current_line(state, ar, BUDGET_MESSAGE) }
}

unsafe extern "C-unwind" fn interrupt_hook(state: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) {
    // SAFETY: as for `budget_hook`.
    unsafe { raise_at_current_line(state, ar, INTERRUPT_MESSAGE) }
}

/// Raises `<file>:<line>: <reason>` as a Lua error from inside a hook.
///
/// # Safety
///
/// Must be called from a hook, with the hook's own `state` and `ar`. The
/// error unwinds through this frame with `longjmp`, so nothing here may
/// need dropping: the message is written into a stack buffer.
unsafe fn raise_at_current_line(
    state: *mut ffi::lua_State,
    ar: *mut ffi::lua_Debug,
    reason: &'static str,
) -> ! {
    let mut buffer = [0u8; 512];
    let length = {
        // SAFETY: `ar` is the hook's activation record; "Sl" fills
        // `source` (a string Lua keeps alive while the function runs) and
        // `currentline`.
        let (source, line) = unsafe {
            ffi::lua_getinfo(state, c"Sl".as_ptr(), ar);
            let source = if (*ar).source.is_null() {
                &[][..]
            } else {
                std::ffi::CStr::from_ptr((*ar).source).to_bytes()
            };
            (source, (*ar).currentline)
        };
        let file = source.strip_prefix(b"@").unwrap_or(source);
        let mut cursor = std::io::Cursor::new(&mut buffer[..]);
        // Room for the line and the reason: keep the end of a long path.
        let room = 512usize.saturating_sub(reason.len() + 24);
        let file = &file[file.len().saturating_sub(room)..];
        let _ = cursor.write_all(file);
        let _ = write!(cursor, ":{line}: {reason}", line = line as c_int);
        cursor.position() as usize
    };
    // SAFETY: pushing a string and raising it are what hooks may do; the
    // buffer outlives the push, which copies it.
    unsafe {
        ffi::lua_pushlstring(state, buffer.as_ptr().cast(), length);
        ffi::lua_error(state)
    }
}
