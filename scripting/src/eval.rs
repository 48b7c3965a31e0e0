//! Running a script: a fresh Lua state with a memory limit, `require`
//! confined to the script's folder, the `spindle` module preloaded; then
//! conversion of what it declared and the checks that need the whole graph
//! (duplicate names, unknown dependencies, cycles).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use mlua::{Function, Lua, LuaOptions, StdLib, Value};

use crate::Evaluation;
use crate::api::{self, CallSite, Declarations, ServiceDecl};
use crate::convert::{Converter, Locator, Part, did_you_mean, script_dir};
use crate::diagnostic::{Diagnostic, Severity};
use crate::sources::{self, Overlay};
use crate::spec::{DependencyCondition, GraphSpec, RestartPolicy, ServiceSpec};

/// Memory a script may use while it is evaluated and while it runs probes.
pub const MEMORY_LIMIT: usize = 64 * 1024 * 1024;

/// A script that was run: its Lua state, kept alive for later calls, the
/// evaluation, and the Lua functions that specs refer to by id.
pub(crate) struct Loaded {
    pub lua: Lua,
    pub evaluation: Evaluation,
    pub functions: Vec<Function>,
    /// What the script declared, for cells that declare more.
    pub declarations: Declarations,
    /// What `spindle.scenario` recorded (empty for a plain graph script).
    pub scenario: crate::scenario::ScenarioRecord,
}

pub(crate) fn load(path: &Path) -> Loaded {
    load_with(path, &Overlay::default())
}

/// [`load`], reading the script and its modules through `overlay` first.
pub(crate) fn load_with(path: &Path, overlay: &Overlay) -> Loaded {
    let lua = Lua::new_with(StdLib::ALL_SAFE, LuaOptions::default())
        .expect("the safe standard library always loads");
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let fail = |lua: Lua, diagnostic: Diagnostic| Loaded {
        lua,
        evaluation: Evaluation {
            graph: None,
            diagnostics: vec![diagnostic],
        },
        functions: Vec::new(),
        declarations: Declarations::default(),
        scenario: Default::default(),
    };
    let source = match overlay.read_bytes(&file) {
        Ok(source) => source,
        Err(error) => {
            return fail(
                lua,
                Diagnostic {
                    severity: Severity::Error,
                    file,
                    line: 1,
                    column: 1,
                    message: format!("cannot read the script: {error}"),
                    hint: Some(
                        "check the path; scripts are Lua files such as graph.lua".to_owned(),
                    ),
                },
            );
        }
    };
    if let Err(error) = prepare(&lua, &file).and_then(|()| sources::install_searcher(&lua, overlay))
    {
        return fail(lua, lua_error_diagnostic_with(&error, &file, overlay));
    }
    lua.set_app_data(Declarations::default());
    lua.set_app_data(crate::scenario::ScenarioRecord::default());
    let result = crate::eval_budget::install(&lua).and_then(|_budget| {
        lua.load(source.as_slice())
            .set_name(format!("@{}", file.display()))
            .exec()
    });
    let declarations = lua.remove_app_data::<Declarations>().unwrap_or_default();
    let scenario = lua
        .remove_app_data::<crate::scenario::ScenarioRecord>()
        .unwrap_or_default();
    let mut diagnostics = scenario.mistakes.clone();
    if let Err(error) = result {
        diagnostics.push(lua_error_diagnostic_with(&error, &file, overlay));
    }
    let (mut evaluation, functions) = convert(&declarations, &file, overlay, Vec::new());
    diagnostics.append(&mut evaluation.diagnostics);
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    Loaded {
        lua,
        evaluation: Evaluation {
            graph: evaluation.graph.filter(|_| !has_errors),
            diagnostics,
        },
        functions,
        declarations,
        scenario,
    }
}

/// Turns recorded declarations into a graph and its diagnostics. The Lua
/// functions the specs refer to are appended to `functions`, whose ids
/// stay what they were (a notebook converts again as cells declare more).
pub(crate) fn convert(
    declarations: &Declarations,
    file: &Path,
    overlay: &Overlay,
    functions: Vec<Function>,
) -> (Evaluation, Vec<Function>) {
    let mut locator = Locator::with_overlay(overlay.clone());
    let mut converter = Converter {
        locator: &mut locator,
        diagnostics: Vec::new(),
        functions,
        script_dir: script_dir(file),
    };
    for (site, message, hint) in &declarations.mistakes {
        converter.error(site, None, Part::Key, message.clone(), hint.clone());
    }
    let unique = without_duplicates(&declarations.services, &mut converter);
    let mut converted: Vec<(&ServiceDecl, ServiceSpec)> = Vec::new();
    for decl in unique {
        if let Some(service) = converter.service(decl) {
            converted.push((decl, service));
        }
    }
    check_dependencies(&declarations.services, &converted, &mut converter);
    let mut pipelines = Vec::new();
    let mut pipeline_sites: HashMap<String, CallSite> = HashMap::new();
    for decl in &declarations.pipelines {
        if let Some(first) = pipeline_sites.get(&decl.name) {
            let position = converter.locator.position(first, None, Part::Key);
            converter.error(
                &decl.site,
                None,
                Part::Key,
                format!("pipeline `{}` is declared twice", decl.name),
                format!(
                    "first declared at {}:{}:{}; give one of them another name",
                    first.file.display(),
                    position.line,
                    position.column
                ),
            );
            continue;
        }
        pipeline_sites.insert(decl.name.clone(), decl.site.clone());
        if let Some(pipeline) = converter.pipeline(decl) {
            check_embed_stages(&pipeline, &converted, &mut converter);
            pipelines.push(pipeline);
        }
    }
    let settings = converter.settings(&declarations.settings);
    let functions = converter.functions;
    let mut diagnostics = converter.diagnostics;
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    let graph = (!has_errors).then(|| GraphSpec {
        file: file.to_path_buf(),
        services: converted.into_iter().map(|(_, service)| service).collect(),
        pipelines,
        settings,
    });
    (Evaluation { graph, diagnostics }, functions)
}

/// Memory limit, `require` next to the script only, and the `spindle`
/// module.
fn prepare(lua: &Lua, file: &Path) -> mlua::Result<()> {
    lua.set_memory_limit(MEMORY_LIMIT)?;
    let package: mlua::Table = lua.globals().get("package")?;
    let dir = script_dir(file);
    package.set("path", format!("{0}/?.lua;{0}/?/init.lua", dir.display()))?;
    package.set("cpath", "")?;
    let loaded: mlua::Table = package.get("loaded")?;
    loaded.set("spindle", api::module(lua)?)?;
    loaded.set("spindle.scenario", crate::scenario_api::module(lua)?)?;
    Ok(())
}

/// Keeps the first declaration of each name and reports the others.
fn without_duplicates<'a>(
    services: &'a [ServiceDecl],
    converter: &mut Converter<'_>,
) -> Vec<&'a ServiceDecl> {
    let mut first: HashMap<&str, &CallSite> = HashMap::new();
    let mut unique = Vec::new();
    for decl in services {
        match first.get(decl.name.as_str()) {
            Some(first_site) => {
                let position = converter.locator.position(first_site, None, Part::Key);
                let hint = format!(
                    "first declared at {}:{}:{}; give one of them another name",
                    first_site.file.display(),
                    position.line,
                    position.column
                );
                converter.error(
                    &decl.site,
                    None,
                    Part::Key,
                    format!("service `{}` is declared twice", decl.name),
                    hint,
                );
            }
            None => {
                first.insert(&decl.name, &decl.site);
                unique.push(decl);
            }
        }
    }
    unique
}

/// Unknown dependencies, cycles, and conditions that can never hold.
fn check_dependencies(
    declarations: &[ServiceDecl],
    services: &[(&ServiceDecl, ServiceSpec)],
    converter: &mut Converter<'_>,
) {
    let declared: Vec<&str> = declarations.iter().map(|d| d.name.as_str()).collect();
    let by_name: HashMap<&str, &ServiceSpec> = services
        .iter()
        .map(|(_, service)| (service.name.as_str(), service))
        .collect();
    for (decl, service) in services {
        for dependency in &service.depends_on {
            let path = dependency_path(decl, &dependency.service);
            if !declared.contains(&dependency.service.as_str()) {
                let hint = match did_you_mean(&dependency.service, &declared) {
                    Some(candidate) => format!("did you mean `{candidate}`?"),
                    None => format!(
                        "declare it with s.service \"{}\" {{ ... }}, or remove the dependency",
                        dependency.service
                    ),
                };
                converter.error(
                    &decl.site,
                    Some(&path),
                    Part::Key,
                    format!(
                        "service `{}` depends on `{}`, which is not declared",
                        service.name, dependency.service
                    ),
                    hint,
                );
                continue;
            }
            let Some(target) = by_name.get(dependency.service.as_str()) else {
                continue;
            };
            if dependency.condition == DependencyCondition::CompletedSuccessfully
                && target.restart.policy == RestartPolicy::Always
            {
                converter.push(
                    Severity::Warning,
                    &decl.site,
                    Some(&path),
                    Part::Value,
                    format!(
                        "`{}` waits for `{}` to complete, but its restart policy is \"always\"",
                        service.name, target.name
                    ),
                    format!("give `{}` restart = \"no\" or \"on-failure\"", target.name),
                );
            }
        }
    }
    for cycle in cycles(services) {
        let (decl, _) = services
            .iter()
            .find(|(_, service)| service.name == cycle[0])
            .expect("cycle members are services");
        let names: Vec<&str> = cycle.iter().map(String::as_str).collect();
        let path = dependency_path(decl, &cycle[1 % cycle.len()]);
        converter.error(
            &decl.site,
            Some(&path),
            Part::Key,
            format!("dependency cycle: {} → {}", names.join(" → "), names[0]),
            "services in a cycle would wait for each other forever; remove one of these dependencies"
                .to_owned(),
        );
    }
}

/// An embed stage must name a declared embedding service.
fn check_embed_stages(
    pipeline: &crate::spec::PipelineSpec,
    services: &[(&ServiceDecl, ServiceSpec)],
    converter: &mut Converter<'_>,
) {
    let embedding: Vec<&str> = services
        .iter()
        .filter(|(_, service)| matches!(service.kind, crate::spec::ServiceKind::Embedding(_)))
        .map(|(_, service)| service.name.as_str())
        .collect();
    for stage in &pipeline.stages {
        let crate::spec::StageKind::Embed {
            service,
            fallback,
            shared_with,
        } = &stage.kind
        else {
            continue;
        };
        for name in std::iter::once(service).chain(shared_with).chain(fallback) {
            if embedding.contains(&name.as_str()) {
                continue;
            }
            let declared = services.iter().any(|(_, s)| &s.name == name);
            let hint = match did_you_mean(name, &embedding) {
                Some(candidate) => format!("did you mean `{candidate}`?"),
                None if declared => format!(
                    "`{name}` is a process; declare an embedding service with embedding = {{ model = \"...\" }}"
                ),
                None => format!(
                    "declare it: s.service \"{name}\" {{ embedding = {{ model = \"all-MiniLM-L6-v2\" }} }}"
                ),
            };
            converter.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                file: stage.location.file.clone(),
                line: stage.location.line,
                column: stage.location.column,
                message: format!(
                    "stage `{}` of pipeline `{}` embeds with `{name}`, which is not an embedding service",
                    stage.name, pipeline.name
                ),
                hint: Some(hint),
            });
        }
    }
}

/// Each cycle once, as names in dependency order, starting from the member
/// declared first.
fn cycles(services: &[(&ServiceDecl, ServiceSpec)]) -> Vec<Vec<String>> {
    let index: HashMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(idx, (_, service))| (service.name.as_str(), idx))
        .collect();
    let edges: Vec<Vec<usize>> = services
        .iter()
        .map(|(_, service)| {
            service
                .depends_on
                .iter()
                .filter_map(|dependency| index.get(dependency.service.as_str()).copied())
                .collect()
        })
        .collect();
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut seen: HashSet<Vec<usize>> = HashSet::new();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut color = vec![0u8; services.len()];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        node: usize,
        edges: &[Vec<usize>],
        color: &mut [u8],
        stack: &mut Vec<usize>,
        on_cycle: &mut dyn FnMut(&[usize]),
    ) {
        color[node] = 1;
        stack.push(node);
        for &next in &edges[node] {
            match color[next] {
                0 => visit(next, edges, color, stack, on_cycle),
                1 => {
                    let start = stack.iter().position(|&n| n == next).expect("on stack");
                    on_cycle(&stack[start..]);
                }
                _ => {}
            }
        }
        stack.pop();
        color[node] = 2;
    }
    for start in 0..services.len() {
        if color[start] == 0 {
            visit(start, &edges, &mut color, &mut stack, &mut |members| {
                let first = members
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, node)| **node)
                    .map(|(pos, _)| pos)
                    .unwrap_or(0);
                let rotated: Vec<usize> = members[first..]
                    .iter()
                    .chain(&members[..first])
                    .copied()
                    .collect();
                if seen.insert(rotated.clone()) {
                    found.push(
                        rotated
                            .iter()
                            .map(|&node| services[node].1.name.clone())
                            .collect(),
                    );
                }
            });
        }
    }
    found
}

/// The field path of a dependency entry: `depends_on.db` for the map form,
/// `depends_on.2` for the list form.
fn dependency_path(decl: &ServiceDecl, dependency: &str) -> String {
    if let Ok(Value::Table(list)) = decl.table.raw_get::<Value>("depends_on") {
        for (key, value) in list.pairs::<Value, Value>().flatten() {
            if let (Value::Integer(idx), Value::String(name)) = (&key, &value)
                && name.to_string_lossy() == dependency
            {
                return format!("depends_on.{idx}");
            }
        }
    }
    format!("depends_on.{dependency}")
}

/// A Lua error as a diagnostic: the position Lua names in its message, a
/// column found from the `near 'token'` part, and a hint.
pub(crate) fn lua_error_diagnostic(error: &mlua::Error, file: &Path) -> Diagnostic {
    lua_error_diagnostic_with(error, file, &Overlay::default())
}

/// [`lua_error_diagnostic`], reading source text through `overlay`.
pub(crate) fn lua_error_diagnostic_with(
    error: &mlua::Error,
    file: &Path,
    overlay: &Overlay,
) -> Diagnostic {
    let (message, is_syntax) = match error {
        mlua::Error::SyntaxError { message, .. } => (message.clone(), true),
        mlua::Error::MemoryError(_) => {
            return Diagnostic {
                severity: Severity::Error,
                file: file.to_path_buf(),
                line: 1,
                column: 1,
                message: format!(
                    "the script used more than its memory limit of {} MiB",
                    MEMORY_LIMIT / (1024 * 1024)
                ),
                hint: Some(
                    "look for a loop that builds an ever-growing table or string".to_owned(),
                ),
            };
        }
        other => (innermost_message(other), false),
    };
    let (error_file, line, text) =
        split_position(&message).unwrap_or_else(|| (file.to_path_buf(), 1, message.clone()));
    let column = near_token(&text)
        .and_then(|token| column_of(overlay, &error_file, line, token))
        .or_else(|| {
            named_value(&text).and_then(|name| column_of_name(overlay, &error_file, line, name))
        })
        .unwrap_or(1);
    let hint = if is_syntax {
        "check the Lua syntax at this point: a missing `end`, `}`, `,` or quote is the usual cause"
            .to_owned()
    } else if text.starts_with(crate::eval_budget::BUDGET_MESSAGE) {
        format!(
            "evaluation may run {} million Lua instructions; look for a loop that never ends",
            crate::eval_budget::INSTRUCTION_BUDGET / 1_000_000
        )
    } else if text.starts_with("module '") && text.contains("not found") {
        format!(
            "`require` finds modules only next to the script: {}/NAME.lua or NAME/init.lua",
            script_dir(file).display()
        )
    } else if let Some(name) = text
        .split("(field '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
    {
        // The module's functions as the annotations declare them
        // (`scripting/tests/annotations.rs` keeps the two equal).
        let functions = crate::analysis::annotations::module_functions();
        let names: Vec<&str> = functions
            .iter()
            .map(|function| function.name.as_str())
            .collect();
        match did_you_mean(name, &names) {
            Some(candidate) => format!("did you mean `{candidate}`?"),
            None => format!("`{name}` is not defined here"),
        }
    } else {
        "the script raised this error while it was evaluated".to_owned()
    };
    Diagnostic {
        severity: Severity::Error,
        file: error_file,
        line,
        column,
        message: text,
        hint: Some(hint),
    }
}

fn innermost_message(error: &mlua::Error) -> String {
    match error {
        mlua::Error::CallbackError { cause, .. } => innermost_message(cause),
        mlua::Error::RuntimeError(message) => message.clone(),
        mlua::Error::WithContext { cause, .. } => innermost_message(cause),
        other => other.to_string(),
    }
}

/// Splits `/path/x.lua:12: message` into its parts. A message without a
/// position on its first line (`error("text", 0)`) takes the first frame of
/// its traceback that lies in a Lua file.
fn split_position(message: &str) -> Option<(PathBuf, u32, String)> {
    let first = message.lines().next().unwrap_or_default();
    position_prefix(first).or_else(|| {
        message
            .lines()
            .skip(1)
            .find_map(|frame| position_prefix(frame.trim()))
            .map(|(file, line, _)| (file, line, first.trim().to_owned()))
    })
}

/// `/path/x.lua:12: text` of one line.
fn position_prefix(line: &str) -> Option<(PathBuf, u32, String)> {
    let marker = line.find(".lua:")? + 4;
    let file = &line[..marker];
    let rest = &line[marker + 1..];
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let number: u32 = rest[..digits].parse().ok()?;
    let text = rest[digits..].trim_start_matches(':').trim().to_owned();
    Some((PathBuf::from(file.trim()), number, text))
}

/// The token in `... near 'token'`.
fn near_token(text: &str) -> Option<&str> {
    let rest = text.split(" near '").nth(1)?;
    rest.rsplit_once('\'').map(|(token, _)| token)
}

/// The name in `... (field 'name')`, `(global 'name')`, `(local 'name')`
/// or `(method 'name')`.
fn named_value(text: &str) -> Option<&str> {
    let rest = text.rsplit_once(" '")?.1;
    let (name, tail) = rest.split_once('\'')?;
    tail.starts_with(')').then_some(name)
}

/// The column of `name` as a whole word on `line` (not inside a longer
/// name).
fn column_of_name(overlay: &Overlay, file: &Path, line: u32, name: &str) -> Option<u32> {
    let text = overlay.read(file).ok()?;
    let line_text = text.lines().nth(line.checked_sub(1)? as usize)?;
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let byte = line_text
        .match_indices(name)
        .map(|(byte, _)| byte)
        .find(|&byte| {
            let before = line_text[..byte].chars().next_back();
            let after = line_text[byte + name.len()..].chars().next();
            !before.is_some_and(is_word) && !after.is_some_and(is_word)
        })?;
    Some(line_text[..byte].chars().count() as u32 + 1)
}

fn column_of(overlay: &Overlay, file: &Path, line: u32, token: &str) -> Option<u32> {
    let text = overlay.read(file).ok()?;
    let line_text = text.lines().nth(line.checked_sub(1)? as usize)?;
    let byte = line_text.find(token)?;
    Some(line_text[..byte].chars().count() as u32 + 1)
}
