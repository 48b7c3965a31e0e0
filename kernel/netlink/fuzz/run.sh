#!/usr/bin/env bash
# `make fuzz`: runs each codec fuzz target for FUZZ_SECONDS (default 60).
# Needs cargo-fuzz (installed from crates.io when missing) and a nightly
# compiler; without a nightly toolchain the stable one runs with
# RUSTC_BOOTSTRAP=1, which allows the sanitizer flags cargo-fuzz passes.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
for target in decode mutate; do
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${seconds} s"
    "${fuzz[@]}" run "$target" "corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 \
        | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done)" || true
    if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
        echo "fuzz: $target found a crash: kernel/netlink/fuzz/artifacts/$target" >&2
        exit 1
    fi
done
