//! A scenario's expectations checked against what its run found: answers
//! (outcome, text, fields, class, stage, reason, flags, dimension, cosine
//! to a reference text), the order of events, latency ratios and services'
//! states. Each result is pass or a failure in words; a failure names what
//! was found, and only failures carry numbers that change from run to run
//! (a ratio, a cosine), so a passing scenario's transcript is stable.

use spindle_journal::OutcomeRecord;
use spindle_scripting::scenario::{AnswerExpectation, ExpectKind, ScenarioSpec};

use crate::scenario_run::{LoggedEvent, ScenarioReport};
use crate::transcript::outcome_words;

/// One expectation's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectationResult {
    /// The line of the scenario it was written on.
    pub line: u32,
    /// The expectation in words.
    pub what: String,
    /// `None`: it holds.
    pub failure: Option<String>,
}

/// Checks every expectation of `scenario` against `report`.
pub fn check_expectations(
    scenario: &ScenarioSpec,
    report: &ScenarioReport,
) -> Vec<ExpectationResult> {
    scenario
        .expectations
        .iter()
        .map(|expectation| {
            let (what, failure) = match &expectation.kind {
                ExpectKind::Answer(answer) => (
                    format!("answer of {}", answer.request),
                    check_answer(answer, report),
                ),
                ExpectKind::Order(events) => (
                    format!("order: {}", events.join(" < ")),
                    check_order(events, &report.events),
                ),
                ExpectKind::Latency {
                    request,
                    at_most,
                    of,
                } => (
                    format!("latency of {request} <= {at_most} x latency of {of}"),
                    check_latency(request, *at_most, of, report),
                ),
                ExpectKind::Service {
                    service,
                    state,
                    restarts,
                } => (
                    format!("service {service}"),
                    check_service(service, state.as_deref(), *restarts, report),
                ),
            };
            ExpectationResult {
                line: expectation.line,
                what,
                failure,
            }
        })
        .collect()
}

fn check_answer(expected: &AnswerExpectation, report: &ScenarioReport) -> Option<String> {
    let Some(request) = report
        .requests
        .iter()
        .find(|request| request.name == expected.request)
    else {
        return Some("the request was never submitted".to_owned());
    };
    let outcome = &request.outcome;
    let mut wrong = Vec::new();
    if let Some(kind) = &expected.outcome
        && outcome.kind() != kind
    {
        wrong.push(format!("outcome is {}, not {kind}", outcome.kind()));
    }
    match outcome {
        OutcomeRecord::Ok {
            text,
            vector,
            fields,
            degraded,
            embed_fallback,
        } => {
            if let Some(expected_text) = &expected.text
                && expected_text != text
            {
                wrong.push(format!("text is {text:?}, not {expected_text:?}"));
            }
            for (name, value) in &expected.fields {
                match fields.iter().find(|(field, _)| field == name) {
                    Some((_, found)) if found == value => {}
                    Some((_, found)) => {
                        wrong.push(format!("field {name} is {found:?}, not {value:?}"))
                    }
                    None => wrong.push(format!("no field {name}")),
                }
            }
            if let Some(flag) = expected.degraded
                && flag != *degraded
            {
                wrong.push(format!("degraded is {degraded}"));
            }
            if let Some(flag) = expected.embed_fallback
                && flag != *embed_fallback
            {
                wrong.push(format!("embed_fallback is {embed_fallback}"));
            }
            if let Some(dimensions) = expected.dimensions {
                match vector {
                    Some(vector) if vector.len() == dimensions => {}
                    Some(vector) => {
                        wrong.push(format!("the vector has {} dimensions", vector.len()))
                    }
                    None => wrong.push("no vector".to_owned()),
                }
            }
        }
        OutcomeRecord::Error { class, stage, .. } => {
            if let Some(expected_class) = &expected.class
                && expected_class != class
            {
                wrong.push(format!("class is {class}, not {expected_class}"));
            }
            if let Some(expected_stage) = &expected.stage
                && expected_stage != stage
            {
                wrong.push(format!("stage is {stage:?}, not {expected_stage:?}"));
            }
        }
        OutcomeRecord::Rejected { reason } | OutcomeRecord::Cancelled { reason } => {
            if let Some(words) = &expected.reason
                && !reason.contains(words.as_str())
            {
                wrong.push(format!("reason is {reason:?}"));
            }
        }
        OutcomeRecord::Timeout => {}
    }
    if !matches!(outcome, OutcomeRecord::Ok { .. })
        && (expected.text.is_some() || !expected.fields.is_empty() || expected.dimensions.is_some())
        && expected.outcome.as_deref() != Some(outcome.kind())
        && wrong.is_empty()
    {
        wrong.push(format!("the answer is {}", outcome_words(outcome)));
    }
    if let Some(similar) = &expected.similar {
        let cosine = report
            .similarities
            .iter()
            .find(|(request, text, _)| request == &expected.request && text == &similar.text)
            .and_then(|(_, _, cosine)| *cosine);
        match cosine {
            Some(cosine) if cosine >= similar.min => {}
            Some(cosine) => wrong.push(format!(
                "cosine to {:?} is {cosine:.4} < {}",
                similar.text, similar.min
            )),
            None => wrong.push(format!(
                "no vector to compare with {:?} (the answer or the reference has none)",
                similar.text
            )),
        }
    }
    match wrong.is_empty() {
        true => None,
        false => Some(format!(
            "{} (the answer: {})",
            wrong.join("; "),
            outcome_words(outcome)
        )),
    }
}

/// Each event must happen after the one before it in the list.
fn check_order(expected: &[String], events: &[LoggedEvent]) -> Option<String> {
    let mut from = 0;
    for (number, wanted) in expected.iter().enumerate() {
        let wanted_words: Vec<&str> = wanted.split_whitespace().collect();
        let found = events[from..].iter().position(|event| {
            let words = event.words();
            words.split_whitespace().eq(wanted_words.iter().copied())
        });
        match found {
            Some(offset) => from += offset + 1,
            None => {
                let anywhere = events.iter().any(|event| {
                    event
                        .words()
                        .split_whitespace()
                        .eq(wanted_words.iter().copied())
                });
                return Some(match (anywhere, number) {
                    (false, _) => format!("\"{wanted}\" never happened"),
                    (true, 0) => format!("\"{wanted}\" never happened"),
                    (true, _) => {
                        format!("\"{wanted}\" happened before \"{}\"", expected[number - 1])
                    }
                });
            }
        }
    }
    None
}

fn check_latency(request: &str, at_most: f64, of: &str, report: &ScenarioReport) -> Option<String> {
    let latency = |name: &str| {
        report
            .requests
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.latency.as_secs_f64())
    };
    match (latency(request), latency(of)) {
        (Some(a), Some(b)) if b > 0.0 && a <= at_most * b => None,
        (Some(a), Some(b)) if b > 0.0 => Some(format!(
            "{request} took {:.3} x the latency of {of} (more than {at_most})",
            a / b
        )),
        (Some(_), Some(_)) => Some(format!("{of} has no latency to compare with")),
        _ => Some("a request was never submitted".to_owned()),
    }
}

fn check_service(
    service: &str,
    state: Option<&str>,
    restarts: Option<u32>,
    report: &ScenarioReport,
) -> Option<String> {
    let Some(found) = report
        .services_at_end
        .iter()
        .find(|found| found.service == service)
    else {
        return Some(format!("no service `{service}` in the graph"));
    };
    let mut wrong = Vec::new();
    if let Some(state) = state
        && found.state != state
    {
        wrong.push(format!("it is {}, not {state}", found.state));
    }
    if let Some(restarts) = restarts
        && found.restarts != restarts
    {
        wrong.push(format!(
            "it restarted {} time(s), not {restarts}",
            found.restarts
        ));
    }
    match wrong.is_empty() {
        true => None,
        false => Some(wrong.join("; ")),
    }
}
