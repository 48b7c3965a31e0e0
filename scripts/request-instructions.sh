#!/usr/bin/env bash
# `make request-instructions`: what one no-op request costs the daemon, in
# instructions executed per thread, counted by callgrind. A profile, not a
# benchmark: it has no anchor and no target, and says where the daemon's
# work goes with figures the machine's load cannot move (the netlink
# bench's timings move by a third from hour to hour on a shared VM).
#
# The daemon (`spindle netlink-peer --bridge`, a no-op pipeline) runs under
# callgrind on one CPU, so that no thread spins; `spindle netlink-peer`
# plays the kernel over NETLINK_USERSOCK and sends requests one at a time.
# It runs twice, with SMALL and then LARGE requests; the difference over
# LARGE - SMALL is one request's cost, without start-up and shutdown.
# Prints each busy thread's instructions per request and writes
# target/bench/request_instructions.json. Fails when a run does not answer
# every request.
#
# Needs valgrind (Debian's package, installed here when missing and run as
# root). SPINDLE_INSTRUCTIONS_SMALL (default 1000) and
# SPINDLE_INSTRUCTIONS_LARGE (default 3000) requests; payloads of
# SPINDLE_INSTRUCTIONS_BYTES (default 64).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
small=${SPINDLE_INSTRUCTIONS_SMALL:-1000}
large=${SPINDLE_INSTRUCTIONS_LARGE:-3000}
bytes=${SPINDLE_INSTRUCTIONS_BYTES:-64}
if [ "$large" -le "$small" ]; then
    echo "request-instructions: SPINDLE_INSTRUCTIONS_LARGE must exceed _SMALL" >&2
    exit 1
fi

bash scripts/ensure-valgrind.sh request-instructions

$CARGO build --release --bin spindle
target=${CARGO_TARGET_DIR:-target}
spindle="$(cd "$target/release" && pwd)/spindle"
out="$target/bench"
mkdir -p "$out"
work=$(mktemp -d)
daemon=""
peer=""
cleanup() {
    [ -n "$peer" ] && kill "$peer" 2>/dev/null
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
cat >"$work/noop.lua" <<'LUA'
local s = require("spindle")
s.pipeline "noop" {
  from = { s.netlink { family = "spindle" } },
  s.stage("pass", function(req) return req end),
}
LUA

# One run: the peer waits for the daemon to register, then sends `count`
# requests one at a time; the daemon, interrupted, writes its counts as it
# exits.
count_run() {
    local count=$1 port
    port=$((20000 + RANDOM % 20000))
    "$spindle" netlink-peer --port "$port" --requests "$count" --rate 300 --window 1 \
        --mix 0:1:0 --pipeline noop --payload-bytes "$bytes" --deadline-ms 60000 \
        >"$work/peer.$count.log" 2>&1 &
    peer=$!
    # A daemon that finds no peer yet registers again shortly after.
    taskset -c 0 valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$work/count.$count" \
        "$spindle" netlink-peer --bridge "$work/noop.lua" --transport "usersock:$port" \
        >"$work/daemon.$count.log" 2>&1 &
    daemon=$!
    if ! wait "$peer"; then
        peer=""
        echo "request-instructions: the peer failed ($count requests):" >&2
        tail -20 "$work/peer.$count.log" >&2
        exit 1
    fi
    peer=""
    kill -INT "$daemon"
    wait "$daemon" || true
    daemon=""
    if ! grep -q "statuses: ok $count\$" "$work/peer.$count.log"; then
        echo "request-instructions: not every request was answered ok ($count):" >&2
        tail -5 "$work/peer.$count.log" >&2
        exit 1
    fi
}

echo "counting: $small requests, then $large, one at a time, $bytes-byte payloads" >&2
count_run "$small"
count_run "$large"

python3 - "$work" "$out/request_instructions.json" "$small" "$large" "$bytes" <<'PY'
import glob, json, re, sys
work, path, small, large, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def threads(count):
    found = {}
    for file in glob.glob(f"{work}/count.{count}-*"):
        text = open(file, errors="replace").read()
        number = int(re.search(r"^thread: (\d+)", text, re.M).group(1))
        total = int(re.search(r"^summary: (\d+)", text, re.M).group(1))
        if "spindle_scripting::host::serve" in text:
            name = "script host (the Lua run)"
        elif number == 1:
            name = "runtime (bridge, request path, scheduler)"
        else:
            name = f"thread {number}"
        found[number] = (name, total)
    if not found:
        sys.exit(f"request-instructions: callgrind wrote no counts for the {count}-request run")
    return found

before, after = threads(small), threads(large)
rows = []
print(f"\ninstructions per no-op request, {size}-byte payloads "
      f"(callgrind, daemon on one CPU; ({large} - {small} requests) / {large - small})")
print(f"{'thread':<44} {'per request':>12}")
for number in sorted(after):
    name, total = after[number]
    per_request = (total - before.get(number, (name, 0))[1]) / (large - small)
    if per_request < 100:
        continue
    print(f"{name:<44} {per_request:>12,.0f}")
    rows.append({"thread": name, "instructions_per_request": round(per_request)})
with open(path, "w") as out:
    json.dump({"profile": "request_instructions", "payload_bytes": size,
               "requests": [small, large], "threads": rows}, out, indent=2)
print(f"\nwrote {path}")
PY
