//! Which Lua functions the script's requests can reach at all: the hook
//! policy's answer to "can this stage reach a breakpoint outside every
//! stage function?" (a helper). Without it every stage coroutine would
//! carry a call hook as soon as one breakpoint sits in any helper, even
//! one that nothing calls.
//!
//! The walk starts from the functions the host calls (stages, fallbacks,
//! probes: mlua keeps them outside the Lua registry, so they are handed
//! in), the registry (the globals, loaded modules) and the string
//! metatable, and follows upvalues, table keys, values and metatables, and
//! userdata metatables and user values. A function is
//! reachable when the walk finds it; a function created later is a
//! closure of a prototype inside a reachable function's line range, so a
//! breakpoint is out of reach only when no reachable function's range in
//! its chunk holds its line.
//!
//! What it does not see: a chunk loaded again while requests run (a stage
//! that calls `dofile` on a file it already loaded) makes new closures of
//! that file that the walk did not find. A chunk the walk finds no
//! function of (a module not loaded yet) counts as reachable.
//!
//! Must not depend on the registry of runs, the host or any protocol.

use mlua::{Function, Table};

/// Past this many objects the walk gives up: every breakpoint counts as
/// reachable (a graph that large pays call hooks rather than a long walk
/// on the Lua thread).
const MAX_OBJECTS: i64 = 500_000;

const WALK: &str = r#"
local debug, limit = ...
local getinfo, getupvalue = debug.getinfo, debug.getupvalue
local getmetatable, getuservalue, getregistry = debug.getmetatable, debug.getuservalue, debug.getregistry
local type, next, ipairs = type, next, ipairs
return function(roots)
  local seen, stack, n = {}, { getregistry(), getmetatable("") }, 2
  for _, root in ipairs(roots) do
    n = n + 1
    stack[n] = root
  end
  local ranges, count, visited = {}, 0, 0
  while n > 0 do
    local value = stack[n]
    stack[n] = nil
    n = n - 1
    local kind = type(value)
    if (kind == "function" or kind == "table" or kind == "userdata") and not seen[value] then
      seen[value] = true
      visited = visited + 1
      if visited > limit then return nil end
      if kind == "function" then
        local info = getinfo(value, "S")
        if info.what == "Lua" then
          count = count + 1
          ranges[count] = { info.source, info.linedefined, info.lastlinedefined }
        end
        local i = 1
        while true do
          local name, upvalue = getupvalue(value, i)
          if name == nil then break end
          n = n + 1
          stack[n] = upvalue
          i = i + 1
        end
      elseif kind == "table" then
        for key, field in next, value do
          n = n + 1
          stack[n] = key
          n = n + 1
          stack[n] = field
        end
        n = n + 1
        stack[n] = getmetatable(value)
      else
        n = n + 1
        stack[n] = getmetatable(value)
        n = n + 1
        stack[n] = (getuservalue(value))
      end
    end
  end
  return ranges
end
"#;

/// The walk, built once per host from the private `debug` library.
pub(crate) struct Reach {
    walk: Function,
}

/// The line ranges of every reachable Lua function: `(chunk name, first
/// line, last line)`; main chunks have first line 0.
pub(crate) struct Reachable {
    ranges: Vec<(String, u32, u32)>,
}

impl Reach {
    pub(crate) fn new(lua: &mlua::Lua, debug: &Table) -> mlua::Result<Reach> {
        let walk = lua
            .load(WALK)
            .set_name("=spindle debugger")
            .call::<Function>((debug.clone(), MAX_OBJECTS))?;
        Ok(Reach { walk })
    }

    /// Walks the script's objects now, from `roots` (the functions the
    /// host calls) among others; `None` when the walk failed or gave up
    /// (then everything counts as reachable).
    pub(crate) fn reachable(&self, roots: &[Function]) -> Option<Reachable> {
        let ranges: Option<Vec<Table>> = self.walk.call(roots.to_vec()).ok()?;
        let ranges = ranges?
            .into_iter()
            .filter_map(|range| {
                let source: String = range.raw_get(1).ok()?;
                let first: i64 = range.raw_get(2).ok()?;
                let last: i64 = range.raw_get(3).ok()?;
                Some((source, first.max(0) as u32, last.max(0) as u32))
            })
            .collect();
        Some(Reachable { ranges })
    }
}

impl Reachable {
    /// Whether a request may run line `line` of chunk `chunk`
    /// (`@/abs/path`): some reachable function holds it (the chunk's main
    /// function holds all of it), or no function of that chunk was found
    /// at all.
    pub(crate) fn may_run(&self, chunk: &str, line: u32) -> bool {
        let mut chunk_known = false;
        for (source, first, last) in &self.ranges {
            if source != chunk {
                continue;
            }
            chunk_known = true;
            // A main chunk that can run again makes new closures of all
            // of it.
            if *first == 0 || (*first <= line && line <= *last) {
                return true;
            }
        }
        !chunk_known
    }
}
