//! Service declarations to [`ServiceSpec`]s: the process or embedding
//! kind, dependencies, probes, restart and stop settings, each mistake
//! located at its field.

use mlua::{Table, Value};

use crate::api::{CallSite, ServiceDecl};
use crate::convert::{Converter, Part, scalar_text};
use crate::diagnostic::{Diagnostic, Severity};
use crate::duration::{parse_duration, parse_range};
use crate::spec::*;

const SERVICE_FIELDS: &[&str] = &[
    "command",
    "embedding",
    "cwd",
    "env",
    "env_file",
    "depends_on",
    "ready",
    "live",
    "restart",
    "stop",
    "critical",
    "description",
];
const RESTART_FIELDS: &[&str] = &["policy", "backoff", "jitter", "max", "window"];
const STOP_FIELDS: &[&str] = &["signal", "grace"];
const EMBEDDING_FIELDS: &[&str] = &[
    "model",
    "providers",
    "max_batch_tokens",
    "threads",
    "sessions",
    "url",
    "api",
    "timeout",
    "dimensions",
    "health",
];
const APIS: &[&str] = &["openai", "tei"];
const CONDITIONS: &[&str] = &["started", "healthy", "completed"];
const POLICIES: &[&str] = &["no", "on-failure", "always"];
const PROVIDERS: &[&str] = &["cuda", "cpu"];
const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGUSR2", 12),
    ("SIGTERM", 15),
];

impl Converter<'_> {
    pub fn service(&mut self, decl: &ServiceDecl) -> Option<ServiceSpec> {
        let site = &decl.site;
        let what = format!("service `{}`", decl.name);
        self.check_fields(site, &decl.table, "", SERVICE_FIELDS, &what);
        let command = decl.table.raw_get::<Value>("command").unwrap_or(Value::Nil);
        let embedding = decl
            .table
            .raw_get::<Value>("embedding")
            .unwrap_or(Value::Nil);
        let kind = match (command, embedding) {
            (Value::Nil, Value::Nil) => {
                self.error(
                    site,
                    None,
                    Part::Key,
                    format!("{what} says neither what to run nor what to serve"),
                    "add `command = { \"program\", \"arg\" }` or `embedding = { model = \"...\" }`"
                        .to_owned(),
                );
                None
            }
            (Value::Nil, embedding) => self.embedding(site, embedding).map(ServiceKind::Embedding),
            (command, Value::Nil) => self
                .process(site, &decl.table, command)
                .map(ServiceKind::Process),
            (_, _) => {
                self.error(
                    site,
                    Some("embedding"),
                    Part::Key,
                    format!("{what} has both `command` and `embedding`"),
                    "a service is either a process or an embedding engine; declare two services"
                        .to_owned(),
                );
                None
            }
        };
        let depends_on = self.depends_on(site, &decl.table);
        let mut readiness = self.probe_field(site, &decl.table, "ready");
        if readiness.is_none()
            && let Some(ServiceKind::Embedding(EmbeddingSpec {
                remote: Some(remote),
                ..
            })) = &kind
        {
            // A remote server is ready when its health route says so.
            let position = self.locator.position(site, Some("embedding"), Part::Key);
            readiness = Some(ProbeSpec {
                check: ProbeCheck::Http {
                    url: format!("{}{}", remote.url, remote.health),
                },
                location: Location {
                    file: site.file.clone(),
                    line: position.line,
                    column: position.column,
                },
                period: std::time::Duration::from_millis(500),
                timeout: std::time::Duration::from_secs(2),
                failure_threshold: 2,
                success_threshold: 1,
                initial_delay: std::time::Duration::ZERO,
            });
        }
        let liveness = self.probe_field(site, &decl.table, "live");
        let restart = self.restart(site, &decl.table);
        let shutdown = self.shutdown(site, &decl.table);
        let critical = match decl
            .table
            .raw_get::<Value>("critical")
            .unwrap_or(Value::Nil)
        {
            Value::Nil => false,
            Value::Boolean(critical) => critical,
            other => {
                self.wrong_type(site, "critical", "a boolean", &other);
                false
            }
        };
        self.check_description(site, &decl.table);
        let position = self.locator.position(site, None, Part::Key);
        Some(ServiceSpec {
            name: decl.name.clone(),
            location: Location {
                file: site.file.clone(),
                line: position.line,
                column: position.column,
            },
            kind: kind?,
            depends_on,
            readiness,
            liveness,
            restart,
            shutdown,
            critical,
        })
    }

    fn process(&mut self, site: &CallSite, table: &Table, command: Value) -> Option<ProcessSpec> {
        // Read every field even when the command is wrong, so that one run
        // reports every mistake.
        let command = match command {
            Value::String(text) => Some(vec![
                "sh".to_owned(),
                "-c".to_owned(),
                text.to_string_lossy(),
            ]),
            Value::Table(list) => self.string_list(site, "command", &list),
            other => {
                self.wrong_type(site, "command", "a list of strings or a string", &other);
                None
            }
        };
        if command
            .as_ref()
            .is_some_and(|c| c.is_empty() || c[0].is_empty())
        {
            self.error(
                site,
                Some("command"),
                Part::Value,
                "`command` is empty".to_owned(),
                "name the program to run first: command = { \"python3\", \"app.py\" }".to_owned(),
            );
        }
        let command = command.filter(|c| !c.is_empty() && !c[0].is_empty());
        let cwd = match table.raw_get::<Value>("cwd").unwrap_or(Value::Nil) {
            Value::Nil => self.script_dir.clone(),
            Value::String(dir) => {
                let dir = self.script_dir.join(dir.to_string_lossy());
                if !dir.is_dir() {
                    self.push(
                        Severity::Warning,
                        site,
                        Some("cwd"),
                        Part::Value,
                        format!("working directory {} does not exist", dir.display()),
                        "create it, or fix the path (relative paths start at the script's folder)"
                            .to_owned(),
                    );
                }
                dir
            }
            other => {
                self.wrong_type(site, "cwd", "a string", &other);
                self.script_dir.clone()
            }
        };
        let mut env = Vec::new();
        match table.raw_get::<Value>("env_file").unwrap_or(Value::Nil) {
            Value::Nil => {}
            Value::String(file) => {
                self.env_file(site, "env_file", &file.to_string_lossy(), &mut env)
            }
            Value::Table(files) => {
                for (idx, file) in self
                    .string_list(site, "env_file", &files)?
                    .iter()
                    .enumerate()
                {
                    self.env_file(site, &format!("env_file.{}", idx + 1), file, &mut env);
                }
            }
            other => self.wrong_type(site, "env_file", "a string or a list of strings", &other),
        }
        match table.raw_get::<Value>("env").unwrap_or(Value::Nil) {
            Value::Nil => {}
            Value::Table(vars) => {
                let mut pairs: Vec<(String, String)> = Vec::new();
                for (key, value) in vars.pairs::<Value, Value>().flatten() {
                    let Value::String(key) = key else {
                        self.wrong_type(site, "env", "a table of NAME = \"value\"", &key);
                        continue;
                    };
                    let key = key.to_string_lossy();
                    let path = format!("env.{key}");
                    match scalar_text(&value) {
                        Some(value) => pairs.push((key, value)),
                        None => self.wrong_type(site, &path, "a string or number", &value),
                    }
                }
                pairs.sort();
                env.extend(pairs);
            }
            other => self.wrong_type(site, "env", "a table of NAME = \"value\"", &other),
        }
        Some(ProcessSpec {
            command: command?,
            cwd,
            env,
        })
    }

    fn env_file(
        &mut self,
        site: &CallSite,
        path: &str,
        file: &str,
        env: &mut Vec<(String, String)>,
    ) {
        let file = self.script_dir.join(file);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) => {
                self.error(
                    site,
                    Some(path),
                    Part::Value,
                    format!("cannot read env file {}: {error}", file.display()),
                    "env files are read relative to the script's folder".to_owned(),
                );
                return;
            }
        };
        for (line_idx, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            match line.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    let value = value.trim();
                    let value = value
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                        .unwrap_or(value);
                    env.push((key.trim().to_owned(), value.to_owned()));
                }
                _ => self.diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    file: file.clone(),
                    line: line_idx as u32 + 1,
                    column: 1,
                    message: format!("expected NAME=value, found `{line}`"),
                    hint: Some(
                        "env files hold one NAME=value per line; # starts a comment".to_owned(),
                    ),
                }),
            }
        }
    }

    fn embedding(&mut self, site: &CallSite, value: Value) -> Option<EmbeddingSpec> {
        let Value::Table(table) = value else {
            self.wrong_type(
                site,
                "embedding",
                "a table like { model = \"all-MiniLM-L6-v2\" }",
                &value,
            );
            return None;
        };
        self.check_fields(site, &table, "embedding", EMBEDDING_FIELDS, "`embedding`");
        let model = match table.raw_get::<Value>("model").unwrap_or(Value::Nil) {
            Value::String(model) => Some(model.to_string_lossy()),
            Value::Nil => {
                self.error(
                    site,
                    Some("embedding"),
                    Part::Key,
                    "`embedding` needs a `model`".to_owned(),
                    "add model = \"all-MiniLM-L6-v2\" (see `spindle models list`)".to_owned(),
                );
                None
            }
            other => {
                self.wrong_type(site, "embedding.model", "a string", &other);
                None
            }
        };
        let providers = match table.raw_get::<Value>("providers").unwrap_or(Value::Nil) {
            Value::Nil => vec!["cpu".to_owned()],
            Value::Table(list) => {
                let providers = self.string_list(site, "embedding.providers", &list)?;
                for (idx, provider) in providers.iter().enumerate() {
                    if !PROVIDERS.contains(&provider.as_str()) {
                        self.one_of(
                            site,
                            &format!("embedding.providers.{}", idx + 1),
                            provider,
                            PROVIDERS,
                        );
                    }
                }
                providers
            }
            other => {
                self.wrong_type(
                    site,
                    "embedding.providers",
                    "a list like { \"cuda\", \"cpu\" }",
                    &other,
                );
                Vec::new()
            }
        };
        let max_batch_tokens = self
            .integer(
                site,
                &table,
                "embedding.max_batch_tokens",
                "max_batch_tokens",
            )
            .unwrap_or(8192);
        let intra_threads = self.integer(site, &table, "embedding.threads", "threads");
        let sessions = self.integer(site, &table, "embedding.sessions", "sessions");
        if sessions == Some(0) {
            self.error(
                site,
                Some("embedding.sessions"),
                Part::Value,
                "`sessions` must be at least 1".to_owned(),
                "leave it out for one session, or give 2 to run two batches at once".to_owned(),
            );
        }
        let remote = self.remote_embedding(site, &table)?;
        if remote.is_some() {
            for key in ["providers", "threads", "sessions"] {
                if !matches!(table.raw_get::<Value>(key), Ok(Value::Nil)) {
                    self.push(
                        Severity::Warning,
                        site,
                        Some(&format!("embedding.{key}")),
                        Part::Key,
                        format!(
                            "`{key}` applies to an engine in this process, not to a server at `url`"
                        ),
                        format!("remove `{key}`; the server decides how it computes"),
                    );
                }
            }
        }
        Some(EmbeddingSpec {
            model: model?,
            providers,
            max_batch_tokens,
            intra_threads,
            sessions,
            remote,
        })
    }

    /// `url`, `api`, `timeout`, `dimensions` and `health` of an embedding
    /// service: `Some(None)` for an engine in this process, `None` after a
    /// mistake.
    fn remote_embedding(
        &mut self,
        site: &CallSite,
        table: &Table,
    ) -> Option<Option<RemoteEmbeddingSpec>> {
        let url = match table.raw_get::<Value>("url").unwrap_or(Value::Nil) {
            Value::Nil => {
                for key in ["api", "timeout", "dimensions", "health"] {
                    if !matches!(table.raw_get::<Value>(key), Ok(Value::Nil)) {
                        self.error(
                            site,
                            Some(&format!("embedding.{key}")),
                            Part::Key,
                            format!("`{key}` describes a server, and this service has no `url`"),
                            "add url = \"http://host:port\" for a remote server, or remove it"
                                .to_owned(),
                        );
                        return None;
                    }
                }
                return Some(None);
            }
            Value::String(url) => url.to_string_lossy(),
            other => {
                self.wrong_type(
                    site,
                    "embedding.url",
                    "a string like \"http://127.0.0.1:7997\"",
                    &other,
                );
                return None;
            }
        };
        let Some(authority) = url.strip_prefix("http://") else {
            self.error(
                site,
                Some("embedding.url"),
                Part::Value,
                format!("`{url}` is not an http:// URL"),
                "write url = \"http://host:port\" (plain HTTP; put TLS in a proxy beside the server)".to_owned(),
            );
            return None;
        };
        let authority = authority.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            self.error(
                site,
                Some("embedding.url"),
                Part::Value,
                format!("`{url}` must be the server's root, without a path"),
                "write url = \"http://host:port\"; the API decides the route (/v1/embeddings or /embed)".to_owned(),
            );
            return None;
        }
        let api = match table.raw_get::<Value>("api").unwrap_or(Value::Nil) {
            Value::Nil => RemoteApi::OpenAi,
            Value::String(api) => match api.to_string_lossy().as_str() {
                "openai" => RemoteApi::OpenAi,
                "tei" => RemoteApi::Tei,
                other => {
                    self.one_of(site, "embedding.api", other, APIS);
                    return None;
                }
            },
            other => {
                self.wrong_type(site, "embedding.api", "\"openai\" or \"tei\"", &other);
                return None;
            }
        };
        let timeout = self
            .duration_at(site, table, "embedding.timeout", "timeout")
            .unwrap_or(std::time::Duration::from_secs(30));
        let dimensions = self.integer(site, table, "embedding.dimensions", "dimensions");
        let health = match table.raw_get::<Value>("health").unwrap_or(Value::Nil) {
            Value::Nil => "/health".to_owned(),
            Value::String(path) if path.to_string_lossy().starts_with('/') => {
                path.to_string_lossy()
            }
            other => {
                self.wrong_type(site, "embedding.health", "a path like \"/health\"", &other);
                return None;
            }
        };
        Some(Some(RemoteEmbeddingSpec {
            url: url.trim_end_matches('/').to_owned(),
            api,
            timeout,
            dimensions,
            health,
        }))
    }

    fn depends_on(&mut self, site: &CallSite, table: &Table) -> Vec<Dependency> {
        let value = table.raw_get::<Value>("depends_on").unwrap_or(Value::Nil);
        let list = match value {
            Value::Nil => return Vec::new(),
            Value::String(name) => {
                return vec![Dependency {
                    service: name.to_string_lossy(),
                    condition: DependencyCondition::Started,
                }];
            }
            Value::Table(list) => list,
            other => {
                self.wrong_type(
                    site,
                    "depends_on",
                    "a table like { db = \"healthy\" }",
                    &other,
                );
                return Vec::new();
            }
        };
        let mut dependencies = Vec::new();
        for (key, value) in list.pairs::<Value, Value>().flatten() {
            match (key, value) {
                (Value::Integer(idx), Value::String(name)) => dependencies.push((
                    format!("depends_on.{idx}"),
                    Dependency {
                        service: name.to_string_lossy(),
                        condition: DependencyCondition::Started,
                    },
                )),
                (Value::String(name), Value::String(condition)) => {
                    let name = name.to_string_lossy();
                    let path = format!("depends_on.{name}");
                    let condition = condition.to_string_lossy();
                    let condition = match condition.as_str() {
                        "started" => DependencyCondition::Started,
                        "healthy" => DependencyCondition::Healthy,
                        "completed" | "completed_successfully" => {
                            DependencyCondition::CompletedSuccessfully
                        }
                        other => {
                            self.one_of(site, &path, other, CONDITIONS);
                            continue;
                        }
                    };
                    dependencies.push((
                        path,
                        Dependency {
                            service: name,
                            condition,
                        },
                    ));
                }
                (Value::String(name), other) => {
                    let path = format!("depends_on.{}", name.to_string_lossy());
                    self.wrong_type(
                        site,
                        &path,
                        "a condition: \"started\", \"healthy\" or \"completed\"",
                        &other,
                    );
                }
                (_, other) => self.wrong_type(site, "depends_on", "a service name", &other),
            }
        }
        // `pairs` order is unspecified; keep the order of the source text.
        dependencies.sort_by_key(|(path, _)| self.locator.position(site, Some(path), Part::Key));
        dependencies
            .into_iter()
            .map(|(_, dependency)| dependency)
            .collect()
    }

    fn restart(&mut self, site: &CallSite, table: &Table) -> RestartSpec {
        let mut restart = RestartSpec::default();
        let table = match table.raw_get::<Value>("restart").unwrap_or(Value::Nil) {
            Value::Nil => return restart,
            Value::String(policy) => {
                if let Some(policy) = self.policy(site, "restart", &policy.to_string_lossy()) {
                    restart.policy = policy;
                }
                return restart;
            }
            Value::Table(table) => table,
            other => {
                self.wrong_type(
                    site,
                    "restart",
                    "a table like { policy = \"on-failure\" }",
                    &other,
                );
                return restart;
            }
        };
        self.check_fields(site, &table, "restart", RESTART_FIELDS, "`restart`");
        match table.raw_get::<Value>("policy").unwrap_or(Value::Nil) {
            Value::Nil => {}
            Value::String(policy) => {
                if let Some(policy) = self.policy(site, "restart.policy", &policy.to_string_lossy())
                {
                    restart.policy = policy;
                }
            }
            other => self.wrong_type(site, "restart.policy", "a string", &other),
        }
        match table.raw_get::<Value>("backoff").unwrap_or(Value::Nil) {
            Value::Nil => {}
            Value::String(text) => {
                let text = text.to_string_lossy();
                let parsed = if text.contains("..") {
                    parse_range(&text)
                } else {
                    parse_duration(&text).map(|initial| (initial, initial.max(restart.backoff_max)))
                };
                match parsed {
                    Ok((initial, max)) => {
                        restart.backoff_initial = initial;
                        restart.backoff_max = max;
                    }
                    Err(problem) => self.error(
                        site,
                        Some("restart.backoff"),
                        Part::Value,
                        format!("bad backoff: {problem}"),
                        "write backoff = \"200ms..10s\" (first delay..cap; it doubles in between)"
                            .to_owned(),
                    ),
                }
            }
            other => self.wrong_type(
                site,
                "restart.backoff",
                "a string like \"200ms..10s\"",
                &other,
            ),
        }
        match table.raw_get::<Value>("jitter").unwrap_or(Value::Nil) {
            Value::Nil => {}
            Value::Integer(jitter) if (0..=1).contains(&jitter) => restart.jitter = jitter as f64,
            Value::Number(jitter) if (0.0..=1.0).contains(&jitter) => restart.jitter = jitter,
            other => self.wrong_type(site, "restart.jitter", "a fraction between 0 and 1", &other),
        }
        if let Some(max) = self.integer(site, &table, "restart.max", "max") {
            restart.max_restarts = max;
        }
        if let Some(window) = self.duration_at(site, &table, "restart.window", "window") {
            restart.window = window;
        }
        restart
    }

    fn policy(&mut self, site: &CallSite, path: &str, policy: &str) -> Option<RestartPolicy> {
        match policy {
            "no" => Some(RestartPolicy::No),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "always" => Some(RestartPolicy::Always),
            other => {
                self.one_of(site, path, other, POLICIES);
                None
            }
        }
    }

    fn shutdown(&mut self, site: &CallSite, table: &Table) -> ShutdownSpec {
        let mut shutdown = ShutdownSpec::default();
        let table = match table.raw_get::<Value>("stop").unwrap_or(Value::Nil) {
            Value::Nil => return shutdown,
            Value::Table(table) => table,
            other => {
                self.wrong_type(
                    site,
                    "stop",
                    "a table like { signal = \"SIGTERM\", grace = \"5s\" }",
                    &other,
                );
                return shutdown;
            }
        };
        self.check_fields(site, &table, "stop", STOP_FIELDS, "`stop`");
        match table.raw_get::<Value>("signal").unwrap_or(Value::Nil) {
            Value::Nil => {}
            Value::String(name) => {
                let name = name.to_string_lossy().to_ascii_uppercase();
                let name = if name.starts_with("SIG") {
                    name
                } else {
                    format!("SIG{name}")
                };
                match SIGNALS.iter().find(|(known, _)| *known == name) {
                    Some((known, number)) => {
                        shutdown.signal = *number;
                        shutdown.signal_name = (*known).to_owned();
                    }
                    None => {
                        let names: Vec<&str> = SIGNALS.iter().map(|(name, _)| *name).collect();
                        self.one_of(site, "stop.signal", &name, &names);
                    }
                }
            }
            other => self.wrong_type(
                site,
                "stop.signal",
                "a signal name like \"SIGTERM\"",
                &other,
            ),
        }
        if let Some(grace) = self.duration_at(site, &table, "stop.grace", "grace") {
            shutdown.grace = grace;
        }
        shutdown
    }
}
