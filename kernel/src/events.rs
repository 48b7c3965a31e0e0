//! The kernel's event stream: service state changes and pipeline readiness
//! changes in one numbered sequence, plus (on request) the scheduler's
//! request lifecycle events, for every front end.
//!
//! Nothing is lost silently. The hub task takes the supervisor's events
//! from an unbounded channel (complete and in order), applies each to the
//! [`ServiceBoard`] and publishes it with its sequence number. A
//! subscriber that falls behind the bounded broadcast gets
//! [`KernelEvent::Lagged`] with a snapshot of the board as of a sequence
//! number, and from then on only the events after that snapshot, so its
//! view is correct again. Request events come straight from the scheduler
//! (no hop when nobody listens); a gap there is reported the same way.

use std::sync::Arc;

use spindle_scheduler::{Gate, RequestEvent, SchedulerHandle};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::services::{KernelSnapshot, ServiceBoard};
use crate::supervisor::{Event, LogLine, ProbeResult};

/// One thing that happened in the kernel.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelEvent {
    /// A service changed state.
    Service(Event),
    /// A pipeline's readiness changed: open (served), closed (its requests
    /// wait), failed (its requests are answered with the reason).
    Pipeline { name: String, gate: Gate },
    /// A request was admitted, started, paused, resumed or answered (only
    /// for subscriptions that asked for request events).
    Request(RequestEvent),
    /// This subscriber fell behind and missed `missed` events. `snapshot`
    /// is the state now; the events that follow continue from it.
    Lagged {
        missed: u64,
        snapshot: Box<KernelSnapshot>,
    },
    /// Request events were dropped for this subscriber (it fell behind);
    /// live requests can be listed again with `Kernel::requests`.
    RequestsLagged { missed: u64 },
}

/// An event with its place in the sequence.
#[derive(Debug, Clone)]
pub(crate) struct Numbered {
    pub(crate) seq: u64,
    pub(crate) event: KernelEvent,
}

/// Log lines kept for slow readers.
const LOG_BUFFER: usize = 8192;

/// A subscription to the kernel's events; see the module documentation.
#[derive(Debug)]
pub struct KernelSubscription {
    board: Arc<ServiceBoard>,
    events: broadcast::Receiver<Arc<Numbered>>,
    requests: Option<broadcast::Receiver<RequestEvent>>,
    /// After a resync: events up to this number are in the snapshot.
    skip_until: u64,
    /// The service events have ended (request events may go on).
    events_closed: bool,
}

impl KernelSubscription {
    /// Skips the service and pipeline events up to `as_of` (a snapshot's):
    /// the board applies each event before it is published.
    pub(crate) fn after(mut self, as_of: u64) -> KernelSubscription {
        self.skip_until = as_of;
        self
    }

    /// The next event; `None` once the kernel has stopped and everything
    /// was delivered.
    pub async fn recv(&mut self) -> Option<KernelEvent> {
        loop {
            let received = match (&mut self.requests, self.events_closed) {
                (Some(requests), false) => tokio::select! {
                    biased;
                    event = self.events.recv() => Received::Kernel(event),
                    request = requests.recv() => Received::Request(request),
                },
                // A graph whose services all came to rest still answers
                // requests: their events go on.
                (Some(requests), true) => Received::Request(requests.recv().await),
                (None, false) => Received::Kernel(self.events.recv().await),
                (None, true) => return None,
            };
            match received {
                Received::Kernel(Ok(numbered)) => {
                    if numbered.seq <= self.skip_until {
                        continue;
                    }
                    return Some(numbered.event.clone());
                }
                Received::Kernel(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    let snapshot = self.board.snapshot();
                    self.skip_until = snapshot.as_of;
                    return Some(KernelEvent::Lagged {
                        missed,
                        snapshot: Box::new(snapshot),
                    });
                }
                Received::Kernel(Err(broadcast::error::RecvError::Closed)) => {
                    self.events_closed = true;
                }
                Received::Request(Ok(event)) => return Some(KernelEvent::Request(event)),
                Received::Request(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    return Some(KernelEvent::RequestsLagged { missed });
                }
                Received::Request(Err(broadcast::error::RecvError::Closed)) => {
                    self.requests = None;
                }
            }
        }
    }
}

enum Received {
    Kernel(Result<Arc<Numbered>, broadcast::error::RecvError>),
    Request(Result<RequestEvent, broadcast::error::RecvError>),
}

/// Where subscriptions come from; kept by the kernel. It holds weak
/// senders only, so that the streams end when the hub task ends, and so
/// that an event is dropped as soon as every subscriber has read it. (A
/// receiver kept here and never read would keep the last `buffer` events
/// and `LOG_BUFFER` log lines alive for good: on a long run, RSS rose while
/// they filled.)
#[derive(Debug)]
pub(crate) struct Subscriptions {
    board: Arc<ServiceBoard>,
    events: broadcast::WeakSender<Arc<Numbered>>,
    logs: broadcast::WeakSender<LogLine>,
}

impl Subscriptions {
    pub(crate) fn subscribe(
        &self,
        scheduler: Option<&crate::requests::RequestScheduler>,
    ) -> KernelSubscription {
        KernelSubscription {
            board: self.board.clone(),
            events: subscribe_or_closed(&self.events),
            requests: scheduler.map(SchedulerHandle::subscribe),
            skip_until: 0,
            events_closed: false,
        }
    }

    pub(crate) fn subscribe_logs(&self) -> broadcast::Receiver<LogLine> {
        subscribe_or_closed(&self.logs)
    }
}

/// A receiver from the channel's tail, or one that is closed at once when
/// the hub has ended.
fn subscribe_or_closed<T: Clone>(sender: &broadcast::WeakSender<T>) -> broadcast::Receiver<T> {
    match sender.upgrade() {
        Some(sender) => sender.subscribe(),
        None => broadcast::channel(1).1,
    }
}

/// The publishing side: the hub task.
#[derive(Debug)]
pub(crate) struct EventHub {
    board: Arc<ServiceBoard>,
    events: broadcast::Sender<Arc<Numbered>>,
    logs: broadcast::Sender<LogLine>,
}

impl EventHub {
    /// `buffer`: how many events a subscriber may fall behind before it is
    /// resynchronised from a snapshot.
    pub(crate) fn new(board: Arc<ServiceBoard>, buffer: usize) -> (EventHub, Subscriptions) {
        let (events, _) = broadcast::channel(buffer.max(1));
        let (logs, _) = broadcast::channel(LOG_BUFFER);
        let subscriptions = Subscriptions {
            board: board.clone(),
            events: events.downgrade(),
            logs: logs.downgrade(),
        };
        (
            EventHub {
                board,
                events,
                logs,
            },
            subscriptions,
        )
    }

    /// Runs until the supervisor drops its senders: keeps output lines and
    /// probe results on the board for the status views, applies each
    /// service event to the board, opens and closes pipeline gates in the
    /// scheduler, and publishes everything in order. `done` is cancelled
    /// when both inputs have ended.
    pub(crate) async fn run(
        self,
        mut service_events: mpsc::UnboundedReceiver<Event>,
        mut log_lines: mpsc::UnboundedReceiver<LogLine>,
        mut probe_results: mpsc::UnboundedReceiver<ProbeResult>,
        scheduler: crate::requests::RequestScheduler,
        done: CancellationToken,
    ) {
        let mut seq = 0_u64;
        let mut logs_open = true;
        let mut events_open = true;
        let mut probes_open = true;
        while events_open || logs_open || probes_open {
            tokio::select! {
                event = service_events.recv(), if events_open => match event {
                    Some(event) => {
                        seq += 1;
                        let changes = self.board.apply(seq, &event);
                        let _ = self.events.send(Arc::new(Numbered {
                            seq,
                            event: KernelEvent::Service(event),
                        }));
                        for (name, gate) in changes {
                            scheduler.set_gate(&name, gate.clone());
                            seq += 1;
                            self.board.advance(seq);
                            let _ = self.events.send(Arc::new(Numbered {
                                seq,
                                event: KernelEvent::Pipeline { name, gate },
                            }));
                        }
                    }
                    None => events_open = false,
                },
                line = log_lines.recv(), if logs_open => match line {
                    Some(line) => {
                        let logs = &self.logs;
                        self.board.record_log(&line, || {
                            let _ = logs.send(line.clone());
                        });
                    }
                    None => logs_open = false,
                },
                result = probe_results.recv(), if probes_open => match result {
                    Some(result) => self.board.record_probe(result),
                    None => probes_open = false,
                },
            }
        }
        done.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::LogStream;
    use spindle_scripting::{GraphSpec, SettingsSpec};

    fn hub() -> (EventHub, Subscriptions) {
        let graph = GraphSpec {
            file: "graph.lua".into(),
            services: Vec::new(),
            pipelines: Vec::new(),
            settings: SettingsSpec::default(),
        };
        EventHub::new(Arc::new(ServiceBoard::new(&graph)), 16)
    }

    fn line(text: &str) -> LogLine {
        LogLine {
            service: "web".to_owned(),
            stream: LogStream::Stdout,
            line: text.to_owned(),
        }
    }

    #[tokio::test]
    async fn a_line_every_subscriber_has_read_is_not_kept() {
        let (hub, subscriptions) = hub();
        // Published with nobody subscribed: nothing keeps it.
        let _ = hub.logs.send(line("before"));
        assert_eq!(hub.logs.len(), 0);
        let mut follower = subscriptions.subscribe_logs();
        hub.logs.send(line("seen")).expect("one subscriber");
        assert_eq!(hub.logs.len(), 1, "kept until the subscriber reads it");
        assert_eq!(follower.recv().await.expect("the line").line, "seen");
        assert_eq!(hub.logs.len(), 0, "dropped once read");
    }

    #[tokio::test]
    async fn subscriptions_end_when_the_hub_has_ended() {
        let (hub, subscriptions) = hub();
        let mut before = subscriptions.subscribe_logs();
        drop(hub);
        assert!(matches!(
            before.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
        let mut after = subscriptions.subscribe_logs();
        assert!(matches!(
            after.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
    }
}
