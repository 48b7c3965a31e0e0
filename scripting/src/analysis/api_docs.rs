//! The documentation of the `spindle` Lua API for editors: every module
//! function and every field of every table, with a snippet to insert, and the
//! words a field's value may be (conditions, policies, signals, providers,
//! priorities).
//!
//! The field lists must be those the converters accept; a test compares them
//! with the converters' own hints, so a field added to a converter without a
//! line here fails the test.

use super::context::{ProbeKind, TableKind};

/// One documented name: a module function or a table field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiDoc {
    pub name: &'static str,
    /// A one-line signature or type.
    pub detail: &'static str,
    /// Markdown.
    pub documentation: &'static str,
    /// What completion inserts, in LSP snippet syntax (`$1`, `${1:text}`).
    pub snippet: &'static str,
}

const fn doc(
    name: &'static str,
    detail: &'static str,
    documentation: &'static str,
    snippet: &'static str,
) -> ApiDoc {
    ApiDoc {
        name,
        detail,
        documentation,
        snippet,
    }
}

/// The functions that declare graphs, with hand-written snippets; the rest
/// of the module (the notebook functions) is documented from the
/// annotations, see [`module_functions`].
const GRAPH_FUNCTIONS: &[ApiDoc] = &[
    doc(
        "service",
        "s.service \"name\" { fields }",
        "Declares a service: a supervised process (`command`) or an in-process embedding engine (`embedding`). Services start in waves by their `depends_on` and stop in reverse order.",
        "service \"${1:name}\" {\n\t${2:command = { \"${3:program}\" \\}},\n}",
    ),
    doc(
        "pipeline",
        "s.pipeline \"name\" { stages..., fields }",
        "Declares a pipeline: the stages a request passes through, in order. Every pipeline is served at `/v1/pipelines/<name>`; `from` adds sources.",
        "pipeline \"${1:name}\" {\n\ts.stage(\"${2:embed}\", s.embed \"${3:embedder}\"),\n}",
    ),
    doc(
        "stage",
        "s.stage(\"name\", function(req) ... end | s.embed \"service\")",
        "One stage of a pipeline: a Lua function `(req) -> req`, run as a coroutine per request, or an embedding stage made by `s.embed`.",
        "stage(\"${1:name}\", function(req)\n\t$0\n\treturn req\nend)",
    ),
    doc(
        "embed",
        "s.embed \"service\" | s.embed { service = \"...\", fallback = \"...\" }",
        "An embedding stage: embeds `req.text` with an embedding service into `req.vector`. With `fallback`, another embedding service answers when the first fails or its breaker is open.",
        "embed \"${1:embedder}\"",
    ),
    doc(
        "exec_probe",
        "s.exec_probe { command = { ... }, period = \"1s\", ... }",
        "A probe that runs a command; exit status 0 passes. Use it as `ready` or `live` of a service.",
        "exec_probe { command = { \"${1:true}\" }, period = \"${2:1s}\" }",
    ),
    doc(
        "http_probe",
        "s.http_probe { url = \"http://...\", period = \"1s\", ... }",
        "A probe that sends `GET` to a URL; a status of 200..399 passes.",
        "http_probe { url = \"${1:http://127.0.0.1:8080/health}\", period = \"${2:1s}\" }",
    ),
    doc(
        "tcp_probe",
        "s.tcp_probe { address = \"host:port\", period = \"1s\", ... }",
        "A probe that connects to `host:port`; an accepted connection passes.",
        "tcp_probe { address = \"${1:127.0.0.1:8080}\", period = \"${2:1s}\" }",
    ),
    doc(
        "lua_probe",
        "s.lua_probe { check = function() ... end, period = \"1s\", ... }",
        "A probe that calls a Lua function on the script host; a truthy result passes, an error fails with its line.",
        "lua_probe {\n\tcheck = function()\n\t\t${1:return true}\n\tend,\n}",
    ),
    doc(
        "http_route",
        "s.http_route \"/path\"",
        "A source of a pipeline's `from`: an extra `POST` route besides `/v1/pipelines/<name>`.",
        "http_route \"${1:/v1/ingest}\"",
    ),
    doc(
        "netlink",
        "s.netlink { family = \"spindle\" }",
        "A source of a pipeline's `from`: requests from the kernel module over generic netlink.",
        "netlink { family = \"${1:spindle}\" }",
    ),
    doc(
        "settings",
        "s.settings { journal = \"DIR\" }",
        "The run's settings, each the same as a `spindle run` flag (the flag wins when both are given): `journal` records the session in a folder, relative to the script's folder, as `--journal DIR`.",
        "settings { journal = \"${1:journal}\" }",
    ),
    doc(
        "version",
        "string",
        "Spindle's version, e.g. `\"0.1.0\"`.",
        "version",
    ),
];

const SERVICE: &[ApiDoc] = &[
    doc(
        "command",
        "string[] | string",
        "The program and its arguments; a string runs under `sh -c`. The process runs in its own process group.",
        "command = { \"${1:program}\" },",
    ),
    doc(
        "embedding",
        "{ model, providers?, max_batch_tokens?, threads?, sessions?, url?, api?, timeout?, dimensions?, health? }",
        "An in-process ONNX Runtime embedding engine instead of a process, or with `url` an embedding server elsewhere.",
        "embedding = { model = \"${1:all-MiniLM-L6-v2}\" },",
    ),
    doc(
        "cwd",
        "string",
        "Working directory, relative to the script's folder (default: the script's folder).",
        "cwd = \"${1:.}\",",
    ),
    doc(
        "env",
        "table<string, string|number>",
        "Extra environment variables; they win over `env_file` entries.",
        "env = { ${1:NAME} = \"${2:value}\" },",
    ),
    doc(
        "env_file",
        "string | string[]",
        "Files of `NAME=value` lines, relative to the script's folder; `#` starts a comment.",
        "env_file = \"${1:.env}\",",
    ),
    doc(
        "depends_on",
        "table<string, condition> | string[] | string",
        "Services this one waits for: `{ db = \"healthy\" }` (conditions: `started`, `healthy`, `completed`); a list or a single name means `started`.",
        "depends_on = { ${1:service} = \"${2|healthy,started,completed|}\" },",
    ),
    doc(
        "ready",
        "probe",
        "Readiness probe: the service counts as healthy once it passes (dependents waiting for `healthy` start then).",
        "ready = s.${1|http_probe,tcp_probe,exec_probe,lua_probe|} { $2 },",
    ),
    doc(
        "live",
        "probe",
        "Liveness probe: a running service whose probe fails `failures` times in a row is restarted.",
        "live = s.${1|http_probe,tcp_probe,exec_probe,lua_probe|} { $2 },",
    ),
    doc(
        "restart",
        "{ policy?, backoff?, jitter?, max?, window? } | policy",
        "Recovery: the restart policy, exponential backoff with jitter and a cap, and the crash-loop limit.",
        "restart = { policy = \"${1|on-failure,always,no|}\", backoff = \"${2:200ms..10s}\" },",
    ),
    doc(
        "stop",
        "{ signal?, grace? }",
        "Shutdown: the signal sent to the whole process group, then SIGKILL after `grace`.",
        "stop = { signal = \"${1|SIGTERM,SIGINT,SIGQUIT,SIGHUP,SIGUSR1,SIGUSR2,SIGKILL|}\", grace = \"${2:5s}\" },",
    ),
    doc(
        "critical",
        "boolean",
        "When a critical service gives up (crash-loop limit), the whole run ends with an error.",
        "critical = ${1|true,false|},",
    ),
    doc(
        "description",
        "string",
        "Free text for people and tools.",
        "description = \"$1\",",
    ),
];

const RESTART: &[ApiDoc] = &[
    doc(
        "policy",
        "\"no\" | \"on-failure\" | \"always\"",
        "When to restart: never, after a failure (default), or after every exit.",
        "policy = \"${1|on-failure,always,no|}\",",
    ),
    doc(
        "backoff",
        "string",
        "First delay..cap, e.g. `\"200ms..10s\"`; the delay doubles after each restart (default `\"200ms..10s\"`).",
        "backoff = \"${1:200ms..10s}\",",
    ),
    doc(
        "jitter",
        "number",
        "Random fraction added to each delay, 0..1 (default 0.1).",
        "jitter = ${1:0.1},",
    ),
    doc(
        "max",
        "integer",
        "Crash-loop limit: more restarts than this within `window` and the service gives up (default 5).",
        "max = ${1:5},",
    ),
    doc(
        "window",
        "duration",
        "The crash-loop window (default `\"60s\"`).",
        "window = \"${1:60s}\",",
    ),
];

const STOP: &[ApiDoc] = &[
    doc(
        "signal",
        "signal name",
        "Sent to the whole process group first (default `\"SIGTERM\"`).",
        "signal = \"${1|SIGTERM,SIGINT,SIGQUIT,SIGHUP,SIGUSR1,SIGUSR2,SIGKILL|}\",",
    ),
    doc(
        "grace",
        "duration",
        "Time allowed after the signal before SIGKILL (default `\"5s\"`).",
        "grace = \"${1:5s}\",",
    ),
];

const EMBEDDING: &[ApiDoc] = &[
    doc(
        "model",
        "string",
        "A model from the registry (`spindle models list`).",
        "model = \"${1:all-MiniLM-L6-v2}\",",
    ),
    doc(
        "providers",
        "string[]",
        "Execution providers in order of preference: `\"cuda\"`, `\"cpu\"` (default `{ \"cpu\" }`).",
        "providers = { \"${1|cuda,cpu|}\" },",
    ),
    doc(
        "max_batch_tokens",
        "integer",
        "The token budget of one batch (default 8192).",
        "max_batch_tokens = ${1:8192},",
    ),
    doc(
        "threads",
        "integer",
        "Intra-op threads of each session (default: the cores shared out among the sessions). Not for a server.",
        "threads = ${1:2},",
    ),
    doc(
        "sessions",
        "integer",
        "Sessions run side by side, each batch on whichever is free (default 1). On a CPU, two of one thread each embed more sentences per second than one of two threads, and a lone request takes longer; each holds its own copy of the model. Not for a server.",
        "sessions = ${1:2},",
    ),
    doc(
        "url",
        "string",
        "An embedding server's root, `\"http://host:port\"`: the vectors are computed there, in batches, with the breaker, retries and readiness of a local engine.",
        "url = \"http://${1:127.0.0.1:7997}\",",
    ),
    doc(
        "api",
        "string",
        "What the server speaks: `\"openai\"` (`POST /v1/embeddings`, the default) or `\"tei\"` (`POST /embed`).",
        "api = \"${1|openai,tei|}\",",
    ),
    doc(
        "timeout",
        "duration",
        "How long one batch may take on the server (default `\"30s\"`).",
        "timeout = \"${1:30s}\",",
    ),
    doc(
        "dimensions",
        "integer",
        "The vectors' dimension, checked against the server's when the service starts.",
        "dimensions = ${1:384},",
    ),
    doc(
        "health",
        "string",
        "The server's health route, polled as readiness unless the service declares `ready` (default `\"/health\"`).",
        "health = \"${1:/health}\",",
    ),
];

const PROBE_COMMON: &[ApiDoc] = &[
    doc(
        "period",
        "duration",
        "Time between two checks (default `\"1s\"`).",
        "period = \"${1:1s}\",",
    ),
    doc(
        "timeout",
        "duration",
        "A check that takes longer fails (default `\"1s\"`).",
        "timeout = \"${1:1s}\",",
    ),
    doc(
        "failures",
        "integer",
        "Consecutive failures before the probe counts as failing (default 3).",
        "failures = ${1:3},",
    ),
    doc(
        "successes",
        "integer",
        "Consecutive successes before a failing probe passes again (default 1).",
        "successes = ${1:1},",
    ),
    doc(
        "initial_delay",
        "duration",
        "Wait after the start before the first check (default `\"0s\"`).",
        "initial_delay = \"${1:0s}\",",
    ),
];

const EXEC_PROBE: &[ApiDoc] = &[doc(
    "command",
    "string[] | string",
    "The command to run; exit status 0 passes. A string runs under `sh -c`.",
    "command = { \"${1:true}\" },",
)];
const HTTP_PROBE: &[ApiDoc] = &[doc(
    "url",
    "string",
    "An `http://` URL; a status of 200..399 passes.",
    "url = \"${1:http://127.0.0.1:8080/health}\",",
)];
const TCP_PROBE: &[ApiDoc] = &[doc(
    "address",
    "string",
    "`host:port`; an accepted connection passes.",
    "address = \"${1:127.0.0.1:8080}\",",
)];
const LUA_PROBE: &[ApiDoc] = &[doc(
    "check",
    "function(): any",
    "Called on the script host; a truthy result passes, an error fails with its line.",
    "check = function()\n\t${1:return true}\nend,",
)];

const PIPELINE: &[ApiDoc] = &[
    doc(
        "from",
        "source[]",
        "Extra sources: `s.http_route \"/path\"` and `s.netlink { family = \"spindle\" }`.",
        "from = { s.http_route \"${1:/v1/ingest}\" },",
    ),
    doc(
        "timeout",
        "duration | { high?, medium?, low? }",
        "Deadlines of this pipeline's requests, for all priorities or per priority.",
        "timeout = { high = \"${1:2s}\", medium = \"${2:10s}\", low = \"${3:60s}\" },",
    ),
    doc(
        "fallback",
        "function(req, err): req",
        "Called when a stage fails; what it returns is the answer, marked `degraded`.",
        "fallback = function(req, err)\n\t${1:return req}\nend,",
    ),
    doc(
        "description",
        "string",
        "Free text for people and tools.",
        "description = \"$1\",",
    ),
    doc(
        "budget",
        "duration",
        "Lua time one run of each of its Lua stages (and its fallback) may take; a runaway is stopped with an error naming the stage and line (default \"1s\").",
        "budget = \"${1:500ms}\",",
    ),
];

const TIMEOUT: &[ApiDoc] = &[
    doc(
        "high",
        "duration",
        "Deadline of high-priority requests.",
        "high = \"${1:2s}\",",
    ),
    doc(
        "medium",
        "duration",
        "Deadline of medium-priority requests.",
        "medium = \"${1:10s}\",",
    ),
    doc(
        "low",
        "duration",
        "Deadline of low-priority requests.",
        "low = \"${1:60s}\",",
    ),
];

const EMBED: &[ApiDoc] = &[
    doc(
        "service",
        "string",
        "The embedding service that embeds `req.text`.",
        "service = \"${1:embedder}\",",
    ),
    doc(
        "services",
        "string[]",
        "Several embedding services (local or remote) sharing the stage: each text goes to the one serving now with the fewest texts in flight, and to the next when one fails.",
        "services = { \"${1:embedder}\", \"${2:remote}\" },",
    ),
    doc(
        "fallback",
        "string",
        "Another embedding service, used when `service` fails or its breaker is open; its answers are marked `embed_fallback`.",
        "fallback = \"${1:small}\",",
    ),
];

const SETTINGS: &[ApiDoc] = &[doc(
    "journal",
    "string",
    "Record every request (its stages' outputs and timings, its answer), every service event and every operation in this folder, relative to the script's folder; the same as `spindle run --journal DIR`, which wins when both are given. Read it with `spindle journal show DIR`.",
    "journal = \"${1:journal}\",",
)];

const NETLINK: &[ApiDoc] = &[doc(
    "family",
    "string",
    "The generic netlink family (default `\"spindle\"`).",
    "family = \"${1:spindle}\",",
)];

/// The fields a table of `kind` may hold (probes: their own field first,
/// then the common timing fields).
pub fn fields(kind: TableKind) -> Vec<ApiDoc> {
    let specific: &[ApiDoc] = match kind {
        TableKind::Service => SERVICE,
        TableKind::Restart => RESTART,
        TableKind::Stop => STOP,
        TableKind::Embedding => EMBEDDING,
        TableKind::Pipeline => PIPELINE,
        TableKind::Timeout => TIMEOUT,
        TableKind::Embed => EMBED,
        TableKind::Netlink => NETLINK,
        TableKind::Settings => SETTINGS,
        TableKind::Probe(ProbeKind::Exec) => EXEC_PROBE,
        TableKind::Probe(ProbeKind::Http) => HTTP_PROBE,
        TableKind::Probe(ProbeKind::Tcp) => TCP_PROBE,
        TableKind::Probe(ProbeKind::Lua) => LUA_PROBE,
        TableKind::Providers | TableKind::DependsOn | TableKind::Sources | TableKind::Other => &[],
    };
    let common: &[ApiDoc] = match kind {
        TableKind::Probe(_) => PROBE_COMMON,
        _ => &[],
    };
    specific.iter().chain(common).copied().collect()
}

/// A word a value may be, with what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueDoc {
    pub word: &'static str,
    pub documentation: &'static str,
}

const fn word(word: &'static str, documentation: &'static str) -> ValueDoc {
    ValueDoc {
        word,
        documentation,
    }
}

/// Dependency conditions (values of `depends_on = { name = ... }`).
pub const CONDITIONS: &[ValueDoc] = &[
    word(
        "started",
        "Wait until the dependency's process has been started.",
    ),
    word(
        "healthy",
        "Wait until the dependency's readiness probe passes (or it runs, without one).",
    ),
    word(
        "completed",
        "Wait until the dependency ran to completion with exit status 0.",
    ),
];

/// Restart policies.
pub const POLICIES: &[ValueDoc] = &[
    word(
        "on-failure",
        "Restart after a non-zero exit or a failed liveness probe (the default).",
    ),
    word("always", "Restart after every exit."),
    word("no", "Never restart."),
];

/// Signals `stop.signal` accepts.
pub const SIGNALS: &[ValueDoc] = &[
    word("SIGTERM", "Terminate (15), the default."),
    word("SIGINT", "Interrupt (2), as Ctrl-C."),
    word("SIGQUIT", "Quit (3)."),
    word("SIGHUP", "Hang up (1)."),
    word("SIGUSR1", "User signal 1 (10)."),
    word("SIGUSR2", "User signal 2 (12)."),
    word("SIGKILL", "Kill (9); cannot be caught."),
];

/// Execution providers of an embedding service.
pub const PROVIDERS: &[ValueDoc] = &[
    word("cuda", "NVIDIA GPUs through ONNX Runtime's CUDA provider."),
    word("cpu", "The CPU provider; always available."),
];

/// Request priorities (keys of a pipeline's `timeout`).
pub const PRIORITIES: &[ValueDoc] = &[
    word(
        "high",
        "Scheduled first; never stuck behind a flood of lower priorities.",
    ),
    word("medium", "The default priority."),
    word(
        "low",
        "Never starved: weighted-fair scheduling gives it a share.",
    ),
];

/// The words a string value may be at `key` of a table of `kind`, if the
/// set is closed.
pub fn values(kind: TableKind, key: Option<&str>) -> &'static [ValueDoc] {
    match (kind, key) {
        (TableKind::DependsOn, Some(_)) => CONDITIONS,
        (TableKind::Restart, Some("policy")) | (TableKind::Service, Some("restart")) => POLICIES,
        (TableKind::Stop, Some("signal")) => SIGNALS,
        (TableKind::Providers, None) => PROVIDERS,
        _ => &[],
    }
}

/// Every member of `require("spindle")`: the graph functions with their
/// snippets, then every other function the annotations declare.
pub fn module_functions() -> &'static [ApiDoc] {
    static FUNCTIONS: std::sync::OnceLock<Vec<ApiDoc>> = std::sync::OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        let mut functions = GRAPH_FUNCTIONS.to_vec();
        for annotated in super::annotations::module_functions() {
            if functions.iter().any(|known| known.name == annotated.name) {
                continue;
            }
            // Made once per process; the table lives as long as it.
            let leak = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };
            let documentation: Vec<&str> = annotated
                .documentation
                .lines()
                .filter(|line| !line.starts_with('@'))
                .collect();
            functions.push(ApiDoc {
                name: leak(annotated.name.clone()),
                detail: leak(format!("s.{}", annotated.signature)),
                documentation: leak(documentation.join("\n")),
                snippet: leak(format!("{}($0)", annotated.name)),
            });
        }
        functions
    })
}

/// The documentation of module function `name`.
pub fn module_function(name: &str) -> Option<&'static ApiDoc> {
    module_functions().iter().find(|doc| doc.name == name)
}

/// The documentation of field `key` of a table of `kind`.
pub fn field(kind: TableKind, key: &str) -> Option<ApiDoc> {
    fields(kind).into_iter().find(|doc| doc.name == key)
}
