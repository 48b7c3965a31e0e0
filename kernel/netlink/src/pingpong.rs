//! The raw netlink round trip: two NETLINK_USERSOCK sockets bouncing a
//! datagram of a given size, with blocking calls and nothing else. The
//! benchmark runs it as the floor the bridge is compared with
//! (`netlink-pingpong echo` and `netlink-pingpong ping`).

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::sys;

/// An echo socket: answers every datagram with itself, to its sender.
pub struct Echo {
    fd: OwnedFd,
    port: u32,
}

impl Echo {
    pub fn bind(port: u32) -> io::Result<Echo> {
        let fd = sys::open(sys::NETLINK_USERSOCK, true)?;
        let _ = sys::set_receive_buffer(&fd, 8 * 1024 * 1024);
        sys::bind(&fd, port)?;
        let port = sys::local_port(&fd)?;
        Ok(Echo { fd, port })
    }

    pub fn port(&self) -> u32 {
        self.port
    }

    /// Echoes until a one-byte datagram arrives (netlink refuses empty
    /// ones; pings are at least eight bytes).
    pub fn run(&self) -> io::Result<()> {
        let mut buffer = vec![0u8; 70 * 1024];
        loop {
            let received = sys::recv_from(&self.fd, &mut buffer)?;
            if received.len == 1 {
                return Ok(());
            }
            sys::send_to(&self.fd, &buffer[..received.len], received.port)?;
        }
    }
}

/// Round trips measured by [`ping`].
#[derive(Debug, Clone)]
pub struct PingReport {
    pub size: usize,
    pub window: usize,
    pub round_trips: usize,
    pub elapsed: Duration,
    /// One per round trip, sorted.
    pub latencies: Vec<Duration>,
}

/// Sends `count` datagrams of `size` bytes to the echo at `port`, keeping
/// `window` in flight, and times each round trip.
pub fn ping(port: u32, size: usize, count: usize, window: usize) -> io::Result<PingReport> {
    let fd = sys::open(sys::NETLINK_USERSOCK, true)?;
    let _ = sys::set_receive_buffer(&fd, 8 * 1024 * 1024);
    sys::bind(&fd, 0)?;
    let mut datagram = vec![0x5au8; size.max(8)];
    let mut buffer = vec![0u8; 70 * 1024];
    let window = window.max(1).min(count.max(1));
    let mut sent_at = vec![Instant::now(); count];
    let mut latencies = Vec::with_capacity(count);
    let start = Instant::now();
    let mut sent = 0;
    while sent < window {
        datagram[..8].copy_from_slice(&(sent as u64).to_ne_bytes());
        sent_at[sent] = Instant::now();
        sys::send_to(&fd, &datagram, port)?;
        sent += 1;
    }
    while latencies.len() < count {
        let received = sys::recv_from(&fd, &mut buffer)?;
        let index = u64::from_ne_bytes(buffer[..8].try_into().unwrap_or([0; 8])) as usize;
        if received.len != datagram.len() || index >= count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the echo sent back something else",
            ));
        }
        latencies.push(sent_at[index].elapsed());
        if sent < count {
            datagram[..8].copy_from_slice(&(sent as u64).to_ne_bytes());
            sent_at[sent] = Instant::now();
            sys::send_to(&fd, &datagram, port)?;
            sent += 1;
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Ok(PingReport {
        size,
        window,
        round_trips: count,
        elapsed,
        latencies,
    })
}

/// Asks the echo at `port` to stop.
pub fn stop_echo(port: u32) -> io::Result<()> {
    let fd = sys::open(sys::NETLINK_USERSOCK, true)?;
    sys::bind(&fd, 0)?;
    sys::send_to(&fd, &[0xff], port)?;
    Ok(())
}

/// The `fraction` quantile of sorted durations.
pub fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
