//! The warning that `s.netlink { ... }` is accepted but not served yet.
//!
//! A pipeline may name the netlink bridge among its sources today so that
//! scripts need no change once the bridge exists; until then no request
//! arrives that way, and every evaluation says so at the call, as a warning
//! (the graph stays valid). Remove this module when the kernel serves the
//! netlink source.
//!
//! It reads only the recorded declarations; it knows nothing of the kernel.

use mlua::Value;

use crate::api::{PipelineDecl, SourceDecl};
use crate::convert::{Converter, Part};
use crate::diagnostic::Severity;

/// The start of the warning's message.
const NETLINK_NOT_SERVED: &str = "the netlink source is not served yet";

impl Converter<'_> {
    /// Warns at each `s.netlink` call in `decl`'s `from`.
    pub(crate) fn warn_unserved_netlink(&mut self, decl: &PipelineDecl) {
        let from = decl.table.raw_get::<Value>("from").unwrap_or(Value::Nil);
        let entries: Vec<Value> = match from {
            Value::Table(list) => list.sequence_values::<Value>().flatten().collect(),
            Value::Nil => Vec::new(),
            single => vec![single],
        };
        for entry in entries {
            let Value::UserData(data) = entry else {
                continue;
            };
            let Ok(source) = data.borrow::<SourceDecl>() else {
                continue;
            };
            if let SourceDecl::Netlink { site, .. } = &*source {
                self.push(
                    Severity::Warning,
                    site,
                    None,
                    Part::Key,
                    format!(
                        "{NETLINK_NOT_SERVED}: requests reach pipeline `{}` over HTTP only",
                        decl.name
                    ),
                    format!(
                        "the declaration may stay for when the bridge arrives; meanwhile \
                         POST to /v1/pipelines/{} or to an s.http_route",
                        decl.name
                    ),
                );
            }
        }
    }
}
