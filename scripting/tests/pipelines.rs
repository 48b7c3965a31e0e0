//! Requests through pipelines on the script host: Lua stages as coroutines,
//! embed stages that wait on the kernel without blocking other requests, and
//! exactly one outcome per request whatever fails.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use spindle_scripting::{
    Effects, EmbedAnswer, EmbedCall, EmbedFailure, EmbedReply, HostEmbedError, PipelineRequest,
    RunOutcome, ScriptHost,
};

const SCRIPT: &str = r#"local s = require("spindle")
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }
s.pipeline "ingest" {
  s.stage("clean", function(req)
    req.text = req.text:gsub("%s+", " ")
    req.words = select(2, req.text:gsub("%S+", ""))
    return req
  end),
  s.stage("embed", s.embed "embedder"),
  s.stage("check", function(req)
    if req.text == "boom" then error("refusing " .. req.text) end
    req.dims = #req.vector
  end),
}
s.pipeline "degrading" {
  fallback = function(req, err) req.reason = err return req end,
  s.stage("fail", function(req) error("upstream down") end),
}
s.pipeline "wrong" { s.stage("answer", function(req) return 42 end) }
s.pipeline "texts" {
  s.stage("edit", function(req)
    if req.text == "drop" then req.text = nil
    elseif req.text == "shout" then req.text = "SHOUT"
    elseif req.text == "same" then req.text = "sa" .. "me" end
    return req
  end),
}
s.pipeline "shapes" {
  s.stage("shape", function(req)
    if req.text == "number" then req.text = 42
    elseif req.text == "list key" then req[1] = "not a field"
    elseif req.text == "vector" then req.vector = { 1, 2.5, 3 }
    elseif req.text == "bad vector" then req.vector = "no"
    elseif req.text == "mixed" then req[2] = true req.extra = 7 req.text = "mixed!" end
    return req
  end),
}
s.pipeline "fields" {
  s.stage("look", function(req)
    req.seen = string.format("%s %d %s %s %s", math.type(req.id), req.id,
      req.correlation_id, req.pipeline, req.priority)
    return req
  end),
}
"#;

/// Embeddings held back until `release` is called, so that a test can see
/// how many requests wait at once; the vector is `[id, text length]`.
#[derive(Default)]
struct HeldEffects {
    waiting: Mutex<Vec<(EmbedCall, EmbedReply)>>,
    arrivals: Mutex<Option<mpsc::Sender<u64>>>,
}

impl HeldEffects {
    fn release(&self) {
        for (call, reply) in self.waiting.lock().expect("lock").drain(..) {
            if call.text == "transient" {
                reply(Err(EmbedFailure::new(HostEmbedError(
                    "engine restarting".to_owned(),
                ))));
                continue;
            }
            reply(Ok(EmbedAnswer {
                vector: vec![call.request_id as f32, call.text.len() as f32],
                from_fallback: false,
            }));
        }
    }
}

impl Effects for HeldEffects {
    fn embed(&self, call: EmbedCall, reply: EmbedReply) {
        if call.text == "panic" {
            panic!("engine bug on request {}", call.request_id);
        }
        let id = call.request_id;
        self.waiting.lock().expect("lock").push((call, reply));
        if let Some(arrivals) = &*self.arrivals.lock().expect("lock") {
            let _ = arrivals.send(id);
        }
    }
}

struct Fixture {
    host: ScriptHost,
    effects: Arc<HeldEffects>,
    arrivals: mpsc::Receiver<u64>,
    _dir: tempfile::TempDir,
}

fn start() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pipelines.lua");
    std::fs::write(&file, SCRIPT).expect("write");
    let effects = Arc::new(HeldEffects::default());
    let (sender, arrivals) = mpsc::channel();
    *effects.arrivals.lock().expect("lock") = Some(sender);
    let (host, evaluation) = ScriptHost::start_with(&file, effects.clone()).expect("host");
    assert!(
        evaluation.diagnostics.is_empty(),
        "{:?}",
        evaluation.diagnostics
    );
    Fixture {
        host,
        effects,
        arrivals,
        _dir: dir,
    }
}

fn request(id: u64, pipeline: &str, text: &str) -> PipelineRequest {
    PipelineRequest {
        id,
        correlation_id: format!("c-{id}"),
        pipeline: pipeline.to_owned(),
        priority: "medium".to_owned(),
        text: text.to_owned(),
        scope: Default::default(),
        stage_log: None,
    }
}

fn submit(host: &ScriptHost, request: PipelineRequest) -> mpsc::Receiver<RunOutcome> {
    let (sender, receiver) = mpsc::channel();
    host.run_pipeline(
        request,
        Box::new(move |outcome| sender.send(outcome).expect("test waits")),
    );
    receiver
}

fn wait(receiver: &mpsc::Receiver<RunOutcome>) -> RunOutcome {
    receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("one outcome")
}

#[test]
fn many_requests_wait_on_embeddings_at_once_and_each_gets_its_own_answer() {
    let fixture = start();
    let count = 200u64;
    let receivers: Vec<_> = (0..count)
        .map(|id| {
            submit(
                &fixture.host,
                request(id, "ingest", &format!("text  number {id}")),
            )
        })
        .collect();
    // All 200 are parked in the embed stage at the same time: the Lua
    // thread kept running other requests while each one waited.
    for _ in 0..count {
        fixture
            .arrivals
            .recv_timeout(Duration::from_secs(10))
            .expect("every request reaches the embed stage");
    }
    assert_eq!(
        fixture.effects.waiting.lock().expect("lock").len(),
        count as usize
    );
    fixture.effects.release();
    for (id, receiver) in receivers.iter().enumerate() {
        let RunOutcome::Answered(answer) = wait(receiver) else {
            panic!("request {id} failed");
        };
        let text = format!("text number {id}");
        assert_eq!(answer.text, text);
        assert_eq!(answer.vector, Some(vec![id as f32, text.len() as f32]));
        assert_eq!(answer.fields.get("words").map(String::as_str), Some("3"));
        assert_eq!(answer.fields.get("dims").map(String::as_str), Some("2"));
        let stages: Vec<&str> = answer
            .stages
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(stages, ["clean", "embed", "check"]);
        assert!(!answer.degraded);
        assert!(receiver.try_recv().is_err(), "exactly one outcome");
    }
}

#[test]
fn a_lua_error_names_pipeline_stage_file_and_line() {
    let fixture = start();
    let receiver = submit(&fixture.host, request(1, "ingest", "boom"));
    fixture.arrivals.recv().expect("arrives");
    fixture.effects.release();
    let RunOutcome::Failed(failure) = wait(&receiver) else {
        panic!("expected a failure");
    };
    assert_eq!(
        (failure.pipeline.as_str(), failure.stage.as_str()),
        ("ingest", "check")
    );
    assert!(failure.file.ends_with("pipelines.lua"), "{failure}");
    assert_eq!(failure.line, 11);
    assert_eq!(failure.message, "refusing boom");
}

#[test]
fn embedding_failures_keep_the_kernels_error() {
    let fixture = start();
    let receiver = submit(&fixture.host, request(1, "ingest", "transient"));
    fixture.arrivals.recv().expect("arrives");
    fixture.effects.release();
    let RunOutcome::Failed(failure) = wait(&receiver) else {
        panic!("expected a failure");
    };
    assert_eq!(failure.stage, "embed");
    let cause = failure.cause.expect("the embed error is kept");
    assert_eq!(
        cause.get::<HostEmbedError>().map(|error| error.0.as_str()),
        Some("engine restarting")
    );
    assert_eq!(failure.message, "engine restarting");
}

#[test]
fn the_fallback_answers_degraded() {
    let fixture = start();
    let RunOutcome::Answered(answer) = wait(&submit(&fixture.host, request(7, "degrading", "x")))
    else {
        panic!("expected the fallback's answer");
    };
    assert!(answer.degraded);
    let reason = answer
        .fields
        .get("reason")
        .expect("reason set by the fallback");
    assert!(reason.contains("stage `fail` failed"), "{reason}");
    assert!(reason.ends_with("upstream down"), "{reason}");
}

#[test]
fn the_answers_text_is_the_requests_unless_a_stage_wrote_another() {
    let fixture = start();
    let text_of = |id: u64, pipeline: &str, text: &str| match wait(&submit(
        &fixture.host,
        request(id, pipeline, text),
    )) {
        RunOutcome::Answered(answer) => answer.text,
        other => panic!("{text}: expected an answer, got {other:?}"),
    };
    // Left alone, set to nil, or rebuilt equal: the request's own text.
    assert_eq!(text_of(1, "texts", "kept as it came"), "kept as it came");
    assert_eq!(text_of(2, "texts", "drop"), "drop");
    assert_eq!(text_of(3, "texts", "same"), "same");
    // Rewritten: the stage's.
    assert_eq!(text_of(4, "texts", "shout"), "SHOUT");
    // The fallback's answer keeps the request's text too.
    assert_eq!(
        text_of(5, "degrading", "from the caller"),
        "from the caller"
    );
}

/// What a stage leaves in `req` reaches the answer: a text that is not a
/// string and a vector that is not a list fail clearly; keys that are not
/// strings are no fields; a list becomes the vector.
#[test]
fn the_answer_is_read_from_whatever_shape_req_was_left_in() {
    let fixture = start();
    let outcome = |id: u64, text: &str| wait(&submit(&fixture.host, request(id, "shapes", text)));
    let failed = |id: u64, text: &str| match outcome(id, text) {
        RunOutcome::Failed(failure) => failure.message,
        other => panic!("{text}: expected a failure, got {other:?}"),
    };
    let answered = |id: u64, text: &str| match outcome(id, text) {
        RunOutcome::Answered(answer) => answer,
        other => panic!("{text}: expected an answer, got {other:?}"),
    };
    assert_eq!(
        failed(1, "number"),
        "req.text must be a string, found integer"
    );
    assert_eq!(
        failed(2, "bad vector"),
        "req.vector must be a list of numbers, found string"
    );
    let list_key = answered(3, "list key");
    assert_eq!(list_key.text, "list key");
    assert!(list_key.fields.is_empty(), "{:?}", list_key.fields);
    assert_eq!(answered(4, "vector").vector, Some(vec![1.0, 2.5, 3.0]));
    let mixed = answered(5, "mixed");
    assert_eq!(mixed.text, "mixed!");
    assert_eq!(
        mixed.fields.into_iter().collect::<Vec<_>>(),
        [("extra".to_owned(), "7".to_owned())]
    );
}

#[test]
fn a_stage_returning_a_non_table_fails_clearly() {
    let fixture = start();
    let RunOutcome::Failed(failure) = wait(&submit(&fixture.host, request(3, "wrong", "x"))) else {
        panic!("expected a failure");
    };
    assert!(failure.message.contains("returned integer"), "{failure}");
}

#[test]
fn cancel_stops_a_waiting_request_and_others_go_on() {
    let fixture = start();
    let cancelled = submit(&fixture.host, request(1, "ingest", "slow"));
    let kept = submit(&fixture.host, request(2, "ingest", "kept"));
    fixture.arrivals.recv().expect("arrives");
    fixture.arrivals.recv().expect("arrives");
    fixture.host.cancel(1);
    assert_eq!(wait(&cancelled), RunOutcome::Cancelled);
    fixture.effects.release();
    assert!(matches!(wait(&kept), RunOutcome::Answered(_)));
}

#[test]
fn a_panic_answers_that_request_and_the_host_lives_on() {
    let fixture = start();
    let RunOutcome::Panicked(message) = wait(&submit(&fixture.host, request(9, "ingest", "panic")))
    else {
        panic!("expected the panic as an outcome");
    };
    assert_eq!(message, "engine bug on request 9");
    let after = submit(&fixture.host, request(10, "ingest", "after"));
    fixture.arrivals.recv().expect("arrives");
    fixture.effects.release();
    assert!(matches!(wait(&after), RunOutcome::Answered(_)));
}

#[test]
fn an_unknown_pipeline_fails_without_running_anything() {
    let fixture = start();
    let RunOutcome::Failed(failure) = wait(&submit(&fixture.host, request(1, "nope", "x"))) else {
        panic!("expected a failure");
    };
    assert_eq!(failure.message, "no pipeline named `nope`");
}

/// `req` carries the request's own fields: its id as an integer, and its
/// correlation id whether the caller gave one or it is the id in decimal.
#[test]
fn req_carries_id_correlation_pipeline_and_priority() {
    let fixture = start();
    let given = wait(&submit(&fixture.host, request(7, "fields", "x")));
    let mut default = request(12, "fields", "x");
    default.correlation_id = "12".to_owned();
    default.priority = "high".to_owned();
    let defaulted = wait(&submit(&fixture.host, default));
    let mut near = request(5, "fields", "x");
    near.correlation_id = "05".to_owned();
    let near = wait(&submit(&fixture.host, near));
    let seen = |outcome: RunOutcome| match outcome {
        RunOutcome::Answered(answer) => answer.fields.get("seen").cloned().expect("seen"),
        _ => panic!("expected an answer"),
    };
    assert_eq!(seen(given), "integer 7 c-7 fields medium");
    assert_eq!(seen(defaulted), "integer 12 12 fields high");
    assert_eq!(seen(near), "integer 5 05 fields medium");
}
