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

/// The promise of one REPLY for `request_id`. [`Obligation::answer`] keeps
/// it; dropping it unkept sends an EIO reply at once.
pub(super) struct Obligation {
    link: Link,
    counters: Arc<BridgeCounters>,
    request_id: u64,
    seq: u32,
    kept: bool,
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
        }
    }

    pub(super) async fn answer(mut self, reply: Reply) {
        self.kept = true;
        let status = reply.status;
        let datagram = codec::encode(&Message::Reply(reply), self.link.header(0, self.seq));
        // Counted before the send, so whoever sees the reply sees the count.
        count(&self.counters, status);
        if let Err(error) = self
            .link
            .socket
            .send(&datagram, self.link.kernel_port)
            .await
        {
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
