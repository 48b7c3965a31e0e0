//! `spindle replay JOURNAL`: a journal's requests and operations applied
//! again to a fresh kernel on the same script (spindle-replay), each
//! answer compared with the recorded one; the transcript on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use spindle_journal::JournalReader;
use spindle_kernel::{GuardCommand, Kernel, KernelConfig, KernelError, KernelSource};
use spindle_replay::{ReplayConfig, ReplayError, Timeline, Timing};

/// Replay a journal against a fresh kernel and compare the answers.
///
/// The script the journal names (or --script) is started as `spindle run`
/// would; each recorded request is submitted again at its recorded time
/// (or as fast as possible with --fast) with its pipeline, text, priority,
/// deadline, source and correlation id, and each recorded operation (an
/// injected fault, a cancel, a service restart, stop or start) is applied
/// again. Each answer is compared with the recorded one: the same outcome,
/// text and fields, vectors by cosine.
///
/// Exit status: 0 when every answer matches, 1 when one differs, 2 when
/// the replay cannot run.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  spindle run graph.lua --http 127.0.0.1:8080 --journal ./journal
  spindle replay ./journal                 # at the recorded times
  spindle replay ./journal --fast          # as fast as possible
  spindle replay ./journal --transcript    # only the normalised transcript, for snapshots")]
pub struct Args {
    /// The journal directory (its latest run), or one segment file.
    journal: PathBuf,
    /// Run this script instead of the one the journal names (an edited
    /// version, to see what it changes).
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// Submit each step as soon as the one before it is in the kernel,
    /// instead of at the recorded times.
    #[arg(long)]
    fast: bool,
    /// Print only the normalised transcript (no times, ids or raw vectors).
    #[arg(long)]
    transcript: bool,
    /// Vectors whose cosine to the recorded one is at least this match.
    #[arg(long, value_name = "COSINE", default_value_t = 0.999)]
    cosine: f32,
    /// Journal the replay itself into DIR.
    #[arg(long, value_name = "DIR")]
    journal_to: Option<PathBuf>,
    /// The replay's data directory (service logs). Default: as `spindle
    /// run` chooses it for the replay's run id.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let reader = JournalReader::open(&args.journal)
        .with_context(|| format!("cannot read the journal {}", args.journal.display()))?;
    if let Some(torn) = &reader.report.torn_tail {
        eprintln!(
            "spindle: {}: the last record was cut short by a crash ({} byte(s) at byte {}) and is left out",
            torn.path.display(),
            torn.bytes,
            torn.offset
        );
    }
    let timeline = Timeline::from_records(reader.latest_run());
    if timeline.steps.is_empty() {
        return Err(ReplayError::Empty.into());
    }
    let script = match args.script.clone().or(timeline.script.clone()) {
        Some(script) => script,
        None => return Err(ReplayError::NoScript.into()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(replay(args, script, timeline))
}

async fn replay(args: Args, script: PathBuf, timeline: Timeline) -> anyhow::Result<ExitCode> {
    let run_id = spindle_kernel::new_run_id();
    let data_dir = match args.data_dir.clone() {
        Some(dir) => dir,
        None => super::run::default_data_dir(&run_id)?,
    };
    let config = KernelConfig {
        run_id: Some(run_id.clone()),
        data_dir: Some(data_dir),
        child_subreaper: true,
        guard: std::env::current_exe().ok().map(|program| GuardCommand {
            program,
            args: vec!["__guard".to_owned()],
        }),
        remote_engines: Some(std::sync::Arc::new(spindle_remote::RemoteBackend::new())),
        journal: args
            .journal_to
            .as_ref()
            .map(spindle_journal::JournalConfig::new),
        ..KernelConfig::default()
    };
    let kernel = match Kernel::start(KernelSource::Script(script.clone()), config) {
        Ok(kernel) => kernel,
        Err(KernelError::Script { diagnostics, .. }) => {
            eprint!("{}", super::diagnostics_text(&diagnostics));
            return Ok(ExitCode::from(2));
        }
        Err(error) => {
            return Err(error).with_context(|| format!("cannot run {}", script.display()));
        }
    };
    let replay_config = ReplayConfig {
        timing: match args.fast {
            true => Timing::Fast,
            false => Timing::Recorded,
        },
        cosine_min: args.cosine,
    };
    if !args.transcript {
        eprintln!(
            "spindle: replaying run {} ({} step(s)) on {} as run {run_id}",
            timeline.run_id,
            timeline.steps.len(),
            script.display()
        );
    }
    let started = std::time::Instant::now();
    let report = spindle_replay::replay(&kernel, &timeline, &replay_config).await;
    let elapsed = started.elapsed();
    kernel.shutdown();
    let outcome = kernel.wait().await.context("the replay's kernel failed")?;
    print!("{}", spindle_replay::transcript(&report));
    if !args.transcript {
        let recorded_span = timeline.steps.last().map_or(0, |step| step.at_us());
        eprintln!(
            "spindle: replayed in {:.3}s (the recorded steps spanned {:.3}s); services: {}",
            elapsed.as_secs_f64(),
            recorded_span as f64 / 1e6,
            if outcome.is_success() {
                "stopped cleanly"
            } else {
                "a critical service gave up"
            }
        );
    }
    Ok(match report.differing() {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}
