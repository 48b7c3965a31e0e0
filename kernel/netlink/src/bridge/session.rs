//! One registered session: the receive loop, heartbeats, and the tasks that
//! answer requests. The session ends on shutdown or when the kernel is
//! lost (silence past the heartbeat budget, a failure ack to a heartbeat,
//! a send that finds nobody listening).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::kernel_handle::Submission;
use spindle_scheduler::Source;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{self, DecodeError, Frame, NLM_F_REQUEST};
use crate::kernel_handle::KernelHandle;
use crate::message::{
    Direction, ErrorReport, Heartbeat, Message, Registered, ReplyStatus, Request, Serve,
    Unregister, WireError,
};
use crate::protocol::{command, errno, limit};
use crate::transport::Link;

use super::answer::{self, Obligation};
use super::{BridgeConfig, BridgeCounters};

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// What every session and request task shares.
pub(super) struct Shared {
    pub kernel: KernelHandle,
    pub config: BridgeConfig,
    pub counters: Arc<BridgeCounters>,
    pub serves: Vec<Serve>,
    pub instance_id: u64,
    pub inflight: AtomicU32,
    seq: AtomicU32,
}

impl Shared {
    pub fn new(
        kernel: KernelHandle,
        config: BridgeConfig,
        serves: Vec<Serve>,
        instance_id: u64,
    ) -> Shared {
        Shared {
            kernel,
            counters: config.counters.clone(),
            config,
            serves,
            instance_id,
            inflight: AtomicU32::new(0),
            seq: AtomicU32::new(1),
        }
    }

    pub fn next_seq(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
}

pub(super) async fn run(
    link: &Link,
    shared: &Arc<Shared>,
    registered: Registered,
    early: Vec<Frame>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let window = registered.max_inflight.min(shared.config.max_inflight);
    let interval = shared.config.heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + interval, interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heartbeat_seqs: Vec<u32> = Vec::new();
    let mut buffer = vec![0u8; limit::MESSAGE];
    for frame in early {
        if let Err(why) = on_frame(link, shared, frame, window, tasks, &heartbeat_seqs).await {
            return SessionEnd::Lost(why);
        }
    }
    // Heartbeat periods with nothing heard from the kernel. Counted per
    // period rather than by clock, so a stall of this process (a stopped
    // daemon, a busy machine) is not mistaken for the kernel's silence.
    let mut silent_periods = 0u32;
    let mut heard = false;
    let budget = shared.config.heartbeat_misses.max(1);
    loop {
        tokio::select! {
            // Fixed order: each branch above `recv` is ready rarely, so none
            // starves; `recv` runs whenever the others are idle.
            biased;
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            _ = heartbeat.tick() => {
                if heard {
                    silent_periods = 0;
                } else {
                    silent_periods += 1;
                }
                heard = false;
                if silent_periods > budget {
                    return SessionEnd::Lost(format!("no word from the kernel for {silent_periods} heartbeat periods"));
                }
                let seq = shared.next_seq();
                let message = Message::Heartbeat(Heartbeat {
                    seq: u64::from(seq),
                    inflight: Some(shared.inflight.load(Ordering::Relaxed)),
                });
                if let Err(error) = link.send(&message, 0, seq).await {
                    return SessionEnd::Lost(format!("heartbeat could not be sent: {error}"));
                }
                shared.counters.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
                heartbeat_seqs.push(seq);
                if heartbeat_seqs.len() > 16 {
                    heartbeat_seqs.remove(0);
                }
            }
            received = link.socket.recv_spinning(&mut buffer, receive_spin()) => {
                let received = match received {
                    Ok(received) => received,
                    Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                        // The receive buffer overflowed: messages were lost.
                        // The kernel bounds what it sends by the window, so
                        // this means the window is larger than the buffer.
                        tracing::error!("netlink: receive buffer overflow; lower the in-flight window");
                        continue;
                    }
                    Err(error) => return SessionEnd::Lost(format!("receive failed: {error}")),
                };
                if received.port != link.kernel_port {
                    // Only the kernel (or the peer playing it) may talk to us.
                    shared.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                heard = true;
                if received.full_len > received.len {
                    shared.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("netlink: dropped a {}-byte message larger than the protocol allows", received.full_len);
                    continue;
                }
                let idle = shared.inflight.load(Ordering::Relaxed) == 0;
                for frame in codec::decode(&buffer[..received.len], link.family_id, Direction::ToDaemon) {
                    let outcome = match frame {
                        Ok(frame) => on_frame(link, shared, frame, window, tasks, &heartbeat_seqs).await,
                        Err(error) => {
                            on_malformed(link, shared, error).await;
                            Ok(())
                        }
                    };
                    if let Err(why) = outcome {
                        return SessionEnd::Lost(why);
                    }
                }
                // With nothing else in flight, the scheduler's task takes the
                // new request first: the next receive would find nothing,
                // and the kernel's caller waits for the answer. Under load,
                // the session receives on: more requests are likely waiting.
                if idle {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// How long the session looks for the next datagram before it lets its
/// thread sleep ([`crate::socket::NetlinkSocket::recv_spinning`]): not at
/// all where this thread has one CPU, since the sender could not run while
/// it spins.
fn receive_spin() -> Duration {
    if spindle_scripting::spinning_pays() {
        RECEIVE_SPIN
    } else {
        Duration::ZERO
    }
}

/// Long enough for a kernel caller's next request behind the answer to its
/// last, or for the next of a burst.
const RECEIVE_SPIN: Duration = Duration::from_micros(50);

/// Handles one well-formed frame; `Err` ends the session.
async fn on_frame(
    link: &Link,
    shared: &Arc<Shared>,
    frame: Frame,
    window: u32,
    tasks: &TaskTracker,
    heartbeat_seqs: &[u32],
) -> Result<(), String> {
    match frame {
        Frame::Genl { header, message } => match message {
            Message::Request(request) => {
                on_request(link, shared, request, header.seq, window, tasks).await;
                Ok(())
            }
            Message::Cancel(cancel) => {
                shared.counters.cancels.fetch_add(1, Ordering::Relaxed);
                // Its REQUEST, handled before, was admitted then: the
                // kernel finds it unless it is answered already.
                let kernel = shared.kernel.clone();
                let correlation = correlation_id(cancel.request_id);
                tasks.spawn(async move {
                    kernel.cancel(&correlation).await;
                });
                Ok(())
            }
            Message::Heartbeat(heartbeat) => {
                if header.flags & NLM_F_REQUEST != 0 {
                    // The kernel asks: echo it.
                    let echo = Message::Heartbeat(Heartbeat {
                        seq: heartbeat.seq,
                        inflight: Some(shared.inflight.load(Ordering::Relaxed)),
                    });
                    let datagram = codec::encode(
                        &echo,
                        codec::Header {
                            flags: 0,
                            ..link.header(0, header.seq)
                        },
                    );
                    link.socket
                        .send(&datagram, link.kernel_port)
                        .await
                        .map_err(|error| format!("heartbeat echo could not be sent: {error}"))?;
                } else {
                    shared
                        .counters
                        .heartbeats_answered
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            Message::Error(report) => {
                tracing::warn!(
                    request = ?report.request_id,
                    "netlink: the kernel reports error {}: {}",
                    report.error.code,
                    report.error.text
                );
                Ok(())
            }
            // Answers this session did not ask for, events: nothing to do.
            _ => Ok(()),
        },
        Frame::Ack {
            acked_seq,
            error,
            text,
            ..
        } => {
            if error == 0 {
                return Ok(());
            }
            if heartbeat_seqs.contains(&acked_seq) {
                return Err(format!(
                    "the kernel refused a heartbeat ({}): {}",
                    -error,
                    text.unwrap_or_default()
                ));
            }
            // A reply the kernel no longer wanted (timed out, cancelled).
            shared.counters.late_replies.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Frame::Other { .. } => Ok(()),
    }
}

async fn on_request(
    link: &Link,
    shared: &Arc<Shared>,
    request: Request,
    seq: u32,
    window: u32,
    tasks: &TaskTracker,
) {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let request_id = request.request_id;
    let immediate = if !shared
        .serves
        .iter()
        .any(|serve| serve.pipeline == request.pipeline)
    {
        Some(answer::failure(
            request_id,
            ReplyStatus::Error,
            errno::ENOENT,
            &format!(
                "pipeline `{}` is not served over netlink family `{}` by this instance",
                request.pipeline, shared.config.family
            ),
        ))
    } else if shared.inflight.load(Ordering::Relaxed) >= window {
        Some(answer::failure(
            request_id,
            ReplyStatus::Busy,
            errno::EBUSY,
            "the daemon's in-flight window is full",
        ))
    } else if request.deadline_ms == 0 {
        Some(answer::failure(
            request_id,
            ReplyStatus::Timeout,
            errno::ETIMEDOUT,
            "the request arrived with no time left",
        ))
    } else {
        None
    };
    let obligation = Obligation::new(link.clone(), shared.counters.clone(), request_id, seq);
    if let Some(reply) = immediate {
        obligation.answer(reply).await;
        return;
    }
    shared.inflight.fetch_add(1, Ordering::Relaxed);
    /// Frees the window slot however the request ends.
    struct InflightSlot(Arc<Shared>);
    impl Drop for InflightSlot {
        fn drop(&mut self) {
            self.0.inflight.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let slot = InflightSlot(shared.clone());
    // Admitted before this returns, so a CANCEL behind it finds it; the
    // answer is sent from where the kernel makes it, and until then the
    // obligation keeps shutdown's drain waiting.
    let obligation = obligation.tracked_by(tasks.token());
    shared.kernel.submit_then(
        Submission {
            pipeline: request.pipeline,
            text: request.payload,
            priority: answer::priority(request.priority),
            deadline: Some(Duration::from_millis(u64::from(request.deadline_ms))),
            correlation_id: Some(correlation_id(request_id)),
            source: Source::Netlink,
        },
        move |answer| {
            obligation.answer_now(answer::reply(request_id, answer));
            drop(slot);
        },
    );
}

/// The kernel's correlation id of a netlink request.
fn correlation_id(request_id: u64) -> String {
    format!("netlink:{request_id}")
}

/// A message that failed validation: counted and logged; a request is
/// answered EINVAL so it does not wait for its deadline; anything else is
/// reported to the kernel with an ERROR message.
async fn on_malformed(link: &Link, shared: &Shared, error: DecodeError) {
    tracing::warn!("netlink: {error}");
    let text = error.reason.to_string();
    if error.command == Some(command::REQUEST)
        && let Some(request_id) = error.request_id
    {
        shared.counters.requests.fetch_add(1, Ordering::Relaxed);
        let reply = answer::failure(request_id, ReplyStatus::Error, errno::EINVAL, &text);
        let datagram = codec::encode(&Message::Reply(reply), link.header(0, error.seq));
        // Counted before the send, so whoever sees the reply sees the count.
        shared
            .counters
            .rejected_malformed
            .fetch_add(1, Ordering::Relaxed);
        if link.socket.send(&datagram, link.kernel_port).await.is_err() {
            shared
                .counters
                .rejected_malformed
                .fetch_sub(1, Ordering::Relaxed);
            shared.counters.unanswered.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    shared.counters.malformed.fetch_add(1, Ordering::Relaxed);
    let report = answer::failure(0, ReplyStatus::Error, errno::EINVAL, &text)
        .error
        .unwrap_or(WireError {
            code: errno::EINVAL,
            text: "malformed".to_owned(),
        });
    let message = Message::Error(ErrorReport {
        error: report,
        request_id: error.request_id,
    });
    let _ = link.send(&message, 0, error.seq).await;
}

/// Shutdown: UNREGISTER so the kernel sends nothing new, then answer what
/// is in flight (within each request's deadline), then return; closing the
/// socket afterwards releases the port.
pub(super) async fn drain(link: &Link, shared: &Arc<Shared>, tasks: &TaskTracker) {
    let message = Message::Unregister(Unregister {
        instance_id: shared.instance_id,
    });
    match link
        .send(&message, codec::NLM_F_ACK, shared.next_seq())
        .await
    {
        Ok(()) => {}
        // The kernel side is gone already: nothing to unregister from.
        Err(error) if error.raw_os_error() == Some(libc::ECONNREFUSED) => {
            tracing::debug!("netlink: the kernel side is gone; nothing to unregister")
        }
        Err(error) => tracing::warn!("netlink: could not unregister: {error}"),
    }
    let mut buffer = vec![0u8; limit::MESSAGE];
    // Closed, the tracker's `wait` ends once its last task has.
    tasks.close();
    loop {
        tokio::select! {
            _ = tasks.wait() => return,
            received = link.socket.recv(&mut buffer) => {
                // Requests that crossed the UNREGISTER: answer them at once.
                let Ok(received) = received else { continue };
                if received.port != link.kernel_port || received.full_len > received.len {
                    continue;
                }
                for frame in codec::decode(&buffer[..received.len], link.family_id, Direction::ToDaemon) {
                    if let Ok(Frame::Genl { header, message: Message::Request(request) }) = frame {
                        shared.counters.requests.fetch_add(1, Ordering::Relaxed);
                        let reply = answer::failure(
                            request.request_id,
                            ReplyStatus::Error,
                            errno::ESHUTDOWN,
                            "the daemon is shutting down",
                        );
                        Obligation::new(link.clone(), shared.counters.clone(), request.request_id, header.seq)
                            .answer(reply)
                            .await;
                    }
                }
            }
        }
    }
}
