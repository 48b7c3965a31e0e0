//! A kernel in one process, as the request-path tests and the pipeline
//! benchmark need it: a script on its host, the `embedder` service's real
//! engine, the request path, and optionally the HTTP front end.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::sync::{Arc, Mutex};

use spindle_kernel::embedding::{EmbeddingRuntime, EngineDirectory};
use spindle_kernel::http::{HttpConfig, serve};
use spindle_kernel::requests::{EffectsWiring, RequestPath, RequestPathConfig};
use spindle_kernel::status::StatusBoard;
use spindle_kernel::supervisor::{InProcessRuntime, InProcessService};
use spindle_scripting::ScriptHost;
use tokio_util::sync::CancellationToken;

/// The running pieces; dropping it asks everything to stop.
pub struct InProcess {
    pub path: Arc<RequestPath>,
    pub shutdown: CancellationToken,
    _engine: Mutex<Box<dyn InProcessService>>,
    _dir: tempfile::TempDir,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Evaluates `script`, starts the engine of its service `embedder` (only
/// that one: other embedding services stay down), and the request path.
pub async fn start_in_process(script: &str, config: RequestPathConfig) -> InProcess {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kernel.lua");
    std::fs::write(&file, script).expect("write script");
    let directory = EngineDirectory::default();
    let wiring = EffectsWiring::new(directory.clone());
    let (host, evaluation) = ScriptHost::start_with(&file, wiring.effects()).expect("host");
    let graph = evaluation.graph.expect("valid script");
    let engine = EmbeddingRuntime {
        directory,
        cache: None,
    }
    .start(graph.service("embedder").expect("declared"))
    .await
    .expect("the engine starts (run `make setup` to fetch the model)");
    let shutdown = CancellationToken::new();
    let path = Arc::new(RequestPath::start(
        &graph,
        host,
        wiring,
        config,
        shutdown.clone(),
    ));
    InProcess {
        path,
        shutdown,
        _engine: Mutex::new(engine),
        _dir: dir,
    }
}

impl InProcess {
    /// Serves the request path on a loopback port; returns `http://ADDR`.
    pub async fn serve_http(&self, config: HttpConfig) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(serve(
            listener,
            self.path.clone(),
            StatusBoard::default(),
            config,
            self.shutdown.clone(),
        ));
        base
    }
}
