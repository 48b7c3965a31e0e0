//! `spindle ctl`: operate a running kernel through its control API. The
//! kernel is found by its connection file (`spindle ps` lists them); with
//! several running, `--kernel RUN_ID` (or a prefix, or its pid) picks one.
//! This file parses and prints; `client.rs` speaks HTTP, `watch.rs` draws
//! the live table.

mod client;
mod watch;

use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

use crate::cli::discovery;
use client::{ControlClient, refusal};

/// Operate a running kernel: status, graph, restart, stop, start,
/// recover, logs, events, startup, shutdown, reload.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  spindle ctl status                 # services, their state, pid, uptime
  spindle ctl status --watch         # the live table of `spindle run`
  spindle ctl restart db             # services bound to db follow, in order
  spindle ctl stop worker --now      # SIGKILL at once, no grace period
  spindle ctl logs db -f             # recent lines, then new ones
  spindle ctl shutdown               # the whole kernel, in dependency order
  spindle ctl --kernel 1763779200 reload")]
pub struct Args {
    /// The kernel to talk to: its run id (or a prefix of it) or its pid.
    /// Needed only when several are running.
    #[arg(long, value_name = "ID", global = true)]
    kernel: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Services (state, pid, restarts, uptime, reason) and pipelines.
    Status {
        /// Keep the table up to date from the kernel's events.
        #[arg(long)]
        watch: bool,
        /// Print the API's JSON instead of a table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
    },
    /// Dependencies and startup waves.
    Graph,
    /// Restart a service; the services bound to it stop first and start
    /// again after it.
    Restart { service: String },
    /// Stop a service (the services bound to it first); it stays stopped.
    Stop {
        service: String,
        /// SIGKILL at once instead of the shutdown signal and grace period.
        #[arg(long)]
        now: bool,
    },
    /// Start a stopped or failed service (and the stopped ones it needs).
    Start { service: String },
    /// Forget a service's crash loop and backoff and start it again.
    Recover { service: String },
    /// A service's recent output lines.
    Logs {
        service: String,
        /// Keep printing new lines until the kernel stops.
        #[arg(short, long)]
        follow: bool,
    },
    /// The kernel's events as JSON lines until it stops.
    Events {
        /// Include request events (admitted, started, answered, ...).
        #[arg(long)]
        requests: bool,
    },
    /// Start these services (none named: every stopped or failed one).
    Startup { services: Vec<String> },
    /// Stop these services, or the whole kernel when none is named.
    Shutdown {
        services: Vec<String>,
        /// Skip the grace periods (SIGKILL at once).
        #[arg(long)]
        now: bool,
    },
    /// Evaluate the script again and apply what changed.
    Reload,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_command(args))
}

async fn run_command(args: Args) -> anyhow::Result<ExitCode> {
    let connection = discovery::find(args.kernel.as_deref())?;
    let client = ControlClient::new(&connection);
    match args.command {
        Command::Status { watch: true, .. } => watch::run(&client).await,
        Command::Status { json, .. } => status(&client, json).await,
        Command::Graph => graph(&client).await,
        Command::Restart { service } => act(&client, &service, "restart", true).await,
        Command::Stop { service, now } => act(&client, &service, "stop", !now).await,
        Command::Start { service } => act(&client, &service, "start", true).await,
        Command::Recover { service } => act(&client, &service, "recover", true).await,
        Command::Logs { service, follow } => logs(&client, &service, follow).await,
        Command::Events { requests } => events(&client, requests).await,
        Command::Startup { services } => {
            let body = if services.is_empty() {
                json!({})
            } else {
                json!({ "services": services })
            };
            set_action(&client, "/v1/startup", &body).await
        }
        Command::Shutdown { services, now } => {
            let mut body = json!({ "graceful": !now });
            if !services.is_empty() {
                body["services"] = json!(services);
            }
            set_action(&client, "/v1/shutdown", &body).await
        }
        Command::Reload => reload(&client).await,
    }
}

async fn status(client: &ControlClient, as_json: bool) -> anyhow::Result<ExitCode> {
    let answer = client.get("/v1/status").await?;
    if !answer.status.is_success() {
        return Err(refusal(&answer));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&answer.body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let services = client.get("/v1/services").await?;
    print!("{}", status_text(&services.body, &answer.body));
    Ok(ExitCode::SUCCESS)
}

/// The table `ctl status` prints (no colours: it may go to a file).
fn status_text(services: &Value, status: &Value) -> String {
    let rows = services["services"].as_array().cloned().unwrap_or_default();
    let width = rows
        .iter()
        .filter_map(|row| row["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(7)
        .max(7);
    let mut text = format!(
        "{:<width$}  {:<11}  {:>7}  {:>8}  {:>8}  REASON\n",
        "SERVICE", "STATE", "PID", "RESTARTS", "UPTIME"
    );
    for row in &rows {
        let pid = row["pid"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |pid| pid.to_string());
        let uptime = row["uptime_s"]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |seconds| uptime_text(seconds as u64));
        text.push_str(&format!(
            "{:<width$}  {:<11}  {:>7}  {:>8}  {:>8}  {}\n",
            row["name"].as_str().unwrap_or("?"),
            row["state"].as_str().unwrap_or("?"),
            pid,
            row["restarts"].as_u64().unwrap_or(0),
            uptime,
            row["reason"].as_str().unwrap_or("")
        ));
    }
    if let Some(pipelines) = status["pipelines"]
        .as_array()
        .filter(|list| !list.is_empty())
    {
        let states: Vec<String> = pipelines
            .iter()
            .map(|pipeline| {
                format!(
                    "{} {}",
                    pipeline["name"].as_str().unwrap_or("?"),
                    pipeline["readiness"]["state"].as_str().unwrap_or("?")
                )
            })
            .collect();
        text.push_str(&format!("PIPELINES  {}\n", states.join(", ")));
    }
    text
}

pub(crate) fn uptime_text(seconds: u64) -> String {
    if seconds < 60 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h{:02}m", seconds / 3600, (seconds / 60) % 60)
    }
}

async fn graph(client: &ControlClient) -> anyhow::Result<ExitCode> {
    let answer = client.get("/v1/graph").await?;
    if !answer.status.is_success() {
        return Err(refusal(&answer));
    }
    let graph = &answer.body;
    println!("waves (services start in this order; each wave in parallel):");
    for (idx, wave) in graph["waves"].as_array().into_iter().flatten().enumerate() {
        let names: Vec<&str> = wave
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!("  {idx}: {}", names.join(", "));
    }
    println!("dependencies:");
    for service in graph["services"].as_array().into_iter().flatten() {
        let needs: Vec<String> = service["depends_on"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|dependency| {
                format!(
                    "{} ({})",
                    dependency["service"].as_str().unwrap_or("?"),
                    dependency["condition"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let needs = if needs.is_empty() {
            "-".to_owned()
        } else {
            needs.join(", ")
        };
        println!(
            "  {} [{}] needs {needs}",
            service["name"].as_str().unwrap_or("?"),
            service["kind"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn act(
    client: &ControlClient,
    service: &str,
    action: &str,
    graceful: bool,
) -> anyhow::Result<ExitCode> {
    let query = if graceful { "" } else { "?graceful=false" };
    let answer = client
        .post(&format!("/v1/services/{service}/{action}{query}"), "")
        .await?;
    if !answer.status.is_success() {
        return Err(refusal(&answer));
    }
    eprintln!("spindle: {action} {service}: accepted");
    Ok(ExitCode::SUCCESS)
}

async fn set_action(client: &ControlClient, path: &str, body: &Value) -> anyhow::Result<ExitCode> {
    let answer = client.post(path, &body.to_string()).await?;
    if !answer.status.is_success() {
        return Err(refusal(&answer));
    }
    let services = match &answer.body["services"] {
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.as_str().unwrap_or("all").to_owned(),
    };
    eprintln!(
        "spindle: {}: {}: accepted",
        answer.body["action"].as_str().unwrap_or("done"),
        if services.is_empty() {
            "nothing to do"
        } else {
            &services
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn logs(client: &ControlClient, service: &str, follow: bool) -> anyhow::Result<ExitCode> {
    if !follow {
        let answer = client.get(&format!("/v1/services/{service}/logs")).await?;
        if !answer.status.is_success() {
            return Err(refusal(&answer));
        }
        for line in answer.body["lines"].as_array().into_iter().flatten() {
            print_line(line);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut stream = client
        .events(&format!("/v1/services/{service}/logs?follow"))
        .await?;
    while let Some((name, data)) = stream.next().await? {
        match name.as_str() {
            "line" => print_line(&data),
            "skipped" => eprintln!(
                "spindle: {} line(s) not shown (they are in the log file)",
                data["missed"]
            ),
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_line(line: &Value) {
    use std::io::Write;
    let text = line["line"].as_str().unwrap_or_default();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

async fn events(client: &ControlClient, requests: bool) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let path = if requests {
        "/v1/events?requests"
    } else {
        "/v1/events"
    };
    let mut stream = client.events(path).await?;
    while let Some((name, data)) = stream.next().await? {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", json!({ "event": name, "data": data }));
        let _ = stdout.flush();
    }
    Ok(ExitCode::SUCCESS)
}

async fn reload(client: &ControlClient) -> anyhow::Result<ExitCode> {
    let answer = client.post("/v1/reload", "").await?;
    if answer.status == hyper::StatusCode::UNPROCESSABLE_ENTITY {
        for diagnostic in answer.body["diagnostics"].as_array().into_iter().flatten() {
            eprintln!("{}", diagnostic["text"].as_str().unwrap_or_default());
        }
        eprintln!("spindle: the script has errors; nothing was changed");
        return Ok(ExitCode::from(1));
    }
    if !answer.status.is_success() {
        return Err(refusal(&answer));
    }
    let services = &answer.body["services"];
    for (what, key) in [
        ("added", "added"),
        ("changed (restarted)", "changed"),
        ("removed (stopped)", "removed"),
        ("unchanged", "unchanged"),
    ] {
        let names: Vec<&str> = services[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !names.is_empty() {
            eprintln!("spindle: reload: {what}: {}", names.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
