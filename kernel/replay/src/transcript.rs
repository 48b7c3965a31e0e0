//! A replay as stable text for snapshot tests: requests numbered in
//! timeline order, outcomes with their text, fields and the vector's
//! dimension, and each difference from the recorded answer. Request ids,
//! correlation ids the kernel made up, pids, times, latencies and raw
//! vectors are left out: a scenario gives the same transcript every run.

use std::fmt::Write;

use spindle_journal::OutcomeRecord;

use crate::replay::ReplayReport;

/// The normalised transcript of `report`.
pub fn transcript(report: &ReplayReport) -> String {
    let mut out = String::new();
    for (number, request) in report.requests.iter().enumerate() {
        let admitted = &request.recorded.admitted;
        let _ = writeln!(
            out,
            "request {} {} priority={} source={} text={:?}",
            number + 1,
            admitted.pipeline,
            admitted.priority,
            admitted.source,
            admitted.text
        );
        let _ = writeln!(out, "  replayed: {}", outcome_words(&request.outcome));
        match &request.recorded.answered {
            None => {
                let _ = writeln!(out, "  recorded: no answer in the journal");
            }
            Some(_) if request.differences.is_empty() => {
                let _ = writeln!(out, "  recorded: same");
            }
            Some(answered) => {
                let _ = writeln!(out, "  recorded: {}", outcome_words(&answered.outcome));
                for difference in &request.differences {
                    let _ = writeln!(
                        out,
                        "  differs in {}: recorded {:?}, replayed {:?}",
                        difference.what, difference.recorded, difference.replayed
                    );
                }
            }
        }
    }
    for operation in &report.operations {
        let _ = writeln!(
            out,
            "operation {} {} count={}: {}",
            operation.operation.operation,
            operation.operation.target,
            operation.operation.count,
            operation.result
        );
    }
    let _ = writeln!(
        out,
        "summary: {} request(s), {} same, {} differ, {} without a recorded answer; {} operation(s)",
        report.requests.len(),
        report.requests.len() - report.differing() - report.unrecorded(),
        report.differing(),
        report.unrecorded(),
        report.operations.len()
    );
    out
}

/// An outcome in words, without what changes from run to run.
pub fn outcome_words(outcome: &OutcomeRecord) -> String {
    match outcome {
        OutcomeRecord::Ok {
            text,
            vector,
            fields,
            degraded,
            embed_fallback,
        } => {
            let mut words = format!("ok text={text:?}");
            for (name, value) in fields {
                let _ = write!(words, " {name}={value:?}");
            }
            if let Some(vector) = vector {
                let _ = write!(words, " vector={}d", vector.len());
            }
            if *degraded {
                words.push_str(" degraded");
            }
            if *embed_fallback {
                words.push_str(" embed-fallback");
            }
            words
        }
        OutcomeRecord::Error {
            class, stage, line, ..
        } => format!("error class={class} stage={stage} line={line}"),
        OutcomeRecord::Timeout => "timeout".to_owned(),
        OutcomeRecord::Rejected { reason } => format!("rejected {reason}"),
        OutcomeRecord::Cancelled { reason } => format!("cancelled {reason}"),
    }
}
