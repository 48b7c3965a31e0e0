#!/usr/bin/env bash
# The real Jupyter clients the Jupyter front end is tested and benchmarked
# against, installed when missing (idempotent, quick when all is there):
#   - a venv under .cache/jupyter-venv with jupyter_client, jupyter_kernel_test,
#     nbclient, nbformat, JupyterLab 4, jupyter_console, and ipykernel (the
#     benchmark's anchor), pinned below;
#   - Chromium from Debian's `chromium` package (apt-get, as root) and
#     playwright-core from npm under kernel/jupyter/tests/lab/node_modules.
#     Nothing downloads a browser build: playwright-core drives Debian's.
# Called by scripts/setup.sh; SPINDLE_SKIP_BROWSER=1 skips the browser part.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.cache/jupyter-venv
REQUIREMENTS=(
    "jupyter_client==8.10.0"
    "jupyter_kernel_test==0.7.0"
    "nbclient==0.11.0"
    "nbformat==5.11.1"
    "jupyterlab==4.6.6"
    "jupyter_console==6.6.3"
    "ipykernel==7.4.0"
    "pytest"
)
marker="$VENV/spindle-requirements.txt"
wanted="$(printf '%s\n' "${REQUIREMENTS[@]}")"
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$wanted" ]; then
    echo "setup-jupyter: venv up to date in $VENV"
else
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    echo "setup-jupyter: installing ${REQUIREMENTS[*]}"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
    printf '%s\n' "${REQUIREMENTS[@]}" >"$marker"
fi

if [ "${SPINDLE_SKIP_BROWSER:-0}" = 1 ]; then
    exit 0
fi
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        echo "setup-jupyter: please install Debian's chromium package" >&2
        exit 1
    fi
fi
lab=kernel/jupyter/tests/lab
if [ ! -d "$lab/node_modules/playwright-core" ]; then
    command -v npm >/dev/null 2>&1 || { echo "setup-jupyter: npm is missing; install Node.js" >&2; exit 1; }
    echo "setup-jupyter: npm ci in $lab"
    (cd "$lab" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
fi
echo "setup-jupyter: ok"
