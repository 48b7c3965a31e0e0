//! `spindle ctl status --watch`: the live table of `spindle run`
//! (`run/table.rs`), fed by the control API: the service listing first,
//! then each event; a `lagged` event (this client fell behind) reloads the
//! listing. Ends when the kernel stops.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use spindle_kernel::supervisor::{Event, ServiceState};
use spindle_scheduler::Gate;

use super::client::{ControlClient, refusal};
use crate::cli::run::table::StatusTable;

pub async fn run(client: &ControlClient) -> anyhow::Result<ExitCode> {
    // Subscribed first: nothing falls between the listing and the stream.
    let mut stream = client.events("/v1/events").await?;
    let status = client.get("/v1/status").await?;
    if !status.status.is_success() {
        return Err(refusal(&status));
    }
    let names = |key: &str| -> Vec<String> {
        status.body[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["name"].as_str().map(str::to_owned))
            .collect()
    };
    let mut table = StatusTable::from_names(names("services"), names("pipelines"));
    for pipeline in status.body["pipelines"].as_array().into_iter().flatten() {
        table.pipeline(
            pipeline["name"].as_str().unwrap_or_default(),
            &gate(&pipeline["readiness"]),
        );
    }
    load_listing(client, &mut table).await?;
    table.redraw();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            next = stream.next() => match next? {
                Some((name, data)) => match name.as_str() {
                    "service" => {
                        if let Some(event) = service_event(&data) {
                            table.apply(&event);
                        }
                    }
                    "pipeline" => table.pipeline(
                        data["pipeline"].as_str().unwrap_or_default(),
                        &gate(&data["readiness"]),
                    ),
                    "lagged" => {
                        table.notice("spindle: fell behind the kernel's events; reloaded");
                        load_listing(client, &mut table).await?;
                    }
                    _ => {}
                },
                None => break,
            },
            _ = tick.tick() => {}
        }
        table.redraw();
    }
    table.redraw();
    Ok(ExitCode::SUCCESS)
}

async fn load_listing(client: &ControlClient, table: &mut StatusTable) -> anyhow::Result<()> {
    let services = client.get("/v1/services").await?;
    if !services.status.is_success() {
        return Err(refusal(&services));
    }
    for service in services.body["services"].as_array().into_iter().flatten() {
        table.set_row(
            service["name"].as_str().unwrap_or_default(),
            state(service["state"].as_str().unwrap_or_default()),
            service["pid"].as_u64().map(|pid| pid as u32),
            service["restarts"].as_u64().unwrap_or(0) as u32,
            service["uptime_s"].as_f64().map(Duration::from_secs_f64),
            service["reason"].as_str().unwrap_or_default(),
        );
    }
    Ok(())
}

fn gate(readiness: &Value) -> Gate {
    let reason = readiness["reason"].as_str().unwrap_or_default().to_owned();
    match readiness["state"].as_str() {
        Some("ready") => Gate::Open,
        Some("failed") => Gate::Failed { reason },
        _ => Gate::Closed { reason },
    }
}

/// A `service` event's data as the kernel's `Event`.
fn service_event(data: &Value) -> Option<Event> {
    Some(Event {
        at: UNIX_EPOCH + Duration::from_secs_f64(data["ts"].as_f64()?),
        service: data["service"].as_str()?.to_owned(),
        from: state(data["from"].as_str()?),
        to: state(data["to"].as_str()?),
        reason: data["reason"].as_str().unwrap_or_default().to_owned(),
        pid: data["pid"].as_u64().map(|pid| pid as u32),
        restarts: data["restarts"].as_u64().unwrap_or(0) as u32,
        backoff: data["backoff_ms"].as_u64().map(Duration::from_millis),
    })
}

fn state(name: &str) -> ServiceState {
    [
        ServiceState::Pending,
        ServiceState::Starting,
        ServiceState::Running,
        ServiceState::Ready,
        ServiceState::Unhealthy,
        ServiceState::Stopping,
        ServiceState::Stopped,
        ServiceState::Exited,
        ServiceState::Failed,
        ServiceState::Restarting,
        ServiceState::BackingOff,
        ServiceState::GaveUp,
    ]
    .into_iter()
    .find(|state| state.name() == name)
    .unwrap_or(ServiceState::Pending)
}
