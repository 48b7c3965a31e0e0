//! Resolving a generic netlink family through the kernel's controller
//! (`nlctrl`): its id and the ids of its multicast groups.

use std::time::Duration;

use crate::codec::{self, AttrWriter, Frame, Header, NLM_F_ACK, NLM_F_REQUEST, raw_attrs};
use crate::error::Error;
use crate::message::Direction;
use crate::socket::NetlinkSocket;

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;

/// A resolved family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFamily {
    pub id: u16,
    /// Multicast groups by name.
    pub groups: Vec<(String, u32)>,
}

impl ResolvedFamily {
    pub fn group(&self, name: &str) -> Option<u32> {
        self.groups
            .iter()
            .find(|(group, _)| group == name)
            .map(|(_, id)| *id)
    }
}

/// Asks the controller for `family`. `Error::FamilyMissing` when it is not
/// registered (the module is not loaded).
pub async fn resolve(
    socket: &NetlinkSocket,
    family: &str,
    seq: u32,
) -> Result<ResolvedFamily, Error> {
    let mut datagram = Vec::new();
    let start = codec::begin_message(
        &mut datagram,
        Header {
            kind: GENL_ID_CTRL,
            flags: NLM_F_REQUEST | NLM_F_ACK,
            seq,
            port: socket.port(),
        },
    );
    datagram.extend_from_slice(&[CTRL_CMD_GETFAMILY, 1, 0, 0]);
    AttrWriter {
        buffer: &mut datagram,
    }
    .string(CTRL_ATTR_FAMILY_NAME, family);
    codec::finish_message(&mut datagram, start);
    socket
        .send(&datagram, 0)
        .await
        .map_err(|source| Error::io("asking nlctrl for the family", source))?;
    let mut buffer = vec![0u8; 16 * 1024];
    let mut resolved = None;
    let answer = async {
        loop {
            let received = socket
                .recv(&mut buffer)
                .await
                .map_err(|source| Error::io("reading nlctrl's answer", source))?;
            for frame in codec::decode(&buffer[..received.len], 0, Direction::ToDaemon) {
                match frame {
                    Ok(Frame::Other { header, payload })
                        if header.seq == seq && header.kind == GENL_ID_CTRL =>
                    {
                        resolved = parse_family(&payload);
                    }
                    Ok(Frame::Ack {
                        acked_seq, error, ..
                    }) if acked_seq == seq => {
                        if error == 0 {
                            return resolved.clone().ok_or(Error::FamilyMissing {
                                family: family.to_owned(),
                            });
                        }
                        return Err(Error::FamilyMissing {
                            family: family.to_owned(),
                        });
                    }
                    _ => {}
                }
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(2), answer).await {
        Ok(result) => result,
        Err(_) => Err(Error::NoAnswer {
            what: "the family lookup",
            millis: 2000,
            hint: "the kernel's generic netlink controller did not answer; is this Linux?",
        }),
    }
}

fn parse_family(payload: &[u8]) -> Option<ResolvedFamily> {
    let attrs = payload.get(codec::GENL_HDRLEN..)?;
    let mut id = None;
    let mut groups = Vec::new();
    for (kind, value) in raw_attrs(attrs) {
        match kind {
            CTRL_ATTR_FAMILY_ID if value.len() == 2 => {
                id = Some(u16::from_ne_bytes([value[0], value[1]]));
            }
            CTRL_ATTR_MCAST_GROUPS => {
                for (_, group) in raw_attrs(value) {
                    let mut name = None;
                    let mut group_id = None;
                    for (kind, value) in raw_attrs(group) {
                        match kind {
                            CTRL_ATTR_MCAST_GRP_NAME => {
                                let value = value.strip_suffix(&[0]).unwrap_or(value);
                                name = Some(String::from_utf8_lossy(value).into_owned());
                            }
                            CTRL_ATTR_MCAST_GRP_ID if value.len() == 4 => {
                                group_id = Some(u32::from_ne_bytes([
                                    value[0], value[1], value[2], value[3],
                                ]));
                            }
                            _ => {}
                        }
                    }
                    if let (Some(name), Some(group_id)) = (name, group_id) {
                        groups.push((name, group_id));
                    }
                }
            }
            _ => {}
        }
    }
    Some(ResolvedFamily { id: id?, groups })
}
