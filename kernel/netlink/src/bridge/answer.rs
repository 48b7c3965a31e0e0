//! From the kernel's answer to the wire's REPLY, and the obligation that
//! makes every admitted request get exactly one REPLY even when its task
//! ends early (a panic, a shutdown).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::kernel_handle::RequestAnswer;
use spindle_scheduler::{FailureClass, Outcome, Priority, RejectReason};

use crate::codec;
use crate::message::{Message, Reply, ReplyStatus, WireError, WirePriority};
use crate::protocol::{errno, limit};
use crate::transport::Link;

use tokio_util::task::task_tracker::TaskTrackerToken;

use super::BridgeCounters;

pub(super) fn priority(priority: WirePriority) -> Priority {
    match priority {
        WirePriority::High => Priority::High,
        WirePriority::Medium => Priority::Medium,
        WirePriority::Low => Priority::Low,
    }
}

/// The REPLY for the kernel's one answer.
pub(super) fn reply(request_id: u64, answer: RequestAnswer) -> Reply {
    match answer.outcome {
        Outcome::Ok(pipeline_answer) => Reply {
            request_id,
            status: ReplyStatus::Ok,
            vector: pipeline_answer.vector.unwrap_or_default(),
            error: None,
        },
        Outcome::Error(error) => {
            let text = match &error.site {
                Some(site) if !site.file.is_empty() => {
                    format!("{} ({}:{})", error.message, site.file, site.line)
                }
                _ => error.message.clone(),
            };
            match error.class {
                FailureClass::Permanent => {
                    failure(request_id, ReplyStatus::Error, errno::EIO, &text)
                }
                FailureClass::Transient => {
                    failure(request_id, ReplyStatus::Error, errno::EAGAIN, &text)
                }
                // Refused for now without trying (a breaker, a service that
                // is starting): the kernel's caller may try again.
                FailureClass::Unavailable { .. } => {
                    failure(request_id, ReplyStatus::Busy, errno::EBUSY, &text)
                }
            }
        }
        Outcome::Timeout => failure(
            request_id,
            ReplyStatus::Timeout,
            errno::ETIMEDOUT,
            "deadline exceeded",
        ),
        Outcome::Rejected(RejectReason::QueueFull) => failure(
            request_id,
            ReplyStatus::Busy,
            errno::EBUSY,
            "the pipeline's queue for this priority is full",
        ),
        Outcome::Rejected(RejectReason::ShuttingDown) => failure(
            request_id,
            ReplyStatus::Error,
            errno::ESHUTDOWN,
            "the daemon is shutting down",
        ),
        Outcome::Cancelled(_) => failure(
            request_id,
            ReplyStatus::Cancelled,
            errno::ECANCELED,
            "cancelled",
        ),
    }
}

/// A failed REPLY; the text is cut to the protocol's limit on a character
/// boundary.
pub(super) fn failure(request_id: u64, status: ReplyStatus, code: u32, text: &str) -> Reply {
    let mut end = text.len().min(limit::ERROR_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = if text.is_empty() {
        "failed"
    } else {
        &text[..end]
    };
    Reply {
        request_id,
        status,
        vector: Vec::new(),
        error: Some(WireError {
            code,
            text: text.replace('\0', " "),
        }),
    }
}

/// The promise of one REPLY for `request_id`. [`Obligation::answer`] or
/// [`Obligation::answer_now`] keeps it; dropping it unkept sends an EIO
/// reply at once. While it holds a tracker's token (`tracked_by`), the
/// bridge's drain waits for it.
pub(super) struct Obligation {
    link: Link,
    counters: Arc<BridgeCounters>,
    request_id: u64,
    seq: u32,
    kept: bool,
    _tracked: Option<TaskTrackerToken>,
}

impl Obligation {
    pub(super) fn new(
        link: Link,
        counters: Arc<BridgeCounters>,
        request_id: u64,
        seq: u32,
    ) -> Obligation {
        Obligation {
            link,
            counters,
            request_id,
            seq,
            kept: false,
            _tracked: None,
        }
    }

    /// This obligation, counted by `token`'s tracker until it is kept or
    /// dropped.
    pub(super) fn tracked_by(mut self, token: TaskTrackerToken) -> Obligation {
        self._tracked = Some(token);
        self
    }

    pub(super) async fn answer(mut self, reply: Reply) {
        let (datagram, status) = self.keep(reply);
        self.send(datagram, status).await;
    }

    /// [`Obligation::answer`] without waiting, for a caller that must not
    /// block (the scheduler's task, where the kernel's answer is made):
    /// sends at once, or, when the socket has no room, from a task of its
    /// own once it has.
    pub(super) fn answer_now(mut self, reply: Reply) {
        let (datagram, status) = self.keep(reply);
        match self.link.socket.try_send(&datagram, self.link.kernel_port) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::spawn(self.send(datagram, status));
            }
            sent => self.sent(sent, status),
        }
    }

    /// Sends the kept REPLY, waiting while the socket is full.
    async fn send(self, datagram: Vec<u8>, status: ReplyStatus) {
        let sent = self
            .link
            .socket
            .send(&datagram, self.link.kernel_port)
            .await;
        self.sent(sent, status);
    }

    /// Marks the obligation kept and encodes its REPLY, counted before the
    /// send so that whoever sees the reply sees the count.
    fn keep(&mut self, reply: Reply) -> (Vec<u8>, ReplyStatus) {
        self.kept = true;
        let status = reply.status;
        let datagram = codec::encode(&Message::Reply(reply), self.link.header(0, self.seq));
        count(&self.counters, status);
        (datagram, status)
    }

    /// Takes the count back when the send failed.
    fn sent(&self, sent: std::io::Result<()>, status: ReplyStatus) {
        if let Err(error) = sent {
            tracing::warn!(
                request = self.request_id,
                "netlink: could not send the reply: {error}"
            );
            uncount(&self.counters, status);
            self.counters.unanswered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Obligation {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let reply = failure(
            self.request_id,
            ReplyStatus::Error,
            errno::EIO,
            "the bridge dropped the request before its answer",
        );
        let datagram = codec::encode(&Message::Reply(reply), self.link.header(0, self.seq));
        match self.link.socket.try_send(&datagram, self.link.kernel_port) {
            Ok(()) => count(&self.counters, ReplyStatus::Error),
            Err(_) => {
                self.counters.unanswered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub(super) fn count(counters: &BridgeCounters, status: ReplyStatus) {
    counter_of(counters, status).fetch_add(1, Ordering::Relaxed);
}

fn uncount(counters: &BridgeCounters, status: ReplyStatus) {
    counter_of(counters, status).fetch_sub(1, Ordering::Relaxed);
}

fn counter_of(counters: &BridgeCounters, status: ReplyStatus) -> &std::sync::atomic::AtomicU64 {
    match status {
        ReplyStatus::Ok => &counters.replied_ok,
        ReplyStatus::Error => &counters.replied_error,
        ReplyStatus::Timeout => &counters.replied_timeout,
        ReplyStatus::Busy => &counters.busy,
        ReplyStatus::Cancelled => &counters.replied_cancelled,
    }
}
