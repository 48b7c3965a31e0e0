//! Scenario scripts: a graph plus a timeline and expectations, written in
//! Lua with `require("spindle.scenario")` (the functions are in
//! `scenario_api`). [`evaluate_scenario`] runs such a file once and returns
//! the graph's evaluation together with a plain [`ScenarioSpec`]: the
//! kernel settings, the steps in timeline order and the expectations, each
//! with the line it was written on. A mistake (an unknown field, a request
//! named twice, an expectation about a request that does not exist) is a
//! [`Diagnostic`] with file, line and hint, like any script mistake.
//!
//! The same file is also a valid graph script: when the kernel evaluates
//! it, the scenario functions only record (and report their mistakes).
//! Applying a scenario to a kernel is `spindle-replay`'s job; this module
//! knows no kernel, no scheduler and no async runtime.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Evaluation;
use crate::diagnostic::{Diagnostic, Severity};

/// Service states as the kernel's events name them (`ServiceState::name`
/// in spindle-kernel; a test of spindle-replay keeps the two lists equal).
pub const SERVICE_STATES: &[&str] = &[
    "pending",
    "starting",
    "running",
    "ready",
    "unhealthy",
    "stopping",
    "stopped",
    "exited",
    "failed",
    "restarting",
    "backing-off",
    "gave-up",
];

/// Pipeline gates as the kernel's events name them.
pub const PIPELINE_GATES: &[&str] = &["open", "closed", "failed"];

/// Request lifecycle events an order expectation may name.
pub const REQUEST_EVENTS: &[&str] = &["admitted", "started", "answered"];

/// Outcomes a request may have.
pub const OUTCOMES: &[&str] = &["ok", "error", "timeout", "rejected", "cancelled"];

/// A scenario as evaluated: settings, steps in timeline order and
/// expectations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScenarioSpec {
    /// The scenario file (absolute).
    pub file: PathBuf,
    pub settings: ScenarioSettings,
    /// Sorted by `at` (stable: steps at the same time keep the order they
    /// were written in).
    pub steps: Vec<ScenarioStep>,
    pub expectations: Vec<Expectation>,
}

impl ScenarioSpec {
    /// Every request the timeline submits, in timeline order.
    pub fn requests(&self) -> impl Iterator<Item = &ScenarioRequest> {
        self.steps.iter().filter_map(|step| match &step.action {
            Action::Request(request) => Some(request),
            _ => None,
        })
    }
}

/// `sc.settings { ... }`: the request path's settings for this scenario;
/// `None` keeps the kernel's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScenarioSettings {
    /// Requests handed to the pipelines at once.
    pub in_flight: Option<usize>,
    /// Of `in_flight`, slots only high priority may take.
    pub reserved_for_high: Option<usize>,
    /// Queue capacity per priority: high, medium, low.
    pub queue: [Option<usize>; 3],
    /// Consecutive failures that open an embedding service's breaker.
    pub breaker_failures: Option<u32>,
    /// How long an open breaker fails fast before it lets a probe through.
    pub breaker_open_for: Option<Duration>,
    /// Attempts of a failed batch in all (1: no retry).
    pub attempts: Option<u32>,
    /// How long a `wait` step waits before it gives up (a guard against a
    /// scenario that waits for something that never happens, not a timer
    /// the scenario relies on). Default 60 s.
    pub wait_limit: Option<Duration>,
}

/// One step of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioStep {
    /// Virtual time: orders the steps, never waited for.
    pub at: Duration,
    /// Where it was written.
    pub line: u32,
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Submits a request (admitted before the next step is applied).
    Request(ScenarioRequest),
    /// Waits until `service` enters `state` (an event after the previous
    /// step began).
    WaitService { service: String, state: String },
    /// Waits until `pipeline`'s gate becomes `gate`.
    WaitPipeline { pipeline: String, gate: String },
    /// Waits until the request has its answer.
    WaitAnswer { request: String },
    /// Waits at least this long on the real clock: only to let one of the
    /// kernel's own timers run out (a breaker's `open_for`, a backoff).
    WaitAtLeast(Duration),
    /// SIGKILL to the service's process (a crash, as the supervisor sees it).
    Kill { service: String },
    /// The embedding service's next `batches` batches fail.
    EngineFails { service: String, batches: u32 },
    /// The embedding service's next `batches` batches answer `delay` late.
    EngineSlow {
        service: String,
        delay: Duration,
        batches: u32,
    },
    /// Submits requests to `pipeline` at `priority` until its queue answers
    /// "busy".
    Fill {
        pipeline: String,
        priority: String,
        text: String,
    },
    /// Cancels a request of the scenario.
    Cancel { request: String },
    /// A service command: `restart`, `stop`, `start` or `recover`.
    Service { command: String, service: String },
    /// Evaluates another script (an edited graph) and applies it as a hot
    /// reload would.
    Reload { script: PathBuf },
}

/// A request of the timeline; `name` is its correlation id too.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioRequest {
    pub name: String,
    pub pipeline: String,
    pub text: String,
    /// `high`, `medium` or `low`.
    pub priority: String,
    pub deadline: Option<Duration>,
}

/// One expectation, checked once the scenario's kernel has stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub line: u32,
    pub kind: ExpectKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExpectKind {
    /// `sc.expect "name" { ... }`: the request's answer.
    Answer(AnswerExpectation),
    /// `sc.expect_order { "a ready", "request q answered", ... }`: these
    /// events happened in this order.
    Order(Vec<String>),
    /// `sc.expect_latency { "a", at_most = 0.5, of = "b" }`: latency of
    /// `request` ≤ `at_most` × latency of `of` (a ratio, never a time).
    Latency {
        request: String,
        at_most: f64,
        of: String,
    },
    /// `sc.expect_service "name" { state = ..., restarts = ... }`: the
    /// service's last state and restart count once the timeline is done
    /// (before the kernel shuts down).
    Service {
        service: String,
        state: Option<String>,
        restarts: Option<u32>,
    },
}

/// What an answer must be; `None` fields are not checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnswerExpectation {
    pub request: String,
    pub outcome: Option<String>,
    pub text: Option<String>,
    pub fields: Vec<(String, String)>,
    /// An error's class (`transient`, `permanent`, ...).
    pub class: Option<String>,
    /// An error's stage.
    pub stage: Option<String>,
    /// Words a rejection's or cancellation's reason must contain.
    pub reason: Option<String>,
    pub degraded: Option<bool>,
    pub embed_fallback: Option<bool>,
    /// The vector's dimension.
    pub dimensions: Option<usize>,
    /// Cosine of the answer's vector to the vector the same pipeline gives
    /// this text, at least `min`.
    pub similar: Option<Similarity>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Similarity {
    pub text: String,
    pub min: f32,
}

/// What evaluating a scenario file produced.
#[derive(Debug, Clone)]
pub struct ScenarioEvaluation {
    /// The graph and every diagnostic (the graph's and the scenario's).
    pub evaluation: Evaluation,
    /// `None` when there are errors, or when the file declares no step and
    /// no expectation (it is a plain graph script).
    pub scenario: Option<ScenarioSpec>,
}

/// Evaluates a scenario file: its graph (inline or required) and its
/// timeline.
pub fn evaluate_scenario(path: &Path) -> ScenarioEvaluation {
    let loaded = crate::eval::load(path);
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut evaluation = loaded.evaluation;
    let recorded = loaded.scenario;
    let mut diagnostics = check(&recorded, &file);
    evaluation.diagnostics.append(&mut diagnostics);
    evaluation
        .diagnostics
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    if evaluation.has_errors() {
        evaluation.graph = None;
    }
    let scenario = match (evaluation.has_errors(), recorded.is_empty()) {
        (false, false) => {
            let mut steps = recorded.steps;
            steps.sort_by_key(|step| step.at);
            Some(ScenarioSpec {
                file,
                settings: recorded.settings,
                steps,
                expectations: recorded.expectations,
            })
        }
        _ => None,
    };
    ScenarioEvaluation {
        evaluation,
        scenario,
    }
}

/// What the scenario functions recorded while the file ran; kept in the
/// Lua state's app data.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScenarioRecord {
    pub settings: ScenarioSettings,
    pub steps: Vec<ScenarioStep>,
    pub expectations: Vec<Expectation>,
    /// Mistakes found while recording (already diagnostics).
    pub mistakes: Vec<Diagnostic>,
    /// Requests declared with a mistake (so not among the steps): their
    /// names still count as declared, so that the steps and expectations
    /// naming them add no second error.
    pub broken_requests: Vec<String>,
    /// The virtual time of the last step written.
    pub now: Duration,
}

impl ScenarioRecord {
    fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.expectations.is_empty()
    }
}

/// The checks that need the whole timeline: names unique, every name an
/// expectation or step refers to declared.
fn check(recorded: &ScenarioRecord, file: &Path) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let error = |line: u32, message: String, hint: String| Diagnostic {
        severity: Severity::Error,
        file: file.to_path_buf(),
        line,
        column: 1,
        message,
        hint: Some(hint),
    };
    let mut names = HashSet::new();
    for step in &recorded.steps {
        if let Action::Request(request) = &step.action
            && !names.insert(request.name.as_str())
        {
            diagnostics.push(error(
                step.line,
                format!("request `{}` is declared twice", request.name),
                "give each request of a scenario its own name: expectations refer to it".to_owned(),
            ));
        }
    }
    let known = |name: &str| {
        names.contains(name) || recorded.broken_requests.iter().any(|broken| broken == name)
    };
    let hint = |name: &str| {
        let candidates: Vec<&str> = names
            .iter()
            .copied()
            .chain(recorded.broken_requests.iter().map(String::as_str))
            .collect();
        match crate::convert::did_you_mean(name, &candidates) {
            Some(close) => format!("did you mean `{close}`?"),
            None => "declare it with sc.request \"name\" { pipeline = ..., text = ... }".to_owned(),
        }
    };
    for step in &recorded.steps {
        let referred = match &step.action {
            Action::WaitAnswer { request } | Action::Cancel { request } => Some(request),
            _ => None,
        };
        if let Some(request) = referred
            && !known(request)
        {
            diagnostics.push(error(
                step.line,
                format!("no request named `{request}` in this scenario"),
                hint(request),
            ));
        }
    }
    for expectation in &recorded.expectations {
        let referred: Vec<&String> = match &expectation.kind {
            ExpectKind::Answer(answer) => vec![&answer.request],
            ExpectKind::Latency { request, of, .. } => vec![request, of],
            ExpectKind::Order(events) => events
                .iter()
                .filter_map(|event| {
                    let mut words = event.split_whitespace();
                    match words.next() {
                        Some("request") => words.next().map(|_| event),
                        _ => None,
                    }
                })
                .collect(),
            ExpectKind::Service { .. } => Vec::new(),
        };
        for request in referred {
            let name = match &expectation.kind {
                ExpectKind::Order(_) => request.split_whitespace().nth(1).unwrap_or(""),
                _ => request.as_str(),
            };
            if !known(name) {
                diagnostics.push(error(
                    expectation.line,
                    format!("no request named `{name}` in this scenario"),
                    hint(name),
                ));
            }
        }
    }
    diagnostics
}
