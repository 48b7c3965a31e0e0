//! The bridge: registers with the kernel (or the peer playing it), turns
//! each REQUEST into a kernel submission and sends exactly one REPLY per
//! request; heartbeats both ways; re-registers when the other side comes
//! back (a module reload, a restarted peer); a bounded in-flight window
//! answered with BUSY; a drain on shutdown (UNREGISTER, answer what is in
//! flight, then close).
//!
//! It knows the kernel only through [`crate::kernel_handle`].

mod answer;
mod register;
mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Error;
use crate::kernel_handle::{Kernel, KernelHandle};
use crate::message::Serve;
use crate::protocol::{FAMILY_NAME, PROTOCOL_VERSION, feature, limit};
use crate::transport::{Link, TransportConfig};

pub use session::SessionEnd;

/// Settings of the bridge.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub transport: TransportConfig,
    /// Pipelines that declare `s.netlink { family = <this> }` are served.
    pub family: String,
    /// Requests handled at once; more are answered BUSY.
    pub max_inflight: u32,
    /// How often the bridge sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// Heartbeat intervals without a word from the kernel before the bridge
    /// registers again.
    pub heartbeat_misses: u32,
    /// Wait between attempts while the family or peer is missing.
    pub reconnect_delay: Duration,
    /// Announced at register; only tests change it (a version mismatch).
    pub protocol_version: u32,
    pub features: u64,
    /// The instance's id; random when `None`.
    pub instance_id: Option<u64>,
    /// Counters, shared so a caller can read them while the bridge runs.
    pub counters: Arc<BridgeCounters>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            transport: TransportConfig::Genl,
            family: FAMILY_NAME.to_owned(),
            max_inflight: 256,
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_misses: 3,
            reconnect_delay: Duration::from_millis(500),
            protocol_version: PROTOCOL_VERSION,
            features: feature::ALL,
            instance_id: None,
            counters: Arc::default(),
        }
    }
}

/// What the bridge did; every request received is counted in exactly one
/// of `replied_*`, `busy`, `rejected_malformed` or `unanswered`.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    pub registrations: AtomicU64,
    pub requests: AtomicU64,
    pub replied_ok: AtomicU64,
    pub replied_error: AtomicU64,
    pub replied_timeout: AtomicU64,
    pub replied_cancelled: AtomicU64,
    /// Answered BUSY (window full, or the kernel's queue full).
    pub busy: AtomicU64,
    /// Requests that failed validation and were answered EINVAL.
    pub rejected_malformed: AtomicU64,
    /// Messages that failed validation and carried no request to answer.
    pub malformed: AtomicU64,
    pub cancels: AtomicU64,
    /// Replies the kernel refused (it had already given up on them).
    pub late_replies: AtomicU64,
    /// Replies that could not be sent (the socket or the kernel was gone).
    pub unanswered: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub heartbeats_answered: AtomicU64,
}

impl BridgeCounters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Requests with their one answer given (or given up on).
    pub fn settled(&self) -> u64 {
        [
            &self.replied_ok,
            &self.replied_error,
            &self.replied_timeout,
            &self.replied_cancelled,
            &self.busy,
            &self.rejected_malformed,
            &self.unanswered,
        ]
        .iter()
        .map(|counter| counter.load(Ordering::Relaxed))
        .sum()
    }
}

/// Serves the kernel's pipelines over netlink until `shutdown`, then
/// drains: unregisters, answers what is in flight, and returns.
pub async fn serve(
    kernel: Kernel,
    config: BridgeConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let kernel = KernelHandle::new(kernel);
    let serves = served_pipelines(&kernel, &config.family)?;
    if config.max_inflight == 0 || config.max_inflight > limit::MAX_INFLIGHT {
        return Err(Error::Config {
            message: format!("max_inflight {} is out of range", config.max_inflight),
            hint: "use 1 to 4096",
        });
    }
    let instance_id = config.instance_id.unwrap_or_else(rand::random);
    // The requests' tasks, which outlive a lost session: their answers go
    // out on the link they came in on.
    let tasks = TaskTracker::new();
    let shared = Arc::new(session::Shared::new(kernel, config, serves, instance_id));
    let mut announced_missing = false;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let link = match Link::connect(shared.config.transport, shared.next_seq()).await {
            Ok(link) => link,
            Err(Error::FamilyMissing { family }) => {
                if !announced_missing {
                    tracing::warn!(
                        "netlink: family `{family}` is not registered; waiting for the module"
                    );
                    announced_missing = true;
                }
                if wait_or_stop(&shutdown, shared.config.reconnect_delay).await {
                    break;
                }
                continue;
            }
            Err(error) => return Err(error),
        };
        match register::register(&link, &shared).await {
            Ok((registered, early)) => {
                announced_missing = false;
                shared
                    .counters
                    .registrations
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    port = link.socket.port(),
                    instance = format!("{instance_id:016x}"),
                    window = registered.max_inflight,
                    "netlink: registered"
                );
                match session::run(&link, &shared, registered, early, &tasks, &shutdown).await {
                    SessionEnd::Shutdown => {
                        session::drain(&link, &shared, &tasks).await;
                        return Ok(());
                    }
                    SessionEnd::Lost(why) => {
                        tracing::warn!("netlink: lost the kernel ({why}); registering again");
                    }
                }
            }
            Err(Error::FamilyMissing { .. }) | Err(Error::NoAnswer { .. }) => {}
            // Registering again after a lost session: the kernel may not
            // have released the old registration of this instance id yet
            // (its socket is still open while old replies go out, or the
            // module's heartbeat watchdog has not removed it). Retry.
            Err(Error::Refused { errno, .. })
                if errno == libc::EBUSY
                    && shared.counters.registrations.load(Ordering::Relaxed) > 0 => {}
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ECONNREFUSED) => {
                if !announced_missing {
                    tracing::warn!("netlink: nobody listens at the peer's port yet; retrying");
                    announced_missing = true;
                }
            }
            Err(error) => return Err(error),
        }
        if wait_or_stop(&shutdown, shared.config.reconnect_delay).await {
            break;
        }
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// True when `shutdown` fired first.
async fn wait_or_stop(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// The pipelines that declare a netlink source of `family`.
fn served_pipelines(kernel: &KernelHandle, family: &str) -> Result<Vec<Serve>, Error> {
    let serves: Vec<Serve> = kernel
        .pipelines()
        .iter()
        .filter(|pipeline| pipeline.netlink_families.iter().any(|name| name == family))
        .map(|pipeline| Serve {
            pipeline: pipeline.name.clone(),
            model: pipeline.model.clone(),
            dims: pipeline.dims,
        })
        .collect();
    if serves.is_empty() {
        return Err(Error::Config {
            message: format!("no pipeline declares a netlink source of family `{family}`"),
            hint: "add `from = { s.netlink { family = \"spindle\" } }` to the pipelines the kernel module may call",
        });
    }
    if serves.len() > limit::SERVES {
        return Err(Error::Config {
            message: format!(
                "{} pipelines declare netlink sources; at most {} can register",
                serves.len(),
                limit::SERVES
            ),
            hint: "serve fewer pipelines per instance, or run a second instance",
        });
    }
    if let Some(serve) = serves
        .iter()
        .find(|serve| serve.pipeline.len() > limit::PIPELINE_NAME)
    {
        return Err(Error::Config {
            message: format!(
                "pipeline name `{}` is longer than {} bytes",
                serve.pipeline,
                limit::PIPELINE_NAME
            ),
            hint: "shorten the pipeline's name",
        });
    }
    Ok(serves)
}
