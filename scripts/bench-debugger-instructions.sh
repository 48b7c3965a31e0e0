#!/usr/bin/env bash
# `make bench-debugger-instructions`: what an attached debugger costs the
# Lua-heavy stage of the debugger benchmark, in instructions executed,
# counted by callgrind. Each way of `dap/benches/debugger.rs` runs alone
# (`SPINDLE_BENCH_WAY`), and callgrind counts only inside `run_stage` (the
# stage's Lua, its hooks and its conditions), so the machine's load cannot
# move the figures that `make bench-debugger` times. Prints each way's
# ratio to the unattached run against the issue's targets and writes
# target/bench/debugger_instructions.json. Fails when a way, the anchor
# first, could not be counted.
#
# Needs valgrind (Debian's package, installed here when missing and run as
# root). SPINDLE_BENCH_REQUESTS (default 5) requests per way, after one of
# warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
requests=${SPINDLE_BENCH_REQUESTS:-5}

bash scripts/ensure-valgrind.sh bench-debugger-instructions

bench=$($CARGO bench -p spindle-dap --bench debugger --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "debugger" and message.get("executable"):
        print(message["executable"])')
if [ -z "$bench" ]; then
    echo "bench-debugger-instructions: the debugger benchmark did not build" >&2
    exit 1
fi

target=${CARGO_TARGET_DIR:-target}
out="$target/bench"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ways=(unattached attached_no_breakpoints breakpoint_unrelated_function
    conditional_breakpoint_stage_entry conditional_breakpoint_stage_loop)
for way in "${ways[@]}"; do
    echo "counting: $way" >&2
    if ! (cd dap && SPINDLE_BENCH_WAY=$way SPINDLE_BENCH_REQUESTS=$requests \
        valgrind --tool=callgrind --callgrind-out-file="$work/$way.out" \
        '--toggle-collect=*run_stage*' "$bench" --bench) >"$work/$way.log" 2>&1; then
        echo "bench-debugger-instructions: $way failed under callgrind:" >&2
        tail -20 "$work/$way.log" >&2
        exit 1
    fi
    grep -E '^==[0-9]+== Collected : [0-9]+' "$work/$way.log" |
        sed -E 's/.*Collected : ([0-9]+).*/\1/' >"$work/$way.count"
done

python3 - "$work" "$out/debugger_instructions.json" "$requests" "${ways[@]}" <<'PY'
import json, sys
work, path, requests, ways = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
targets = {
    "attached_no_breakpoints": 1.02,
    "breakpoint_unrelated_function": 1.5,
    "conditional_breakpoint_stage_entry": 3.0,
    "conditional_breakpoint_stage_loop": 3.0,
}
counts = {}
for way in ways:
    text = open(f"{work}/{way}.count").read().split()
    if not text or int(text[0]) == 0:
        sys.exit(f"bench-debugger-instructions: no count for {way}")
    counts[way] = int(text[0])
anchor = counts["unattached"]
print(f"\ninstructions executed in the stage `heavy/crunch` ({requests + 1} requests per way, "
      "callgrind, counted inside run_stage only)")
print(f"{'way':<36} {'instructions':>14} {'per request':>12} {'ratio':>8} {'target':>8}  verdict")
rows = []
for way in ways:
    ratio = counts[way] / anchor
    target = targets.get(way)
    verdict = "anchor" if target is None else ("met" if ratio <= target else "MISSED")
    print(f"{way:<36} {counts[way]:>14,} {counts[way] // (requests + 1):>12,} {ratio:>7.3f}x "
          f"{'-' if target is None else f'{target:.2f}x':>8}  {verdict}")
    rows.append({"way": way, "instructions": counts[way], "ratio_to_unattached": ratio,
                 "target_ratio": target, "met": None if target is None else ratio <= target})
with open(path, "w") as out:
    json.dump({"benchmark": "debugger_instructions", "requests_per_way": requests + 1,
               "counted": "callgrind --toggle-collect='*run_stage*'", "ways": rows}, out, indent=2)
print(f"\nwrote {path}")
PY
