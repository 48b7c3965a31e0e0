//! Which lines of a chunk hold code, and in which function: read from the
//! chunk's own bytecode (`string.dump` of the compiled chunk, Lua 5.4's
//! binary format), so that a breakpoint binds exactly where Lua can stop
//! and moves to the nearest line with code otherwise.
//!
//! Pure data: no registry, no hooks, no protocol.

use mlua::{Function, Lua};

/// One function of a chunk: its line range and the lines of its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FunctionLines {
    /// 0 for the chunk's main function.
    pub first_line: u32,
    pub last_line: u32,
    /// Sorted, deduplicated.
    pub lines: Vec<u32>,
}

/// Every function of a chunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChunkMap {
    pub functions: Vec<FunctionLines>,
}

/// Where a breakpoint asked for at a line binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Binding {
    /// At this line (the one asked for, or the next line with code in the
    /// innermost function around it).
    Line(u32),
    /// Nowhere; the reason says why.
    Unbound(String),
}

impl ChunkMap {
    /// Compiles `source` (without running it) and reads its functions.
    pub(crate) fn of_source(
        lua: &Lua,
        chunk_name: &str,
        source: &[u8],
    ) -> Result<ChunkMap, String> {
        let function = lua
            .load(source)
            .set_name(chunk_name)
            .into_function()
            .map_err(|error| format!("the file does not compile: {error}"))?;
        ChunkMap::of_function(lua, &function)
    }

    /// Compiles a notebook cell as the cell runs it (an expression, or
    /// statements with a trailing expression returned) and reads its
    /// functions: the main function is the cell's code.
    pub(crate) fn of_cell(lua: &Lua, chunk_name: &str, code: &str) -> Result<ChunkMap, String> {
        let function = crate::cell::compile_cell(lua, code, chunk_name)
            .map_err(|error| format!("the cell does not compile: {error}"))?;
        ChunkMap::of_function(lua, &function)
    }

    fn of_function(lua: &Lua, function: &Function) -> Result<ChunkMap, String> {
        let string: mlua::Table = lua.globals().get("string").map_err(|e| e.to_string())?;
        let dump: Function = string.get("dump").map_err(|e| e.to_string())?;
        let bytes: mlua::LuaString = dump.call(function.clone()).map_err(|e| e.to_string())?;
        let mut reader = Reader {
            bytes: &bytes.as_bytes(),
            at: 0,
        };
        let mut map = ChunkMap::default();
        reader.header()?;
        reader.function(&mut map)?;
        Ok(map)
    }

    /// Where a breakpoint at `line` binds. With `main_is_code` (a cell),
    /// the main function's lines are code that runs and a breakpoint binds
    /// there too.
    pub(crate) fn bind(&self, line: u32, main_is_code: bool) -> Binding {
        // The innermost request-time function whose range holds the line.
        let around = self
            .functions
            .iter()
            .filter(|function| function.first_line > 0)
            .filter(|function| function.first_line <= line && line <= function.last_line)
            .min_by_key(|function| function.last_line - function.first_line);
        if let Some(found) =
            around.and_then(|function| function.lines.iter().find(|code| **code >= line))
        {
            return Binding::Line(*found);
        }
        if main_is_code
            && let Some(found) = self
                .functions
                .iter()
                .filter(|function| function.first_line == 0)
                .flat_map(|function| function.lines.iter().copied())
                .filter(|code| *code >= line)
                .min()
        {
            return Binding::Line(found);
        }
        if self.main_has(line) {
            return Binding::Unbound(format!(
                "line {line} runs only when the script is loaded, before any request; \
                 set the breakpoint inside a stage function"
            ));
        }
        let next = self
            .functions
            .iter()
            .filter(|function| function.first_line > 0)
            .flat_map(|function| function.lines.iter().copied())
            .filter(|code| *code >= line)
            .min();
        match next {
            Some(found) => Binding::Line(found),
            None => Binding::Unbound(format!(
                "no code at or after line {line} runs for a request; set the breakpoint inside \
                 a stage function"
            )),
        }
    }

    fn main_has(&self, line: u32) -> bool {
        self.functions
            .iter()
            .filter(|function| function.first_line == 0)
            .any(|function| function.lines.binary_search(&line).is_ok())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

const ABSLINEINFO: i8 = -0x80;

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], String> {
        let end = self.at + count;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| "the compiled chunk ended early".to_owned())?;
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// Lua's size encoding: 7 bits a byte, most significant first, the last
    /// byte marked with 0x80.
    fn size(&mut self) -> Result<usize, String> {
        let mut value: usize = 0;
        loop {
            let byte = self.byte()?;
            value = (value << 7) | usize::from(byte & 0x7f);
            if byte & 0x80 != 0 {
                return Ok(value);
            }
        }
    }

    fn string(&mut self) -> Result<(), String> {
        let size = self.size()?;
        if size > 0 {
            self.take(size - 1)?;
        }
        Ok(())
    }

    fn header(&mut self) -> Result<(), String> {
        let signature = self.take(4)?;
        if signature != b"\x1bLua" {
            return Err("not a Lua binary chunk".to_owned());
        }
        let version = self.byte()?;
        if version != 0x54 {
            return Err(format!("bytecode version {version:#x}, expected Lua 5.4"));
        }
        // Format, LUAC_DATA (6), sizes of Instruction, Integer, Number (3),
        // the check integer and number (8 + 8), the main upvalue count.
        self.take(1 + 6 + 3 + 8 + 8 + 1)?;
        Ok(())
    }

    fn function(&mut self, map: &mut ChunkMap) -> Result<(), String> {
        self.string()?; // source
        let first_line = self.size()? as u32;
        let last_line = self.size()? as u32;
        self.take(3)?; // numparams, is_vararg, maxstacksize
        let code = self.size()?;
        self.take(code * 4)?;
        let constants = self.size()?;
        for _ in 0..constants {
            match self.byte()? {
                3 | 19 => {
                    self.take(8)?;
                }
                4 | 20 => self.string()?,
                _ => {}
            }
        }
        let upvalues = self.size()?;
        self.take(upvalues * 3)?;
        let protos = self.size()?;
        for _ in 0..protos {
            self.function(map)?;
        }
        let line_count = self.size()?;
        let deltas: Vec<i8> = self.take(line_count)?.iter().map(|b| *b as i8).collect();
        let absolute_count = self.size()?;
        let mut absolute = Vec::with_capacity(absolute_count);
        for _ in 0..absolute_count {
            let pc = self.size()?;
            let line = self.size()? as u32;
            absolute.push((pc, line));
        }
        let locals = self.size()?;
        for _ in 0..locals {
            self.string()?;
            self.size()?;
            self.size()?;
        }
        let upvalue_names = self.size()?;
        for _ in 0..upvalue_names {
            self.string()?;
        }
        let mut lines = Vec::with_capacity(deltas.len());
        let mut line = first_line as i64;
        for (pc, delta) in deltas.iter().enumerate() {
            if *delta == ABSLINEINFO {
                if let Some((_, absolute_line)) = absolute.iter().find(|(at, _)| *at == pc) {
                    line = i64::from(*absolute_line);
                }
            } else {
                line += i64::from(*delta);
            }
            if line > 0 {
                lines.push(line as u32);
            }
        }
        lines.sort_unstable();
        lines.dedup();
        map.functions.push(FunctionLines {
            first_line,
            last_line,
            lines,
        });
        Ok(())
    }
}
