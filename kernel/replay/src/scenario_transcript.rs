//! A scenario run as stable text for snapshot tests: each step and what it
//! did, each request's lifecycle and answer, each service's and pipeline's
//! sequence of states, and each expectation's verdict. No ids, pids, times,
//! latencies or raw vectors; services and requests are listed each on its
//! own (the order of events across services that start in one wave is not
//! fixed, an order expectation checks what must be ordered).

use std::fmt::Write;

use crate::scenario_run::{LoggedEvent, ScenarioReport};
use crate::transcript::outcome_words;

/// The normalised transcript of a scenario run; `name` is the scenario's
/// file name.
pub fn scenario_transcript(name: &str, report: &ScenarioReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario {name}");
    for (number, step) in report.steps.iter().enumerate() {
        let place = match step.line {
            0 => "after the timeline".to_owned(),
            line => format!("line {line}"),
        };
        let _ = writeln!(
            out,
            "step {} ({place}) {}: {}",
            number + 1,
            step.what,
            step.result
        );
    }
    for request in &report.requests {
        let lifecycle: Vec<&str> = report
            .events
            .iter()
            .filter_map(|event| match event {
                LoggedEvent::Request { name, event } if *name == request.name => Some(*event),
                _ => None,
            })
            .collect();
        let _ = writeln!(
            out,
            "request {} ({} {}): {}",
            request.name,
            request.pipeline,
            request.priority,
            outcome_words(&request.outcome)
        );
        let lifecycle = match lifecycle.is_empty() {
            true => "none".to_owned(),
            false => lifecycle.join(" "),
        };
        let _ = writeln!(out, "  events: {lifecycle}");
    }
    let mut services: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut pipelines: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut missed = 0;
    for event in &report.events {
        let (list, name, state) = match event {
            LoggedEvent::Service { service, state, .. } => (&mut services, service, state),
            LoggedEvent::Pipeline { pipeline, gate } => (&mut pipelines, pipeline, gate),
            LoggedEvent::Missed(count) => {
                missed += count;
                continue;
            }
            LoggedEvent::Request { .. } => continue,
        };
        match list.iter_mut().find(|(known, _)| known == name) {
            Some((_, states)) => states.push(state),
            None => list.push((name, vec![state])),
        }
    }
    services.sort();
    pipelines.sort();
    for (service, states) in services {
        let _ = writeln!(out, "service {service}: {}", states.join(" "));
    }
    for (pipeline, gates) in pipelines {
        let _ = writeln!(out, "pipeline {pipeline}: {}", gates.join(" "));
    }
    if missed > 0 {
        let _ = writeln!(out, "events missed: {missed}");
    }
    for expectation in &report.expectations {
        let verdict = match &expectation.failure {
            None => "pass".to_owned(),
            Some(failure) => format!("FAIL: {failure}"),
        };
        let _ = writeln!(
            out,
            "expect (line {}) {}: {verdict}",
            expectation.line, expectation.what
        );
    }
    let failed = report.failed();
    let _ = writeln!(
        out,
        "summary: {} step(s), {} request(s), {} expectation(s): {} pass, {failed} fail",
        report.steps.len(),
        report.requests.len(),
        report.expectations.len(),
        report.expectations.len() - failed
    );
    out
}
