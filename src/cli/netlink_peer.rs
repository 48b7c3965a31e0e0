//! `spindle netlink-peer`: a userspace peer that plays the kernel module
//! over NETLINK_USERSOCK (sends requests, checks every answer, prints
//! throughput and latency), and `--bridge SCRIPT`, the daemon side: the
//! script's pipelines behind the netlink bridge, over the kernel module's
//! generic netlink family or NETLINK_USERSOCK to such a peer.
//! Printing only; the work is in `spindle-netlink`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use spindle_kernel::{Kernel, KernelConfig, KernelError, KernelSource};
use spindle_netlink::peer::{Peer, PeerConfig, PriorityMix};
use spindle_netlink::{BridgeConfig, TransportConfig};
use tokio_util::sync::CancellationToken;

/// Play the kernel module over NETLINK_USERSOCK, or (with --bridge) serve a
/// script's pipelines to it.
///
/// As the peer: binds a NETLINK_USERSOCK port, prints it, waits for a
/// daemon to register, sends requests at the given rate and priority mix,
/// checks that every request gets exactly one well-formed answer, and
/// prints throughput and latency percentiles. Exit status 0 when every
/// answer checked out, 1 otherwise.
///
/// With --bridge: runs the script's kernel (as `spindle run` does, without
/// the status display) and serves the pipelines that declare `s.netlink {
/// family = "spindle" }` until Ctrl-C or SIGTERM, then drains.
/// `spindle run SCRIPT --netlink genl` serves them the same way beside a
/// normal run.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  spindle netlink-peer --port 4000 --requests 10000 --pipeline ingest &
  spindle netlink-peer --bridge graph.lua --transport usersock:4000

  spindle netlink-peer --bridge graph.lua --transport genl   # with kmod/spindle_netlink.ko loaded")]
pub struct Args {
    /// Serve this script's netlink pipelines (the daemon side) instead of
    /// playing the kernel.
    #[arg(long, value_name = "SCRIPT")]
    bridge: Option<PathBuf>,
    /// With --bridge: `genl` (the kernel module) or `usersock:PORT` (a peer).
    #[arg(long, default_value = "genl", requires = "bridge")]
    transport: String,
    /// Requests in flight at once: the daemon's window with --bridge, the
    /// peer's outstanding requests otherwise.
    #[arg(long, default_value_t = 64)]
    window: u32,
    /// With --bridge: the instance id to register (hex; default random).
    #[arg(long, value_name = "HEX", requires = "bridge")]
    instance_id: Option<String>,
    /// With --bridge: announce this protocol version (tests of a mismatch).
    #[arg(long, hide = true, requires = "bridge")]
    protocol_version: Option<u32>,
    /// The NETLINK_USERSOCK port to bind (0: any; printed).
    #[arg(long, default_value_t = 0)]
    port: u32,
    /// Requests to send.
    #[arg(long, default_value_t = 1000)]
    requests: u64,
    /// Requests per second (default: as fast as the window allows).
    #[arg(long)]
    rate: Option<f64>,
    /// Priority weights HIGH:MEDIUM:LOW.
    #[arg(long, default_value = "1:2:1")]
    mix: String,
    /// The pipeline to call.
    #[arg(long, default_value = "ingest")]
    pipeline: String,
    /// Texts to send, in turn (default: one sentence).
    #[arg(long = "text", value_name = "TEXT")]
    texts: Vec<String>,
    /// Send texts of this many bytes instead of --text.
    #[arg(long, value_name = "BYTES")]
    payload_bytes: Option<usize>,
    /// Each request's deadline.
    #[arg(long, default_value_t = 5000)]
    deadline_ms: u32,
    /// Every ok answer must carry this many dimensions (0: no vector).
    #[arg(long)]
    expect_dims: Option<u32>,
    /// How long to wait for a daemon to register.
    #[arg(long, default_value_t = 60)]
    accept_timeout_s: u64,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::embed::init_logging();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match args.bridge.clone() {
        Some(script) => runtime.block_on(bridge(script, args)),
        None => runtime.block_on(peer(args)),
    }
}

async fn peer(args: Args) -> anyhow::Result<ExitCode> {
    let mix: PriorityMix = args.mix.parse()?;
    let texts = match args.payload_bytes {
        Some(bytes) => vec![payload(bytes)],
        None if args.texts.is_empty() => {
            vec!["The quick brown fox jumps over the lazy dog.".to_owned()]
        }
        None => args.texts.clone(),
    };
    let mut peer = Peer::bind(args.port)?;
    println!(
        "netlink-peer: listening on NETLINK_USERSOCK port {}",
        peer.port()
    );
    let daemon = peer
        .accept(Duration::from_secs(args.accept_timeout_s), &mut 0)
        .await?;
    let serves: Vec<String> = daemon
        .register
        .serves
        .iter()
        .map(|serve| match &serve.model {
            Some(model) => format!("{} ({model}, {} dims)", serve.pipeline, serve.dims),
            None => serve.pipeline.clone(),
        })
        .collect();
    println!(
        "netlink-peer: daemon at port {} registered (instance {:016x}, window {}): {}",
        daemon.port,
        daemon.register.instance_id,
        daemon.register.max_inflight,
        serves.join(", ")
    );
    let report = peer
        .drive(&PeerConfig {
            requests: args.requests,
            rate: args.rate,
            window: args.window,
            mix,
            pipeline: args.pipeline.clone(),
            texts,
            deadline_ms: args.deadline_ms,
            expect_dims: args.expect_dims,
        })
        .await?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{:#}\n", report.to_json()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Text of about `bytes` bytes, whole words.
fn payload(bytes: usize) -> String {
    let words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur"];
    let mut text = String::with_capacity(bytes + 12);
    let mut index = 0;
    while text.len() < bytes {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(words[index % words.len()]);
        index += 1;
    }
    text.truncate(bytes.max(1));
    text
}

async fn bridge(script: PathBuf, args: Args) -> anyhow::Result<ExitCode> {
    let instance_id = match &args.instance_id {
        Some(hex) => Some(
            u64::from_str_radix(hex.trim_start_matches("0x"), 16)
                .with_context(|| format!("instance id `{hex}` is not hexadecimal"))?,
        ),
        None => None,
    };
    let mut config = bridge_config(&args.transport)?;
    config.max_inflight = args.window;
    config.instance_id = instance_id;
    if let Some(version) = args.protocol_version {
        config.protocol_version = version;
    }
    let kernel = match Kernel::start(
        KernelSource::Script(script.clone()),
        KernelConfig::default(),
    ) {
        Ok(kernel) => kernel,
        Err(KernelError::Script { diagnostics, .. }) => {
            eprint!("{}", super::diagnostics_text(&diagnostics));
            return Ok(ExitCode::from(1));
        }
        Err(error) => {
            return Err(error).with_context(|| format!("cannot run {}", script.display()));
        }
    };
    // Ctrl-C or SIGTERM drains the bridge first (UNREGISTER, then every
    // request in flight answered by a kernel still running), and only then
    // stops the kernel: an upgrade (a new instance registers, this one is
    // told to stop) loses nothing.
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match terminate.as_mut() { Some(signal) => { signal.recv().await; } None => std::future::pending().await } } => {}
        }
        stop.cancel();
    });
    eprintln!(
        "netlink-peer: bridge for {} over {}",
        script.display(),
        args.transport
    );
    let counters = config.counters.clone();
    let result = spindle_netlink::serve(kernel.clone(), config, shutdown).await;
    kernel.shutdown();
    let _ = kernel.wait().await;
    eprintln!(
        "netlink-peer: bridge stopped: {} requests, {} settled",
        spindle_netlink::BridgeCounters::get(&counters.requests),
        counters.settled()
    );
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The bridge's settings for `genl` or `usersock:PORT`.
fn bridge_config(transport: &str) -> anyhow::Result<BridgeConfig> {
    let transport: TransportConfig = transport.parse()?;
    Ok(BridgeConfig {
        transport,
        ..BridgeConfig::default()
    })
}

/// Serves until the kernel begins to shut down, then drains.
async fn serve_until_shutdown(kernel: &Kernel, config: BridgeConfig) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let watched = kernel.clone();
    tokio::spawn(async move {
        watched.shutting_down().await;
        stop.cancel();
    });
    spindle_netlink::serve(kernel.clone(), config, shutdown).await?;
    Ok(())
}

/// `spindle run --netlink TRANSPORT`: the bridge beside the run, stopped
/// (after its drain) when the kernel shuts down.
pub fn start_for_run(kernel: &Kernel, transport: &str) -> anyhow::Result<()> {
    let config = bridge_config(transport)?;
    eprintln!("spindle: serving netlink pipelines over {transport}");
    let kernel = kernel.clone();
    tokio::spawn(async move {
        if let Err(error) = serve_until_shutdown(&kernel, config).await {
            eprintln!("spindle: netlink: {error:#}");
        }
    });
    Ok(())
}
