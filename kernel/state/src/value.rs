//! Keys, values and operations, and the values' binary encoding (a tag
//! byte, then the value little-endian; stored after the entry's expiry).

use std::time::Duration;

use crate::StateError;

/// A stored value: what a Lua stage can put in `s.state`.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    Boolean(bool),
    Integer(i64),
    Number(f64),
    String(String),
    /// A vector (a cached embedding).
    Vector(Vec<f32>),
}

impl StateValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            StateValue::Boolean(_) => "a boolean",
            StateValue::Integer(_) => "an integer",
            StateValue::Number(_) => "a number",
            StateValue::String(_) => "a string",
            StateValue::Vector(_) => "a vector",
        }
    }
}

/// Whose key it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateScope {
    /// Shared by every pipeline and request.
    Global,
    /// One pipeline's.
    Pipeline(String),
    /// One request's, by its correlation id (a retry with the same
    /// correlation id sees it).
    Request(String),
}

/// A key in its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKey {
    pub scope: StateScope,
    pub key: String,
}

impl StateKey {
    pub fn global(key: impl Into<String>) -> StateKey {
        StateKey {
            scope: StateScope::Global,
            key: key.into(),
        }
    }

    /// The scope's prefix in the store: `g/`, `p/NAME/` or `r/ID/`.
    pub fn scope_prefix(&self) -> String {
        match &self.scope {
            StateScope::Global => "g/".to_owned(),
            StateScope::Pipeline(name) => format!("p/{}/", escape(name)),
            StateScope::Request(id) => format!("r/{}/", escape(id)),
        }
    }

    /// The full key in the store.
    pub fn stored(&self) -> String {
        format!("{}{}", self.scope_prefix(), self.key)
    }
}

/// `/` in a scope's name would let one scope reach into another's keys.
fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

/// What to do with a key.
#[derive(Debug, Clone, PartialEq)]
pub enum StateOp {
    Get,
    /// `ttl`: the key disappears after it (`None`: never).
    Set {
        value: StateValue,
        ttl: Option<Duration>,
    },
    /// Sets `new` (deletes, when `None`) only if the current value equals
    /// `expected` (`None`: absent). Atomic.
    CompareAndSwap {
        expected: Option<StateValue>,
        new: Option<StateValue>,
        ttl: Option<Duration>,
    },
    /// Adds `by` to an integer (absent counts as 0); a `ttl` renews the
    /// expiry, none keeps it.
    Increment {
        by: i64,
        ttl: Option<Duration>,
    },
    Delete,
    /// The live keys of the scope that start with the key (the prefix), in
    /// order, at most `limit`.
    List {
        limit: usize,
    },
}

/// What an operation answers.
#[derive(Debug, Clone, PartialEq)]
pub enum StateResult {
    /// `Get`, `Set` (the value before), `Delete` (the value before).
    Value(Option<StateValue>),
    /// `CompareAndSwap`: whether it swapped, and the value now.
    Swapped {
        swapped: bool,
        current: Option<StateValue>,
    },
    /// `Increment`: the new value.
    Integer(i64),
    /// `List`: keys (without the scope) and values.
    Entries(Vec<(String, StateValue)>),
}

const TAG_BOOLEAN: u8 = 1;
const TAG_INTEGER: u8 = 2;
const TAG_NUMBER: u8 = 3;
const TAG_STRING: u8 = 4;
const TAG_VECTOR: u8 = 5;

/// `[u64 expires_ms, 0 = never][tag][value]`.
pub(crate) fn encode(value: &StateValue, expires_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&expires_ms.to_le_bytes());
    match value {
        StateValue::Boolean(flag) => {
            out.push(TAG_BOOLEAN);
            out.push(u8::from(*flag));
        }
        StateValue::Integer(number) => {
            out.push(TAG_INTEGER);
            out.extend_from_slice(&number.to_le_bytes());
        }
        StateValue::Number(number) => {
            out.push(TAG_NUMBER);
            out.extend_from_slice(&number.to_le_bytes());
        }
        StateValue::String(text) => {
            out.push(TAG_STRING);
            out.extend_from_slice(text.as_bytes());
        }
        StateValue::Vector(values) => {
            out.push(TAG_VECTOR);
            for value in values {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
    out
}

/// The expiry and the value of a stored entry.
pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<(u64, StateValue), StateError> {
    let bad = |reason: &str| StateError::Decode {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < 9 {
        return Err(bad("shorter than its header"));
    }
    let expires = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
    let body = &bytes[9..];
    let eight = |body: &[u8]| -> Result<[u8; 8], StateError> {
        body.try_into()
            .map_err(|_| bad("a number of the wrong size"))
    };
    let value = match bytes[8] {
        TAG_BOOLEAN => StateValue::Boolean(body.first().copied().unwrap_or(0) != 0),
        TAG_INTEGER => StateValue::Integer(i64::from_le_bytes(eight(body)?)),
        TAG_NUMBER => StateValue::Number(f64::from_le_bytes(eight(body)?)),
        TAG_STRING => StateValue::String(
            String::from_utf8(body.to_vec()).map_err(|_| bad("a string that is not UTF-8"))?,
        ),
        TAG_VECTOR => {
            if !body.len().is_multiple_of(4) {
                return Err(bad("a vector of partial numbers"));
            }
            StateValue::Vector(
                body.chunks_exact(4)
                    .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("4 bytes")))
                    .collect(),
            )
        }
        _ => return Err(bad("an unknown value tag")),
    };
    Ok((expires, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_with_their_expiry() {
        for value in [
            StateValue::Boolean(true),
            StateValue::Integer(-42),
            StateValue::Number(0.25),
            StateValue::String("héllo".into()),
            StateValue::Vector(vec![1.0, -0.5]),
        ] {
            assert_eq!(decode("k", &encode(&value, 77)), Ok((77, value)));
        }
    }

    #[test]
    fn scopes_cannot_reach_into_each_other() {
        let sneaky = StateKey {
            scope: StateScope::Pipeline("a/../b".into()),
            key: "x".into(),
        };
        assert_eq!(sneaky.stored(), "p/a%2F..%2Fb/x");
    }
}
