//! The journal's records: plain values, one enum. Times are microseconds
//! since the journal started (`at_us`); the [`Header`] of every segment
//! carries the wall-clock start, so a record's wall-clock time is
//! `header.started_unix_ms * 1000 + at_us`.
//!
//! A request is three kinds of record joined by its id: one [`Admitted`],
//! one [`StageRecord`] per stage it ran, and one [`Answered`]. Services and
//! pipelines have one record per event. [`GapRecord`] says that records of
//! a source were lost (the source could not wait), and how many.

/// The first record of every segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// The record format's version ([`crate::codec::FORMAT_VERSION`]).
    pub format: u32,
    pub run_id: String,
    /// The script the kernel ran (absolute), empty for a graph built in Rust.
    pub script: String,
    /// Wall-clock start of the journal, Unix milliseconds.
    pub started_unix_ms: u64,
    /// This segment's number, from 1.
    pub segment: u32,
}

/// A request entered the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub id: u64,
    pub correlation_id: String,
    pub pipeline: String,
    /// `high`, `medium` or `low`.
    pub priority: String,
    /// `http`, `netlink`, `jupyter` or `scenario`.
    pub source: String,
    /// The caller's deadline, if it gave one.
    pub deadline_us: Option<u64>,
    pub text: String,
    pub at_us: u64,
}

/// One stage of a request finished (or failed).
#[derive(Debug, Clone, PartialEq)]
pub struct StageRecord {
    pub id: u64,
    pub stage: String,
    /// When the stage started, and how long it took (waits included).
    pub at_us: u64,
    pub elapsed_us: u64,
    /// `req` after the stage: its text, its vector and its scalar fields.
    pub text: String,
    pub vector: Option<Vec<f32>>,
    pub fields: Vec<(String, String)>,
    /// The stage's error, when it failed.
    pub error: Option<String>,
}

/// A request's one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub id: u64,
    pub at_us: u64,
    /// Time in the queue (admission to start, or to the answer).
    pub queue_us: u64,
    /// Admission to answer.
    pub latency_us: u64,
    pub outcome: OutcomeRecord,
}

/// The five outcomes, with what each carries.
#[derive(Debug, Clone, PartialEq)]
pub enum OutcomeRecord {
    Ok {
        text: String,
        vector: Option<Vec<f32>>,
        fields: Vec<(String, String)>,
        /// The pipeline's fallback produced it.
        degraded: bool,
        /// The embed stage's fallback service produced the vector.
        embed_fallback: bool,
    },
    Error {
        message: String,
        /// `permanent`, `transient` or `unavailable`.
        class: String,
        stage: String,
        file: String,
        line: u32,
    },
    Timeout,
    Rejected {
        reason: String,
    },
    Cancelled {
        reason: String,
    },
}

impl OutcomeRecord {
    /// `ok`, `error`, `timeout`, `rejected` or `cancelled`.
    pub fn kind(&self) -> &'static str {
        match self {
            OutcomeRecord::Ok { .. } => "ok",
            OutcomeRecord::Error { .. } => "error",
            OutcomeRecord::Timeout => "timeout",
            OutcomeRecord::Rejected { .. } => "rejected",
            OutcomeRecord::Cancelled { .. } => "cancelled",
        }
    }
}

/// A service changed state.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    /// The kernel's event sequence number.
    pub seq: u64,
    pub at_us: u64,
    pub service: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub pid: Option<u32>,
    pub restarts: u32,
}

/// A pipeline's readiness changed.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRecord {
    pub seq: u64,
    pub at_us: u64,
    pub pipeline: String,
    /// `open`, `closed` or `failed`.
    pub gate: String,
    pub reason: String,
}

/// Something a person (or a scenario) did to the running kernel: a fault
/// injected, a service restarted, a request cancelled, the script reloaded.
/// `spindle replay` does it again at the same time.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    pub at_us: u64,
    /// `engine-fails`, `engine-slow`, `restart`, `stop`, `start`, `recover`,
    /// `cancel`, `reload`, `apply`.
    pub operation: String,
    /// The service, request or script it applies to.
    pub target: String,
    /// Batches of a fault; 0 otherwise.
    pub count: u32,
    /// A slow engine's delay; 0 otherwise.
    pub delay_us: u64,
}

/// Records of `source` were lost: it could not wait for the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct GapRecord {
    pub at_us: u64,
    /// `service-events` (the event hub never waits for the disk).
    pub source: String,
    pub missed: u64,
    /// What the state was after the gap (services' states), in words.
    pub snapshot: String,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Header(Header),
    Admitted(Admitted),
    Stage(StageRecord),
    Answered(Answered),
    Service(ServiceRecord),
    Pipeline(PipelineRecord),
    Operation(OperationRecord),
    Gap(GapRecord),
}

impl Record {
    /// The record kind's name, as `spindle journal` prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Header(_) => "header",
            Record::Admitted(_) => "admitted",
            Record::Stage(_) => "stage",
            Record::Answered(_) => "answered",
            Record::Service(_) => "service",
            Record::Pipeline(_) => "pipeline",
            Record::Operation(_) => "operation",
            Record::Gap(_) => "gap",
        }
    }

    /// Microseconds since the journal started (0 for a header).
    pub fn at_us(&self) -> u64 {
        match self {
            Record::Header(_) => 0,
            Record::Admitted(record) => record.at_us,
            Record::Stage(record) => record.at_us,
            Record::Answered(record) => record.at_us,
            Record::Service(record) => record.at_us,
            Record::Pipeline(record) => record.at_us,
            Record::Operation(record) => record.at_us,
            Record::Gap(record) => record.at_us,
        }
    }
}

/// One record of each kind, for tests.
#[cfg(test)]
pub(crate) fn examples() -> Vec<Record> {
    vec![
        Record::Header(Header {
            format: 1,
            run_id: "run-1".into(),
            script: "/x/graph.lua".into(),
            started_unix_ms: 1_763_779_200_123,
            segment: 1,
        }),
        Record::Admitted(Admitted {
            id: 7,
            correlation_id: "c-7".into(),
            pipeline: "ingest".into(),
            priority: "high".into(),
            source: "http".into(),
            deadline_us: Some(250_000),
            text: "héllo".into(),
            at_us: 12,
        }),
        Record::Stage(StageRecord {
            id: 7,
            stage: "embed".into(),
            at_us: 13,
            elapsed_us: 2_000,
            text: "hello".into(),
            vector: Some(vec![0.5, -0.25]),
            fields: vec![("lang".into(), "en".into())],
            error: Some("boom".into()),
        }),
        Record::Answered(Answered {
            id: 7,
            at_us: 3000,
            queue_us: 10,
            latency_us: 2990,
            outcome: OutcomeRecord::Ok {
                text: "hello".into(),
                vector: None,
                fields: vec![],
                degraded: true,
                embed_fallback: false,
            },
        }),
        Record::Answered(Answered {
            id: 8,
            at_us: 3000,
            queue_us: 10,
            latency_us: 2990,
            outcome: OutcomeRecord::Error {
                message: "bad".into(),
                class: "permanent".into(),
                stage: "clean".into(),
                file: "/x/graph.lua".into(),
                line: 12,
            },
        }),
        Record::Service(ServiceRecord {
            seq: 3,
            at_us: 40,
            service: "db".into(),
            from: "starting".into(),
            to: "ready".into(),
            reason: "readiness probe passed".into(),
            pid: Some(4242),
            restarts: 1,
        }),
        Record::Pipeline(PipelineRecord {
            seq: 4,
            at_us: 41,
            pipeline: "ingest".into(),
            gate: "open".into(),
            reason: String::new(),
        }),
        Record::Operation(OperationRecord {
            at_us: 50,
            operation: "engine-slow".into(),
            target: "embedder".into(),
            count: 3,
            delay_us: 100_000,
        }),
        Record::Gap(GapRecord {
            at_us: 60,
            source: "service-events".into(),
            missed: 12,
            snapshot: "db ready".into(),
        }),
    ]
}
