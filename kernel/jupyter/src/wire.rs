//! Messages on the wire: an incoming multipart message checked against
//! the key (HMAC-SHA256 over header, parent header, metadata and content)
//! and parsed as loosely as clients write it, and outgoing messages built
//! as children of the message that caused them (their ROUTER identities
//! kept, so a reply reaches the client that asked).
//!
//! Contents are plain JSON here: incoming ones are read field by field
//! (clients send `null` where the typed structs want numbers), outgoing
//! ones are written by `to_proto` exactly as the protocol has them (the
//! typed structs write `null` where clients want `{}`).

use bytes::Bytes;
use jupyter_protocol::{Header, JupyterMessage, JupyterMessageContent, UnknownMessage};
use jupyter_zmq_client::RawMessage;
use serde_json::Value;

/// A message a client sent, signature checked.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub identities: Vec<Bytes>,
    pub header: Header,
    pub content: Value,
}

impl Incoming {
    pub fn msg_type(&self) -> &str {
        &self.header.msg_type
    }

    /// A string field of the content (`""` when missing).
    pub fn str_field(&self, name: &str) -> &str {
        self.content.get(name).and_then(Value::as_str).unwrap_or("")
    }

    pub fn bool_field(&self, name: &str, default: bool) -> bool {
        self.content
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    pub fn int_field(&self, name: &str) -> Option<i64> {
        self.content.get(name).and_then(Value::as_i64)
    }
}

/// Why an incoming message was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("bad signature or framing: {0}")]
    Signature(String),
    #[error("unreadable header or content: {0}")]
    Json(String),
}

/// Checks a multipart message's signature and parses its header and
/// content. Nothing of a message with a bad signature is looked at.
pub(crate) fn parse(
    multipart: zeromq::ZmqMessage,
    key: &Option<ring::hmac::Key>,
) -> Result<Incoming, Refused> {
    let raw = RawMessage::from_multipart(multipart, key)
        .map_err(|error| Refused::Signature(error.to_string()))?;
    let header: Header =
        serde_json::from_slice(&raw.jparts[0]).map_err(|error| Refused::Json(error.to_string()))?;
    let content: Value =
        serde_json::from_slice(&raw.jparts[3]).map_err(|error| Refused::Json(error.to_string()))?;
    Ok(Incoming {
        identities: raw.zmq_identities,
        header,
        content,
    })
}

/// A message of type `msg_type` caused by `parent`: same identities (so a
/// ROUTER sends it to the asker), `parent`'s header as parent header.
pub(crate) fn child(parent: &Incoming, msg_type: &str, content: Value) -> JupyterMessage {
    let mut message = orphan(msg_type, content);
    message.zmq_identities.clone_from(&parent.identities);
    message.parent_header = Some(parent.header.clone());
    message.header.username.clone_from(&parent.header.username);
    message
}

/// A message with no parent (an iopub message about the kernel itself).
pub(crate) fn orphan(msg_type: &str, content: Value) -> JupyterMessage {
    let mut message = JupyterMessage::new(
        JupyterMessageContent::UnknownMessage(UnknownMessage {
            msg_type: msg_type.to_owned(),
            content,
        }),
        None,
    );
    message.header.username = "spindle".to_owned();
    message
}
