//! A circuit breaker for one service: closed → open after
//! `failure_threshold` consecutive failures or a failure ratio over the
//! last calls; open fails fast for `open_for`; then half-open lets
//! `half_open_probes` calls through; that many successes close it, any
//! failure reopens it.
//!
//! A plain state machine: the caller passes the time and owns the breaker
//! (the batcher's task does). State changes are published on a `watch`
//! (the current state, for metrics) and a `broadcast` (each transition,
//! for the event log). It knows nothing of what the calls do.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::error::Error;

/// Breaker thresholds (from the script's service declaration).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; at least 1.
    pub failure_threshold: u32,
    /// Also open when the failure ratio over the last `ratio_window` calls
    /// reaches this (once at least `ratio_min_calls` were seen); `None`
    /// disables the ratio rule.
    pub failure_ratio: Option<f64>,
    pub ratio_window: usize,
    pub ratio_min_calls: usize,
    /// How long an open breaker fails fast before probing.
    pub open_for: Duration,
    /// Calls let through while half-open; that many successes close it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            failure_ratio: Some(0.5),
            ratio_window: 20,
            ratio_min_calls: 10,
            open_for: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state change, for events and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerTransition {
    pub service: String,
    pub from: BreakerState,
    pub to: BreakerState,
    pub at: Instant,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    service: String,
    config: BreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    /// Recent call results, `true` = failure; at most `ratio_window`.
    recent: VecDeque<bool>,
    opened_at: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
    state_tx: watch::Sender<BreakerState>,
    transitions_tx: broadcast::Sender<BreakerTransition>,
}

impl CircuitBreaker {
    pub fn new(service: impl Into<String>, config: BreakerConfig) -> Self {
        let (state_tx, _) = watch::channel(BreakerState::Closed);
        let (transitions_tx, _) = broadcast::channel(64);
        CircuitBreaker {
            service: service.into(),
            config,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            recent: VecDeque::new(),
            opened_at: None,
            probes_in_flight: 0,
            probe_successes: 0,
            state_tx,
            transitions_tx,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The current state, updated on every transition.
    pub fn watch(&self) -> watch::Receiver<BreakerState> {
        self.state_tx.subscribe()
    }

    /// Every transition from now on.
    pub fn transitions(&self) -> broadcast::Receiver<BreakerTransition> {
        self.transitions_tx.subscribe()
    }

    /// Whether [`CircuitBreaker::try_acquire`] would let a call through
    /// now, without taking a probe slot.
    pub fn would_admit(&self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => self.open_elapsed(now),
            BreakerState::HalfOpen => self.probes_in_flight < self.config.half_open_probes.max(1),
        }
    }

    /// Lets a call through or fails fast. While half-open each admitted
    /// call takes a probe slot, returned by `on_success`/`on_failure`.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Error> {
        if self.state == BreakerState::Open && self.open_elapsed(now) {
            self.probes_in_flight = 0;
            self.probe_successes = 0;
            self.transition(BreakerState::HalfOpen, now);
        }
        match self.state {
            BreakerState::Closed => Ok(()),
            BreakerState::HalfOpen
                if self.probes_in_flight < self.config.half_open_probes.max(1) =>
            {
                self.probes_in_flight += 1;
                Ok(())
            }
            BreakerState::Open | BreakerState::HalfOpen => Err(self.refusal(now)),
        }
    }

    /// The error a call refused now gets: when the breaker will let a probe
    /// through (at least a second from now while a probe is out).
    pub fn refusal(&self, now: Instant) -> Error {
        let retry_after = match self.opened_at {
            Some(opened_at) if self.state == BreakerState::Open => {
                (opened_at + self.config.open_for).saturating_duration_since(now)
            }
            _ => Duration::from_secs(1),
        };
        Error::BreakerOpen {
            service: self.service.clone(),
            retry_after,
        }
    }

    /// Records a call that did not reach the service (it was not there:
    /// starting, restarting): says nothing about its health, only returns
    /// a half-open probe slot.
    pub fn on_unavailable(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    /// Records a successful call.
    pub fn on_success(&mut self, now: Instant) {
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures = 0;
                self.record(false);
            }
            BreakerState::HalfOpen => {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
                self.probe_successes += 1;
                if self.probe_successes >= self.config.half_open_probes.max(1) {
                    self.consecutive_failures = 0;
                    self.recent.clear();
                    self.transition(BreakerState::Closed, now);
                }
            }
            // A call admitted before the breaker opened: it says nothing
            // about the service now.
            BreakerState::Open => {}
        }
    }

    /// Records a failed call.
    pub fn on_failure(&mut self, now: Instant) {
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures += 1;
                self.record(true);
                if self.consecutive_failures >= self.config.failure_threshold.max(1)
                    || self.ratio_exceeded()
                {
                    self.open(now);
                }
            }
            BreakerState::HalfOpen => {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
                self.open(now);
            }
            BreakerState::Open => {}
        }
    }

    fn open_elapsed(&self, now: Instant) -> bool {
        self.opened_at
            .is_some_and(|opened_at| now >= opened_at + self.config.open_for)
    }

    fn record(&mut self, failure: bool) {
        if self.config.ratio_window == 0 {
            return;
        }
        if self.recent.len() == self.config.ratio_window {
            self.recent.pop_front();
        }
        self.recent.push_back(failure);
    }

    fn ratio_exceeded(&self) -> bool {
        let Some(ratio) = self.config.failure_ratio else {
            return false;
        };
        if self.recent.len() < self.config.ratio_min_calls.max(1) {
            return false;
        }
        let failures = self.recent.iter().filter(|failure| **failure).count();
        failures as f64 / self.recent.len() as f64 >= ratio
    }

    fn open(&mut self, now: Instant) {
        self.opened_at = Some(now);
        self.consecutive_failures = 0;
        self.recent.clear();
        self.transition(BreakerState::Open, now);
    }

    fn transition(&mut self, to: BreakerState, now: Instant) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.state_tx.send_replace(to);
        let _ = self.transitions_tx.send(BreakerTransition {
            service: self.service.clone(),
            from,
            to,
            at: now,
        });
        tracing::info!(service = %self.service, %from, %to, "circuit breaker");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            failure_ratio: None,
            ratio_window: 10,
            ratio_min_calls: 4,
            open_for: Duration::from_secs(1),
            half_open_probes: 2,
        }
    }

    #[test]
    fn consecutive_failures_open_then_probes_close() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new("embedder", config());
        let mut transitions = breaker.transitions();
        for _ in 0..2 {
            breaker.try_acquire(start).unwrap();
            breaker.on_failure(start);
        }
        breaker.on_success(start);
        for _ in 0..2 {
            breaker.on_failure(start);
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "a success resets the run"
        );
        breaker.on_failure(start);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(
            breaker
                .try_acquire(start + Duration::from_millis(999))
                .is_err()
        );

        let later = start + Duration::from_secs(1);
        assert!(breaker.would_admit(later));
        breaker.try_acquire(later).unwrap();
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.try_acquire(later).unwrap();
        assert!(breaker.try_acquire(later).is_err(), "only two probes");
        breaker.on_success(later);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.on_success(later);
        assert_eq!(breaker.state(), BreakerState::Closed);

        let seen: Vec<_> = std::iter::from_fn(|| transitions.try_recv().ok())
            .map(|transition| (transition.from, transition.to))
            .collect();
        assert_eq!(
            seen,
            vec![
                (BreakerState::Closed, BreakerState::Open),
                (BreakerState::Open, BreakerState::HalfOpen),
                (BreakerState::HalfOpen, BreakerState::Closed),
            ]
        );
    }

    #[test]
    fn a_failed_probe_reopens() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new("embedder", config());
        let state = breaker.watch();
        for _ in 0..3 {
            breaker.on_failure(start);
        }
        let later = start + Duration::from_secs(2);
        breaker.try_acquire(later).unwrap();
        breaker.on_failure(later);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(*state.borrow(), BreakerState::Open);
        assert!(!breaker.would_admit(later + Duration::from_millis(500)));
        assert!(breaker.would_admit(later + Duration::from_secs(1)));
    }

    #[test]
    fn failure_ratio_opens() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(
            "embedder",
            BreakerConfig {
                failure_threshold: 100,
                failure_ratio: Some(0.5),
                ..config()
            },
        );
        // Alternating failures never reach 100 in a row, but are 50%.
        breaker.on_failure(start);
        breaker.on_success(start);
        breaker.on_failure(start);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "fewer than ratio_min_calls"
        );
        breaker.on_success(start);
        breaker.on_failure(start);
        assert_eq!(breaker.state(), BreakerState::Open);
    }
}
