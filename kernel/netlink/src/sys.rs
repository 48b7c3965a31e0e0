//! Every raw socket call of the crate, each `unsafe` block with its SAFETY
//! reason: open, bind, address, options, send and receive on an
//! `AF_NETLINK` datagram socket. The rest of the crate is safe code on top.
//!
//! This module knows no protocol; its one tie to tokio is registering a descriptor.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `NETLINK_USERSOCK`: datagrams between userspace sockets.
pub const NETLINK_USERSOCK: i32 = 2;
/// `NETLINK_GENERIC`: generic netlink families.
pub const NETLINK_GENERIC: i32 = 16;
const SOL_NETLINK: i32 = 270;
/// Join a multicast group.
pub const NETLINK_ADD_MEMBERSHIP: i32 = 1;
/// Do not report ENOBUFS when the receive buffer overflowed.
pub const NETLINK_NO_ENOBUFS: i32 = 5;
/// Echo only the header of a failed message in its ack.
pub const NETLINK_CAP_ACK: i32 = 10;
/// Ask for extended acks (error texts).
pub const NETLINK_EXT_ACK: i32 = 11;

/// Opens a close-on-exec netlink datagram socket, non-blocking unless
/// `blocking` (the raw ping-pong anchor blocks in the kernel).
pub fn open(protocol: i32, blocking: bool) -> io::Result<OwnedFd> {
    let nonblocking = if blocking { 0 } else { libc::SOCK_NONBLOCK };
    // SAFETY: socket(2) takes plain integers and returns a new descriptor
    // or -1; no memory is shared with the kernel.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | nonblocking,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open, and nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn address(port: u32, groups: u32) -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value
    // (its padding field must be zero anyway).
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address.nl_pid = port;
    address.nl_groups = groups;
    address
}

/// Binds the socket to `port` (0: the kernel picks one).
pub fn bind(fd: &OwnedFd, port: u32) -> io::Result<()> {
    let address = address(port, 0);
    // SAFETY: `address` is a valid sockaddr_nl that outlives the call, and
    // the length passed is its size.
    let result = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const address).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The port the socket is bound to.
pub fn local_port(fd: &OwnedFd) -> io::Result<u32> {
    let mut address = address(0, 0);
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `address` and `len` are valid for writes, and `len` holds the
    // buffer's size as getsockname(2) requires.
    let result = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&raw mut address).cast::<libc::sockaddr>(),
            &raw mut len,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(address.nl_pid)
}

/// Sets an integer socket option of level SOL_NETLINK.
pub fn set_netlink_option(fd: &OwnedFd, option: i32, value: i32) -> io::Result<()> {
    set_option(fd, SOL_NETLINK, option, value)
}

/// Sets the receive buffer size (SO_RCVBUFFORCE as root, else SO_RCVBUF).
pub fn set_receive_buffer(fd: &OwnedFd, bytes: i32) -> io::Result<()> {
    set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)
        .or_else(|_| set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes))
}

fn set_option(fd: &OwnedFd, level: i32, option: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is an int that outlives the call and the length given
    // is its size.
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (&raw const value).cast::<libc::c_void>(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends one datagram to `port` (0: the kernel).
pub fn send_to(fd: &OwnedFd, datagram: &[u8], port: u32) -> io::Result<usize> {
    let address = address(port, 0);
    // SAFETY: `datagram` is valid for reads of its length, `address` is a
    // valid sockaddr_nl of the length passed; both outlive the call.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            datagram.as_ptr().cast::<libc::c_void>(),
            datagram.len(),
            0,
            (&raw const address).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// What one receive brought.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes written into the buffer.
    pub len: usize,
    /// The datagram's real size; larger than `len` when it was cut.
    pub full_len: usize,
    /// The sender's port (0: the kernel).
    pub port: u32,
    /// The multicast groups it was sent to (0: unicast).
    pub groups: u32,
}

/// Receives one datagram (`WouldBlock` on a non-blocking socket when none
/// is queued).
pub fn recv_from(fd: &OwnedFd, buffer: &mut [u8]) -> io::Result<Received> {
    let mut address = address(0, 0);
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `buffer` is valid for writes of its length; `address` and
    // `len` are valid for writes and `len` holds the address buffer's size.
    // MSG_TRUNC makes the call return the datagram's full size.
    let received = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buffer.as_mut_ptr().cast::<libc::c_void>(),
            buffer.len(),
            libc::MSG_TRUNC,
            (&raw mut address).cast::<libc::sockaddr>(),
            &raw mut len,
        )
    };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    let full_len = received as usize;
    Ok(Received {
        len: full_len.min(buffer.len()),
        full_len,
        port: address.nl_pid,
        groups: address.nl_groups,
    })
}

/// Makes `fd`'s calls block (`blocking`) or return `WouldBlock` at once.
pub fn set_blocking(fd: &OwnedFd, blocking: bool) -> io::Result<()> {
    // SAFETY: F_GETFL and F_SETFL take and return plain flag words on an
    // open descriptor that `fd` keeps open.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if blocking {
        flags & !libc::O_NONBLOCK
    } else {
        flags | libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How long a blocking receive on `fd` waits before it fails with
/// `WouldBlock` (SO_RCVTIMEO; zero waits for ever).
pub fn set_receive_timeout(fd: &OwnedFd, timeout: std::time::Duration) -> io::Result<()> {
    let value = libc::timeval {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // SAFETY: `value` is a timeval that outlives the call and the length
    // given is its size.
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const value).cast::<libc::c_void>(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to one CPU (benchmarks say how they pinned).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; `cpu` is checked against
    // the set's capacity first.
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    let result = unsafe {
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set)
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Registers `fd` with the tokio reactor (must run inside a runtime).
pub fn register_async(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    use tokio::io::Interest;
    // SAFETY: `OwnedFd` owns an open descriptor, keeps it open until it is
    // dropped, and always returns the same one from `as_raw_fd`; the
    // `AsyncFd` owns the `OwnedFd` for its whole life.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            fd,
            Interest::READABLE | Interest::WRITABLE,
        )
    }
    .map_err(io::Error::from)
}
