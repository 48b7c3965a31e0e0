#!/usr/bin/env bash
# The DAP client the debug adapter is tested against: the DebugClient of
# @vscode/debugadapter-testsupport, installed from npm under
# dap/tests/node/node_modules as dap/tests/node/package-lock.json pins it
# (idempotent: nothing to do when the lock's packages are there).
# Called by scripts/setup.sh and by `make test-dap`.
set -euo pipefail
cd "$(dirname "$0")/.."

suite=dap/tests/node
if [ -f "$suite/node_modules/@vscode/debugadapter-testsupport/package.json" ] \
    && [ "$suite/node_modules/.package-lock.json" -nt "$suite/package-lock.json" ]; then
    echo "setup-dap: node_modules up to date in $suite"
    exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "setup-dap: npm is missing; install Node.js" >&2; exit 1; }
echo "setup-dap: npm ci in $suite"
(cd "$suite" && npm ci --silent --no-audit --no-fund)
