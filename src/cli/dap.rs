//! `spindle dap`: the debug adapter a DAP client (VS Code, any editor)
//! starts, over stdio or, with `--port`, over TCP; and the debug port that
//! `spindle run --debug-port` opens for it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use spindle_kernel::Kernel;

/// Debug a graph over the Debug Adapter Protocol.
///
/// A DAP client starts `spindle dap` and sends `launch` (program, args,
/// env, cwd, stopOnEntry, http) to run a graph under the debugger, or
/// `attach` (port, token or tokenFile) to debug a running
/// `spindle run --debug-port`. Threads are the requests in flight. See
/// docs/debugging.md.
#[derive(clap::Args)]
pub struct Args {
    /// Serve DAP over TCP on 127.0.0.1:PORT instead of stdin/stdout.
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let spindle = std::env::current_exe().context("cannot find the spindle executable")?;
    let result = runtime.block_on(async move {
        match args.port {
            None => {
                spindle_dap::run_adapter(tokio::io::stdin(), tokio::io::stdout(), spindle).await;
            }
            Some(port) => {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
                eprintln!(
                    "spindle dap: listening on {}",
                    listener.local_addr().context("no local address")?
                );
                loop {
                    let (stream, _) = listener.accept().await.context("accept failed")?;
                    let _ = stream.set_nodelay(true);
                    let (reader, writer) = stream.into_split();
                    // Each client its own adapter: one that idles keeps
                    // no other waiting.
                    tokio::spawn(spindle_dap::run_adapter(reader, writer, spindle.clone()));
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    // The blocking read of stdin never returns by itself: do not wait for
    // it, or the adapter would outlive its client (and hold the debug port).
    runtime.shutdown_background();
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the debug port of `spindle run --debug-port`: loopback only, its
/// token written to DATA_DIR/debug-token (readable by the owner only),
/// both printed on stderr.
pub async fn start_debug_port(kernel: &Kernel, port: u16, data_dir: &Path) -> anyhow::Result<()> {
    let debug_port = spindle_dap::DebugPort::bind(port)
        .await
        .with_context(|| format!("cannot listen for debuggers on 127.0.0.1:{port}"))?;
    let address = debug_port
        .listener
        .local_addr()
        .context("the debug port has no address")?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let token_file = data_dir.join("debug-token");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&token_file)
            .with_context(|| format!("cannot write {}", token_file.display()))?;
        file.write_all(debug_port.token.as_bytes())?;
    }
    eprintln!(
        "spindle: debugger listening on {address}, token in {}",
        token_file.display()
    );
    tokio::spawn(spindle_dap::serve_debug_port(debug_port, kernel.clone()));
    Ok(())
}
