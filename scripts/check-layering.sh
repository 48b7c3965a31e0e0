#!/usr/bin/env bash
# The workspace's dependency rules (docs/ARCHITECTURE.md, "Invariants"),
# checked against what cargo actually resolves.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
# forbid CRATE PATTERN WHY: CRATE's normal dependency tree must not contain
# a package whose name matches PATTERN.
forbid() {
    local crate=$1 pattern=$2 why=$3 hits
    hits=$(cargo tree -p "$crate" -e normal --prefix none --offline 2>/dev/null \
        | awk '{print $1}' | sort -u | grep -E "^(${pattern})\$" | grep -vx "$crate" || true)
    if [ -n "$hits" ]; then
        echo "layering: $crate must not depend on $(echo $hits | tr '\n' ' '): $why" >&2
        failed=1
    fi
}

forbid spindle-scripting 'spindle-.*' "scripting depends on no other workspace crate"
forbid spindle-scripting 'tokio|mio|serde_json|hyper' "scripting knows no async runtime, sockets or JSON"
forbid spindle-embed 'spindle-.*' "the embedding engine depends on no other workspace crate"
forbid spindle-embed 'tokio|mio' "embedding sessions run on threads of their own"
forbid spindle-scheduler 'spindle-.*' "the scheduler depends on no other workspace crate"
forbid spindle-scheduler 'mlua|ort|hyper|serde_json' "the scheduler knows no Lua, ONNX Runtime, HTTP or JSON"
forbid spindle-kernel 'spindle-lsp|spindle-dap|spindle' "the kernel depends on scripting, embed and scheduler only"
forbid spindle-lsp 'spindle-kernel|spindle-embed|spindle-scheduler|spindle-dap|spindle' "the language server depends on scripting only"
forbid spindle-dap 'spindle-lsp|spindle' "the debug adapter depends on kernel and scripting only"
forbid spindle-kernel 'spindle-netlink.*' "the kernel knows no front end"
forbid spindle-netlink-protocol 'spindle-.*|tokio|mio' "the netlink codec knows no workspace crate, runtime or socket"
forbid spindle-netlink 'spindle-lsp|spindle-dap|spindle' "the netlink bridge is a front end on the kernel only"

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "layering: ok"
