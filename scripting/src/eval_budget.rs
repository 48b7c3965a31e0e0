//! The instruction budget of evaluation: a script that loops forever is cut
//! off and reported instead of hanging `spindle check`, `spindle run` or the
//! language server.
//!
//! A count hook on every Lua thread (the global hook, which coroutines a
//! script creates inherit) counts instructions while the script's top level
//! runs and raises an error at the position it stopped once the budget is
//! spent. A script may catch that error with `pcall`; from then on the hook
//! raises on every instruction of the running thread, so no loop outside the
//! `pcall` can go on. The hook is removed when evaluation ends: later calls
//! into the same state (probes, pipeline stages) have deadlines of their own.
//! The count is of instructions, not time, so the cut-off and its message
//! are the same on every machine. Memory has its own limit
//! ([`crate::MEMORY_LIMIT`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use mlua::{HookTriggers, Lua, VmState};

/// Lua instructions a script's evaluation may run: under a second of pure Lua
/// on a slow machine, and far beyond what declaring a graph takes (a
/// 5,000-line script runs well under a million).
pub const INSTRUCTION_BUDGET: u64 = 100_000_000;

/// How often the hook looks at the count.
const CHECK_EVERY: u32 = 10_000;

/// The start of the error message; `eval` recognises it to give its hint.
pub(crate) const BUDGET_MESSAGE: &str = "the script ran past its evaluation budget";

/// Removes the hook when dropped.
pub(crate) struct BudgetGuard<'a> {
    lua: &'a Lua,
}

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        self.lua.remove_global_hook();
        self.lua.remove_hook();
    }
}

/// Installs the budget on `lua` until the guard is dropped.
pub(crate) fn install(lua: &Lua) -> mlua::Result<BudgetGuard<'_>> {
    install_with(lua, INSTRUCTION_BUDGET)
}

pub(crate) fn install_with(lua: &Lua, budget: u64) -> mlua::Result<BudgetGuard<'_>> {
    let spent = Rc::new(Cell::new(0u64));
    // The message of the first stop, raised again by every later one.
    let first_stop: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |lua, debug| {
            spent.set(spent.get().saturating_add(u64::from(CHECK_EVERY)));
            if spent.get() < budget {
                return Ok(VmState::Continue);
            }
            if let Some(message) = first_stop.borrow().as_ref() {
                return Err(mlua::Error::runtime(message.clone()));
            }
            let file = debug
                .source()
                .source
                .map(|source| source.trim_start_matches('@').to_owned())
                .unwrap_or_default();
            let line = debug.current_line().unwrap_or(0);
            let message = format!(
                "{file}:{line}: {BUDGET_MESSAGE} of {} million instructions",
                budget / 1_000_000
            );
            *first_stop.borrow_mut() = Some(message.clone());
            // From now on every instruction of the running thread raises, so
            // a `pcall` in a loop cannot keep the script alive.
            let again = message.clone();
            lua.set_hook(HookTriggers::new().every_nth_instruction(1), move |_, _| {
                Err(mlua::Error::runtime(again.clone()))
            })?;
            Err(mlua::Error::runtime(message))
        },
    )?;
    Ok(BudgetGuard { lua })
}
