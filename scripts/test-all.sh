#!/usr/bin/env bash
# `make test` after setup: every check CI runs, in order. Each step runs
# even when one before it failed (so one run shows every failure), is
# timed, and the summary at the end lists each step with its status and
# seconds; the exit status is 1 when any step failed.
#
# Steps are make targets of the Makefile, plus the Rust tests:
# `cargo test --workspace --no-fail-fast` runs every test binary even after
# a failing one.
set -uo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
CARGO=${CARGO:-cargo}

steps=(
    "lint|$MAKE --no-print-directory lint"
    "layering|$MAKE --no-print-directory layering"
    "doc|$MAKE --no-print-directory doc"
    "rust tests|$CARGO test --workspace --no-fail-fast"
    "doc tests|$CARGO test --workspace --doc"
    "jupyter|$MAKE --no-print-directory test-jupyter"
    "dap|$MAKE --no-print-directory test-dap"
    "editor|$MAKE --no-print-directory editor-test"
    "kmod in qemu|$MAKE --no-print-directory kmod-e2e"
)

summary=()
failed=0
for step in "${steps[@]}"; do
    name=${step%%|*}
    command=${step#*|}
    echo "=== test step: $name ($command)"
    started=$(date +%s)
    if bash -c "$command"; then status=ok; else status=FAILED; failed=1; fi
    summary+=("$(printf '%-14s %-7s %5d s' "$name" "$status" $(( $(date +%s) - started )))")
done

echo
echo "=== make test: every step"
printf '%s\n' "${summary[@]}"
exit $failed
