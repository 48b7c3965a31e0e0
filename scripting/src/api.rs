//! The `spindle` Lua module: the functions a script calls to declare things.
//!
//! The functions only record what was declared and where; turning the
//! recorded Lua values into specs, with diagnostics, is `convert`'s job. A
//! call with an argument of the wrong kind becomes a diagnostic, not a Lua
//! error, so one run of a script reports every mistake.

use std::path::PathBuf;

use mlua::{Lua, Table, UserData, Value};

/// Where a declaring call was made: the file and line Lua reports for the
/// caller, and the name of the called function (used to find the call's
/// table constructor in the source).
#[derive(Debug, Clone)]
pub(crate) struct CallSite {
    pub file: PathBuf,
    pub line: u32,
    pub callee: &'static str,
}

/// One `s.service "name" { ... }`.
#[derive(Clone)]
pub(crate) struct ServiceDecl {
    pub name: String,
    pub table: Table,
    pub site: CallSite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    Exec,
    Http,
    Tcp,
    Lua,
}

impl ProbeKind {
    pub fn callee(self) -> &'static str {
        match self {
            ProbeKind::Exec => "exec_probe",
            ProbeKind::Http => "http_probe",
            ProbeKind::Tcp => "tcp_probe",
            ProbeKind::Lua => "lua_probe",
        }
    }
}

/// The value `s.exec_probe { ... }` and friends return; checked when the
/// service holding it is converted.
pub(crate) struct ProbeDecl {
    pub kind: ProbeKind,
    pub table: Table,
    pub site: CallSite,
}

impl UserData for ProbeDecl {}

/// One `s.pipeline "name" { ... }`.
#[derive(Clone)]
pub(crate) struct PipelineDecl {
    pub name: String,
    pub table: Table,
    pub site: CallSite,
}

/// `s.stage("name", function_or_embed)` or
/// `s.stage("name", { budget = "50ms" }, function_or_embed)`.
pub(crate) struct StageDecl {
    pub name: Value,
    /// The options table, `Nil` without one.
    pub options: Value,
    pub body: Value,
    /// A value after the body (options written last), kept to be reported.
    pub trailing: Value,
    pub site: CallSite,
}

impl StageDecl {
    fn new((name, second, third): (Value, Value, Value), site: CallSite) -> StageDecl {
        let (options, body, trailing) = match (second, third) {
            (Value::Table(options), body) => (Value::Table(options), body, Value::Nil),
            (body, trailing) => (Value::Nil, body, trailing),
        };
        StageDecl {
            name,
            options,
            body,
            trailing,
            site,
        }
    }
}

impl UserData for StageDecl {}

/// `s.embed "service"` or `s.embed { service = ..., fallback = ... }`.
pub(crate) struct EmbedDecl {
    pub spec: Value,
    pub site: CallSite,
}

impl UserData for EmbedDecl {}

/// `s.http_route "/path"` or `s.netlink { family = "spindle" }`.
pub(crate) enum SourceDecl {
    Http { route: Value, site: CallSite },
    Netlink { fields: Value, site: CallSite },
}

impl UserData for SourceDecl {}

/// One `s.settings { ... }`.
#[derive(Clone)]
pub(crate) struct SettingsDecl {
    pub table: Table,
    pub site: CallSite,
}

/// Everything a script declared, kept in the Lua state's app data.
#[derive(Clone, Default)]
pub(crate) struct Declarations {
    pub services: Vec<ServiceDecl>,
    pub pipelines: Vec<PipelineDecl>,
    /// Each `s.settings { ... }` (a second one is a diagnostic).
    pub settings: Vec<SettingsDecl>,
    /// Calls with arguments of the wrong kind: where, message and hint.
    pub mistakes: Vec<(CallSite, String, String)>,
}

/// Builds the `spindle` module table.
pub(crate) fn module(lua: &Lua) -> mlua::Result<Table> {
    let module = lua.create_table()?;
    module.set("service", lua.create_function(service)?)?;
    for kind in [
        ProbeKind::Exec,
        ProbeKind::Http,
        ProbeKind::Tcp,
        ProbeKind::Lua,
    ] {
        let probe = lua.create_function(move |lua, value: Value| probe(lua, kind, value))?;
        module.set(kind.callee(), probe)?;
    }
    module.set("pipeline", lua.create_function(pipeline)?)?;
    module.set("settings", lua.create_function(settings)?)?;
    module.set("stage", declaring(lua, "stage", StageDecl::new)?)?;
    module.set(
        "embed",
        declaring(lua, "embed", |spec: Value, site| EmbedDecl { spec, site })?,
    )?;
    module.set(
        "http_route",
        declaring(lua, "http_route", |route: Value, site| SourceDecl::Http {
            route,
            site,
        })?,
    )?;
    module.set(
        "netlink",
        declaring(lua, "netlink", |fields: Value, site| SourceDecl::Netlink {
            fields,
            site,
        })?,
    )?;
    module.set("version", env!("CARGO_PKG_VERSION"))?;
    crate::notebook_api::extend(lua, &module)?;
    crate::state_api::extend(lua, &module)?;
    Ok(module)
}

/// A module function that records its arguments and its call site in a
/// userdata value, checked later when the declaration holding it converts.
fn declaring<A, T>(
    lua: &Lua,
    callee: &'static str,
    make: impl Fn(A, CallSite) -> T + 'static,
) -> mlua::Result<mlua::Function>
where
    A: mlua::FromLuaMulti,
    T: UserData + 'static,
{
    lua.create_function(move |lua, args: A| {
        lua.create_userdata(make(args, caller_site(lua, callee)))
    })
}

/// The caller's file and line, as Lua reports them.
pub(crate) fn caller_site(lua: &Lua, callee: &'static str) -> CallSite {
    lua.inspect_stack(1, |debug| {
        let source = debug.source();
        let file = source
            .source
            .as_deref()
            .and_then(|name| name.strip_prefix('@'))
            .map(PathBuf::from)
            .unwrap_or_default();
        CallSite {
            file,
            line: debug.current_line().unwrap_or(0) as u32,
            callee,
        }
    })
    .unwrap_or(CallSite {
        file: PathBuf::new(),
        line: 0,
        callee,
    })
}

fn report(lua: &Lua, site: &CallSite, message: String, hint: &str) {
    if let Some(mut declarations) = lua.app_data_mut::<Declarations>() {
        declarations
            .mistakes
            .push((site.clone(), message, hint.to_owned()));
    }
}

/// `s.service "name" { ... }` or `s.service("name", { ... })`.
fn service(lua: &Lua, (name, table): (Value, Option<Value>)) -> mlua::Result<Value> {
    let site = caller_site(lua, "service");
    let name = match name {
        Value::String(name) => name.to_str()?.to_owned(),
        other => {
            report(
                lua,
                &site,
                format!(
                    "a service needs a name as a string, found {}",
                    crate::convert::describe(&other)
                ),
                "write s.service \"name\" { command = { ... } }",
            );
            String::new()
        }
    };
    match table {
        Some(table) => {
            record_service(lua, name, table, site);
            Ok(Value::Nil)
        }
        None => {
            let finish = lua.create_function(move |lua, table: Value| {
                record_service(lua, name.clone(), table, site.clone());
                Ok(())
            })?;
            Ok(Value::Function(finish))
        }
    }
}

/// `s.pipeline "name" { ... }` or `s.pipeline("name", { ... })`.
fn pipeline(lua: &Lua, (name, table): (Value, Option<Value>)) -> mlua::Result<Value> {
    let site = caller_site(lua, "pipeline");
    let name = match name {
        Value::String(name) => name.to_str()?.to_owned(),
        other => {
            report(
                lua,
                &site,
                format!(
                    "a pipeline needs a name as a string, found {}",
                    crate::convert::describe(&other)
                ),
                "write s.pipeline \"name\" { s.stage(\"embed\", s.embed \"embedder\") }",
            );
            String::new()
        }
    };
    let record = move |lua: &Lua, name: String, table: Value, site: CallSite| match table {
        Value::Table(table) if !name.is_empty() => {
            if let Some(mut declarations) = lua.app_data_mut::<Declarations>() {
                declarations
                    .pipelines
                    .push(PipelineDecl { name, table, site });
            }
        }
        Value::Table(_) => {}
        other => report(
            lua,
            &site,
            format!(
                "pipeline `{name}` needs a table of stages, found {}",
                crate::convert::describe(&other)
            ),
            "write s.pipeline \"name\" { s.stage(\"embed\", s.embed \"embedder\") }",
        ),
    };
    match table {
        Some(table) => {
            record(lua, name, table, site);
            Ok(Value::Nil)
        }
        None => Ok(Value::Function(lua.create_function(
            move |lua, table: Value| {
                record(lua, name.clone(), table, site.clone());
                Ok(())
            },
        )?)),
    }
}

/// `s.settings { journal = "DIR" }`: the run's settings.
fn settings(lua: &Lua, table: Value) -> mlua::Result<()> {
    let site = caller_site(lua, "settings");
    match table {
        Value::Table(table) => {
            if let Some(mut declarations) = lua.app_data_mut::<Declarations>() {
                declarations.settings.push(SettingsDecl { table, site });
            }
        }
        other => report(
            lua,
            &site,
            format!(
                "s.settings needs a table of settings, found {}",
                crate::convert::describe(&other)
            ),
            "write s.settings { journal = \"journal\" }",
        ),
    }
    Ok(())
}

fn record_service(lua: &Lua, name: String, table: Value, site: CallSite) {
    let Value::Table(table) = table else {
        report(
            lua,
            &site,
            format!(
                "service `{name}` needs a table of fields, found {}",
                table.type_name()
            ),
            "write s.service \"name\" { command = { ... } }",
        );
        return;
    };
    if name.is_empty() {
        return;
    }
    if let Some(mut declarations) = lua.app_data_mut::<Declarations>() {
        declarations
            .services
            .push(ServiceDecl { name, table, site });
    }
}

fn probe(lua: &Lua, kind: ProbeKind, value: Value) -> mlua::Result<Value> {
    let site = caller_site(lua, kind.callee());
    match value {
        Value::Table(table) => Ok(Value::UserData(lua.create_userdata(ProbeDecl {
            kind,
            table,
            site,
        })?)),
        other => {
            report(
                lua,
                &site,
                format!(
                    "{} needs a table of fields, found {}",
                    kind.callee(),
                    crate::convert::describe(&other)
                ),
                &format!("write s.{} {{ ... }}", kind.callee()),
            );
            Ok(Value::Nil)
        }
    }
}
