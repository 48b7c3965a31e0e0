//! `spindle journal show|stats|export PATH`: reading a journal that `spindle
//! run --journal DIR` wrote (the directory, or one segment file). The record
//! format is `spindle-journal`'s; JSON lives here only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};
use spindle_journal::{JournalReader, OutcomeRecord, Record};

/// Read a session journal: show its records, count them, or export them.
///
/// A record cut short by a crash at the end of the journal is reported and
/// left out; everything before it is read.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  spindle journal show ./journal            # one line per record
  spindle journal stats ./journal           # counts, outcomes, latencies
  spindle journal export ./journal > j.jsonl")]
pub struct Args {
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(clap::Subcommand)]
enum JournalCommand {
    /// One line per record, with its time since the journal started.
    Show(PathArgs),
    /// Records by kind, requests by outcome and pipeline, latencies.
    Stats(PathArgs),
    /// One JSON object per record (JSONL) on stdout, for other tools.
    Export(PathArgs),
}

#[derive(clap::Args)]
struct PathArgs {
    /// The journal directory, or one of its journal-NNNNNN.spj files.
    path: PathBuf,
    /// Every run the directory holds, not only the latest.
    #[arg(long)]
    all_runs: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (JournalCommand::Show(path) | JournalCommand::Stats(path) | JournalCommand::Export(path)) =
        &args.command;
    let reader = JournalReader::open(&path.path)
        .with_context(|| format!("cannot read the journal {}", path.path.display()))?;
    let records = match path.all_runs {
        true => &reader.records[..],
        false => reader.latest_run(),
    };
    let mut out = std::io::stdout().lock();
    match args.command {
        JournalCommand::Show(_) => {
            for record in records {
                writeln!(out, "{}", record_line(record))?;
            }
        }
        JournalCommand::Stats(_) => write!(out, "{}", stats_text(records, &reader))?,
        JournalCommand::Export(_) => {
            for record in records {
                writeln!(out, "{}", record_json(record))?;
            }
        }
    }
    if let Some(torn) = &reader.report.torn_tail {
        eprintln!(
            "spindle: {}: the last record (at byte {}, {} byte(s)) was cut short by a crash and is left out",
            torn.path.display(),
            torn.offset,
            torn.bytes
        );
    }
    for problem in &reader.report.problems {
        eprintln!("spindle: warning: {problem}");
    }
    Ok(ExitCode::SUCCESS)
}

fn seconds(at_us: u64) -> String {
    format!("{:>10.6}s", at_us as f64 / 1e6)
}

/// One human-readable line.
fn record_line(record: &Record) -> String {
    match record {
        Record::Header(header) => format!(
            "{} header    run {} segment {} script {} (format {})",
            seconds(0),
            header.run_id,
            header.segment,
            header.script,
            header.format
        ),
        Record::Admitted(admitted) => format!(
            "{} admitted  #{} {} {} from {} corr {}{} text {:?}",
            seconds(admitted.at_us),
            admitted.id,
            admitted.pipeline,
            admitted.priority,
            admitted.source,
            admitted.correlation_id,
            admitted
                .deadline_us
                .map(|us| format!(" deadline {}ms", us / 1000))
                .unwrap_or_default(),
            admitted.text
        ),
        Record::Stage(stage) => format!(
            "{} stage     #{} {} took {}us{}",
            seconds(stage.at_us),
            stage.id,
            stage.stage,
            stage.elapsed_us,
            stage_output_words(stage)
        ),
        Record::Answered(answered) => format!(
            "{} answered  #{} {} after {}us (queued {}us)",
            seconds(answered.at_us),
            answered.id,
            spindle_replay::transcript::outcome_words(&answered.outcome),
            answered.latency_us,
            answered.queue_us
        ),
        Record::Service(service) => format!(
            "{} service   {} {} -> {} ({}){}",
            seconds(service.at_us),
            service.service,
            service.from,
            service.to,
            service.reason,
            service
                .pid
                .map(|pid| format!(" pid {pid}"))
                .unwrap_or_default()
        ),
        Record::Pipeline(pipeline) => format!(
            "{} pipeline  {} {}{}",
            seconds(pipeline.at_us),
            pipeline.pipeline,
            pipeline.gate,
            if pipeline.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", pipeline.reason)
            }
        ),
        Record::Operation(operation) => format!(
            "{} operation {} {} count {} delay {}us",
            seconds(operation.at_us),
            operation.operation,
            operation.target,
            operation.count,
            operation.delay_us
        ),
        Record::Gap(gap) => format!(
            "{} gap       {} missed {} record(s); then: {}",
            seconds(gap.at_us),
            gap.source,
            gap.missed,
            gap.snapshot
        ),
    }
}

/// What a stage left in `req` (or its error), in words; nothing for a
/// stage record of a journal written before stages' outputs were recorded.
fn stage_output_words(stage: &spindle_journal::StageRecord) -> String {
    if let Some(error) = &stage.error {
        return format!(" failed: {error}");
    }
    if stage.text.is_empty() && stage.vector.is_none() && stage.fields.is_empty() {
        return String::new();
    }
    let mut words = format!(" -> text {:?}", stage.text);
    if let Some(vector) = &stage.vector {
        words.push_str(&format!(" vector[{}]", vector.len()));
    }
    for (key, value) in &stage.fields {
        words.push_str(&format!(" {key}={value:?}"));
    }
    words
}

fn stats_text(records: &[Record], reader: &JournalReader) -> String {
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut pipelines: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies: Vec<u64> = Vec::new();
    let mut admitted = 0_u64;
    let mut answered = 0_u64;
    for record in records {
        *kinds.entry(record.kind()).or_default() += 1;
        match record {
            Record::Admitted(record) => {
                admitted += 1;
                *pipelines.entry(record.pipeline.clone()).or_default() += 1;
            }
            Record::Answered(record) => {
                answered += 1;
                *outcomes.entry(record.outcome.kind()).or_default() += 1;
                latencies.push(record.latency_us);
            }
            _ => {}
        }
    }
    latencies.sort_unstable();
    let quantile = |q: f64| -> String {
        match latencies.len() {
            0 => "-".to_owned(),
            len => {
                let idx = ((len - 1) as f64 * q).round() as usize;
                format!("{:.3}ms", latencies[idx] as f64 / 1000.0)
            }
        }
    };
    let mut text = String::new();
    text.push_str(&format!(
        "segments: {} ({} bytes)\n",
        reader.report.segments.len(),
        reader.report.bytes
    ));
    text.push_str(&format!("records: {}\n", records.len()));
    for (kind, count) in &kinds {
        text.push_str(&format!("  {kind}: {count}\n"));
    }
    text.push_str(&format!(
        "requests: {admitted} admitted, {answered} answered, {} without an answer\n",
        admitted.saturating_sub(answered)
    ));
    for (outcome, count) in &outcomes {
        text.push_str(&format!("  {outcome}: {count}\n"));
    }
    for (pipeline, count) in &pipelines {
        text.push_str(&format!("  pipeline {pipeline}: {count}\n"));
    }
    text.push_str(&format!(
        "latency: p50 {} p99 {} max {}\n",
        quantile(0.5),
        quantile(0.99),
        quantile(1.0)
    ));
    text.push_str(&format!(
        "torn tail: {}\n",
        match &reader.report.torn_tail {
            Some(torn) => format!("{} byte(s) dropped at byte {}", torn.bytes, torn.offset),
            None => "none".to_owned(),
        }
    ));
    text
}

/// One record as a JSON object with its `kind`.
fn record_json(record: &Record) -> Value {
    match record {
        Record::Header(header) => json!({
            "kind": "header", "format": header.format, "run_id": header.run_id,
            "script": header.script, "started_unix_ms": header.started_unix_ms,
            "segment": header.segment,
        }),
        Record::Admitted(admitted) => json!({
            "kind": "admitted", "at_us": admitted.at_us, "id": admitted.id,
            "correlation_id": admitted.correlation_id, "pipeline": admitted.pipeline,
            "priority": admitted.priority, "source": admitted.source,
            "deadline_us": admitted.deadline_us, "text": admitted.text,
        }),
        Record::Stage(stage) => json!({
            "kind": "stage", "at_us": stage.at_us, "id": stage.id, "stage": stage.stage,
            "elapsed_us": stage.elapsed_us, "text": stage.text, "vector": stage.vector,
            "fields": stage.fields.iter().cloned().collect::<BTreeMap<String, String>>(),
            "error": stage.error,
        }),
        Record::Answered(answered) => {
            let mut value = json!({
                "kind": "answered", "at_us": answered.at_us, "id": answered.id,
                "queue_us": answered.queue_us, "latency_us": answered.latency_us,
                "outcome": answered.outcome.kind(),
            });
            let extra = match &answered.outcome {
                OutcomeRecord::Ok {
                    text,
                    vector,
                    fields,
                    degraded,
                    embed_fallback,
                } => json!({
                    "text": text, "vector": vector,
                    "fields": fields.iter().cloned().collect::<BTreeMap<String, String>>(),
                    "degraded": degraded, "embed_fallback": embed_fallback,
                }),
                OutcomeRecord::Error {
                    message,
                    class,
                    stage,
                    file,
                    line,
                } => json!({
                    "message": message, "class": class, "stage": stage, "file": file, "line": line,
                }),
                OutcomeRecord::Timeout => json!({}),
                OutcomeRecord::Rejected { reason } | OutcomeRecord::Cancelled { reason } => {
                    json!({ "reason": reason })
                }
            };
            if let (Value::Object(value), Value::Object(extra)) = (&mut value, extra) {
                value.extend(extra);
            }
            value
        }
        Record::Service(service) => json!({
            "kind": "service", "at_us": service.at_us, "seq": service.seq,
            "service": service.service, "from": service.from, "to": service.to,
            "reason": service.reason, "pid": service.pid, "restarts": service.restarts,
        }),
        Record::Pipeline(pipeline) => json!({
            "kind": "pipeline", "at_us": pipeline.at_us, "seq": pipeline.seq,
            "pipeline": pipeline.pipeline, "gate": pipeline.gate, "reason": pipeline.reason,
        }),
        Record::Operation(operation) => json!({
            "kind": "operation", "at_us": operation.at_us, "operation": operation.operation,
            "target": operation.target, "count": operation.count, "delay_us": operation.delay_us,
        }),
        Record::Gap(gap) => json!({
            "kind": "gap", "at_us": gap.at_us, "source": gap.source, "missed": gap.missed,
            "snapshot": gap.snapshot,
        }),
    }
}
