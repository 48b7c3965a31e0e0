//! systemd's readiness protocol (`Type=notify`): when `NOTIFY_SOCKET` is
//! set, state changes go to it as datagrams: `READY=1` once the graph has
//! settled, `STATUS=...` lines, `RELOADING=1` around a reload, `STOPPING=1`
//! when shutdown begins. An address starting with `@` is in the abstract
//! namespace. `spindle run --detach` uses the same protocol between its
//! parent and the daemon. See `docs/systemd.md`.

use std::os::unix::net::UnixDatagram;

use spindle_kernel::supervisor::ServiceState;
use spindle_kernel::{Kernel, KernelEvent};

/// The socket to notify, if the environment names one.
#[derive(Debug)]
pub(crate) struct Notifier {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
}

impl Notifier {
    pub(crate) fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?.to_owned();
        let address = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        Some(Notifier { socket, address })
    }

    /// Sends one message (newline-separated `KEY=value` lines); a failure
    /// is only logged: the run goes on whether or not anyone listens.
    pub(crate) fn send(&self, message: &str) {
        if let Err(error) = self.socket.send_to_addr(message.as_bytes(), &self.address) {
            tracing::warn!("sd_notify: {error}");
        }
    }
}

/// Whether a service has got as far as it will without more changes:
/// ready, or at rest (stopped, exited, failed, gave up), or unhealthy
/// after being ready.
fn settled(state: ServiceState) -> bool {
    state.is_at_rest() || matches!(state, ServiceState::Ready | ServiceState::Unhealthy)
}

/// Tells the service manager about the run: `STATUS=` as services become
/// ready, `READY=1` once every service has settled, `STOPPING=1` when
/// shutdown begins. Runs until the kernel's event stream ends.
pub(crate) async fn follow(kernel: Kernel, notifier: std::sync::Arc<Notifier>) {
    let mut events = kernel.subscribe(false);
    let mut ready_sent = false;
    let mut stopping_sent = false;
    loop {
        let services = kernel.services();
        let ready = services
            .iter()
            .filter(|service| service.state == ServiceState::Ready)
            .count();
        if kernel.is_shutting_down() {
            if !stopping_sent {
                notifier.send("STOPPING=1\nSTATUS=stopping services");
                stopping_sent = true;
            }
        } else if !ready_sent && services.iter().all(|service| settled(service.state)) {
            notifier.send(&format!(
                "READY=1\nSTATUS={ready}/{} services ready",
                services.len()
            ));
            ready_sent = true;
        } else {
            notifier.send(&format!("STATUS={ready}/{} services ready", services.len()));
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(KernelEvent::Service(_) | KernelEvent::Lagged { .. }) => {}
                Some(_) => continue,
                None => return,
            },
            () = kernel.shutting_down(), if !stopping_sent => {}
        }
    }
}

/// A reload begins (`RELOADING=1`) or ended (`READY=1` again).
pub(crate) fn reloading(notifier: Option<&Notifier>, begins: bool) {
    let Some(notifier) = notifier else {
        return;
    };
    if begins {
        let now = monotonic_usec();
        notifier.send(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
    } else {
        notifier.send("READY=1");
    }
}

/// CLOCK_MONOTONIC in microseconds, as `RELOADING=1` wants it.
fn monotonic_usec() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut time) };
    time.tv_sec as u64 * 1_000_000 + time.tv_nsec as u64 / 1_000
}
