#!/usr/bin/env bash
# The workspace's dependency rules (docs/ARCHITECTURE.md, "Invariants"),
# checked against what cargo actually resolves. A `cargo tree` that fails
# fails the check: a rule nobody could evaluate is not a rule that holds.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
# forbid CRATE PATTERN WHY [DEPTH]: CRATE's normal dependency tree (down to
# DEPTH levels; all of it by default) must not contain a package whose name
# matches PATTERN.
forbid() {
    local crate=$1 pattern=$2 why=$3 depth=${4:-} tree hits
    if ! tree=$(cargo tree -p "$crate" -e normal --prefix none --offline ${depth:+--depth "$depth"} 2>&1); then
        echo "layering: cannot list the dependencies of $crate:" >&2
        echo "$tree" >&2
        exit 1
    fi
    hits=$(echo "$tree" | awk '{print $1}' | sort -u | grep -E "^(${pattern})\$" | grep -vx "$crate" || true)
    if [ -n "$hits" ]; then
        echo "layering: $crate must not depend on $(echo $hits | tr '\n' ' '): $why" >&2
        failed=1
    fi
}

# The front ends: crates of their own on the kernel, never on one another.
front_ends='spindle-http|spindle-dap|spindle-jupyter|spindle-netlink|spindle-lsp'

forbid spindle-scripting 'spindle-.*' "scripting depends on no other workspace crate"
forbid spindle-scripting 'tokio|mio|serde_json|hyper' "scripting knows no async runtime, sockets or JSON"
forbid spindle-embed 'spindle-.*' "the embedding engine depends on no other workspace crate"
forbid spindle-embed 'tokio|mio' "embedding sessions run on threads of their own"
forbid spindle-scheduler 'spindle-.*' "the scheduler depends on no other workspace crate"
forbid spindle-scheduler 'mlua|ort|hyper|serde_json' "the scheduler knows no Lua, ONNX Runtime, HTTP or JSON"
forbid spindle-kernel "${front_ends}|spindle" "the kernel depends on scripting, embed and scheduler only"
forbid spindle-kernel 'hyper|hyper-util|h2|http|http-body|zeromq|zmq|jupyter-.*|netlink-.*|neli|dap|tower-lsp-server' \
    "the kernel speaks Rust types: HTTP, ZeroMQ, netlink and the editor protocols live in the front ends"
# (The embedding engine reads the models' JSON configuration files; the
# kernel itself serialises nothing.)
forbid spindle-kernel 'serde|serde_json' "the kernel knows no JSON protocol: front ends serialise its values" 1
forbid spindle-jupyter "spindle-http|spindle-dap|spindle-netlink|spindle-lsp|spindle" "the Jupyter front end depends on the kernel only"
forbid spindle-http "spindle-dap|spindle-jupyter|spindle-netlink|spindle-lsp|spindle-remote|spindle" "the HTTP front end depends on the kernel only"
forbid spindle-kernel 'spindle-remote' "the kernel defines the RemoteEngines seam; the binary plugs spindle-remote in"
forbid spindle-remote "${front_ends}|spindle" "the remote embedding backend depends on the kernel only"
forbid spindle-lsp 'spindle-kernel|spindle-embed|spindle-scheduler|spindle-dap|spindle-http|spindle' "the language server depends on scripting only"
forbid spindle-dap "spindle-http|spindle-jupyter|spindle-netlink|spindle-lsp|spindle" "the debug adapter depends on kernel and scripting only"
forbid spindle-netlink-protocol 'spindle-.*|tokio|mio' "the netlink codec knows no workspace crate, runtime or socket"
forbid spindle-netlink "spindle-http|spindle-dap|spindle-jupyter|spindle-lsp|spindle" "the netlink bridge depends on the kernel only"

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "layering: ok"
