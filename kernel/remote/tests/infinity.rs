//! Remote embedding services against a real embedding server: infinity-emb
//! (installed by `python3 scripts/fetch_models.py --embedding-server`),
//! run by the kernel's own supervisor as a process service, serving
//! all-MiniLM-L6-v2 on CPU from the sentence-transformers folder the setup
//! unpacked. Its vectors are within cosine 0.999 of the local engine's for
//! the same model; a stage shared by the local and the remote service uses
//! both (least in flight); and when the server is killed, the shared stage
//! fails over to the local engine: every request is still answered ok.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spindle_kernel::supervisor::ServiceState;
use spindle_kernel::{Kernel, KernelConfig, KernelEvent, KernelSource, RequestAnswer, Submission};
use spindle_remote::RemoteBackend;
use spindle_scheduler::{Outcome, Priority, Source};

const TEXTS: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "Embedding servers turn sentences into vectors.",
    "A kernel module asks userspace for embeddings over netlink.",
    "hello",
    "Ünïcödé and emoji 🚀 survive the trip.",
    "Supervisors restart services in dependency order, with exponential backoff and a crash-loop limit.",
    "short",
    "Two machines are better than one when the queue is long.",
];

fn server() -> (PathBuf, PathBuf) {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/infinity-venv/bin");
    let program = venv.join("infinity_emb");
    let model = spindle_embed::cache_dir()
        .expect("cache dir")
        .join("servers/all-MiniLM-L6-v2");
    assert!(
        program.exists() && model.join("model.safetensors").exists(),
        "the embedding server is not installed ({} / {})\n  hint: python3 scripts/fetch_models.py --embedding-server",
        program.display(),
        model.display()
    );
    (program, model)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn submission(pipeline: &str, text: &str) -> Submission {
    Submission {
        pipeline: pipeline.to_owned(),
        text: text.to_owned(),
        priority: Priority::High,
        deadline: Some(Duration::from_secs(60)),
        correlation_id: None,
        source: Source::Scenario,
    }
}

fn vector(answer: RequestAnswer) -> Vec<f32> {
    match answer.outcome {
        Outcome::Ok(answer) => answer.vector.expect("a vector"),
        other => panic!("ok: {other:?}"),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Waits on events until every pipeline is served.
async fn all_pipelines_ready(kernel: &Kernel) {
    let mut events = kernel.subscribe(false);
    while !kernel
        .pipelines()
        .iter()
        .all(|pipeline| pipeline.gate.is_open())
    {
        let failed = kernel
            .pipelines()
            .iter()
            .any(|pipeline| matches!(pipeline.gate, spindle_scheduler::Gate::Failed { .. }));
        assert!(
            !failed,
            "a pipeline cannot be served: {:#?}",
            kernel.services()
        );
        match events.recv().await {
            Some(_) => {}
            None => panic!("the kernel stopped: {:#?}", kernel.services()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_gives_the_local_vectors_shares_work_and_fails_over() {
    let (program, model) = server();
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let script = format!(
        r#"local s = require("spindle")
s.service "infinity" {{
  command = {{ "{program}", "v2", "--model-id", "{model}", "--served-model-name", "all-MiniLM-L6-v2",
              "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", "{port}",
              "--url-prefix", "/v1", "--batch-size", "16" }},
  env = {{ HF_HUB_OFFLINE = "1", DO_NOT_TRACK = "1", INFINITY_ANONYMOUS_USAGE_STATS = "0", OMP_NUM_THREADS = "1" }},
  ready = s.http_probe {{ url = "http://127.0.0.1:{port}/health", period = "200ms" }},
  restart = {{ policy = "no" }},
}}
s.service "remote" {{
  embedding = {{ url = "http://127.0.0.1:{port}", api = "openai", model = "all-MiniLM-L6-v2", dimensions = 384 }},
  depends_on = {{ infinity = "healthy" }},
}}
s.service "mismatched" {{
  embedding = {{ url = "http://127.0.0.1:{port}", model = "all-MiniLM-L6-v2", dimensions = 768 }},
  depends_on = {{ infinity = "healthy" }},
  restart = {{ policy = "no" }},
}}
s.service "local" {{ embedding = {{ model = "all-MiniLM-L6-v2-fp32", threads = 1 }} }}
s.pipeline "near" {{ s.stage("embed", s.embed "local") }}
s.pipeline "far" {{ s.stage("embed", s.embed "remote") }}
s.pipeline "both" {{ s.stage("embed", s.embed {{ services = {{ "remote", "local" }} }}) }}
"#,
        program = program.display(),
        model = model.display(),
    );
    let file = dir.path().join("remote.lua");
    std::fs::write(&file, script).expect("write");
    let kernel = Kernel::start(
        KernelSource::Script(file),
        KernelConfig {
            remote_engines: Some(Arc::new(RemoteBackend::new())),
            until_shutdown: true,
            ..KernelConfig::default()
        },
    )
    .expect("starts");
    all_pipelines_ready(&kernel).await;
    // The vectors contract is checked at start: a service declaring 768
    // dimensions against a server giving 384 does not start.
    let mismatched = wait_for_state(&kernel, "mismatched", ServiceState::Failed).await;
    assert!(
        mismatched.contains("384 dimensions") && mismatched.contains("dimensions = 768"),
        "{mismatched}"
    );
    let engines = kernel.metrics().await.engines;
    let remote = engines
        .iter()
        .find(|engine| engine.service == "remote")
        .expect("the remote engine is listed");
    assert_eq!(remote.dimensions, 384);
    assert!(
        remote
            .provider
            .starts_with("remote:openai http://127.0.0.1:"),
        "{remote:?}"
    );

    // The same model, here and there: the same vectors.
    for text in TEXTS {
        let near = vector(kernel.submit(submission("near", text)).await);
        let far = vector(kernel.submit(submission("far", text)).await);
        assert_eq!(near.len(), far.len());
        let similarity = cosine(&near, &far);
        assert!(similarity >= 0.999, "{text:?}: cosine {similarity}");
    }

    // Both share the shared stage's work when requests overlap.
    let answers = futures_join(&kernel, "both", 32).await;
    assert!(
        answers
            .iter()
            .all(|answer| answer.outcome.kind().as_str() == "ok")
    );
    let batchers = kernel.metrics().await.batchers;
    let items = |service: &str| {
        batchers
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, stats)| stats.items)
            .unwrap_or_default()
    };
    assert!(
        items("remote") > TEXTS.len() as u64,
        "remote took a share: {batchers:#?}"
    );
    assert!(
        items("local") > TEXTS.len() as u64,
        "local took a share: {batchers:#?}"
    );

    // Kill the server: the shared stage goes on with the local engine.
    let mut events = kernel.subscribe(false);
    let pid = kernel
        .services()
        .iter()
        .find(|service| service.name == "infinity")
        .and_then(|service| service.pid)
        .expect("infinity's pid");
    // SAFETY: kill(2) on the process group the supervisor made for it.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    let answers = futures_join(&kernel, "both", 16).await;
    for answer in &answers {
        assert_eq!(answer.outcome.kind().as_str(), "ok", "{:?}", answer.outcome);
    }
    loop {
        match events.recv().await {
            Some(KernelEvent::Service(event))
                if event.service == "infinity" && event.to == ServiceState::Failed =>
            {
                break;
            }
            Some(_) => {}
            None => panic!("the kernel stopped"),
        }
    }
    let answers = futures_join(&kernel, "both", 8).await;
    assert!(
        answers
            .iter()
            .all(|answer| answer.outcome.kind().as_str() == "ok")
    );
    kernel.shutdown();
    kernel.wait().await.expect("stops");
}

/// Waits on events until `service` is in `state`; its reason then.
async fn wait_for_state(kernel: &Kernel, service: &str, state: ServiceState) -> String {
    let mut events = kernel.subscribe(false);
    loop {
        if let Some(status) = kernel
            .services()
            .into_iter()
            .find(|status| status.name == service && status.state == state)
        {
            return status.reason;
        }
        if events.recv().await.is_none() {
            panic!("the kernel stopped: {:#?}", kernel.services());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_fails_the_start_with_the_reason() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("remote.lua");
    std::fs::write(
        &file,
        format!(
            r#"local s = require("spindle")
s.service "remote" {{
  embedding = {{ url = "http://127.0.0.1:{port}", model = "m" }},
  ready = s.tcp_probe {{ address = "127.0.0.1:1" }},
  restart = {{ policy = "no" }},
}}
"#
        ),
    )
    .expect("write");
    let kernel = Kernel::start(
        KernelSource::Script(file),
        KernelConfig {
            remote_engines: Some(Arc::new(RemoteBackend::new())),
            until_shutdown: true,
            ..KernelConfig::default()
        },
    )
    .expect("starts");
    let reason = wait_for_state(&kernel, "remote", ServiceState::Failed).await;
    assert!(reason.contains("cannot reach"), "{reason}");
    assert!(reason.contains("Connection refused"), "{reason}");
    assert!(reason.contains("hint:"), "{reason}");
    kernel.shutdown();
    kernel.wait().await.expect("stops");
}

/// `count` requests at once to `pipeline`; their answers.
async fn futures_join(kernel: &Kernel, pipeline: &str, count: usize) -> Vec<RequestAnswer> {
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..count {
        let kernel = kernel.clone();
        let text = format!("{} #{idx}", TEXTS[idx % TEXTS.len()]);
        let pipeline = pipeline.to_owned();
        tasks.spawn(async move { kernel.submit(submission(&pipeline, &text)).await });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.expect("task"));
    }
    answers
}
