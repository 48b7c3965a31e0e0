//! The kernel's event stream loses nothing silently: a subscriber that
//! reads promptly sees every service event in order; one that falls behind
//! gets an explicit "lagged" marker with a snapshot, and from then on only
//! newer events, so its view of the services ends equal to the kernel's.

use std::collections::BTreeMap;
use std::time::Duration;

use spindle_kernel::supervisor::ServiceState;
use spindle_kernel::{
    Kernel, KernelConfig, KernelEvent, KernelSnapshot, KernelSource, KernelSubscription,
};

/// Twenty services that start and run until stopped: about sixty events
/// to start, sixty more to stop, against a buffer of eight.
fn script() -> String {
    let mut script = String::from("local s = require(\"spindle\")\n");
    for idx in 0..20 {
        script.push_str(&format!(
            "s.service \"svc{idx:02}\" {{ command = {{ \"sleep\", \"600\" }} }}\n"
        ));
    }
    script
}

/// A subscriber's view of the services, built only from what it received.
#[derive(Default)]
struct View {
    states: BTreeMap<String, ServiceState>,
    events: usize,
    resyncs: usize,
}

impl View {
    /// Starts from a snapshot (not counted as a resync).
    fn from(snapshot: &KernelSnapshot) -> View {
        View {
            states: states_of(snapshot),
            ..View::default()
        }
    }

    fn apply(&mut self, event: KernelEvent) {
        match event {
            KernelEvent::Service(event) => {
                if let Some(previous) = self.states.get(&event.service) {
                    assert_eq!(
                        *previous, event.from,
                        "events of {} arrive in order",
                        event.service
                    );
                }
                self.states.insert(event.service, event.to);
                self.events += 1;
            }
            KernelEvent::Lagged { snapshot, missed } => {
                assert!(missed > 0);
                self.resyncs += 1;
                self.states = states_of(&snapshot);
            }
            _ => {}
        }
    }

    fn all(&self, state: ServiceState) -> bool {
        self.states.len() == 20 && self.states.values().all(|known| *known == state)
    }
}

fn states_of(snapshot: &KernelSnapshot) -> BTreeMap<String, ServiceState> {
    snapshot
        .services
        .iter()
        .map(|service| (service.name.clone(), service.state))
        .collect()
}

fn kernel_states(kernel: &Kernel) -> BTreeMap<String, ServiceState> {
    kernel
        .services()
        .into_iter()
        .map(|service| (service.name, service.state))
        .collect()
}

/// Generous: only a kernel that stopped making progress waits this long.
const PATIENCE: Duration = Duration::from_secs(60);

/// Reads until every service is in `state`. A stream that goes quiet before
/// fails the test with both views instead of hanging it (a run in CI once
/// stopped with 9 of the 20 services started and every thread idle).
async fn read_until(
    kernel: &Kernel,
    subscription: &mut KernelSubscription,
    view: &mut View,
    state: ServiceState,
) {
    while !view.all(state) {
        let Ok(event) = tokio::time::timeout(PATIENCE, subscription.recv()).await else {
            let kernel_view: Vec<String> = kernel
                .services()
                .into_iter()
                .map(|service| {
                    format!(
                        "{}: {:?} ({}; {} restarts)",
                        service.name, service.state, service.reason, service.restarts
                    )
                })
                .collect();
            panic!(
                "no event for {PATIENCE:?} before every service was {state:?}\n\
                 the subscriber's view: {:?}\nthe kernel's:\n{}",
                view.states,
                kernel_view.join("\n")
            );
        };
        view.apply(event.expect("the stream goes on"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_told_it_lagged_and_resynchronised() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kernel.lua");
    std::fs::write(&file, script()).expect("write");
    let kernel = Kernel::start(
        KernelSource::Script(file),
        KernelConfig {
            event_buffer: 8,
            ..KernelConfig::default()
        },
    )
    .expect("starts");
    // Services start with the kernel: each view starts from a snapshot and
    // the events after it (a plain subscription would miss what went by
    // before it, as one CI run did for four services).
    let (start, mut prompt) = kernel.watch(false);
    let (slow_start, mut slow) = kernel.watch(false);
    let mut prompt_view = View::from(&start);
    read_until(&kernel, &mut prompt, &mut prompt_view, ServiceState::Ready).await;

    // The slow one reads only now: far more than eight events went by.
    let mut slow_view = View::from(&slow_start);
    let first = slow.recv().await.expect("an event");
    assert!(
        matches!(first, KernelEvent::Lagged { .. }),
        "the first thing a lagging subscriber hears is that it lagged: {first:?}"
    );
    slow_view.apply(first);
    assert!(
        slow_view.all(ServiceState::Ready),
        "the snapshot is current"
    );
    assert_eq!(slow_view.states, kernel_states(&kernel));

    kernel.shutdown();
    let outcome = kernel.wait().await.expect("a clean stop");
    assert!(outcome.is_success());
    // Both streams carry the stops and then end.
    for (subscription, view) in [(&mut prompt, &mut prompt_view), (&mut slow, &mut slow_view)] {
        while let Some(event) = subscription.recv().await {
            view.apply(event);
        }
        assert_eq!(view.states, kernel_states(&kernel));
        assert!(view.all(ServiceState::Stopped));
    }
    // The prompt subscriber either saw every event after its snapshot or
    // was told it did not (this graph has no pipelines: every event is a
    // service's).
    let after_start = kernel.snapshot().as_of - start.as_of;
    assert!(
        prompt_view.resyncs > 0 || prompt_view.events as u64 == after_start,
        "{} events seen of {after_start}",
        prompt_view.events
    );
}

/// A subscription from `start_subscribed` is taken before any service
/// starts: each service's first event leaves `Pending`, and the events
/// alone (with a buffer large enough not to lag) build the kernel's view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_taken_at_start_sees_every_first_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kernel.lua");
    std::fs::write(&file, script()).expect("write");
    let (kernel, first) =
        Kernel::start_subscribed(KernelSource::Script(file), KernelConfig::default(), false)
            .expect("starts");
    let mut events = first.events;
    let mut view = View::default();
    let mut first_from = BTreeMap::new();
    while !view.all(ServiceState::Ready) {
        let Ok(event) = tokio::time::timeout(PATIENCE, events.recv()).await else {
            panic!("no event for {PATIENCE:?}; the view: {:?}", view.states);
        };
        let event = event.expect("the stream goes on");
        if let KernelEvent::Service(service) = &event {
            first_from
                .entry(service.service.clone())
                .or_insert(service.from);
        }
        view.apply(event);
    }
    assert_eq!(view.resyncs, 0, "a buffer of 4,096 events does not lag");
    assert_eq!(first_from.len(), 20);
    assert!(
        first_from
            .values()
            .all(|from| *from == ServiceState::Pending),
        "{first_from:?}"
    );
    assert_eq!(view.states, kernel_states(&kernel));
    kernel.shutdown();
    assert!(kernel.wait().await.expect("a clean stop").is_success());
}
