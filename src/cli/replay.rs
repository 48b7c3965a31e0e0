//! `spindle replay JOURNAL_OR_SCENARIO`: a journal's requests and
//! operations applied again to a fresh kernel on the same script, each
//! answer compared with the recorded one; or a scenario script's timeline
//! applied to a fresh kernel and its expectations checked (both in
//! spindle-replay). The transcript on stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use spindle_journal::JournalReader;
use spindle_kernel::{
    GuardCommand, Kernel, KernelConfig, KernelError, KernelSource, RequestPathConfig,
};
use spindle_replay::{ReplayConfig, ReplayError, Timeline, Timing};
use spindle_scripting::ScenarioSpec;

/// Replay a journal, or run a scenario script, against a fresh kernel.
///
/// A journal: the script it names (or --script) is started as `spindle
/// run` would; each recorded request is submitted again at its recorded
/// time (or as fast as possible with --fast) with its pipeline, text,
/// priority, deadline, source and correlation id, and each recorded
/// operation (an injected fault, a cancel, a service restart, stop or
/// start) is applied again. Each answer is compared with the recorded one:
/// the same outcome, text and fields, vectors by cosine.
///
/// A scenario (a .lua file that uses `require("spindle.scenario")`): its
/// graph is started, its steps are applied in timeline order (time is
/// virtual: each step as soon as the one before it is in the kernel, waits
/// on events), and each expectation is reported as pass or fail with the
/// reason. See docs/sessions.md.
///
/// Exit status: 0 when every answer matches (every expectation holds), 1
/// when one differs (fails), 2 when the replay cannot run.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  spindle run graph.lua --http 127.0.0.1:8080 --journal ./journal
  spindle replay ./journal                 # at the recorded times
  spindle replay ./journal --fast          # as fast as possible
  spindle replay ./journal --transcript    # only the normalised transcript, for snapshots
  spindle replay tests/scenarios/cancel.lua --transcript
  spindle replay scenario.lua --debug-port 0   # attach a debugger, then press Enter")]
pub struct Args {
    /// The journal directory (its latest run), one segment file, or a
    /// scenario script (`.lua`).
    #[arg(value_name = "JOURNAL_OR_SCENARIO")]
    file: PathBuf,
    /// Run this script instead of the one the journal names (an edited
    /// version, to see what it changes). Journals only.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// Submit each step as soon as the one before it is in the kernel,
    /// instead of at the recorded times. Journals only (a scenario's time
    /// is always virtual).
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
    /// Open the debug port on 127.0.0.1:PORT (0 picks one) as `spindle run
    /// --debug-port` does, and wait for a line on stdin (Enter, or stdin's
    /// end) before the first step, so that a debugger can attach and set
    /// its breakpoints first; a replayed request then stops at them.
    #[arg(long, value_name = "PORT")]
    debug_port: Option<u16>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args
        .file
        .extension()
        .is_some_and(|extension| extension == "lua")
    {
        return scenario(args);
    }
    let reader = JournalReader::open(&args.file)
        .with_context(|| format!("cannot read the journal {}", args.file.display()))?;
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
    runtime()?.block_on(replay(args, script, timeline))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The kernel of a replay or a scenario, started as `spindle run` starts
/// one; `None` when the script has errors (printed).
fn start_kernel(
    args: &Args,
    script: &Path,
    run_id: &str,
    requests: RequestPathConfig,
    until_shutdown: bool,
) -> anyhow::Result<Option<Kernel>> {
    let data_dir = match args.data_dir.clone() {
        Some(dir) => dir,
        None => super::run::default_data_dir(run_id)?,
    };
    let config = KernelConfig {
        run_id: Some(run_id.to_owned()),
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
        requests,
        until_shutdown,
        ..KernelConfig::default()
    };
    match Kernel::start(KernelSource::Script(script.to_path_buf()), config) {
        Ok(kernel) => Ok(Some(kernel)),
        Err(KernelError::Script { diagnostics, .. }) => {
            eprint!("{}", super::diagnostics_text(&diagnostics));
            Ok(None)
        }
        Err(error) => Err(error).with_context(|| format!("cannot run {}", script.display())),
    }
}

/// With `--debug-port`: opens it (as `spindle run` does) and waits for a
/// line on stdin before the replay's first step.
async fn debugger_first(args: &Args, kernel: &Kernel) -> anyhow::Result<()> {
    let Some(port) = args.debug_port else {
        return Ok(());
    };
    let data_dir = kernel
        .data_dir()
        .map(Path::to_path_buf)
        .context("the replay's kernel has no data directory")?;
    super::dap::start_debug_port(kernel, port, &data_dir).await?;
    eprintln!(
        "spindle: attach the debugger and set its breakpoints, then press Enter to start the replay"
    );
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await
        .context("cannot read stdin")?;
    Ok(())
}

async fn replay(args: Args, script: PathBuf, timeline: Timeline) -> anyhow::Result<ExitCode> {
    let run_id = spindle_kernel::new_run_id();
    let Some(kernel) = start_kernel(&args, &script, &run_id, RequestPathConfig::default(), false)?
    else {
        return Ok(ExitCode::from(2));
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
    debugger_first(&args, &kernel).await?;
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

/// `spindle replay SCENARIO.lua`.
fn scenario(args: Args) -> anyhow::Result<ExitCode> {
    if args.script.is_some() || args.fast {
        anyhow::bail!(
            "--script and --fast apply to journals; a scenario names its graph itself and its time is always virtual"
        );
    }
    let evaluation = spindle_scripting::evaluate_scenario(&args.file);
    eprint!(
        "{}",
        super::diagnostics_text(&evaluation.evaluation.diagnostics)
    );
    if evaluation.evaluation.has_errors() {
        return Ok(ExitCode::from(2));
    }
    let Some(scenario) = evaluation.scenario else {
        eprintln!(
            "spindle: {} has no timeline and no expectation\n  hint: a scenario writes them with local sc = require(\"spindle.scenario\"); see docs/sessions.md",
            args.file.display()
        );
        return Ok(ExitCode::from(2));
    };
    runtime()?.block_on(run_scenario(args, scenario))
}

async fn run_scenario(args: Args, scenario: ScenarioSpec) -> anyhow::Result<ExitCode> {
    let run_id = spindle_kernel::new_run_id();
    let requests =
        spindle_replay::request_path_config(&scenario.settings, RequestPathConfig::default());
    let Some(kernel) = start_kernel(&args, &scenario.file, &run_id, requests, true)? else {
        return Ok(ExitCode::from(2));
    };
    // Subscribed before anything awaits: every event from the start.
    let subscription = kernel.subscribe(true);
    let name = scenario
        .file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !args.transcript {
        eprintln!(
            "spindle: scenario {name}: {} step(s), {} expectation(s), as run {run_id}",
            scenario.steps.len(),
            scenario.expectations.len()
        );
    }
    debugger_first(&args, &kernel).await?;
    let report = spindle_replay::run_scenario(&kernel, subscription, &scenario).await;
    print!("{}", spindle_replay::scenario_transcript(&name, &report));
    if !args.transcript {
        for failed in report
            .expectations
            .iter()
            .filter(|result| result.failure.is_some())
        {
            eprintln!(
                "{}:{}: expectation failed: {}: {}",
                scenario.file.display(),
                failed.line,
                failed.what,
                failed.failure.as_deref().unwrap_or("")
            );
        }
    }
    Ok(match report.failed() {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}
