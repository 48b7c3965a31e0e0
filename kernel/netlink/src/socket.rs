//! An `AF_NETLINK` socket on the tokio runtime: the raw calls of `sys`
//! behind readiness. One socket serves both transports (NETLINK_GENERIC to
//! the module, NETLINK_USERSOCK to a peer).

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;

use crate::sys::{self, Received};
use spindle_scripting::spin::{PURE_SPIN, Pause, Spin, move_off_this_cpu};

/// Receive buffer asked for: room for a full in-flight window of large
/// requests, so the kernel never drops one for lack of space.
const RECEIVE_BUFFER: i32 = 8 * 1024 * 1024;

pub struct NetlinkSocket {
    fd: AsyncFd<OwnedFd>,
    port: u32,
}

impl std::fmt::Debug for NetlinkSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkSocket")
            .field("port", &self.port)
            .finish()
    }
}

impl NetlinkSocket {
    /// Opens a socket of `protocol` bound to `port` (0: any), with extended
    /// acks and a large receive buffer. Must run inside a tokio runtime.
    pub fn open(protocol: i32, port: u32) -> io::Result<NetlinkSocket> {
        let fd = sys::open(protocol, false)?;
        // Extended acks carry the kernel's error text; capped acks keep
        // failures small. Both are optional: older kernels ignore them.
        let _ = sys::set_netlink_option(&fd, sys::NETLINK_EXT_ACK, 1);
        let _ = sys::set_netlink_option(&fd, sys::NETLINK_CAP_ACK, 1);
        let _ = sys::set_receive_buffer(&fd, RECEIVE_BUFFER);
        sys::bind(&fd, port)?;
        let port = sys::local_port(&fd)?;
        Ok(NetlinkSocket {
            fd: sys::register_async(fd)?,
            port,
        })
    }

    /// The port this socket is bound to.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Joins multicast group `group`.
    pub fn join_group(&self, group: u32) -> io::Result<()> {
        sys::set_netlink_option(self.fd.get_ref(), sys::NETLINK_ADD_MEMBERSHIP, group as i32)
    }

    /// Sends one datagram to `port`, waiting while the socket is full.
    pub async fn send(&self, datagram: &[u8], port: u32) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| sys::send_to(fd.get_ref(), datagram, port)) {
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends without waiting; used where awaiting is impossible (a drop).
    pub fn try_send(&self, datagram: &[u8], port: u32) -> io::Result<()> {
        sys::send_to(self.fd.get_ref(), datagram, port).map(|_| ())
    }

    /// Makes receives block the calling thread for at most `timeout`
    /// (`Some`), as the raw ping-pong's do, or return to readiness on the
    /// runtime (`None`, as opened). For a caller timing one request at a
    /// time with [`NetlinkSocket::recv_blocking`]; never while a task awaits
    /// [`NetlinkSocket::recv`] on the same socket.
    pub fn block_receives(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        let fd = self.fd.get_ref();
        sys::set_receive_timeout(fd, timeout.unwrap_or_default())?;
        sys::set_blocking(fd, timeout.is_some())
    }

    /// Receives one datagram with the calling thread blocked in the one
    /// call (after [`NetlinkSocket::block_receives`]); `None` when its
    /// timeout passed first.
    pub fn recv_blocking(&self, buffer: &mut [u8]) -> io::Result<Option<Received>> {
        loop {
            match sys::recv_from(self.fd.get_ref(), buffer) {
                Ok(received) => return Ok(Some(received)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Receives one datagram into `buffer`, looking for it without sleeping
    /// for up to `budget` first ([`spindle_scripting::spin`]): each look is
    /// one receive; past the first moments, this thread yields its CPU and
    /// this task the runtime between looks. Then as [`NetlinkSocket::recv`].
    ///
    /// A datagram that comes while the thread sleeps has to wake it, and on
    /// a VM, waking a thread whose CPU went idle costs tens of microseconds:
    /// more than the whole round trip. A caller that expects the next
    /// datagram soon (a request right behind the last answer) spins.
    pub async fn recv_spinning(
        &self,
        buffer: &mut [u8],
        budget: std::time::Duration,
    ) -> io::Result<Received> {
        if !budget.is_zero() {
            let spin = Spin::new(budget, PURE_SPIN);
            loop {
                match sys::recv_from(self.fd.get_ref(), buffer) {
                    Ok(received) => return Ok(received),
                    Err(error)
                        if matches!(
                            error.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(error) => return Err(error),
                }
                match spin.pause() {
                    Pause::Spun => {}
                    Pause::Yielded => tokio::task::yield_now().await,
                    Pause::GaveWay => {
                        // Another thread ran on this CPU while the session
                        // looked: most likely the sender, woken here by the
                        // last reply, so that each waits for the other's
                        // turn while another CPU spins for nothing. The
                        // sender cannot be moved from here; this thread
                        // moves, and the script host, which keeps off the
                        // submitter's CPU, moves on to the sender's.
                        move_off_this_cpu();
                        tokio::task::yield_now().await
                    }
                    Pause::Spent => break,
                }
            }
        }
        self.recv(buffer).await
    }

    /// Receives one datagram into `buffer`.
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| sys::recv_from(fd.get_ref(), buffer)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}
