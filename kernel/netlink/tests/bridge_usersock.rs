//! The bridge against a real kernel (the script host, the scheduler, the
//! request path) and a real peer over NETLINK_USERSOCK sockets: exactly
//! one reply per request, the busy window, cancel, malformed requests
//! answered, version mismatch, re-registration and the drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use spindle_kernel::{Kernel, KernelConfig, KernelSource};
use spindle_netlink::codec::{self, NLM_F_REQUEST};
use spindle_netlink::message::{Cancel, Message, ReplyStatus, Request, WirePriority};
use spindle_netlink::peer::{Peer, PeerConfig};
use spindle_netlink::protocol::{USERSOCK_FAMILY_ID, attr, command, errno};
use spindle_netlink::{BridgeConfig, BridgeCounters, Error, TransportConfig};
use tokio_util::sync::CancellationToken;

/// `noop` answers at once; `stuck` needs an embedding service that never
/// starts (it waits for `never`, whose readiness probe never passes), so
/// its requests stay queued until their deadline or a cancel.
const SCRIPT: &str = r#"local s = require("spindle")
s.service "never" {
  command = { "sleep", "600" },
  ready = s.exec_probe { command = { "false" }, period = "1s" },
}
s.service "missing" {
  embedding = { model = "paraphrase-MiniLM-L3-v2", threads = 1 },
  depends_on = { never = "healthy" },
}
s.pipeline "noop" {
  from = { s.netlink { family = "spindle" } },
  s.stage("pass", function(req) return req end),
}
s.pipeline "stuck" {
  from = { s.netlink { family = "spindle" } },
  s.stage("embed", s.embed "missing"),
}
s.pipeline "http_only" { s.stage("pass", function(req) return req end) }
"#;

const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    kernel: Kernel,
    peer: Peer,
    bridge: tokio::task::JoinHandle<Result<(), Error>>,
    shutdown: CancellationToken,
    counters: Arc<BridgeCounters>,
    _kill: KillOnDrop,
    _dir: tempfile::TempDir,
}

/// Stops the kernel at once when a test ends, however it ends.
struct KillOnDrop(Kernel);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill_now();
    }
}

async fn start(configure: impl FnOnce(&mut BridgeConfig), peer_version: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("kernel.lua");
    std::fs::write(&script, SCRIPT).unwrap();
    let kernel =
        Kernel::start(KernelSource::Script(script), KernelConfig::default()).expect("kernel");
    let mut peer = Peer::bind(0).expect("peer");
    peer.version = peer_version;
    let mut config = BridgeConfig {
        transport: TransportConfig::Usersock {
            peer_port: peer.port(),
        },
        heartbeat_interval: Duration::from_millis(100),
        reconnect_delay: Duration::from_millis(20),
        ..BridgeConfig::default()
    };
    configure(&mut config);
    let counters = config.counters.clone();
    let shutdown = CancellationToken::new();
    let bridge = tokio::spawn(spindle_netlink::serve(
        kernel.clone(),
        config,
        shutdown.clone(),
    ));
    Fixture {
        _kill: KillOnDrop(kernel.clone()),
        kernel,
        peer,
        bridge,
        shutdown,
        counters,
        _dir: dir,
    }
}

fn request(request_id: u64, pipeline: &str, deadline_ms: u32) -> Message {
    Message::Request(Request {
        request_id,
        priority: WirePriority::Medium,
        deadline_ms,
        pipeline: pipeline.to_owned(),
        payload: "hello".to_owned(),
    })
}

async fn next_reply(peer: &mut Peer) -> spindle_netlink::message::Reply {
    loop {
        match peer
            .next_message(WAIT)
            .await
            .expect("a message from the bridge")
        {
            Ok(Message::Reply(reply)) => return reply,
            Ok(_) => continue,
            Err(error) => panic!("malformed message from the bridge: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_exactly_one_answer() {
    let mut fixture = start(|_| {}, 1).await;
    let daemon = fixture.peer.accept(WAIT, &mut 0).await.expect("register");
    let mut served: Vec<&str> = daemon
        .register
        .serves
        .iter()
        .map(|serve| serve.pipeline.as_str())
        .collect();
    served.sort();
    assert_eq!(
        served,
        ["noop", "stuck"],
        "only pipelines with a netlink source register"
    );
    let report = fixture
        .peer
        .drive(&PeerConfig {
            requests: 2000,
            window: 64,
            pipeline: "noop".to_owned(),
            expect_dims: Some(0),
            ..PeerConfig::default()
        })
        .await
        .expect("drive");
    assert!(report.passed(), "{}", report.table());
    assert_eq!(
        report.by_status.get("ok"),
        Some(&2000),
        "{}",
        report.table()
    );
    assert_eq!(BridgeCounters::get(&fixture.counters.requests), 2000);
    assert_eq!(fixture.counters.settled(), 2000);
    fixture.shutdown.cancel();
    fixture.bridge.await.unwrap().expect("clean exit");
}

/// The benchmark's latency pinger: one request at a time with the thread
/// blocked in between, every answer checked as `drive` checks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_at_a_time_pings_get_one_answer_each() {
    let mut fixture = start(|_| {}, 1).await;
    fixture.peer.accept(WAIT, &mut 0).await.expect("register");
    let config = |pipeline: &str, requests| PeerConfig {
        requests,
        pipeline: pipeline.to_owned(),
        expect_dims: Some(0),
        ..PeerConfig::default()
    };
    let peer = &mut fixture.peer;
    let (ok, refused) = tokio::task::block_in_place(|| {
        (
            peer.ping(&config("noop", 500)).expect("ping"),
            peer.ping(&config("http_only", 3)).expect("ping"),
        )
    });
    assert!(ok.passed(), "{}", ok.table());
    assert_eq!(ok.by_status.get("ok"), Some(&500), "{}", ok.table());
    assert_eq!(ok.latencies.len(), 500);
    // A pipeline without a netlink source is answered with an error, once
    // per request, and the error's text is in the report.
    assert!(refused.passed(), "{}", refused.table());
    assert_eq!(refused.answered, 3, "{}", refused.table());
    assert_eq!(refused.by_status.get("ok"), None, "{}", refused.table());
    assert!(
        refused
            .problems
            .iter()
            .any(|problem| problem.contains("http_only")),
        "{}",
        refused.table()
    );
    assert_eq!(fixture.counters.settled(), 503);
    fixture.shutdown.cancel();
    fixture.bridge.await.unwrap().expect("clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_answers_busy_and_cancel_reaches_the_pipeline() {
    let mut fixture = start(|config| config.max_inflight = 2, 1).await;
    fixture.peer.accept(WAIT, &mut 0).await.expect("register");
    for id in 1..=2 {
        fixture
            .peer
            .send(&request(id, "stuck", 60_000), NLM_F_REQUEST, id as u32)
            .await
            .unwrap();
    }
    // The third finds the window full: BUSY at once, while 1 and 2 wait.
    fixture
        .peer
        .send(&request(3, "stuck", 60_000), NLM_F_REQUEST, 3)
        .await
        .unwrap();
    let reply = next_reply(&mut fixture.peer).await;
    assert_eq!((reply.request_id, reply.status), (3, ReplyStatus::Busy));
    assert_eq!(
        reply.error.as_ref().map(|error| error.code),
        Some(errno::EBUSY)
    );
    for id in 1..=2u64 {
        fixture
            .peer
            .send(
                &Message::Cancel(Cancel { request_id: id }),
                NLM_F_REQUEST,
                10,
            )
            .await
            .unwrap();
    }
    let mut cancelled = [
        next_reply(&mut fixture.peer).await,
        next_reply(&mut fixture.peer).await,
    ];
    cancelled.sort_by_key(|reply| reply.request_id);
    for (reply, id) in cancelled.iter().zip(1..) {
        assert_eq!(
            (reply.request_id, reply.status),
            (id, ReplyStatus::Cancelled),
            "{reply:?}"
        );
    }
    // The window is free again.
    fixture
        .peer
        .send(&request(4, "noop", 60_000), NLM_F_REQUEST, 4)
        .await
        .unwrap();
    let reply = next_reply(&mut fixture.peer).await;
    assert_eq!((reply.request_id, reply.status), (4, ReplyStatus::Ok));
    assert_eq!(fixture.counters.settled(), 4);
    fixture.shutdown.cancel();
    fixture.bridge.await.unwrap().expect("clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unroutable_requests_are_answered_not_lost() {
    let mut fixture = start(|_| {}, 1).await;
    fixture.peer.accept(WAIT, &mut 0).await.expect("register");
    // A request whose priority is out of range: answered EINVAL.
    let mut bad = codec::encode(
        &request(42, "noop", 1000),
        fixture.peer.header(NLM_F_REQUEST, 1),
    );
    let priority_at = find_attr(&bad, attr::PRIORITY);
    bad[priority_at + 4] = 9;
    fixture.peer.send_raw(&bad).await.unwrap();
    let reply = next_reply(&mut fixture.peer).await;
    assert_eq!((reply.request_id, reply.status), (42, ReplyStatus::Error));
    let error = reply.error.expect("error");
    assert_eq!(error.code, errno::EINVAL);
    assert!(error.text.contains("PRIORITY"), "{}", error.text);
    // Pipelines without a netlink source, and unknown ones: ENOENT.
    for (id, pipeline) in [(43, "http_only"), (44, "nonexistent")] {
        fixture
            .peer
            .send(&request(id, pipeline, 1000), NLM_F_REQUEST, 2)
            .await
            .unwrap();
        let reply = next_reply(&mut fixture.peer).await;
        assert_eq!((reply.request_id, reply.status), (id, ReplyStatus::Error));
        assert_eq!(reply.error.map(|error| error.code), Some(errno::ENOENT));
    }
    // No time left: TIMEOUT at once.
    fixture
        .peer
        .send(&request(45, "noop", 0), NLM_F_REQUEST, 3)
        .await
        .unwrap();
    let reply = next_reply(&mut fixture.peer).await;
    assert_eq!((reply.request_id, reply.status), (45, ReplyStatus::Timeout));
    // Junk that is no request: reported back with an ERROR message.
    let mut junk = vec![0u8; 24];
    junk[..4].copy_from_slice(&24u32.to_ne_bytes());
    junk[4..6].copy_from_slice(&USERSOCK_FAMILY_ID.to_ne_bytes());
    junk[16] = command::EVENT;
    junk[17] = 1;
    fixture.peer.send_raw(&junk).await.unwrap();
    loop {
        match fixture
            .peer
            .next_message(WAIT)
            .await
            .expect("an answer to the junk")
        {
            Ok(Message::Error(report)) => {
                assert_eq!(report.error.code, errno::EINVAL);
                break;
            }
            Ok(_) => continue,
            Err(error) => panic!("{error}"),
        }
    }
    assert_eq!(BridgeCounters::get(&fixture.counters.rejected_malformed), 1);
    assert_eq!(BridgeCounters::get(&fixture.counters.malformed), 1);
    assert_eq!(fixture.counters.settled(), 4);
    fixture.shutdown.cancel();
    fixture.bridge.await.unwrap().expect("clean exit");
}

fn find_attr(message: &[u8], kind: u16) -> usize {
    let mut at = 20;
    while at + 4 <= message.len() {
        let len = u16::from_ne_bytes([message[at], message[at + 1]]) as usize;
        if u16::from_ne_bytes([message[at + 2], message[at + 3]]) == kind {
            return at;
        }
        at += (len + 3) & !3;
    }
    panic!("attribute {kind} not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_the_kernel_refuses_stops_the_bridge_with_the_reason() {
    let mut fixture = start(|_| {}, 2).await;
    let mut refused = 0;
    let accepted = fixture
        .peer
        .accept(Duration::from_millis(300), &mut refused)
        .await;
    assert!(
        accepted.is_err(),
        "a version-1 daemon must not be accepted by a version-2 peer"
    );
    assert_eq!(refused, 1);
    let error = fixture
        .bridge
        .await
        .unwrap()
        .expect_err("the bridge gives up");
    assert!(
        matches!(error, Error::VersionMismatch { version: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("hint:"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_registers_again_when_the_kernel_side_comes_back() {
    let mut fixture = start(|_| {}, 1).await;
    let first = fixture.peer.accept(WAIT, &mut 0).await.expect("register");
    let port = fixture.peer.port();
    // The kernel side goes away (a module unload) and comes back.
    drop(std::mem::replace(
        &mut fixture.peer,
        Peer::bind(0).expect("placeholder"),
    ));
    let mut peer = loop {
        // The old port is free once the socket closed.
        if let Ok(peer) = Peer::bind(port) {
            break peer;
        }
        tokio::task::yield_now().await;
    };
    let second = peer.accept(WAIT, &mut 0).await.expect("registered again");
    assert_eq!(first.register.instance_id, second.register.instance_id);
    peer.send(&request(1, "noop", 1000), NLM_F_REQUEST, 1)
        .await
        .unwrap();
    let reply = next_reply(&mut peer).await;
    assert_eq!(reply.status, ReplyStatus::Ok);
    assert!(BridgeCounters::get(&fixture.counters.registrations) >= 2);
    fixture.shutdown.cancel();
    fixture.bridge.await.unwrap().expect("clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_unregisters_then_answers_what_is_in_flight() {
    let mut fixture = start(|_| {}, 1).await;
    fixture.peer.accept(WAIT, &mut 0).await.expect("register");
    fixture
        .peer
        .send(&request(7, "stuck", 60_000), NLM_F_REQUEST, 1)
        .await
        .unwrap();
    // Wait until the bridge took it.
    while BridgeCounters::get(&fixture.counters.requests) == 0 {
        tokio::task::yield_now().await;
    }
    fixture.shutdown.cancel();
    match fixture.peer.next_message(WAIT).await.expect("UNREGISTER") {
        Ok(Message::Unregister(_)) => {}
        other => panic!("expected UNREGISTER first, got {other:?}"),
    }
    // The kernel drains too: the request is answered, not dropped.
    fixture.kernel.shutdown();
    let reply = next_reply(&mut fixture.peer).await;
    assert_eq!(reply.request_id, 7);
    // The kernel's own answer during its shutdown (today an error from the
    // embed stage, "shutting down"); what matters is that it is one answer.
    assert_ne!(reply.status, ReplyStatus::Ok, "{reply:?}");
    assert!(reply.error.is_some(), "{reply:?}");
    fixture.bridge.await.unwrap().expect("clean exit");
    assert_eq!(fixture.counters.settled(), 1);
}
