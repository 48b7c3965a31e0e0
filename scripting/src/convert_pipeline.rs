//! Turns `s.pipeline` declarations into [`PipelineSpec`]s: stages in order
//! (with their options), sources, timeouts, budgets and the fallback, each
//! mistake located in the source.

use std::time::Duration;

use mlua::{AnyUserData, Table, Value};

use crate::api::{CallSite, EmbedDecl, PipelineDecl, SourceDecl, StageDecl};
use crate::convert::{Converter, Part};
use crate::diagnostic::Severity;
use crate::spec::*;

const PIPELINE_FIELDS: &[&str] = &["from", "timeout", "fallback", "budget", "description"];
const STAGE_OPTION_FIELDS: &[&str] = &["budget"];
const TIMEOUT_FIELDS: &[&str] = &["high", "medium", "low"];
const EMBED_FIELDS: &[&str] = &["service", "services", "fallback"];
const NETLINK_FIELDS: &[&str] = &["family"];

impl Converter<'_> {
    pub fn pipeline(&mut self, decl: &PipelineDecl) -> Option<PipelineSpec> {
        let site = &decl.site;
        let what = format!("pipeline `{}`", decl.name);
        let mut stages: Vec<(i64, Option<StageSpec>)> = Vec::new();
        for (key, value) in decl.table.clone().pairs::<Value, Value>().flatten() {
            match key {
                Value::Integer(idx) => stages.push((idx, self.stage(site, idx, &value))),
                Value::String(name) => {
                    let name = name.to_string_lossy();
                    if !PIPELINE_FIELDS.contains(&name.as_str()) {
                        let hint = match crate::convert::did_you_mean(&name, PIPELINE_FIELDS) {
                            Some(candidate) => format!("did you mean `{candidate}`?"),
                            None => format!(
                                "a pipeline holds its stages, plus the fields: {}",
                                PIPELINE_FIELDS.join(", ")
                            ),
                        };
                        self.error(
                            site,
                            Some(&name),
                            Part::Key,
                            format!("unknown field `{name}` in {what}"),
                            hint,
                        );
                    }
                }
                other => self.wrong_type(site, "[]", "a stage or a named field", &other),
            }
        }
        stages.sort_by_key(|(idx, _)| *idx);
        if stages.is_empty() {
            self.error(
                site,
                None,
                Part::Key,
                format!("{what} has no stages"),
                "add stages in order: s.stage(\"embed\", s.embed \"embedder\")".to_owned(),
            );
        }
        let mut names: Vec<&str> = Vec::new();
        for (idx, stage) in &stages {
            let Some(stage) = stage else { continue };
            if names.contains(&stage.name.as_str()) {
                self.error(
                    site,
                    Some(&idx.to_string()),
                    Part::Value,
                    format!("{what} has two stages named `{}`", stage.name),
                    "give every stage of a pipeline its own name".to_owned(),
                );
            }
            names.push(&stage.name);
        }
        let sources = self.sources(site, &decl.table);
        let timeouts = self.timeouts(site, &decl.table);
        let budget = self.budget(site, &decl.table, "budget");
        let fallback = match decl
            .table
            .raw_get::<Value>("fallback")
            .unwrap_or(Value::Nil)
        {
            Value::Nil => None,
            Value::Function(function) => {
                self.functions.push(function);
                Some(FunctionId(self.functions.len() as u32 - 1))
            }
            other => {
                self.wrong_type(
                    site,
                    "fallback",
                    "a function (req, err) returning req",
                    &other,
                );
                None
            }
        };
        self.check_description(site, &decl.table);
        let position = self.locator.position(site, None, Part::Key);
        // Keep the stages that converted, so later checks see them; a failed
        // stage has already made the evaluation fail.
        let stages: Vec<StageSpec> = stages.into_iter().filter_map(|(_, stage)| stage).collect();
        Some(PipelineSpec {
            name: decl.name.clone(),
            location: Location {
                file: site.file.clone(),
                line: position.line,
                column: position.column,
            },
            sources,
            stages,
            timeouts,
            fallback,
            budget,
        })
    }

    fn stage(&mut self, site: &CallSite, idx: i64, value: &Value) -> Option<StageSpec> {
        let path = idx.to_string();
        let Value::UserData(data) = value else {
            self.wrong_type(
                site,
                &path,
                "a stage: s.stage(\"name\", function(req) ... end)",
                value,
            );
            return None;
        };
        let Ok(decl) = data.borrow::<StageDecl>() else {
            self.wrong_type(
                site,
                &path,
                "a stage: s.stage(\"name\", function(req) ... end)",
                value,
            );
            return None;
        };
        let stage_site = &decl.site;
        let name = match &decl.name {
            Value::String(name) if !name.to_string_lossy().is_empty() => name.to_string_lossy(),
            other => {
                self.error(
                    stage_site,
                    None,
                    Part::Key,
                    format!(
                        "a stage needs a name as a string, found {}",
                        crate::convert::describe(other)
                    ),
                    "write s.stage(\"clean\", function(req) ... return req end)".to_owned(),
                );
                return None;
            }
        };
        let kind = match &decl.body {
            Value::Function(function) => {
                self.functions.push(function.clone());
                StageKind::Lua {
                    function: FunctionId(self.functions.len() as u32 - 1),
                }
            }
            Value::UserData(data) if data.is::<EmbedDecl>() => self.embed_stage(data)?,
            other => {
                self.error(
                    stage_site,
                    None,
                    Part::Key,
                    format!(
                        "stage `{name}` needs a function or s.embed \"service\", found {}",
                        crate::convert::describe(other)
                    ),
                    "write s.stage(\"clean\", function(req) ... return req end)".to_owned(),
                );
                return None;
            }
        };
        if !matches!(decl.trailing, Value::Nil) {
            self.error(
                stage_site,
                None,
                Part::Key,
                format!(
                    "stage `{name}` has an argument after its body ({})",
                    crate::convert::describe(&decl.trailing)
                ),
                "options go before the body: s.stage(\"name\", { budget = \"50ms\" }, function(req) ... end)"
                    .to_owned(),
            );
        }
        let budget = match &decl.options {
            Value::Table(options) => {
                let what = format!("the options of stage `{name}`");
                self.check_fields(stage_site, options, "", STAGE_OPTION_FIELDS, &what);
                let budget = self.budget(stage_site, options, "budget");
                if budget.is_some() && matches!(kind, StageKind::Embed { .. }) {
                    self.push(
                        Severity::Warning,
                        stage_site,
                        Some("budget"),
                        Part::Key,
                        format!("stage `{name}` embeds; a budget limits Lua stages only"),
                        "an embed stage waits on the engine, bounded by the request's deadline; remove `budget` here"
                            .to_owned(),
                    );
                }
                budget
            }
            _ => None,
        };
        let position = self.locator.position(stage_site, None, Part::Key);
        Some(StageSpec {
            name,
            location: Location {
                file: stage_site.file.clone(),
                line: position.line,
                column: position.column,
            },
            kind,
            budget,
        })
    }

    /// A budget: a duration above zero.
    fn budget(&mut self, site: &CallSite, table: &Table, path: &str) -> Option<Duration> {
        let budget = self.duration_at(site, table, path, "budget")?;
        if budget.is_zero() {
            self.error(
                site,
                Some(path),
                Part::Value,
                "a budget of zero would stop every run at once".to_owned(),
                "write the Lua time a run may take, e.g. budget = \"500ms\"".to_owned(),
            );
            return None;
        }
        Some(budget)
    }

    fn embed_stage(&mut self, data: &AnyUserData) -> Option<StageKind> {
        let decl = data.borrow::<EmbedDecl>().ok()?;
        let site = &decl.site;
        match &decl.spec {
            Value::String(service) => Some(StageKind::Embed {
                service: service.to_string_lossy(),
                fallback: None,
                shared_with: Vec::new(),
            }),
            Value::Table(table) => {
                self.check_fields(site, table, "", EMBED_FIELDS, "s.embed");
                let name = |value: Value| match value {
                    Value::String(name) => Some(name.to_string_lossy()),
                    _ => None,
                };
                let service = name(table.raw_get("service").unwrap_or(Value::Nil));
                let fallback = name(table.raw_get("fallback").unwrap_or(Value::Nil));
                let services = match table.raw_get::<Value>("services").unwrap_or(Value::Nil) {
                    Value::Nil => Vec::new(),
                    Value::Table(list) => self.string_list(site, "services", &list)?,
                    other => {
                        self.wrong_type(
                            site,
                            "services",
                            "a list like { \"local\", \"remote\" }",
                            &other,
                        );
                        return None;
                    }
                };
                if service.is_some() && !services.is_empty() {
                    self.error(
                        site,
                        Some("services"),
                        Part::Key,
                        "s.embed has both `service` and `services`".to_owned(),
                        "name one service with `service`, or several that share the work with `services`"
                            .to_owned(),
                    );
                    return None;
                }
                let mut services = services.into_iter();
                let (service, shared_with) = match service {
                    Some(service) => (Some(service), Vec::new()),
                    None => (services.next(), services.collect()),
                };
                if service.is_none() {
                    self.error(
                        site,
                        None,
                        Part::Key,
                        "s.embed needs the name of an embedding service".to_owned(),
                        "write s.embed \"embedder\", s.embed { service = \"embedder\", fallback = \"small\" } or s.embed { services = { \"local\", \"remote\" } }"
                            .to_owned(),
                    );
                }
                Some(StageKind::Embed {
                    service: service?,
                    fallback,
                    shared_with,
                })
            }
            other => {
                self.error(
                    site,
                    None,
                    Part::Key,
                    format!(
                        "s.embed needs the name of an embedding service, found {}",
                        crate::convert::describe(other)
                    ),
                    "write s.embed \"embedder\"".to_owned(),
                );
                None
            }
        }
    }

    fn sources(&mut self, site: &CallSite, table: &Table) -> Vec<SourceSpec> {
        let mut sources = Vec::new();
        let entries: Vec<(String, Value)> =
            match table.raw_get::<Value>("from").unwrap_or(Value::Nil) {
                Value::Nil => return sources,
                Value::Table(list) => list
                    .sequence_values::<Value>()
                    .flatten()
                    .enumerate()
                    .map(|(idx, value)| (format!("from.{}", idx + 1), value))
                    .collect(),
                single => vec![("from".to_owned(), single)],
            };
        for (path, value) in entries {
            let decl = match &value {
                Value::UserData(data) => data.borrow::<SourceDecl>().ok(),
                _ => None,
            };
            let Some(decl) = decl else {
                self.wrong_type(
                    site,
                    &path,
                    "a source: s.http_route \"/path\" or s.netlink { family = \"spindle\" }",
                    &value,
                );
                continue;
            };
            match &*decl {
                SourceDecl::Http { route, site } => match route {
                    Value::String(route) if route.to_string_lossy().starts_with('/') => sources
                        .push(SourceSpec::Http {
                            route: route.to_string_lossy(),
                        }),
                    other => self.error(
                        site,
                        None,
                        Part::Key,
                        format!(
                            "s.http_route needs a path starting with `/`, found {}",
                            crate::convert::describe(other)
                        ),
                        "write s.http_route \"/v1/ingest\"".to_owned(),
                    ),
                },
                SourceDecl::Netlink { fields, site } => {
                    let family = match fields {
                        Value::Table(fields) => {
                            self.check_fields(site, fields, "", NETLINK_FIELDS, "s.netlink");
                            match fields.raw_get::<Value>("family").unwrap_or(Value::Nil) {
                                Value::String(family) => family.to_string_lossy(),
                                Value::Nil => "spindle".to_owned(),
                                other => {
                                    self.wrong_type(site, "family", "a string", &other);
                                    continue;
                                }
                            }
                        }
                        Value::Nil => "spindle".to_owned(),
                        other => {
                            self.wrong_type(
                                site,
                                "netlink",
                                "a table like { family = \"spindle\" }",
                                other,
                            );
                            continue;
                        }
                    };
                    sources.push(SourceSpec::Netlink { family });
                }
            }
        }
        sources
    }

    fn timeouts(&mut self, site: &CallSite, table: &Table) -> PriorityTimeouts {
        match table.raw_get::<Value>("timeout").unwrap_or(Value::Nil) {
            Value::Nil => PriorityTimeouts::default(),
            Value::Table(by_priority) => {
                self.check_fields(site, &by_priority, "timeout", TIMEOUT_FIELDS, "`timeout`");
                PriorityTimeouts {
                    high: self.duration_at(site, &by_priority, "timeout.high", "high"),
                    medium: self.duration_at(site, &by_priority, "timeout.medium", "medium"),
                    low: self.duration_at(site, &by_priority, "timeout.low", "low"),
                }
            }
            _ => {
                let all = self.duration_at(site, table, "timeout", "timeout");
                PriorityTimeouts {
                    high: all,
                    medium: all,
                    low: all,
                }
            }
        }
    }
}
