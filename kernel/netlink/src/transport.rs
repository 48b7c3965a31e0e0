//! The two transports, one codec: generic netlink to the kernel module
//! (the family resolved through the controller, the kernel at port 0) and
//! NETLINK_USERSOCK to a userspace peer that plays the kernel (a fixed
//! family id, the peer at a known port).

use std::sync::Arc;

use crate::codec::{self, Header};
use crate::error::Error;
use crate::genl_ctrl;
use crate::message::Message;
use crate::protocol::{EVENTS_GROUP, FAMILY_NAME, USERSOCK_FAMILY_ID};
use crate::socket::NetlinkSocket;
use crate::sys;

/// Which transport the bridge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportConfig {
    /// The generic netlink family of the kernel module.
    Genl,
    /// NETLINK_USERSOCK to the peer bound at `peer_port`.
    Usersock { peer_port: u32 },
}

impl std::str::FromStr for TransportConfig {
    type Err = Error;

    /// `genl`, or `usersock:PORT`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "genl" {
            return Ok(TransportConfig::Genl);
        }
        if let Some(port) = text.strip_prefix("usersock:")
            && let Ok(peer_port) = port.parse::<u32>()
            && peer_port != 0
        {
            return Ok(TransportConfig::Usersock { peer_port });
        }
        Err(Error::Config {
            message: format!("unknown netlink transport `{text}`"),
            hint: "use `genl` (the kernel module) or `usersock:PORT` (a `spindle netlink-peer`)",
        })
    }
}

/// A connected transport: the socket, the family id and where the kernel
/// (or its stand-in) listens.
#[derive(Debug, Clone)]
pub struct Link {
    pub socket: Arc<NetlinkSocket>,
    pub family_id: u16,
    pub kernel_port: u32,
    /// The events group's id (genl only).
    pub events_group: Option<u32>,
}

impl Link {
    /// Opens the socket and, for genl, resolves the family.
    pub async fn connect(config: TransportConfig, seq: u32) -> Result<Link, Error> {
        match config {
            TransportConfig::Genl => {
                let socket = NetlinkSocket::open(sys::NETLINK_GENERIC, 0)
                    .map_err(|source| Error::io("opening a generic netlink socket", source))?;
                let family = genl_ctrl::resolve(&socket, FAMILY_NAME, seq).await?;
                Ok(Link {
                    socket: Arc::new(socket),
                    family_id: family.id,
                    kernel_port: 0,
                    events_group: family.group(EVENTS_GROUP),
                })
            }
            TransportConfig::Usersock { peer_port } => {
                let socket = NetlinkSocket::open(sys::NETLINK_USERSOCK, 0)
                    .map_err(|source| Error::io("opening a NETLINK_USERSOCK socket", source))?;
                Ok(Link {
                    socket: Arc::new(socket),
                    family_id: USERSOCK_FAMILY_ID,
                    kernel_port: peer_port,
                    events_group: None,
                })
            }
        }
    }

    /// The header of a message this side sends.
    pub fn header(&self, flags: u16, seq: u32) -> Header {
        Header {
            kind: self.family_id,
            flags: codec::NLM_F_REQUEST | flags,
            seq,
            port: self.socket.port(),
        }
    }

    /// Encodes and sends one message to the kernel.
    pub async fn send(&self, message: &Message, flags: u16, seq: u32) -> std::io::Result<()> {
        let datagram = codec::encode(message, self.header(flags, seq));
        self.socket.send(&datagram, self.kernel_port).await
    }
}
