//! Why a message was rejected, and what could still be read of it.

use crate::protocol::FAMILY_VERSION;

/// Why a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("truncated: {what} needs {need} bytes, {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("message length {len} is invalid ({why})")]
    BadLength { len: usize, why: &'static str },
    #[error("message type {0} is not the family's")]
    WrongFamily(u16),
    #[error("unknown command {0}")]
    UnknownCommand(u8),
    #[error("command {command} may not travel {direction}")]
    WrongDirection {
        command: u8,
        direction: &'static str,
    },
    #[error("genl version {0}, expected {FAMILY_VERSION}")]
    GenlVersion(u8),
    #[error("genl header's reserved field is {0}, expected 0")]
    Reserved(u16),
    #[error("attribute {attr} has length {len}, the header alone is 4")]
    AttrHeader { attr: u16, len: usize },
    #[error("attribute {name} has {len} bytes, expected {expected}")]
    AttrSize {
        name: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("unknown attribute {attr}{within}")]
    UnknownAttr { attr: u16, within: &'static str },
    #[error("attribute {name} is not allowed in {command}")]
    AttrNotAllowed {
        name: &'static str,
        command: &'static str,
    },
    #[error("attribute {name} appears twice")]
    Duplicate { name: &'static str },
    #[error("attribute {name} is missing")]
    Missing { name: &'static str },
    #[error("attribute {name} has the network byte order flag")]
    ByteOrderFlag { name: &'static str },
    #[error("attribute {name}: nested flag {why}")]
    NestedFlag {
        name: &'static str,
        why: &'static str,
    },
    #[error("string {name} is not NUL-terminated")]
    NotTerminated { name: &'static str },
    #[error("string {name} has a NUL inside")]
    InnerNul { name: &'static str },
    #[error("{name} is not UTF-8")]
    NotUtf8 { name: &'static str },
    #[error("{name} is {len} bytes, at most {max} allowed")]
    TooLong {
        name: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{name} is empty")]
    Empty { name: &'static str },
    #[error("{name} has the invalid value {value}")]
    BadValue { name: &'static str, value: u64 },
    #[error("{len} bytes trail the last attribute")]
    Trailing { len: usize },
    #[error("the vector's {len} bytes are not a whole number of f32")]
    VectorSize { len: usize },
    #[error("the vector holds a value that is not finite")]
    VectorNotFinite,
}

/// A rejected message with what could still be read of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink message (seq {seq}, port {port}): {reason}")]
pub struct DecodeError {
    pub reason: Malformed,
    pub seq: u32,
    pub port: u32,
    /// The genl command, when the header got that far.
    pub command: Option<u8>,
    /// The request it carried, when that attribute could be read: the
    /// receiver answers it rather than letting it wait for its deadline.
    pub request_id: Option<u64>,
}
