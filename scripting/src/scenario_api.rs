//! The `spindle.scenario` Lua module: the functions a scenario file calls
//! to write its timeline and its expectations (see `scenario` for what
//! they produce and docs/sessions.md for the language). Each call checks
//! its arguments at once and records a plain step or expectation with its
//! line, or a diagnostic; nothing here raises a Lua error for a mistake, so
//! one run reports every mistake. Outside a scenario evaluation (the kernel
//! evaluating the same file as its graph) the calls only check.

use std::path::Path;
use std::time::Duration;

use mlua::{Lua, Table, Value};

use crate::api::caller_site;
use crate::diagnostic::{Diagnostic, Severity};
use crate::duration::parse_duration;
use crate::scenario::{
    Action, AnswerExpectation, ExpectKind, Expectation, OUTCOMES, PIPELINE_GATES, REQUEST_EVENTS,
    SERVICE_STATES, ScenarioRecord, ScenarioStep, Similarity,
};

/// Builds the `spindle.scenario` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let module = lua.create_table()?;
    module.set("settings", lua.create_function(settings)?)?;
    module.set("request", named(lua, "request", request)?)?;
    module.set("wait", lua.create_function(wait)?)?;
    module.set("fault", lua.create_function(fault)?)?;
    module.set("fill", lua.create_function(fill)?)?;
    module.set("cancel", lua.create_function(cancel)?)?;
    for command in ["restart", "stop", "start", "recover"] {
        module.set(
            command,
            lua.create_function(move |lua, value: Value| service_command(lua, command, value))?,
        )?;
    }
    module.set("reload", lua.create_function(reload)?)?;
    module.set("expect", named(lua, "expect", expect)?)?;
    module.set("expect_order", lua.create_function(expect_order)?)?;
    module.set("expect_latency", lua.create_function(expect_latency)?)?;
    module.set(
        "expect_service",
        named(lua, "expect_service", expect_service)?,
    )?;
    Ok(module)
}

/// Where a call was made, for its step and its diagnostics.
#[derive(Clone)]
struct Site {
    file: std::path::PathBuf,
    line: u32,
    callee: &'static str,
}

impl Site {
    fn of(lua: &Lua, callee: &'static str) -> Site {
        let site = caller_site(lua, callee);
        Site {
            file: site.file,
            line: site.line,
            callee,
        }
    }
}

/// Records a mistake as a diagnostic at `site`.
fn mistake(lua: &Lua, site: &Site, message: String, hint: String) {
    let column = column_of(&site.file, site.line, site.callee).unwrap_or(1);
    if let Some(mut record) = lua.app_data_mut::<ScenarioRecord>() {
        record.mistakes.push(Diagnostic {
            severity: Severity::Error,
            file: site.file.clone(),
            line: site.line,
            column,
            message,
            hint: Some(hint),
        });
    }
}

fn column_of(file: &Path, line: u32, callee: &str) -> Option<u32> {
    let text = std::fs::read_to_string(file).ok()?;
    let line_text = text.lines().nth(line.checked_sub(1)? as usize)?;
    line_text.find(callee).map(|byte| byte as u32 + 1)
}

fn push_step(lua: &Lua, site: &Site, at: Option<Duration>, action: Action) {
    if let Some(mut record) = lua.app_data_mut::<ScenarioRecord>() {
        let at = at.unwrap_or(record.now);
        record.now = at;
        record.steps.push(ScenarioStep {
            at,
            line: site.line,
            action,
        });
    }
}

fn push_expectation(lua: &Lua, site: &Site, kind: ExpectKind) {
    if let Some(mut record) = lua.app_data_mut::<ScenarioRecord>() {
        record.expectations.push(Expectation {
            line: site.line,
            kind,
        });
    }
}

/// `sc.NAME "name" { ... }` or `sc.NAME("name", { ... })`.
fn named(
    lua: &Lua,
    callee: &'static str,
    record: fn(&Lua, &Site, String, Fields),
) -> mlua::Result<mlua::Function> {
    lua.create_function(move |lua, (name, table): (Value, Option<Value>)| {
        let site = Site::of(lua, callee);
        let name = match name {
            Value::String(name) => name.to_str()?.to_owned(),
            other => {
                mistake(
                    lua,
                    &site,
                    format!(
                        "sc.{callee} needs a name as a string, found {}",
                        crate::convert::describe(&other)
                    ),
                    format!("write sc.{callee} \"name\" {{ ... }}"),
                );
                return Ok(Value::Nil);
            }
        };
        let finish = move |lua: &Lua, table: Value, site: &Site| match table {
            Value::Table(table) => record(lua, site, name.clone(), Fields::new(table, site)),
            other => mistake(
                lua,
                site,
                format!(
                    "sc.{callee} \"{name}\" needs a table of fields, found {}",
                    crate::convert::describe(&other)
                ),
                format!("write sc.{callee} \"{name}\" {{ ... }}"),
            ),
        };
        match table {
            Some(table) => {
                finish(lua, table, &site);
                Ok(Value::Nil)
            }
            None => Ok(Value::Function(lua.create_function(
                move |lua, table: Value| {
                    finish(lua, table, &site);
                    Ok(())
                },
            )?)),
        }
    })
}

/// A call's table of fields, read key by key; what is left unread is
/// reported as unknown.
struct Fields {
    table: Table,
    site: Site,
    read: Vec<&'static str>,
    problems: Vec<(String, String)>,
}

impl Fields {
    fn new(table: Table, site: &Site) -> Fields {
        Fields {
            table,
            site: site.clone(),
            read: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn value(&mut self, key: &'static str) -> Value {
        self.read.push(key);
        self.table.raw_get(key).unwrap_or(Value::Nil)
    }

    fn wrong(&mut self, key: &str, expected: &str, found: &Value, example: &str) {
        self.problems.push((
            format!(
                "`{key}` must be {expected}, found {}",
                crate::convert::describe(found)
            ),
            format!("for example {key} = {example}"),
        ));
    }

    fn string(&mut self, key: &'static str, example: &str) -> Option<String> {
        match self.value(key) {
            Value::Nil => None,
            Value::String(text) => Some(text.to_string_lossy()),
            other => {
                self.wrong(key, "a string", &other, example);
                None
            }
        }
    }

    fn required_string(&mut self, key: &'static str, example: &str) -> Option<String> {
        let value = self.string(key, example);
        if value.is_none() && !self.problems.iter().any(|(m, _)| m.contains(key)) {
            self.problems.push((
                format!("`{key}` is required"),
                format!("for example {key} = {example}"),
            ));
        }
        value
    }

    /// A string that must be one of `allowed`.
    fn one_of(&mut self, key: &'static str, allowed: &[&str]) -> Option<String> {
        let example = format!("\"{}\"", allowed[0]);
        let value = self.string(key, &example)?;
        if allowed.contains(&value.as_str()) {
            return Some(value);
        }
        let hint = match crate::convert::did_you_mean(&value, allowed) {
            Some(close) => format!("did you mean \"{close}\"?"),
            None => format!("one of: {}", allowed.join(", ")),
        };
        self.problems
            .push((format!("`{key}` cannot be \"{value}\""), hint));
        None
    }

    fn duration(&mut self, key: &'static str) -> Option<Duration> {
        match self.value(key) {
            Value::Nil => None,
            Value::String(text) => match parse_duration(&text.to_string_lossy()) {
                Ok(duration) => Some(duration),
                Err(error) => {
                    self.problems.push((
                        format!("`{key}`: {error}"),
                        format!("write a duration such as {key} = \"250ms\" or \"2s\""),
                    ));
                    None
                }
            },
            Value::Integer(seconds) if seconds >= 0 => Some(Duration::from_secs(seconds as u64)),
            Value::Number(seconds) if seconds >= 0.0 && seconds.is_finite() => {
                Some(Duration::from_secs_f64(seconds))
            }
            other => {
                self.wrong(key, "a duration", &other, "\"250ms\"");
                None
            }
        }
    }

    fn number(&mut self, key: &'static str, example: &str) -> Option<f64> {
        match self.value(key) {
            Value::Nil => None,
            Value::Integer(number) => Some(number as f64),
            Value::Number(number) => Some(number),
            other => {
                self.wrong(key, "a number", &other, example);
                None
            }
        }
    }

    fn count(&mut self, key: &'static str, example: &str) -> Option<u64> {
        match self.value(key) {
            Value::Nil => None,
            Value::Integer(number) if number >= 0 => Some(number as u64),
            other => {
                self.wrong(key, "a whole number ≥ 0", &other, example);
                None
            }
        }
    }

    fn flag(&mut self, key: &'static str) -> Option<bool> {
        match self.value(key) {
            Value::Nil => None,
            Value::Boolean(flag) => Some(flag),
            other => {
                self.wrong(key, "a boolean", &other, "true");
                None
            }
        }
    }

    fn table(&mut self, key: &'static str, example: &str) -> Option<Table> {
        match self.value(key) {
            Value::Nil => None,
            Value::Table(table) => Some(table),
            other => {
                self.wrong(key, "a table", &other, example);
                None
            }
        }
    }

    /// Reports unknown keys and every problem; `true` when there was none.
    fn finish(self, lua: &Lua) -> bool {
        let Fields {
            table,
            site,
            read,
            mut problems,
        } = self;
        for pair in table.pairs::<Value, Value>() {
            let Ok((key, _)) = pair else { continue };
            match key {
                Value::String(key) => {
                    let key = key.to_string_lossy();
                    if !read.contains(&key.as_str()) {
                        let hint = match crate::convert::did_you_mean(&key, &read) {
                            Some(close) => format!("did you mean `{close}`?"),
                            None => format!("known fields here: {}", read.join(", ")),
                        };
                        problems.push((format!("sc.{} has no field `{key}`", site.callee), hint));
                    }
                }
                Value::Integer(_) if read.contains(&"1") => {}
                other => problems.push((
                    format!(
                        "sc.{} takes named fields, found the key {}",
                        site.callee,
                        crate::convert::describe(&other)
                    ),
                    format!("write sc.{} {{ name = value, ... }}", site.callee),
                )),
            }
        }
        let clean = problems.is_empty();
        for (message, hint) in problems {
            mistake(lua, &site, message, hint);
        }
        clean
    }
}

/// `sc.NAME "x"` or `sc.NAME { KEY = "x", at = ... }`: the name and `at`.
fn name_and_at(
    lua: &Lua,
    site: &Site,
    key: &'static str,
    value: Value,
) -> Option<(String, Option<Duration>)> {
    match value {
        Value::String(name) => Some((name.to_string_lossy(), None)),
        Value::Table(table) => {
            let mut fields = Fields::new(table, site);
            let name = fields.required_string(key, "\"name\"");
            let at = fields.duration("at");
            match fields.finish(lua) {
                true => name.map(|name| (name, at)),
                false => None,
            }
        }
        other => {
            mistake(
                lua,
                site,
                format!(
                    "sc.{} needs a name or a table, found {}",
                    site.callee,
                    crate::convert::describe(&other)
                ),
                format!(
                    "write sc.{0} \"name\" or sc.{0} {{ {key} = \"name\", at = \"100ms\" }}",
                    site.callee
                ),
            );
            None
        }
    }
}

fn table_argument(lua: &Lua, site: &Site, value: Value, example: &str) -> Option<Fields> {
    match value {
        Value::Table(table) => Some(Fields::new(table, site)),
        other => {
            mistake(
                lua,
                site,
                format!(
                    "sc.{} needs a table of fields, found {}",
                    site.callee,
                    crate::convert::describe(&other)
                ),
                format!("write {example}"),
            );
            None
        }
    }
}

fn settings(lua: &Lua, value: Value) -> mlua::Result<()> {
    let site = Site::of(lua, "settings");
    let Some(mut fields) = table_argument(lua, &site, value, "sc.settings { in_flight = 1 }")
    else {
        return Ok(());
    };
    let in_flight = fields.count("in_flight", "1");
    let reserved = fields.count("reserved_for_high", "0");
    let attempts = fields.count("attempts", "1");
    let wait_limit = fields.duration("wait_limit");
    let mut queue = [None; 3];
    if let Some(table) = fields.table("queue", "{ low = 4 }") {
        let mut queue_fields = Fields::new(table, &site);
        for (index, priority) in ["high", "medium", "low"].into_iter().enumerate() {
            queue[index] = queue_fields
                .count(priority, "4")
                .map(|count| count as usize);
        }
        queue_fields.finish(lua);
    }
    let (mut breaker_failures, mut breaker_open_for) = (None, None);
    if let Some(table) = fields.table("breaker", "{ failures = 2, open_for = \"300ms\" }") {
        let mut breaker_fields = Fields::new(table, &site);
        breaker_failures = breaker_fields.count("failures", "2").map(|n| n as u32);
        breaker_open_for = breaker_fields.duration("open_for");
        breaker_fields.finish(lua);
    }
    if fields.finish(lua)
        && let Some(mut record) = lua.app_data_mut::<ScenarioRecord>()
    {
        let settings = &mut record.settings;
        settings.in_flight = in_flight.map(|n| n as usize).or(settings.in_flight);
        settings.reserved_for_high = reserved.map(|n| n as usize).or(settings.reserved_for_high);
        settings.attempts = attempts.map(|n| n as u32).or(settings.attempts);
        settings.wait_limit = wait_limit.or(settings.wait_limit);
        for (slot, value) in settings.queue.iter_mut().zip(queue) {
            *slot = value.or(*slot);
        }
        settings.breaker_failures = breaker_failures.or(settings.breaker_failures);
        settings.breaker_open_for = breaker_open_for.or(settings.breaker_open_for);
    }
    Ok(())
}

fn request(lua: &Lua, site: &Site, name: String, mut fields: Fields) {
    let pipeline = fields.required_string("pipeline", "\"ingest\"");
    let text = fields.required_string("text", "\"hello\"");
    let priority = fields
        .one_of("priority", &["high", "medium", "low"])
        .unwrap_or_else(|| "medium".to_owned());
    let deadline = fields.duration("deadline");
    let at = fields.duration("at");
    if fields.finish(lua)
        && let (Some(pipeline), Some(text)) = (pipeline, text)
    {
        push_step(
            lua,
            site,
            at,
            Action::Request(crate::scenario::ScenarioRequest {
                name,
                pipeline,
                text,
                priority,
                deadline,
            }),
        );
    } else if let Some(mut record) = lua.app_data_mut::<ScenarioRecord>() {
        record.broken_requests.push(name);
    }
}

fn wait(lua: &Lua, value: Value) -> mlua::Result<()> {
    let site = Site::of(lua, "wait");
    let example = "sc.wait { service = \"db\", state = \"ready\" }";
    let Some(mut fields) = table_argument(lua, &site, value, example) else {
        return Ok(());
    };
    let service = fields.string("service", "\"db\"");
    let state = fields.one_of("state", SERVICE_STATES);
    let pipeline = fields.string("pipeline", "\"ingest\"");
    let gate = fields.one_of("gate", PIPELINE_GATES);
    let answer = fields.string("answer", "\"first\"");
    let at_least = fields.duration("at_least");
    let at = fields.duration("at");
    if !fields.finish(lua) {
        return Ok(());
    }
    let action = match (service, state, pipeline, gate, answer, at_least) {
        (Some(service), Some(state), None, None, None, None) => {
            Action::WaitService { service, state }
        }
        (None, None, Some(pipeline), Some(gate), None, None) => {
            Action::WaitPipeline { pipeline, gate }
        }
        (None, None, None, None, Some(request), None) => Action::WaitAnswer { request },
        (None, None, None, None, None, Some(duration)) => Action::WaitAtLeast(duration),
        _ => {
            mistake(
                lua,
                &site,
                "sc.wait waits for one thing: a service's state, a pipeline's gate, an answer, \
                 or a time"
                    .to_owned(),
                "write sc.wait { service = \"db\", state = \"ready\" }, sc.wait { pipeline = \
                 \"ingest\", gate = \"open\" }, sc.wait { answer = \"first\" } or sc.wait { \
                 at_least = \"300ms\" }"
                    .to_owned(),
            );
            return Ok(());
        }
    };
    push_step(lua, &site, at, action);
    Ok(())
}

fn fault(lua: &Lua, value: Value) -> mlua::Result<()> {
    let site = Site::of(lua, "fault");
    let example = "sc.fault { engine_fails = \"embedder\", batches = 2 }";
    let Some(mut fields) = table_argument(lua, &site, value, example) else {
        return Ok(());
    };
    let kill = fields.string("kill", "\"db\"");
    let fails = fields.string("engine_fails", "\"embedder\"");
    let slow = fields.string("engine_slow", "\"embedder\"");
    let batches = fields.count("batches", "2").map(|n| n as u32);
    let delay = fields.duration("delay");
    let at = fields.duration("at");
    if !fields.finish(lua) {
        return Ok(());
    }
    let action = match (kill, fails, slow) {
        (Some(service), None, None) if batches.is_none() && delay.is_none() => {
            Action::Kill { service }
        }
        (None, Some(service), None) if delay.is_none() => Action::EngineFails {
            service,
            batches: batches.unwrap_or(1),
        },
        (None, None, Some(service)) => Action::EngineSlow {
            service,
            delay: delay.unwrap_or(Duration::from_secs(1)),
            batches: batches.unwrap_or(1),
        },
        _ => {
            mistake(
                lua,
                &site,
                "sc.fault injects one fault: kill, engine_fails or engine_slow (batches and \
                 delay go with the engine faults)"
                    .to_owned(),
                "write sc.fault { kill = \"db\" }, sc.fault { engine_fails = \"embedder\", \
                 batches = 2 } or sc.fault { engine_slow = \"embedder\", delay = \"200ms\" }"
                    .to_owned(),
            );
            return Ok(());
        }
    };
    push_step(lua, &site, at, action);
    Ok(())
}

fn fill(lua: &Lua, value: Value) -> mlua::Result<()> {
    let site = Site::of(lua, "fill");
    let example = "sc.fill { pipeline = \"ingest\", priority = \"low\" }";
    let Some(mut fields) = table_argument(lua, &site, value, example) else {
        return Ok(());
    };
    let pipeline = fields.required_string("pipeline", "\"ingest\"");
    let priority = fields
        .one_of("priority", &["high", "medium", "low"])
        .unwrap_or_else(|| "medium".to_owned());
    let text = fields
        .string("text", "\"filler\"")
        .unwrap_or_else(|| "filler".to_owned());
    let at = fields.duration("at");
    if fields.finish(lua)
        && let Some(pipeline) = pipeline
    {
        push_step(
            lua,
            &site,
            at,
            Action::Fill {
                pipeline,
                priority,
                text,
            },
        );
    }
    Ok(())
}

fn cancel(lua: &Lua, value: Value) -> mlua::Result<()> {
    let site = Site::of(lua, "cancel");
    if let Some((request, at)) = name_and_at(lua, &site, "request", value) {
        push_step(lua, &site, at, Action::Cancel { request });
    }
    Ok(())
}

fn service_command(lua: &Lua, command: &'static str, value: Value) -> mlua::Result<()> {
    let site = Site::of(lua, command);
    if let Some((service, at)) = name_and_at(lua, &site, "service", value) {
        push_step(
            lua,
            &site,
            at,
            Action::Service {
                command: command.to_owned(),
                service,
            },
        );
    }
    Ok(())
}

fn reload(lua: &Lua, value: Value) -> mlua::Result<()> {
    let site = Site::of(lua, "reload");
    if let Some((script, at)) = name_and_at(lua, &site, "script", value) {
        let dir = crate::convert::script_dir(&site.file);
        let path = dir.join(&script);
        if !path.is_file() {
            mistake(
                lua,
                &site,
                format!("cannot find the script `{script}` to reload to"),
                format!(
                    "paths are relative to the scenario's folder ({})",
                    dir.display()
                ),
            );
            return Ok(());
        }
        push_step(lua, &site, at, Action::Reload { script: path });
    }
    Ok(())
}

fn expect(lua: &Lua, site: &Site, request: String, mut fields: Fields) {
    let outcome = fields.one_of("outcome", OUTCOMES);
    let text = fields.string("text", "\"HELLO\"");
    let class = fields.string("class", "\"transient\"");
    let stage = fields.string("stage", "\"embed\"");
    let reason = fields.string("reason", "\"busy\"");
    let degraded = fields.flag("degraded");
    let embed_fallback = fields.flag("embed_fallback");
    let dimensions = fields.count("vector", "384").map(|n| n as usize);
    let mut expected_fields = Vec::new();
    if let Some(table) = fields.table("fields", "{ lang = \"en\" }") {
        for pair in table.pairs::<Value, Value>() {
            let Ok((key, value)) = pair else { continue };
            let key = match key {
                Value::String(key) => key.to_string_lossy(),
                other => {
                    fields.wrong("fields", "a table of names", &other, "{ lang = \"en\" }");
                    continue;
                }
            };
            let value = match value {
                Value::String(text) => text.to_string_lossy(),
                Value::Integer(number) => number.to_string(),
                Value::Number(number) => number.to_string(),
                Value::Boolean(flag) => flag.to_string(),
                other => {
                    fields.wrong(
                        "fields",
                        "strings, numbers or booleans",
                        &other,
                        "{ n = 3 }",
                    );
                    continue;
                }
            };
            expected_fields.push((key, value));
        }
        expected_fields.sort();
    }
    let mut similar = None;
    if let Some(table) = fields.table("similar", "{ text = \"a greeting\", cosine = 0.5 }") {
        let mut similar_fields = Fields::new(table, site);
        let text = similar_fields.required_string("text", "\"a greeting\"");
        let min = similar_fields.number("cosine", "0.5").unwrap_or(0.9) as f32;
        if similar_fields.finish(lua) {
            similar = text.map(|text| Similarity { text, min });
        }
    }
    if fields.finish(lua) {
        push_expectation(
            lua,
            site,
            ExpectKind::Answer(AnswerExpectation {
                request,
                outcome,
                text,
                fields: expected_fields,
                class,
                stage,
                reason,
                degraded,
                embed_fallback,
                dimensions,
                similar,
            }),
        );
    }
}

fn expect_order(lua: &Lua, value: Value) -> mlua::Result<()> {
    let site = Site::of(lua, "expect_order");
    let example = "sc.expect_order { \"db ready\", \"request first answered\" }";
    let Value::Table(table) = value else {
        mistake(
            lua,
            &site,
            "sc.expect_order needs a list of events".to_owned(),
            format!("write {example}"),
        );
        return Ok(());
    };
    let mut events = Vec::new();
    for value in table.sequence_values::<Value>() {
        let event = match value {
            Ok(Value::String(text)) => text.to_string_lossy(),
            Ok(other) => {
                mistake(
                    lua,
                    &site,
                    format!(
                        "an event is a string, found {}",
                        crate::convert::describe(&other)
                    ),
                    format!("write {example}"),
                );
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        if let Err(hint) = check_event(&event) {
            mistake(
                lua,
                &site,
                format!("cannot read the event \"{event}\""),
                hint,
            );
            return Ok(());
        }
        events.push(event);
    }
    if events.len() < 2 {
        mistake(
            lua,
            &site,
            "sc.expect_order needs at least two events".to_owned(),
            format!("write {example}"),
        );
        return Ok(());
    }
    push_expectation(lua, &site, ExpectKind::Order(events));
    Ok(())
}

/// `SERVICE STATE`, `pipeline NAME GATE` or `request NAME EVENT`.
fn check_event(event: &str) -> Result<(), String> {
    let words: Vec<&str> = event.split_whitespace().collect();
    let one_of = |word: &str, allowed: &[&str], what: &str| {
        if allowed.contains(&word) {
            return Ok(());
        }
        Err(match crate::convert::did_you_mean(word, allowed) {
            Some(close) => format!("did you mean \"{close}\"?"),
            None => format!("{what} is one of: {}", allowed.join(", ")),
        })
    };
    match words.as_slice() {
        ["request", _, event] => one_of(event, REQUEST_EVENTS, "a request's event"),
        ["pipeline", _, gate] => one_of(gate, PIPELINE_GATES, "a pipeline's gate"),
        [_, state] => one_of(state, SERVICE_STATES, "a service's state"),
        _ => Err(
            "write \"SERVICE STATE\" (\"db ready\"), \"pipeline NAME GATE\" (\"pipeline ingest \
             open\") or \"request NAME EVENT\" (\"request first answered\")"
                .to_owned(),
        ),
    }
}

fn expect_latency(lua: &Lua, value: Value) -> mlua::Result<()> {
    let site = Site::of(lua, "expect_latency");
    let example = "sc.expect_latency { \"urgent\", at_most = 0.5, of = \"bulk\" }";
    let Some(mut fields) = table_argument(lua, &site, value, example) else {
        return Ok(());
    };
    // The request's name comes first, without a key.
    fields.read.push("1");
    let request = match fields.table.raw_get::<Value>(1) {
        Ok(Value::String(name)) => Some(name.to_string_lossy()),
        _ => None,
    };
    let at_most = fields.number("at_most", "0.5");
    let of = fields.required_string("of", "\"bulk\"");
    if !fields.finish(lua) {
        return Ok(());
    }
    match (request, at_most, of) {
        (Some(request), Some(at_most), Some(of)) if at_most > 0.0 => {
            push_expectation(
                lua,
                &site,
                ExpectKind::Latency {
                    request,
                    at_most,
                    of,
                },
            );
        }
        _ => mistake(
            lua,
            &site,
            "sc.expect_latency needs a request's name first, a ratio `at_most` > 0 and the \
             request `of` to compare with"
                .to_owned(),
            format!("write {example}: latency of urgent ≤ 0.5 × latency of bulk"),
        ),
    }
    Ok(())
}

fn expect_service(lua: &Lua, site: &Site, service: String, mut fields: Fields) {
    let state = fields.one_of("state", SERVICE_STATES);
    let restarts = fields.count("restarts", "3").map(|n| n as u32);
    if fields.finish(lua) {
        push_expectation(
            lua,
            site,
            ExpectKind::Service {
                service,
                state,
                restarts,
            },
        );
    }
}
