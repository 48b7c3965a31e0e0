//! The hook policy: which coroutine carries which hook, decided in the hook
//! itself from plain data, so that only the coroutines that can reach a
//! breakpoint pay, and only as much as they must.
//!
//! - Nobody debugs, or no breakpoint and no step: no hook at all.
//! - Line breakpoints exist: a stage coroutine that can reach one gets a
//!   call hook. Entering a function whose line range holds a breakpoint
//!   turns on the line hook (and the return hook, to notice leaving it);
//!   entering one without turns the line hook off again; returning into
//!   one turns it back on; once no such function is on the stack, only the
//!   call hook is left.
//! - A request that steps, pauses or stops at a stage's entry: its current
//!   coroutine gets the line hook everywhere until it stops.
//!
//! The table lives in a thread-local of the Lua thread: the hook (a plain C
//! function in `lua_raw`) reads it on every event without a lock, and the
//! host changes it only between resumes. A hook decides to stop; the host
//! then checks conditions, hit counts and logpoints outside the hook
//! (`debugger`), where it can run Lua.
//!
//! Must not depend on the registry, the host or any protocol.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use mlua::Thread;

use crate::lua_raw::{
    self, ConditionRef, ConditionVerdict, HookEvent, HookMask, HookSite, RawConditionThread,
    ScratchRecord,
};

/// Why a watched coroutine should stop at its next line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Stop at the next line (a pause, or a step in).
    NextLine(Reason),
    /// Stop at the next line whose stack is at most `depth` deep (step
    /// over: the same function or a caller).
    AtDepth(u32),
    /// Stop at the next line whose stack is shallower than `depth` (step
    /// out).
    Above(u32),
}

/// What a [`Mode::NextLine`] stop reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    Pause,
    Step,
    /// The first line of a stage with a function breakpoint.
    Entry,
}

/// What made a coroutine yield, read by the host right after the yield.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StopCause {
    /// Its mode asked for it (pause, step, entry).
    Mode(Reason),
    /// It reached a line that holds a breakpoint; hit counts, logpoints
    /// and conditions are the host's to check, except those the hook
    /// checked already: `checked` then lists each breakpoint of the line
    /// whose condition held or failed (with why).
    Breakpoint {
        line: u32,
        checked: Option<Vec<(u32, Option<String>)>>,
    },
    /// The pause hook installed from another thread.
    CrossThreadPause,
}

/// Breakpoint lines of one chunk.
struct ChunkLines {
    /// The chunk name as Lua stores it: `@/abs/path.lua`.
    source: Vec<u8>,
    /// Sorted, deduplicated.
    lines: Vec<u32>,
    /// Lines whose every breakpoint is a plain conditional one: the hook
    /// checks their conditions itself and stops only when one holds (a
    /// never-true condition in a hot loop costs no yield per pass).
    checked_in_hook: Vec<(u32, Rc<[ConditionRef]>)>,
    /// See [`ChunkBreakpoints::main_is_code`].
    main_is_code: bool,
}

/// The breakpoints of one chunk, as the debugger publishes them.
pub(crate) struct ChunkBreakpoints {
    /// `@/abs/path.lua`.
    pub source: String,
    pub lines: Vec<u32>,
    /// See [`ChunkLines::checked_in_hook`].
    pub checked_in_hook: Vec<(u32, Vec<ConditionRef>)>,
    /// The chunk's main function is code a person runs and debugs (a
    /// notebook cell), not a script's declarations.
    pub main_is_code: bool,
}

#[derive(Default)]
struct HookTable {
    chunks: Vec<ChunkLines>,
    /// Bit `line % 1024` is set when some chunk has a breakpoint there: a
    /// quick "no" for most lines.
    line_bits: [u64; 16],
    /// Watched stage coroutines by state address: which request they run
    /// for, and their mode.
    threads: HashMap<usize, Watched>,
    /// How many watched coroutines have a mode.
    modes: usize,
    /// Set by the hook just before it yields.
    stop: Option<StopCause>,
    counters: HookCounters,
    /// Where conditions run inside the hook; `None` checks them on the
    /// host (after a yield).
    condition_thread: Option<RawConditionThread>,
}

struct Watched {
    mode: Option<Mode>,
    /// The request's `req`, for conditions checked in the hook.
    req: Option<Rc<mlua::RegistryKey>>,
}

/// How often coroutines got which hook; for the hook-policy tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookCounters {
    /// Stage coroutines started with no hook at all.
    pub bare: u64,
    /// Started with the call hook only.
    pub call_only: u64,
    /// Started with the line hook (a step, a pause or a function
    /// breakpoint waits for them).
    pub line: u64,
    /// Times the hook turned the line hook on on entering or returning into
    /// a function that holds a breakpoint.
    pub line_on: u64,
}

thread_local! {
    static TABLE: RefCell<HookTable> = RefCell::default();
}

/// Replaces the breakpoint lines.
pub(crate) fn set_lines(chunks: Vec<ChunkBreakpoints>) {
    lua_raw::forget_name_slots();
    TABLE.with_borrow_mut(|table| {
        table.line_bits = [0; 16];
        table.chunks = chunks
            .into_iter()
            .filter(|chunk| !chunk.lines.is_empty())
            .map(|mut chunk| {
                chunk.lines.sort_unstable();
                chunk.lines.dedup();
                let mut checked_in_hook: Vec<(u32, Rc<[ConditionRef]>)> = chunk
                    .checked_in_hook
                    .into_iter()
                    .map(|(line, conditions)| (line, Rc::from(conditions)))
                    .collect();
                checked_in_hook.sort_unstable_by_key(|(line, _)| *line);
                ChunkLines {
                    source: chunk.source.into_bytes(),
                    lines: chunk.lines,
                    checked_in_hook,
                    main_is_code: chunk.main_is_code,
                }
            })
            .collect();
        for chunk in &table.chunks {
            for line in &chunk.lines {
                let bit = (*line % 1024) as usize;
                table.line_bits[bit / 64] |= 1 << (bit % 64);
            }
        }
    });
}

/// Where the hook runs conditions (see [`lua_raw::ConditionRuntime`]).
pub(crate) fn set_condition_thread(thread: Option<RawConditionThread>) {
    TABLE.with_borrow_mut(|table| table.condition_thread = thread);
}

/// Whether any line breakpoint exists.
pub(crate) fn has_lines() -> bool {
    TABLE.with_borrow(|table| !table.chunks.is_empty())
}

/// Starts watching a stage coroutine: installs the hook it needs now.
/// `reaches_breakpoint` says whether its stage can reach a line
/// breakpoint; `mode` is the request's pending step, pause or entry stop;
/// `req` the request's table (for conditions checked in the hook).
pub(crate) fn watch(
    thread: &Thread,
    reaches_breakpoint: bool,
    mode: Option<Mode>,
    req: Option<mlua::RegistryKey>,
) {
    let mask = TABLE.with_borrow_mut(|table| {
        let key = thread_key(thread);
        let mask = match (&mode, reaches_breakpoint) {
            (Some(_), _) => {
                table.counters.line += 1;
                HookMask::CALL.with(HookMask::LINE)
            }
            (None, true) => {
                table.counters.call_only += 1;
                HookMask::CALL
            }
            (None, false) => HookMask::NONE,
        };
        if mask != HookMask::NONE {
            if mode.is_some() {
                table.modes += 1;
            }
            table.threads.insert(
                key,
                Watched {
                    mode,
                    req: req.map(Rc::new),
                },
            );
        }
        mask
    });
    if mask != HookMask::NONE {
        lua_raw::install_debug_hook(thread, mask);
    }
}

/// A stage coroutine starts with no hook at all.
pub(crate) fn count_bare() {
    TABLE.with_borrow_mut(|table| table.counters.bare += 1);
}

/// The coroutine stopped at a line and resumes now: sets its new mode and
/// the hook for where it stands (the line hook if its current function
/// holds a breakpoint, the return hook to notice leaving it).
pub(crate) fn rewatch(thread: &Thread, mode: Option<Mode>) {
    let key = thread_key(thread);
    let mask = TABLE.with_borrow_mut(|table| {
        let before = table.threads.remove(&key);
        if before
            .as_ref()
            .is_some_and(|watched| watched.mode.is_some())
        {
            table.modes -= 1;
        }
        if mode.is_some() {
            table.modes += 1;
        }
        let mask = if mode.is_some() {
            HookMask::CALL.with(HookMask::LINE)
        } else if !table.chunks.is_empty() {
            // Where it stands is read again at the next event; until then
            // keep every event so that no breakpoint line is missed.
            HookMask::CALL.with(HookMask::RETURN).with(HookMask::LINE)
        } else {
            HookMask::NONE
        };
        if mask != HookMask::NONE || before.is_some() {
            let req = before.and_then(|watched| watched.req);
            table.threads.insert(key, Watched { mode, req });
        }
        mask
    });
    if mask == HookMask::NONE {
        lua_raw::remove_hook(thread);
    } else {
        lua_raw::install_debug_hook(thread, mask);
    }
}

/// The stage coroutine has ended (or failed): forget it. Returns the mode
/// it still had (a step that did not stop in it).
pub(crate) fn unwatch(thread: &Thread) -> Option<Mode> {
    let key = thread_key(thread);
    let watched = TABLE.with_borrow_mut(|table| {
        let watched = table.threads.remove(&key);
        if watched
            .as_ref()
            .is_some_and(|watched| watched.mode.is_some())
        {
            table.modes -= 1;
        }
        watched
    });
    let watched = watched?;
    lua_raw::remove_hook(thread);
    watched.mode
}

/// Whether a coroutine waits to stop (a pause or step armed on it).
pub(crate) fn has_mode(thread: &Thread) -> bool {
    let key = thread_key(thread);
    TABLE.with_borrow(|table| {
        table
            .threads
            .get(&key)
            .is_some_and(|watched| watched.mode.is_some())
    })
}

/// What made the coroutine that just yielded stop, if a hook did.
pub(crate) fn take_stop() -> Option<StopCause> {
    TABLE.with_borrow_mut(|table| table.stop.take())
}

pub(crate) fn counters() -> HookCounters {
    TABLE.with_borrow(|table| table.counters)
}

/// The hook wanted to stop where Lua cannot yield (inside a callback from
/// C, such as a `string.gsub` function): the next line tries again.
pub(crate) fn cannot_stop() {
    TABLE.with_borrow_mut(|table| table.stop = None);
}

fn thread_key(thread: &Thread) -> usize {
    thread.state() as usize
}

/// What the hook does after reading the table.
enum Decision {
    Go,
    Stop,
    /// A line whose breakpoints are all conditional: run the conditions
    /// (outside the table's borrow: they run Lua) and stop if one holds.
    Check {
        line: u32,
        conditions: Rc<[ConditionRef]>,
        thread: RawConditionThread,
        req: Option<Rc<mlua::RegistryKey>>,
    },
}

/// The hook's decision for one event: `true` to stop (yield) here.
pub(crate) fn on_event(site: &HookSite, event: HookEvent) -> bool {
    match TABLE.with_borrow_mut(|table| table.on_event(site, event)) {
        Decision::Go => false,
        Decision::Stop => true,
        Decision::Check {
            line,
            conditions,
            thread,
            req,
        } => {
            // Allocates only when one holds (when the request stops).
            let mut checked: Vec<(u32, Option<String>)> = Vec::new();
            lua_raw::check_conditions(
                site,
                thread,
                req.as_deref().map(mlua::RegistryKey::id),
                &conditions,
                |condition: &ConditionRef, verdict: ConditionVerdict| match verdict {
                    Ok(false) => {}
                    Ok(true) => checked.push((condition.breakpoint, None)),
                    Err(message) => checked.push((condition.breakpoint, Some(message))),
                },
            );
            if checked.is_empty() {
                return false;
            }
            TABLE.with_borrow_mut(|table| {
                table.stop = Some(StopCause::Breakpoint {
                    line,
                    checked: Some(checked),
                });
            });
            true
        }
    }
}

impl HookTable {
    fn range_has_breakpoint(&self, source: &[u8], first: i32, last: i32) -> bool {
        if first < 0 {
            return false;
        }
        let Some(chunk) = self.chunks.iter().find(|chunk| chunk.source == source) else {
            return false;
        };
        // A script's main chunk (line 0) spans the whole file but runs
        // only when the script loads; its lines are not request code. A
        // cell's main chunk is the cell's code.
        if first == 0 {
            return chunk.main_is_code;
        }
        let start = chunk.lines.partition_point(|line| (*line as i32) < first);
        chunk
            .lines
            .get(start)
            .is_some_and(|line| (*line as i32) <= last)
    }

    /// Calls and returns are a Lua function's only: the C hook answers a C
    /// function's itself, leaving the mask as it is (it runs no line, and
    /// whatever Lua it calls back gets its own events).
    fn on_event(&mut self, site: &HookSite, event: HookEvent) -> Decision {
        match event {
            HookEvent::Line(line) => self.on_line(site, line),
            HookEvent::Call | HookEvent::TailCall => {
                let function = site.function();
                let holds = self.range_has_breakpoint(
                    function.source,
                    function.first_line,
                    function.last_line,
                );
                let mut mask = HookMask::CALL;
                if holds {
                    self.counters.line_on += 1;
                    mask = mask.with(HookMask::LINE).with(HookMask::RETURN);
                } else if site.mask().has(HookMask::RETURN) && event == HookEvent::Call {
                    // A function holding a breakpoint is below: notice
                    // the return into it.
                    mask = mask.with(HookMask::RETURN);
                } else if event == HookEvent::TailCall && site.mask().has(HookMask::RETURN) {
                    mask = mask.with(HookMask::RETURN);
                }
                self.with_mode_lines(site, mask);
                Decision::Go
            }
            HookEvent::Return => {
                // The Lua function we return into: the first one from
                // level 1 down that is not a C function (a C function in
                // between left the mask alone).
                let mut scratch = ScratchRecord::new();
                let mut mask = HookMask::CALL;
                let mut level = 1;
                while let Some(caller) = site.function_at(level, &mut scratch) {
                    if caller.first_line < 0 {
                        level += 1;
                        continue;
                    }
                    if self.range_has_breakpoint(caller.source, caller.first_line, caller.last_line)
                    {
                        self.counters.line_on += 1;
                        mask = mask.with(HookMask::LINE).with(HookMask::RETURN);
                    } else if self.breakpoint_below(site, level + 1) {
                        mask = mask.with(HookMask::RETURN);
                    }
                    break;
                }
                self.with_mode_lines(site, mask);
                Decision::Go
            }
            HookEvent::Count => {
                self.stop = Some(StopCause::CrossThreadPause);
                Decision::Stop
            }
        }
    }

    /// Sets `mask`, plus the line hook when the coroutine has a mode.
    fn with_mode_lines(&self, site: &HookSite, mut mask: HookMask) {
        if self.modes > 0
            && self
                .threads
                .get(&site.thread_key())
                .is_some_and(|watched| watched.mode.is_some())
        {
            mask = mask.with(HookMask::LINE);
        }
        if site.mask() != mask {
            site.set_mask(mask);
        }
    }

    fn breakpoint_below(&self, site: &HookSite, from_level: i32) -> bool {
        let mut scratch = ScratchRecord::new();
        let mut level = from_level;
        while let Some(function) = site.function_at(level, &mut scratch) {
            if self.range_has_breakpoint(function.source, function.first_line, function.last_line) {
                return true;
            }
            level += 1;
        }
        false
    }

    fn on_line(&mut self, site: &HookSite, line: u32) -> Decision {
        let key = site.thread_key();
        if self.modes > 0
            && let Some(Watched {
                mode: Some(mode), ..
            }) = self.threads.get(&key)
        {
            let stop = match mode {
                Mode::NextLine(reason) => Some(StopCause::Mode(*reason)),
                Mode::AtDepth(depth) => {
                    (site.depth() <= *depth).then_some(StopCause::Mode(Reason::Step))
                }
                Mode::Above(depth) => {
                    (site.depth() < *depth).then_some(StopCause::Mode(Reason::Step))
                }
            };
            if let Some(stop) = stop {
                self.stop = Some(stop);
                return Decision::Stop;
            }
        }
        let bit = (line % 1024) as usize;
        if self.line_bits[bit / 64] & (1 << (bit % 64)) == 0 {
            return Decision::Go;
        }
        let function = site.function();
        let Some(chunk) = self
            .chunks
            .iter()
            .find(|chunk| chunk.source == function.source)
        else {
            return Decision::Go;
        };
        let Some(watched) = self.threads.get(&key) else {
            // A coroutine the script resumes itself: a yield there would
            // go to the script, not the host.
            return Decision::Go;
        };
        if chunk.lines.binary_search(&line).is_err() {
            return Decision::Go;
        }
        if let Some(thread) = self.condition_thread
            && let Ok(index) = chunk
                .checked_in_hook
                .binary_search_by_key(&line, |(line, _)| *line)
        {
            return Decision::Check {
                line,
                conditions: chunk.checked_in_hook[index].1.clone(),
                thread,
                req: watched.req.clone(),
            };
        }
        self.stop = Some(StopCause::Breakpoint {
            line,
            checked: None,
        });
        Decision::Stop
    }
}
