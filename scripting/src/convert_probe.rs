//! Probe declarations (`s.exec_probe { ... }` and friends) to
//! [`ProbeSpec`]s, with their timing fields and defaults.

use std::time::Duration;

use mlua::{Table, Value};

use crate::api::{CallSite, ProbeDecl, ProbeKind};
use crate::convert::{Converter, Part};
use crate::spec::*;

const PROBE_COMMON_FIELDS: &[&str] = &[
    "period",
    "timeout",
    "failures",
    "successes",
    "initial_delay",
];

impl Converter<'_> {
    pub(crate) fn probe_field(
        &mut self,
        site: &CallSite,
        table: &Table,
        field: &str,
    ) -> Option<ProbeSpec> {
        let value = table.raw_get::<Value>(field).unwrap_or(Value::Nil);
        match value {
            Value::Nil => None,
            Value::UserData(data) if data.is::<ProbeDecl>() => {
                let decl = data.borrow::<ProbeDecl>().ok()?;
                self.probe(&decl)
            }
            other => {
                self.wrong_type(
                    site,
                    field,
                    "a probe such as s.http_probe { url = \"...\" }",
                    &other,
                );
                None
            }
        }
    }

    pub(crate) fn probe(&mut self, decl: &ProbeDecl) -> Option<ProbeSpec> {
        let site = &decl.site;
        let (specific, required): (&[&str], &str) = match decl.kind {
            ProbeKind::Exec => (&["command"], "command"),
            ProbeKind::Http => (&["url"], "url"),
            ProbeKind::Tcp => (&["address"], "address"),
            ProbeKind::Lua => (&["check"], "check"),
        };
        let allowed: Vec<&str> = specific
            .iter()
            .chain(PROBE_COMMON_FIELDS)
            .copied()
            .collect();
        let what = format!("s.{}", decl.kind.callee());
        self.check_fields(site, &decl.table, "", &allowed, &what);
        let value = decl.table.raw_get::<Value>(required).unwrap_or(Value::Nil);
        if value.is_nil() {
            let example = match decl.kind {
                ProbeKind::Exec => "command = { \"pg_isready\" }",
                ProbeKind::Http => "url = \"http://127.0.0.1:8080/health\"",
                ProbeKind::Tcp => "address = \"127.0.0.1:5432\"",
                ProbeKind::Lua => "check = function() return true end",
            };
            self.error(
                site,
                None,
                Part::Key,
                format!("{what} needs `{required}`"),
                format!("add {example}"),
            );
            return None;
        }
        let check = match (decl.kind, value) {
            (ProbeKind::Exec, Value::Table(list)) => ProbeCheck::Exec {
                command: self.string_list(site, "command", &list)?,
            },
            (ProbeKind::Exec, Value::String(text)) => ProbeCheck::Exec {
                command: vec!["sh".to_owned(), "-c".to_owned(), text.to_string_lossy()],
            },
            (ProbeKind::Http, Value::String(url)) => {
                let url = url.to_string_lossy();
                if !url.starts_with("http://") {
                    self.error(
                        site,
                        Some("url"),
                        Part::Value,
                        format!("`{url}` is not an http:// URL"),
                        "probes speak plain HTTP: url = \"http://127.0.0.1:8080/health\""
                            .to_owned(),
                    );
                    return None;
                }
                ProbeCheck::Http { url }
            }
            (ProbeKind::Tcp, Value::String(address)) => {
                let address = address.to_string_lossy();
                if address
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.parse::<u16>().ok())
                    .is_none()
                {
                    self.error(
                        site,
                        Some("address"),
                        Part::Value,
                        format!("`{address}` is not a host:port address"),
                        "write address = \"127.0.0.1:5432\"".to_owned(),
                    );
                    return None;
                }
                ProbeCheck::Tcp { address }
            }
            (ProbeKind::Lua, Value::Function(function)) => {
                self.functions.push(function);
                ProbeCheck::Lua {
                    function: FunctionId(self.functions.len() as u32 - 1),
                }
            }
            (kind, other) => {
                let expected = match kind {
                    ProbeKind::Exec => "a list of strings",
                    ProbeKind::Lua => "a function",
                    _ => "a string",
                };
                self.wrong_type(site, required, expected, &other);
                return None;
            }
        };
        let period = self
            .duration(site, &decl.table, "period")
            .unwrap_or(Duration::from_secs(1));
        let timeout = self
            .duration(site, &decl.table, "timeout")
            .unwrap_or(Duration::from_secs(1));
        let initial_delay = self
            .duration(site, &decl.table, "initial_delay")
            .unwrap_or_default();
        let failure_threshold = self
            .integer(site, &decl.table, "failures", "failures")
            .unwrap_or(3);
        let success_threshold = self
            .integer(site, &decl.table, "successes", "successes")
            .unwrap_or(1);
        for (field, value) in [
            ("failures", failure_threshold),
            ("successes", success_threshold),
        ] {
            if value == 0 {
                self.error(
                    site,
                    Some(field),
                    Part::Value,
                    format!("`{field}` must be at least 1"),
                    format!("write {field} = 1 or more"),
                );
            }
        }
        let position = self.locator.position(site, None, Part::Key);
        Some(ProbeSpec {
            check,
            location: Location {
                file: site.file.clone(),
                line: position.line,
                column: position.column,
            },
            period,
            timeout,
            failure_threshold,
            success_threshold,
            initial_delay,
        })
    }
}
