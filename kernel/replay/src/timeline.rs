//! A journal's records as a timeline to replay: requests joined with their
//! recorded answers, and operations, in the order of their times.

use std::collections::HashMap;
use std::path::PathBuf;

use spindle_journal::{Admitted, Answered, OperationRecord, Record};

/// One request as the journal has it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub admitted: Admitted,
    /// `None` when the journal ends before its answer (a crash, or a run
    /// stopped while it was in flight).
    pub answered: Option<Answered>,
}

/// One thing to do again.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Request(Box<RecordedRequest>),
    Operation(OperationRecord),
}

impl Step {
    /// Microseconds after the recorded run's start.
    pub fn at_us(&self) -> u64 {
        match self {
            Step::Request(request) => request.admitted.at_us,
            Step::Operation(operation) => operation.at_us,
        }
    }
}

/// What a replay applies, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// The script the recorded kernel ran (from the journal's header).
    pub script: Option<PathBuf>,
    pub run_id: String,
    pub steps: Vec<Step>,
}

impl Timeline {
    /// The timeline of `records` (one run's: see
    /// `JournalReader::latest_run`). Requests keep their admission order;
    /// an operation recorded at the same microsecond as a request comes
    /// after it, as it did.
    pub fn from_records(records: &[Record]) -> Timeline {
        let mut timeline = Timeline::default();
        let mut answers: HashMap<u64, Answered> = HashMap::new();
        for record in records {
            if let Record::Answered(answered) = record {
                answers.insert(answered.id, answered.clone());
            }
        }
        for record in records {
            match record {
                Record::Header(header) => {
                    if timeline.script.is_none() && !header.script.is_empty() {
                        timeline.script = Some(PathBuf::from(&header.script));
                    }
                    if timeline.run_id.is_empty() {
                        timeline.run_id = header.run_id.clone();
                    }
                }
                Record::Admitted(admitted) => {
                    timeline.steps.push(Step::Request(Box::new(RecordedRequest {
                        admitted: admitted.clone(),
                        answered: answers.remove(&admitted.id),
                    })))
                }
                Record::Operation(operation) => {
                    timeline.steps.push(Step::Operation(operation.clone()));
                }
                _ => {}
            }
        }
        // Stable: records written in one order keep it at equal times.
        timeline.steps.sort_by_key(Step::at_us);
        timeline
    }

    pub fn requests(&self) -> impl Iterator<Item = &RecordedRequest> {
        self.steps.iter().filter_map(|step| match step {
            Step::Request(request) => Some(request.as_ref()),
            Step::Operation(_) => None,
        })
    }
}
