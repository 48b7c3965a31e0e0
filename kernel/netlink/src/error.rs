//! The crate's one error type. Each variant is something a caller acts on
//! and names the fix in its hint.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The generic netlink family is not registered: the module is not
    /// loaded.
    #[error(
        "the generic netlink family `{family}` is not registered\n  hint: load the module (`insmod kmod/spindle_netlink.ko`), or use `--usersock PORT` with `spindle netlink-peer`"
    )]
    FamilyMissing { family: String },
    /// The kernel (or peer) refused registration because of the protocol
    /// version or the features.
    #[error(
        "the kernel refused protocol version {version} with features {features:#x}: {text}\n  hint: use a `spindle` built for the loaded module's protocol version"
    )]
    VersionMismatch {
        version: u32,
        features: u64,
        text: String,
    },
    /// Registration needs CAP_NET_ADMIN.
    #[error(
        "registering with the kernel needs CAP_NET_ADMIN: {text}\n  hint: run the daemon as root or grant it CAP_NET_ADMIN"
    )]
    NotPermitted { text: String },
    /// Another daemon holds this registration.
    #[error("the kernel refused the registration ({errno}): {text}\n  hint: {hint}")]
    Refused {
        errno: i32,
        text: String,
        hint: &'static str,
    },
    /// The peer did not answer in time.
    #[error("no answer from the kernel to {what} within {millis} ms\n  hint: {hint}")]
    NoAnswer {
        what: &'static str,
        millis: u128,
        hint: &'static str,
    },
    /// A socket call failed.
    #[error("netlink socket: {what}: {source}\n  hint: {hint}")]
    Io {
        what: &'static str,
        hint: &'static str,
        #[source]
        source: io::Error,
    },
    /// A configuration value is unusable.
    #[error("invalid netlink bridge setting: {message}\n  hint: {hint}")]
    Config { message: String, hint: &'static str },
    /// The kernel's side could not be started (interim standalone kernel).
    #[error("could not start the kernel for the bridge: {message}\n  hint: {hint}")]
    Kernel { message: String, hint: String },
}

impl Error {
    pub(crate) fn io(what: &'static str, source: io::Error) -> Error {
        let hint = match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => "netlink sockets of this kind need root here",
            Some(libc::EPROTONOSUPPORT) => "this kernel lacks that netlink protocol",
            Some(libc::ECONNREFUSED) => "nobody listens on the peer's port: start the peer first",
            Some(libc::EADDRINUSE) => "another socket holds that port: pick another",
            _ => "see the socket error",
        };
        Error::Io { what, hint, source }
    }
}
