//! A userspace peer that plays the kernel module over NETLINK_USERSOCK:
//! it accepts a daemon's REGISTER (refusing a protocol version it does not
//! speak with EPROTO, as the module does), sends requests at a rate and
//! priority mix, checks every answer (exactly one per request, the vector's
//! dimensions and norm), answers heartbeats, and reports throughput and
//! latency percentiles. `spindle netlink-peer`, the tests and the benchmark
//! use it; hosts without the module can too.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::codec::{self, Frame, Header, NLM_F_REQUEST};
use crate::error::Error;
use crate::message::{
    Direction, Heartbeat, Message, Register, Registered, ReplyStatus, Request, WirePriority,
};
use crate::pingpong::percentile;
use crate::protocol::{PROTOCOL_VERSION, USERSOCK_FAMILY_ID, feature, limit};
use crate::socket::NetlinkSocket;
use crate::sys;

/// Relative weights of the three priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityMix {
    pub high: u32,
    pub medium: u32,
    pub low: u32,
}

impl Default for PriorityMix {
    fn default() -> Self {
        PriorityMix {
            high: 1,
            medium: 2,
            low: 1,
        }
    }
}

impl std::str::FromStr for PriorityMix {
    type Err = Error;

    /// `HIGH:MEDIUM:LOW` weights, e.g. `1:2:1`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<Option<u32>> = text.split(':').map(|part| part.parse().ok()).collect();
        match parts.as_slice() {
            [Some(high), Some(medium), Some(low)] if high + medium + low > 0 => Ok(PriorityMix {
                high: *high,
                medium: *medium,
                low: *low,
            }),
            _ => Err(Error::Config {
                message: format!("priority mix `{text}` is not HIGH:MEDIUM:LOW"),
                hint: "give three weights, e.g. `1:2:1` (not all zero)",
            }),
        }
    }
}

impl PriorityMix {
    /// The priority of the `index`-th request: a fixed interleaving that
    /// follows the weights exactly over each cycle.
    pub fn pick(&self, index: u64) -> WirePriority {
        let total = u64::from(self.high + self.medium + self.low);
        let slot = index % total.max(1);
        if slot < u64::from(self.high) {
            WirePriority::High
        } else if slot < u64::from(self.high + self.medium) {
            WirePriority::Medium
        } else {
            WirePriority::Low
        }
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub requests: u64,
    /// Requests per second; `None` sends as fast as the window allows.
    pub rate: Option<f64>,
    /// Requests outstanding at once.
    pub window: u32,
    pub mix: PriorityMix,
    pub pipeline: String,
    /// Texts, used in turn.
    pub texts: Vec<String>,
    pub deadline_ms: u32,
    /// Every ok answer must carry this many dimensions.
    pub expect_dims: Option<u32>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            requests: 1000,
            rate: None,
            window: 64,
            mix: PriorityMix::default(),
            pipeline: "ingest".to_owned(),
            texts: vec!["The quick brown fox jumps over the lazy dog.".to_owned()],
            deadline_ms: 5000,
            expect_dims: None,
        }
    }
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct PeerReport {
    pub sent: u64,
    pub answered: u64,
    pub by_status: BTreeMap<&'static str, u64>,
    /// Replies for ids never sent or already answered.
    pub unknown_replies: u64,
    /// Requests without a reply at the end.
    pub missing: u64,
    /// Ok answers whose vector had the wrong size or norm.
    pub bad_vectors: u64,
    /// Messages from the daemon that failed validation.
    pub malformed: u64,
    pub heartbeats: u64,
    pub elapsed: Duration,
    /// Round trip of every answered request, sorted.
    pub latencies: Vec<Duration>,
    /// The first few problems, for the report.
    pub problems: Vec<String>,
}

impl PeerReport {
    /// Every request got exactly one well-formed answer.
    pub fn passed(&self) -> bool {
        self.missing == 0
            && self.unknown_replies == 0
            && self.bad_vectors == 0
            && self.malformed == 0
    }

    pub fn throughput(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, fraction: f64) -> Duration {
        percentile(&self.latencies, fraction)
    }

    /// A short table for people.
    pub fn table(&self) -> String {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(status, count)| format!("{status} {count}"))
            .collect();
        let micros = |fraction| self.percentile(fraction).as_secs_f64() * 1e6;
        let mut text = format!(
            "sent {}  answered {}  missing {}  unknown {}  bad vectors {}  malformed {}\n\
             statuses: {}\n\
             {:.0} requests/s over {:.3} s; latency p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  max {:.1} us\n",
            self.sent,
            self.answered,
            self.missing,
            self.unknown_replies,
            self.bad_vectors,
            self.malformed,
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(", ")
            },
            self.throughput(),
            self.elapsed.as_secs_f64(),
            micros(0.5),
            micros(0.9),
            micros(0.99),
            micros(1.0),
        );
        for problem in &self.problems {
            text.push_str(&format!("problem: {problem}\n"));
        }
        text
    }

    pub fn to_json(&self) -> serde_json::Value {
        let micros = |fraction| self.percentile(fraction).as_secs_f64() * 1e6;
        serde_json::json!({
            "sent": self.sent,
            "answered": self.answered,
            "missing": self.missing,
            "unknown_replies": self.unknown_replies,
            "bad_vectors": self.bad_vectors,
            "malformed": self.malformed,
            "statuses": self.by_status,
            "requests_per_second": self.throughput(),
            "p50_us": micros(0.5),
            "p90_us": micros(0.9),
            "p99_us": micros(0.99),
            "max_us": micros(1.0),
            "passed": self.passed(),
        })
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < 10 {
            self.problems.push(text);
        }
    }
}

/// The registered daemon.
#[derive(Debug, Clone)]
pub struct Daemon {
    pub port: u32,
    pub register: Register,
}

/// The peer: one NETLINK_USERSOCK socket at a known port.
pub struct Peer {
    socket: NetlinkSocket,
    daemon: Option<Daemon>,
    /// The protocol version this peer speaks.
    pub version: u32,
    next_id: u64,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("port", &self.socket.port())
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Binds NETLINK_USERSOCK at `port` (0: any).
    pub fn bind(port: u32) -> Result<Peer, Error> {
        let socket = NetlinkSocket::open(sys::NETLINK_USERSOCK, port)
            .map_err(|source| Error::io("binding the peer's NETLINK_USERSOCK port", source))?;
        Ok(Peer {
            socket,
            daemon: None,
            version: PROTOCOL_VERSION,
            next_id: 1,
            buffer: vec![0u8; limit::MESSAGE + 4096],
        })
    }

    pub fn port(&self) -> u32 {
        self.socket.port()
    }

    pub fn daemon(&self) -> Option<&Daemon> {
        self.daemon.as_ref()
    }

    /// Waits for a daemon to register and answers it as the module would.
    /// A REGISTER this peer refuses (another version, a missing required
    /// feature) is answered EPROTO and counted in `refused`; waiting goes
    /// on until one is accepted or `timeout` passes.
    pub async fn accept(&mut self, timeout: Duration, refused: &mut u32) -> Result<Daemon, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let Ok(received) =
                tokio::time::timeout_at(deadline, self.socket.recv(&mut self.buffer)).await
            else {
                return Err(Error::NoAnswer {
                    what: "a daemon's REGISTER",
                    millis: timeout.as_millis(),
                    hint: "start the daemon with `--transport usersock:PORT` naming this peer's port",
                });
            };
            let received = received.map_err(|source| Error::io("receiving", source))?;
            let frames = codec::decode(
                &self.buffer[..received.len],
                USERSOCK_FAMILY_ID,
                Direction::ToKernel,
            );
            for frame in frames {
                let Ok(Frame::Genl {
                    header,
                    message: Message::Register(register),
                }) = frame
                else {
                    continue;
                };
                let mut answer = Vec::new();
                if register.version != self.version
                    || register.features & feature::REQUIRED != feature::REQUIRED
                {
                    *refused += 1;
                    codec::encode_ack(
                        &mut answer,
                        header,
                        received.port,
                        -libc::EPROTO,
                        &format!(
                            "protocol version {} features {:#x} refused: this side speaks version {} and needs {:#x}",
                            register.version,
                            register.features,
                            self.version,
                            feature::REQUIRED
                        ),
                    );
                    let _ = self.socket.send(&answer, received.port).await;
                    continue;
                }
                let registered = Registered {
                    version: self.version,
                    features: register.features & feature::ALL,
                    instance_id: register.instance_id,
                    max_inflight: register.max_inflight.min(limit::MAX_INFLIGHT),
                };
                codec::encode_into(
                    &mut answer,
                    &Message::Registered(registered),
                    Header {
                        kind: USERSOCK_FAMILY_ID,
                        flags: 0,
                        seq: header.seq,
                        port: self.socket.port(),
                    },
                );
                codec::encode_ack(&mut answer, header, received.port, 0, "");
                self.socket
                    .send(&answer, received.port)
                    .await
                    .map_err(|source| Error::io("answering REGISTER", source))?;
                let daemon = Daemon {
                    port: received.port,
                    register,
                };
                self.daemon = Some(daemon.clone());
                return Ok(daemon);
            }
        }
    }

    /// Sends raw bytes to the daemon (tests send hostile messages).
    pub async fn send_raw(&self, datagram: &[u8]) -> Result<(), Error> {
        let port = self.daemon_port()?;
        self.socket
            .send(datagram, port)
            .await
            .map_err(|source| Error::io("sending to the daemon", source))
    }

    /// A header for a message from this peer.
    pub fn header(&self, flags: u16, seq: u32) -> Header {
        Header {
            kind: USERSOCK_FAMILY_ID,
            flags,
            seq,
            port: self.socket.port(),
        }
    }

    /// Sends one message to the daemon.
    pub async fn send(&self, message: &Message, flags: u16, seq: u32) -> Result<(), Error> {
        self.send_raw(&codec::encode(message, self.header(flags, seq)))
            .await
    }

    /// The next message from the daemon, answering its heartbeats and
    /// UNREGISTER on the way; `None` after `timeout`.
    pub async fn next_message(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<Message, codec::DecodeError>> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = tokio::time::timeout_at(deadline, self.socket.recv(&mut self.buffer))
                .await
                .ok()?
                .ok()?;
            let frames = codec::decode(
                &self.buffer[..received.len],
                USERSOCK_FAMILY_ID,
                Direction::ToKernel,
            );
            for frame in frames {
                match frame {
                    Ok(Frame::Genl { header, message }) => {
                        if self
                            .answer_housekeeping(header, &message, received.port)
                            .await
                        {
                            continue;
                        }
                        return Some(Ok(message));
                    }
                    Ok(_) => continue,
                    Err(error) => return Some(Err(error)),
                }
            }
        }
    }

    /// Heartbeats and UNREGISTER get the module's answers; true when the
    /// message needs nothing more (a heartbeat; UNREGISTER is still
    /// returned to the caller after its ack).
    async fn answer_housekeeping(&mut self, header: Header, message: &Message, port: u32) -> bool {
        if let Some(answer) = self.housekeeping_answer(header, message, port) {
            let _ = self.socket.send(&answer, port).await;
        }
        matches!(message, Message::Heartbeat(_)) && header.flags & NLM_F_REQUEST != 0
    }

    /// The module's answer to a heartbeat (its echo) or an UNREGISTER (an
    /// ack); `None` for anything else.
    fn housekeeping_answer(&self, header: Header, message: &Message, port: u32) -> Option<Vec<u8>> {
        match message {
            Message::Heartbeat(heartbeat) if header.flags & NLM_F_REQUEST != 0 => {
                let echo = Message::Heartbeat(Heartbeat {
                    seq: heartbeat.seq,
                    inflight: None,
                });
                Some(codec::encode(&echo, self.header(0, header.seq)))
            }
            Message::Unregister(_) => {
                let mut ack = Vec::new();
                codec::encode_ack(&mut ack, header, port, 0, "");
                Some(ack)
            }
            _ => None,
        }
    }

    fn daemon_port(&self) -> Result<u32, Error> {
        self.daemon
            .as_ref()
            .map(|daemon| daemon.port)
            .ok_or(Error::Config {
                message: "no daemon has registered".to_owned(),
                hint: "call accept first",
            })
    }

    /// A fresh request id.
    pub fn next_request_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends `config.requests` requests and checks every answer. Ends when
    /// all are answered, or when the last deadline plus one second passed
    /// (what is unanswered then is `missing`).
    pub async fn drive(&mut self, config: &PeerConfig) -> Result<PeerReport, Error> {
        let (port, grace) = self.run_settings(config)?;
        let mut report = PeerReport::default();
        let mut outstanding: HashMap<u64, Instant> = HashMap::new();
        let start = Instant::now();
        let mut last_sent = start;
        let mut sent: u64 = 0;
        let mut datagram = Vec::with_capacity(2048);
        let window = config.window.max(1) as usize;
        let interval = config
            .rate
            .filter(|rate| *rate > 0.0)
            .map(|rate| Duration::from_secs_f64(1.0 / rate));
        while report.answered + report.missing < config.requests {
            // Send what the window and the rate allow.
            while sent < config.requests && outstanding.len() < window {
                if let Some(interval) = interval {
                    let due = start + interval.mul_f64(sent as f64);
                    if Instant::now() < due {
                        break;
                    }
                }
                let request_id = self.encode_request(&mut datagram, config, sent);
                let now = Instant::now();
                self.socket
                    .send(&datagram, port)
                    .await
                    .map_err(|source| Error::io("sending a request to the daemon", source))?;
                outstanding.insert(request_id, now);
                last_sent = now;
                sent += 1;
            }
            report.sent = sent;
            if sent == config.requests && outstanding.is_empty() {
                break;
            }
            // Wait for answers until the next send is due.
            let wake = match interval {
                Some(interval) if sent < config.requests && outstanding.len() < window => {
                    start + interval.mul_f64(sent as f64)
                }
                _ => last_sent + grace,
            };
            let received =
                match tokio::time::timeout_at(wake, self.socket.recv(&mut self.buffer)).await {
                    Ok(received) => {
                        received.map_err(|source| Error::io("receiving from the daemon", source))?
                    }
                    Err(_) => {
                        if sent == config.requests && Instant::now() >= last_sent + grace {
                            report.missing = outstanding.len() as u64;
                            for id in outstanding.keys().take(3) {
                                report.problem(format!("request {id} got no answer"));
                            }
                            break;
                        }
                        continue;
                    }
                };
            let answered_at = Instant::now();
            for (datagram, port) in self.settle(
                received.len,
                received.port,
                answered_at,
                &mut outstanding,
                &mut report,
                config.expect_dims,
            ) {
                let _ = self.socket.send(&datagram, port).await;
            }
        }
        report.elapsed = start.elapsed();
        report.latencies.sort();
        Ok(report)
    }

    /// Sends `config.requests` requests one at a time, blocking this thread
    /// between a request and its answer as the raw ping-pong does (no
    /// runtime in the timed path), and checks every answer as
    /// [`Peer::drive`] does. For timing the daemon's round trip against
    /// the raw floor; the window and the rate of `config` are not used.
    /// Must not run while a task awaits this peer's socket.
    pub fn ping(&mut self, config: &PeerConfig) -> Result<PeerReport, Error> {
        let (port, grace) = self.run_settings(config)?;
        // Each answer is awaited in one blocking receive, as the raw
        // pinger's is; the socket goes back to the runtime's readiness
        // after, however the run ended.
        self.socket
            .block_receives(Some(grace))
            .map_err(|source| Error::io("making the peer's receives block", source))?;
        let result = self.ping_blocking(config, port, grace);
        let restored = self
            .socket
            .block_receives(None)
            .map_err(|source| Error::io("making the peer's receives non-blocking again", source));
        let report = result?;
        restored?;
        Ok(report)
    }

    fn ping_blocking(
        &mut self,
        config: &PeerConfig,
        port: u32,
        grace: Duration,
    ) -> Result<PeerReport, Error> {
        let mut report = PeerReport::default();
        let mut outstanding: HashMap<u64, Instant> = HashMap::new();
        let mut datagram = Vec::with_capacity(2048);
        let start = Instant::now();
        for sent in 0..config.requests {
            let request_id = self.encode_request(&mut datagram, config, sent);
            let sent_at = Instant::now();
            self.socket
                .try_send(&datagram, port)
                .map_err(|source| Error::io("sending a request to the daemon", source))?;
            outstanding.insert(request_id, sent_at);
            report.sent = sent + 1;
            while outstanding.contains_key(&request_id) {
                // Each receive waits up to `grace`, and none starts once
                // `grace` has passed since the send.
                let received = if Instant::now() < sent_at + grace {
                    self.socket
                        .recv_blocking(&mut self.buffer)
                        .map_err(|source| Error::io("receiving from the daemon", source))?
                } else {
                    None
                };
                let Some(received) = received else {
                    report.missing += 1;
                    report.problem(format!("request {request_id} got no answer"));
                    outstanding.remove(&request_id);
                    break;
                };
                let answered_at = Instant::now();
                for (answer, to) in self.settle(
                    received.len,
                    received.port,
                    answered_at,
                    &mut outstanding,
                    &mut report,
                    config.expect_dims,
                ) {
                    let _ = self.socket.try_send(&answer, to);
                }
            }
        }
        report.elapsed = start.elapsed();
        report.latencies.sort();
        Ok(report)
    }

    /// The daemon's port and how long to wait for an answer past its
    /// deadline, for a run of `config`; an error when no daemon has
    /// registered or `config` has no texts.
    fn run_settings(&self, config: &PeerConfig) -> Result<(u32, Duration), Error> {
        let port = self.daemon_port()?;
        if config.texts.is_empty() {
            return Err(Error::Config {
                message: "no texts to send".to_owned(),
                hint: "give at least one text",
            });
        }
        let grace = Duration::from_millis(u64::from(config.deadline_ms)) + Duration::from_secs(1);
        Ok((port, grace))
    }

    /// Writes the `sent`-th REQUEST of `config` into `datagram` (its text
    /// and priority in turn) under a fresh request id, which it returns.
    fn encode_request(&mut self, datagram: &mut Vec<u8>, config: &PeerConfig, sent: u64) -> u64 {
        let request_id = self.next_request_id();
        datagram.clear();
        codec::encode_into(
            datagram,
            &Message::Request(Request {
                request_id,
                priority: config.mix.pick(sent),
                deadline_ms: config.deadline_ms,
                pipeline: config.pipeline.clone(),
                payload: config.texts[(sent as usize) % config.texts.len()].clone(),
            }),
            self.header(NLM_F_REQUEST, request_id as u32),
        );
        request_id
    }

    /// Settles the `len` bytes in the buffer from `port`: each REPLY
    /// against `outstanding` (exactly one per request, its vector checked),
    /// each problem into `report`. Returns the datagrams to send back
    /// (heartbeat echoes, UNREGISTER acks) with their ports.
    fn settle(
        &self,
        len: usize,
        port: u32,
        answered_at: Instant,
        outstanding: &mut HashMap<u64, Instant>,
        report: &mut PeerReport,
        expect_dims: Option<u32>,
    ) -> Vec<(Vec<u8>, u32)> {
        let mut answers = Vec::new();
        for frame in codec::decode(&self.buffer[..len], USERSOCK_FAMILY_ID, Direction::ToKernel) {
            match frame {
                Ok(Frame::Genl {
                    message: Message::Reply(reply),
                    ..
                }) => {
                    let Some(sent_at) = outstanding.remove(&reply.request_id) else {
                        report.unknown_replies += 1;
                        report.problem(format!(
                            "reply for request {} that is not outstanding",
                            reply.request_id
                        ));
                        continue;
                    };
                    report.answered += 1;
                    report.latencies.push(answered_at - sent_at);
                    *report.by_status.entry(reply.status.as_str()).or_default() += 1;
                    if reply.status == ReplyStatus::Ok {
                        if let Some(problem) = check_vector(&reply.vector, expect_dims) {
                            report.bad_vectors += 1;
                            report.problem(format!("request {}: {problem}", reply.request_id));
                        }
                    } else if let Some(error) = &reply.error
                        && !matches!(reply.status, ReplyStatus::Busy)
                    {
                        report.problem(format!(
                            "request {}: {} ({}): {}",
                            reply.request_id,
                            reply.status.as_str(),
                            error.code,
                            error.text
                        ));
                    }
                }
                Ok(Frame::Genl { header, message }) => {
                    if matches!(message, Message::Heartbeat(_)) {
                        report.heartbeats += 1;
                    }
                    if let Some(answer) = self.housekeeping_answer(header, &message, port) {
                        answers.push((answer, port));
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    report.malformed += 1;
                    report.problem(error.to_string());
                }
            }
        }
        answers
    }
}

fn check_vector(vector: &[f32], expect_dims: Option<u32>) -> Option<String> {
    if let Some(dims) = expect_dims
        && vector.len() != dims as usize
    {
        return Some(format!("{} dimensions, expected {dims}", vector.len()));
    }
    if vector.is_empty() {
        return None;
    }
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    if (norm - 1.0).abs() > 1e-3 {
        return Some(format!("the vector's norm is {norm}, not 1"));
    }
    None
}
