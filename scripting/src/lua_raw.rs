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

/// The debugger's hook: one C function for every coroutine the debugger
/// watches. It hands each event to `crate::debug::hooks` through a
/// [`HookSite`] and yields when told to stop. It is a plain C function (no
/// mlua trampoline, no allocation), since it runs on every call of a
/// watched coroutine while breakpoints exist.
pub(crate) fn install_debug_hook(thread: &Thread, mask: HookMask) {
    // SAFETY: `thread` is a live coroutine owned by the caller, and we are
    // on the Lua thread (the only one that calls this).
    unsafe { set_debug_hook(thread.state(), mask) }
}

/// Removes any hook from `thread` (the debugger's or a pause's), the way
/// mlua does it, so that a coroutine yielded by a hook stays resumable.
pub(crate) fn remove_hook(thread: &Thread) {
    thread.remove_hook();
}

/// The hook mask of `thread` now, for the hook-policy tests and reports.
pub(crate) fn hook_mask(thread: &Thread) -> HookMask {
    // SAFETY: reading the mask of a live coroutine on the Lua thread.
    HookMask(unsafe { ffi::lua_gethookmask(thread.state()) })
}

/// Which events a hook receives (Lua's `LUA_MASK*` bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct HookMask(pub c_int);

impl HookMask {
    pub(crate) const NONE: HookMask = HookMask(0);
    pub(crate) const CALL: HookMask = HookMask(ffi::LUA_MASKCALL);
    pub(crate) const RETURN: HookMask = HookMask(ffi::LUA_MASKRET);
    pub(crate) const LINE: HookMask = HookMask(ffi::LUA_MASKLINE);
    pub(crate) const COUNT: HookMask = HookMask(ffi::LUA_MASKCOUNT);

    pub(crate) fn with(self, other: HookMask) -> HookMask {
        HookMask(self.0 | other.0)
    }

    pub(crate) fn has(self, other: HookMask) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

/// What the debugger's hook saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HookEvent {
    Call,
    TailCall,
    Return,
    Line(u32),
    Count,
}

/// A function's chunk name and line range, as `lua_getinfo("S")` gives it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FunctionSite<'a> {
    /// The chunk name (`@/abs/path.lua`, `=[C]` for C functions).
    pub source: &'a [u8],
    pub first_line: i32,
    pub last_line: i32,
}

/// The coroutine and activation record of one hook call; valid only while
/// the hook runs (it is never stored).
pub(crate) struct HookSite {
    state: *mut ffi::lua_State,
    ar: *mut ffi::lua_Debug,
}

impl HookSite {
    /// Identifies the coroutine (its state's address).
    pub(crate) fn thread_key(&self) -> usize {
        self.state as usize
    }

    /// The function the event concerns (the one called, returning, or
    /// running the line).
    pub(crate) fn function(&self) -> FunctionSite<'_> {
        // SAFETY: `ar` is the hook's own activation record on `state`
        // (HookSite exists only inside the hook); "S" fills the source (a
        // string Lua keeps alive while the function is on the stack).
        unsafe {
            ffi::lua_getinfo(self.state, c"S".as_ptr(), self.ar);
            site_of(&*self.ar)
        }
    }

    /// The function at `level` of the stack (0 = the one the event
    /// concerns), read into `scratch`; `None` past the bottom.
    pub(crate) fn function_at<'s>(
        &self,
        level: c_int,
        scratch: &'s mut ScratchRecord,
    ) -> Option<FunctionSite<'s>> {
        // SAFETY: a zeroed lua_Debug is a valid argument to getstack and
        // getinfo; the source string lives while the function is on the
        // stack, and the site is used before the hook returns.
        unsafe {
            if ffi::lua_getstack(self.state, level, &mut scratch.0) == 0 {
                return None;
            }
            ffi::lua_getinfo(self.state, c"S".as_ptr(), &mut scratch.0);
            Some(site_of(&scratch.0))
        }
    }

    /// How many functions are active on this coroutine.
    pub(crate) fn depth(&self) -> u32 {
        // SAFETY: as in `function_at`.
        unsafe { stack_depth(self.state) }
    }

    pub(crate) fn set_mask(&self, mask: HookMask) {
        // SAFETY: we are on the Lua thread inside a hook of `state`.
        unsafe { set_debug_hook(self.state, mask) }
    }

    pub(crate) fn mask(&self) -> HookMask {
        // SAFETY: as above.
        HookMask(unsafe { ffi::lua_gethookmask(self.state) })
    }
}

/// A `lua_Debug` for reading other levels of the stack from a hook.
pub(crate) struct ScratchRecord(ffi::lua_Debug);

impl ScratchRecord {
    pub(crate) fn new() -> ScratchRecord {
        // SAFETY: lua_Debug is plain data; all zeroes is its initial state.
        ScratchRecord(unsafe { std::mem::zeroed() })
    }
}

/// How many functions are active on a suspended coroutine (the count a
/// step over or out compares with).
pub(crate) fn thread_depth(thread: &Thread) -> u32 {
    // SAFETY: the coroutine is alive (the caller holds it) and suspended;
    // lua_getstack only reads its call-info list.
    unsafe { stack_depth(thread.state()) }
}

unsafe fn stack_depth(state: *mut ffi::lua_State) -> u32 {
    // SAFETY: the caller guarantees `state` is alive on this thread.
    unsafe {
        let mut ar: ffi::lua_Debug = std::mem::zeroed();
        let mut level = 0;
        while ffi::lua_getstack(state, level, &mut ar) != 0 {
            level += 1;
        }
        level as u32
    }
}

unsafe fn site_of(ar: &ffi::lua_Debug) -> FunctionSite<'_> {
    let source = if ar.source.is_null() {
        &[][..]
    } else {
        // SAFETY: getinfo set `source` and `srclen` together.
        unsafe { std::slice::from_raw_parts(ar.source.cast::<u8>(), ar.srclen) }
    };
    FunctionSite {
        source,
        first_line: ar.linedefined,
        last_line: ar.lastlinedefined,
    }
}

unsafe fn set_debug_hook(state: *mut ffi::lua_State, mask: HookMask) {
    // SAFETY: the caller is on the Lua thread with a live `state`.
    unsafe {
        if mask == HookMask::NONE {
            ffi::lua_sethook(state, None, 0, 0);
        } else {
            let count = if mask.has(HookMask::COUNT) { 1 } else { 0 };
            ffi::lua_sethook(state, Some(debug_hook), mask.0, count);
        }
    }
}

unsafe extern "C-unwind" fn debug_hook(state: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) {
    // A C function's call or return changes nothing (`hooks::on_event`
    // leaves the mask as it is), and most calls in Lua code are to C
    // functions (`s:byte`, `s:lower`, iterators): answer them here, before
    // the hook table or the function's source ("S" also formats a short
    // name). Option "l" alone tells them apart: a C function has no
    // current line.
    // SAFETY: Lua calls a hook on the Lua thread with its own state and
    // activation record; "l" only reads the call's frame.
    unsafe {
        if matches!(
            (*ar).event,
            ffi::LUA_HOOKCALL | ffi::LUA_HOOKTAILCALL | ffi::LUA_HOOKRET
        ) {
            ffi::lua_getinfo(state, c"l".as_ptr(), ar);
            if (*ar).currentline < 0 {
                return;
            }
        }
    }
    // SAFETY: as above.
    let event = unsafe {
        match (*ar).event {
            ffi::LUA_HOOKCALL => HookEvent::Call,
            ffi::LUA_HOOKTAILCALL => HookEvent::TailCall,
            ffi::LUA_HOOKRET => HookEvent::Return,
            ffi::LUA_HOOKLINE => HookEvent::Line((*ar).currentline.max(0) as u32),
            _ => HookEvent::Count,
        }
    };
    let site = HookSite { state, ar };
    let stop = crate::debug::hooks::on_event(&site, event);
    // Only line and count events may yield, and only where Lua can (not
    // inside a callback from C such as a `string.gsub` function).
    if !stop {
        return;
    }
    // SAFETY: asking whether it may yield is a plain read of `state`.
    let yieldable = unsafe { ffi::lua_isyieldable(state) } != 0;
    if yieldable && matches!(event, HookEvent::Line(_) | HookEvent::Count) {
        // SAFETY: yielding from inside a line or count hook is what Lua
        // allows hooks to do; the hook returns right after `lua_yield`
        // (Lua 5.4 finishes the yield once the hook returns).
        unsafe { ffi::lua_yield(state, 0) };
    } else {
        crate::debug::hooks::cannot_stop();
    }
}

/// Installs the pause hook on a coroutine that is running Lua now, from
/// another thread (a pause of a request busy in a long loop): a count hook
/// of one, so it stops at its next instruction.
///
/// # Safety
///
/// As for [`install_stop_hook`]: the coroutine must stay alive for the
/// whole call (the caller holds the watchdog's lock).
pub(crate) unsafe fn install_pause_hook(thread: RawThread) {
    // SAFETY: the caller guarantees the state is alive (see above).
    unsafe { set_debug_hook(thread.0, HookMask::CALL.with(HookMask::COUNT)) };
}

/// What a breakpoint condition needs to run inside the debugger's hook,
/// without a yield to the host: a Lua thread of its own (hooks never run
/// on the coroutine whose hook is running, so only on another thread can a
/// budget stop a runaway condition) and the environment every compiled
/// condition has as its `_ENV`: an empty table whose `__index` reads the
/// hooked frame's locals, then its function's upvalues, then `req`, then
/// the globals (the order of `debug::evaluate`).
pub(crate) struct ConditionRuntime {
    thread: Thread,
    env: Table,
}

impl ConditionRuntime {
    pub(crate) fn new(lua: &Lua) -> mlua::Result<ConditionRuntime> {
        // SAFETY: `lua_newthread` pushes one new thread, which `exec_raw`
        // returns as a `Thread` (anchored by mlua from then on).
        let thread: Thread = unsafe {
            lua.exec_raw((), |state| {
                ffi::lua_newthread(state);
            })
        }?;
        // SAFETY: a fresh thread that nothing runs yet; its budget hook
        // stays for good (it runs only while a condition does).
        unsafe {
            ffi::lua_sethook(
                thread.state(),
                Some(condition_budget_hook),
                ffi::LUA_MASKCOUNT,
                1000,
            )
        };
        let env = lua.create_table()?;
        let metatable = lua.create_table()?;
        // SAFETY: `frame_index` reads only the frame published by
        // `check_conditions` for the time of one evaluation, and returns
        // nil when none is.
        let index = unsafe { lua.create_c_function(frame_index) }?;
        metatable.raw_set("__index", index)?;
        env.set_metatable(Some(metatable))?;
        Ok(ConditionRuntime { thread, env })
    }

    /// The `_ENV` a condition is compiled with.
    pub(crate) fn env(&self) -> &Table {
        &self.env
    }

    pub(crate) fn raw(&self) -> RawConditionThread {
        RawConditionThread(self.thread.state())
    }
}

/// The condition thread's state, for the hook table (which lives on the
/// Lua thread; the [`ConditionRuntime`] owning it outlives every hook that
/// reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawConditionThread(*mut ffi::lua_State);

/// A compiled condition, by its registry reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConditionRef {
    pub breakpoint: u32,
    pub function: c_int,
}

/// What a condition gave: `Ok(true)` stops, `Ok(false)` goes on, an error
/// stops too (so that the mistake shows).
pub(crate) type ConditionVerdict = Result<bool, String>;

/// How long one condition may run inside the hook.
const CONDITION_BUDGET: std::time::Duration = std::time::Duration::from_millis(250);

/// The hooked frame, while a condition runs.
#[derive(Clone, Copy)]
struct Frame {
    state: *mut ffi::lua_State,
    ar: *mut ffi::lua_Debug,
    /// Registry reference of the request's `req` table, if known.
    req: Option<c_int>,
    /// The condition running (its registry reference): the key of the
    /// name cache.
    condition: c_int,
    /// Set by the budget hook when it first runs (a condition that ends
    /// within 1,000 instructions never reads the clock).
    started: Option<std::time::Instant>,
}

/// Where a name of a condition was found last time: the same breakpoint
/// line has the same locals active each time, so one `lua_getlocal`
/// (checked against the name) usually replaces a scan of all of them.
struct NameSlot {
    condition: c_int,
    name: Box<[u8]>,
    local: c_int,
}

thread_local! {
    static FRAME: std::cell::Cell<Option<Frame>> = const { std::cell::Cell::new(None) };
    static NAME_SLOTS: std::cell::RefCell<Vec<NameSlot>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How many name slots are kept (oldest forgotten first).
const NAME_SLOTS_KEPT: usize = 64;

/// Forgets where names were found (the breakpoints changed: a registry
/// reference may now name another condition). A line that declares a
/// second local of a name a condition reads, after the line's first
/// instruction, is the one case the cache can misread (it finds the outer
/// one); the breakpoint's line is entered at its first instruction.
pub(crate) fn forget_name_slots() {
    NAME_SLOTS.with_borrow_mut(Vec::clear);
}

/// Runs each condition on the condition thread with the frame of `site`
/// visible to it, and hands each verdict to `verdict`, in order.
pub(crate) fn check_conditions(
    site: &HookSite,
    thread: RawConditionThread,
    req: Option<c_int>,
    conditions: &[ConditionRef],
    mut verdict: impl FnMut(&ConditionRef, ConditionVerdict),
) {
    let before = FRAME.get();
    for condition in conditions {
        FRAME.set(Some(Frame {
            state: site.state,
            ar: site.ar,
            req,
            condition: condition.function,
            started: None,
        }));
        // SAFETY: the condition thread is alive (its runtime outlives the
        // hook table's entries) and not running: conditions run only here,
        // one at a time, on the Lua thread.
        verdict(condition, unsafe {
            run_condition(thread.0, condition.function)
        });
    }
    FRAME.set(before);
}

/// Calls the compiled condition `function` (a registry reference) on
/// `thread` under the condition budget.
///
/// # Safety
///
/// `thread` must be a live Lua thread that is not running, on the Lua
/// thread that owns it.
unsafe fn run_condition(thread: *mut ffi::lua_State, function: c_int) -> ConditionVerdict {
    // SAFETY: the caller's contract; every push is balanced by the
    // `lua_settop` at the end.
    unsafe {
        let top = ffi::lua_gettop(thread);
        if ffi::lua_checkstack(thread, 4) == 0 {
            return Err("no stack for the condition".to_owned());
        }
        ffi::lua_rawgeti(
            thread,
            ffi::LUA_REGISTRYINDEX,
            ffi::lua_Integer::from(function),
        );
        let status = ffi::lua_pcall(thread, 0, 1, 0);
        let verdict = if status == ffi::LUA_OK {
            Ok(ffi::lua_toboolean(thread, -1) != 0)
        } else {
            let mut length = 0;
            let text = ffi::lua_tolstring(thread, -1, &mut length);
            Err(if text.is_null() {
                "the condition raised an error that is not a string".to_owned()
            } else {
                String::from_utf8_lossy(std::slice::from_raw_parts(text.cast::<u8>(), length))
                    .into_owned()
            })
        };
        ffi::lua_settop(thread, top);
        verdict
    }
}

unsafe extern "C-unwind" fn condition_budget_hook(
    state: *mut ffi::lua_State,
    _ar: *mut ffi::lua_Debug,
) {
    let late = match FRAME.get() {
        None => true,
        Some(frame) => match frame.started {
            None => {
                FRAME.set(Some(Frame {
                    started: Some(std::time::Instant::now()),
                    ..frame
                }));
                false
            }
            Some(started) => started.elapsed() > CONDITION_BUDGET,
        },
    };
    if late {
        let message = format!("the condition ran past {CONDITION_BUDGET:?} and was stopped");
        // SAFETY: raising an error from a count hook of the condition
        // thread unwinds to its `lua_pcall`; the message is copied by the
        // push, and nothing here needs dropping after it (the String is
        // dropped before the raise).
        unsafe {
            ffi::lua_pushlstring(state, message.as_ptr().cast(), message.len());
            drop(message);
            ffi::lua_error(state);
        }
    }
}

/// `__index` of the condition environment: `(env, key)` on the condition
/// thread.
unsafe extern "C-unwind" fn frame_index(condition: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls this with the condition thread and its two
    // arguments; the frame, when set, belongs to a hook that is running
    // (it waits in `check_conditions` for this very call), so its state
    // and activation record are valid, and pushing a few values on the
    // hooked coroutine is what a hook may do (Lua reserved LUA_MINSTACK
    // slots for it).
    unsafe {
        ffi::lua_checkstack(condition, 4);
        if let Some(frame) = FRAME.get()
            && ffi::lua_type(condition, 2) == ffi::LUA_TSTRING
        {
            let mut length = 0;
            let key = ffi::lua_tolstring(condition, 2, &mut length);
            let key = std::slice::from_raw_parts(key.cast::<u8>(), length);
            if find_in_frame(frame, key, condition) {
                return 1;
            }
        }
        ffi::lua_rawgeti(condition, ffi::LUA_REGISTRYINDEX, ffi::LUA_RIDX_GLOBALS);
        ffi::lua_pushvalue(condition, 2);
        ffi::lua_gettable(condition, -2);
        1
    }
}

/// Pushes the value `key` names in the hooked frame onto `condition`:
/// the innermost active local of that name, else an upvalue of the frame's
/// function, else `req`. `false` when none has that name.
///
/// # Safety
///
/// As for `frame_index`.
unsafe fn find_in_frame(frame: Frame, key: &[u8], condition: *mut ffi::lua_State) -> bool {
    // SAFETY: see `frame_index`; every value pushed on the hooked
    // coroutine is popped or moved before returning.
    unsafe {
        let named = |name: *const std::os::raw::c_char| {
            !name.is_null() && std::ffi::CStr::from_ptr(name).to_bytes() == key
        };
        let cached = NAME_SLOTS.with_borrow(|slots| {
            slots
                .iter()
                .find(|slot| slot.condition == frame.condition && *slot.name == *key)
                .map(|slot| slot.local)
        });
        if let Some(local) = cached {
            let name = ffi::lua_getlocal(frame.state, frame.ar, local);
            if named(name) {
                ffi::lua_xmove(frame.state, condition, 1);
                return true;
            }
            if !name.is_null() {
                ffi::lua_pop(frame.state, 1);
            }
        }
        let mut found = 0;
        let mut local = 1;
        loop {
            let name = ffi::lua_getlocal(frame.state, frame.ar, local);
            if name.is_null() {
                break;
            }
            ffi::lua_pop(frame.state, 1);
            if named(name) {
                found = local;
            }
            local += 1;
        }
        if found > 0 {
            NAME_SLOTS.with_borrow_mut(|slots| {
                slots.retain(|slot| !(slot.condition == frame.condition && *slot.name == *key));
                if slots.len() >= NAME_SLOTS_KEPT {
                    slots.remove(0);
                }
                slots.push(NameSlot {
                    condition: frame.condition,
                    name: key.into(),
                    local: found,
                });
            });
            ffi::lua_getlocal(frame.state, frame.ar, found);
            ffi::lua_xmove(frame.state, condition, 1);
            return true;
        }
        if key != b"_ENV" {
            ffi::lua_getinfo(frame.state, c"f".as_ptr(), frame.ar);
            let mut upvalue = 1;
            loop {
                let name = ffi::lua_getupvalue(frame.state, -1, upvalue);
                if name.is_null() {
                    break;
                }
                if named(name) {
                    ffi::lua_xmove(frame.state, condition, 1);
                    ffi::lua_pop(frame.state, 1);
                    return true;
                }
                ffi::lua_pop(frame.state, 1);
                upvalue += 1;
            }
            ffi::lua_pop(frame.state, 1);
        }
        if key == b"req"
            && let Some(req) = frame.req
        {
            ffi::lua_rawgeti(
                condition,
                ffi::LUA_REGISTRYINDEX,
                ffi::lua_Integer::from(req),
            );
            return true;
        }
        false
    }
}

/// What a request's `req` table is built from (see [`request_table`]).
pub(crate) struct RequestFields<'a> {
    pub id: u64,
    pub correlation_id: &'a str,
    /// Kept between requests by the caller.
    pub pipeline: &'a mlua::LuaString,
    pub priority: &'a mlua::LuaString,
    pub text: &'a str,
}

/// `req` for a request: its five fields in a table sized for them and the
/// vector (five hash fields size it for eight), made in one protected call.
/// Under the script's memory limit every string mlua makes from Rust is a
/// protected call of its own, and so is every call of a Lua constructor;
/// this is one for the whole table.
pub(crate) fn request_table(lua: &Lua, fields: &RequestFields<'_>) -> mlua::Result<Table> {
    let RequestFields {
        id,
        correlation_id,
        text,
        ..
    } = *fields;
    // SAFETY: `exec_raw` runs the closure inside a protected call with the
    // two names on the stack (indices 1 and 2) and returns what it leaves
    // there, the table. Every call below may raise a memory error, which
    // unwinds to that protected call: the closure holds only borrowed data
    // and nothing that needs dropping. The strings are copied by
    // `lua_pushlstring` before the borrow ends.
    unsafe {
        lua.exec_raw((fields.pipeline, fields.priority), |state| {
            ffi::lua_createtable(state, 0, 5);
            match ffi::lua_Integer::try_from(id) {
                Ok(id) => ffi::lua_pushinteger(state, id),
                Err(_) => ffi::lua_pushnumber(state, id as ffi::lua_Number),
            }
            ffi::lua_setfield(state, 3, c"id".as_ptr());
            ffi::lua_pushlstring(state, correlation_id.as_ptr().cast(), correlation_id.len());
            ffi::lua_setfield(state, 3, c"correlation_id".as_ptr());
            ffi::lua_pushvalue(state, 1);
            ffi::lua_setfield(state, 3, c"pipeline".as_ptr());
            ffi::lua_pushvalue(state, 2);
            ffi::lua_setfield(state, 3, c"priority".as_ptr());
            ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
            ffi::lua_setfield(state, 3, c"text".as_ptr());
            ffi::lua_replace(state, 1);
            ffi::lua_settop(state, 1);
        })
    }
}

/// What [`read_answer`] found in `req`.
pub(crate) struct AnswerFields {
    /// `req.text`, unless it is the request's own text (`same_text`).
    pub text: mlua::Value,
    /// `req.text` is a string equal to the request's text, or nil.
    pub same_text: bool,
    pub vector: mlua::Value,
    /// `req` holds a field besides the runner's own (`own`): only then
    /// are its fields walked from Rust.
    pub free_fields: bool,
}

/// Reads the answer's parts from `req` in one protected call, by raw
/// access (a stage's metatable on `req` is not consulted). The text is
/// compared with `request_text` where it lies, so an unchanged text never
/// becomes a value Rust holds.
pub(crate) fn read_answer(
    lua: &Lua,
    req: &Table,
    request_text: &str,
    own: &[&str],
) -> mlua::Result<AnswerFields> {
    let mut same_text = false;
    let mut free_fields = false;
    // SAFETY: as in `request_table`: `req` is at index 1; the closure
    // leaves the text (or nil when it is the request's) and the vector on
    // the stack and writes two flags through borrows that outlive the call.
    // `lua_next` (no key is removed during the walk) and `lua_rawget` raise
    // no error; `lua_pushstring` of a key may (memory), and then the call
    // returns the error and the flags are not read. A key is read as bytes
    // only once `lua_type` says it is a string, so the walk never converts
    // a key in place.
    let (text, vector): (mlua::Value, mlua::Value) = unsafe {
        lua.exec_raw(req, |state| {
            ffi::lua_pushnil(state);
            while ffi::lua_next(state, 1) != 0 {
                ffi::lua_pop(state, 1);
                let own_key = ffi::lua_type(state, -1) == ffi::LUA_TSTRING && {
                    let key = string_at(state, -1);
                    own.iter().any(|own| own.as_bytes() == key)
                };
                if !own_key {
                    ffi::lua_pop(state, 1);
                    free_fields = true;
                    break;
                }
            }
            ffi::lua_pushstring(state, c"text".as_ptr());
            ffi::lua_rawget(state, 1);
            match ffi::lua_type(state, -1) {
                ffi::LUA_TNIL => same_text = true,
                ffi::LUA_TSTRING if string_at(state, -1) == request_text.as_bytes() => {
                    same_text = true;
                    ffi::lua_pop(state, 1);
                    ffi::lua_pushnil(state);
                }
                _ => {}
            }
            ffi::lua_pushstring(state, c"vector".as_ptr());
            ffi::lua_rawget(state, 1);
            ffi::lua_remove(state, 1);
        })
    }?;
    Ok(AnswerFields {
        text,
        same_text,
        vector,
        free_fields,
    })
}

/// The bytes of the string at `index`, borrowed from Lua.
///
/// # Safety
///
/// The value at `index` must be a string (not a number `lua_tolstring`
/// would convert in place), and the slice must not outlive its place on
/// the stack.
unsafe fn string_at<'a>(state: *mut ffi::lua_State, index: c_int) -> &'a [u8] {
    let mut length = 0;
    // SAFETY: the caller guarantees a string at `index`; Lua keeps its
    // bytes alive while it stays on the stack.
    unsafe {
        let bytes = ffi::lua_tolstring(state, index, &mut length);
        std::slice::from_raw_parts(bytes.cast::<u8>(), length)
    }
}
