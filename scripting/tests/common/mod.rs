//! A script host on a temp script with effects that the test controls:
//! embeddings answered at once (vector `[1, 2, 3]`) unless the text starts
//! with "hold", in which case they wait for `release`; every embed call
//! and every run event is also sent to the test.

#![allow(dead_code)]

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use spindle_scripting::{
    DebugEvent, DebugReply, Effects, EmbedAnswer, EmbedCall, EmbedReply, HostConfig, LiveRun,
    PipelineRequest, RunEvent, RunOutcome, ScriptError, ScriptHost,
};

pub struct TestEffects {
    held: Mutex<Vec<(EmbedCall, EmbedReply)>>,
    calls: Mutex<mpsc::Sender<u64>>,
    events: Mutex<mpsc::Sender<RunEvent>>,
    debug_events: Mutex<mpsc::Sender<DebugEvent>>,
}

impl TestEffects {
    /// Answers every held embedding.
    pub fn release(&self) {
        for (_call, reply) in self.held.lock().expect("lock").drain(..) {
            reply(Ok(EmbedAnswer {
                vector: vec![1.0, 2.0, 3.0],
                from_fallback: false,
            }));
        }
    }
}

impl Effects for TestEffects {
    fn embed(&self, call: EmbedCall, reply: EmbedReply) {
        let id = call.request_id;
        if call.text.starts_with("hold") {
            self.held.lock().expect("lock").push((call, reply));
        } else {
            reply(Ok(EmbedAnswer {
                vector: vec![1.0, 2.0, 3.0],
                from_fallback: false,
            }));
        }
        let _ = self.calls.lock().expect("lock").send(id);
    }

    fn run_event(&self, event: RunEvent) {
        let _ = self.events.lock().expect("lock").send(event);
    }

    fn debug_event(&self, event: DebugEvent) {
        let _ = self.debug_events.lock().expect("lock").send(event);
    }
}

pub struct Fixture {
    pub host: ScriptHost,
    pub effects: Arc<TestEffects>,
    /// Request ids, as each embed call arrives.
    pub embed_calls: mpsc::Receiver<u64>,
    pub events: mpsc::Receiver<RunEvent>,
    /// The debugger's events (stops, output).
    pub debug_events: mpsc::Receiver<DebugEvent>,
    /// The script's absolute path.
    pub file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub fn start(script: &str) -> Fixture {
    start_configured(script, HostConfig::default())
}

pub fn start_configured(script: &str, config: HostConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("seam.lua");
    std::fs::write(&file, script).expect("write");
    let (calls, embed_calls) = mpsc::channel();
    let (events_sender, events) = mpsc::channel();
    let (debug_sender, debug_events) = mpsc::channel();
    let effects = Arc::new(TestEffects {
        held: Mutex::default(),
        calls: Mutex::new(calls),
        events: Mutex::new(events_sender),
        debug_events: Mutex::new(debug_sender),
    });
    let (host, evaluation) =
        ScriptHost::start_with_config(&file, effects.clone(), config).expect("host starts");
    assert!(
        evaluation.diagnostics.is_empty(),
        "{:?}",
        evaluation.diagnostics
    );
    Fixture {
        host,
        effects,
        embed_calls,
        events,
        debug_events,
        file: std::path::absolute(&file).expect("absolute"),
        _dir: dir,
    }
}

pub fn request(id: u64, pipeline: &str, text: &str) -> PipelineRequest {
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

pub fn submit(host: &ScriptHost, request: PipelineRequest) -> mpsc::Receiver<RunOutcome> {
    let (sender, receiver) = mpsc::channel();
    host.run_pipeline(
        request,
        Box::new(move |outcome| sender.send(outcome).expect("test waits")),
    );
    receiver
}

/// Generous: only a hung host ever waits this long.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn outcome(receiver: &mpsc::Receiver<RunOutcome>) -> RunOutcome {
    receiver.recv_timeout(PATIENCE).expect("one outcome")
}

/// Sends a debugger command and waits for its answer.
pub fn ask<T: Send + 'static>(command: impl FnOnce(DebugReply<T>)) -> Result<T, ScriptError> {
    let (sender, receiver) = mpsc::channel();
    command(Box::new(move |answer| {
        let _ = sender.send(answer);
    }));
    receiver.recv_timeout(PATIENCE).expect("the host answers")
}

pub fn runs(host: &ScriptHost) -> Vec<LiveRun> {
    let (sender, receiver) = mpsc::channel();
    host.runs(Box::new(move |runs| {
        let _ = sender.send(runs);
    }));
    receiver.recv_timeout(PATIENCE).expect("the host answers")
}
