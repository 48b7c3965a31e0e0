"""`make bench`: runs every benchmark, each beside its anchor, and writes
one summary of them all to `<bench dir>/summary.json`.

Every benchmark runs even when an earlier one failed; the summary says for
each: its command, its exit status, how long it took, the one-minute load
average before and after (the machine may be shared), and its own JSON
(`<bench dir>/<name>.json`, read back only when the run wrote it afresh).
Benchmarks on `benches/common/report.rs` give rows of spindle's figure,
the anchor's, their ratio and the target; the others' JSON is kept whole.

A benchmark fails when it exits non-zero (each exits non-zero when its
anchor could not run, rather than printing spindle's figures alone), when
it wrote no fresh JSON, or when its JSON shows that the anchor did not run
(`anchor_missing`, for a benchmark that still exits 0 then). This script exits 1 when any failed, after
printing the table of all of them.

Usage:
    python3 benches/summary.py                 # every benchmark below
    python3 benches/summary.py soak supervisor # only these
    python3 benches/summary.py --list

The bench dir is `$SPINDLE_BENCH_DIR`, else `$CARGO_TARGET_DIR/bench`, else
`target/bench`. `$CARGO` names cargo (as in the Makefile).
"""

import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
CARGO = os.environ.get("CARGO", "cargo")
JUPYTER_PYTHON = REPO / ".cache" / "jupyter-venv" / "bin" / "python"


def target_dir():
    return pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def bench_dir():
    if "SPINDLE_BENCH_DIR" in os.environ:
        return pathlib.Path(os.environ["SPINDLE_BENCH_DIR"])
    return target_dir() / "bench"


# name, commands (run in order, all must succeed), the JSON it writes, what
# its anchor is. Not here: `make longrun` (30 minutes, no anchor).
BENCHES = [
    ("supervisor", [[CARGO, "bench", "--bench", "supervisor"]], "supervisor.json",
     "supervisord 4.3.0, interleaved rounds"),
    ("operate", [[CARGO, "bench", "--bench", "operate"]], "operate.json",
     "supervisord 4.3.0 (XML-RPC, supervisorctl)"),
    ("embed", [[CARGO, "bench", "--bench", "embed"]], "embed.json",
     "Python onnxruntime on the same files"),
    ("pipeline", [[CARGO, "bench", "-p", "spindle-http", "--bench", "pipeline"]], "pipeline.json",
     "thread hop; Python onnxruntime fixed batches, interleaved"),
    ("gate", [[CARGO, "bench", "-p", "spindle-embed", "--bench", "gate"]], "gate.json",
     "the fp32 model's vectors on the whole gate corpus"),
    ("scheduler", [[CARGO, "bench", "-p", "spindle-scheduler", "--bench", "overhead"]],
     "scheduler.json", "bare tokio round trip; high priority alone"),
    ("lua_host", [[CARGO, "bench", "-p", "spindle-scripting", "--bench", "lua_host"]],
     "lua_host.json", "budget disabled; a thread that runs no Lua"),
    ("netlink", [[CARGO, "bench", "-p", "spindle-netlink", "--bench", "bridge"]], "netlink.json",
     "raw NETLINK_USERSOCK round trip"),
    ("lsp", [[CARGO, "bench", "--bench", "lsp"]], "lsp.json",
     "the same evaluation in process"),
    ("jupyter", [[CARGO, "build", "--release", "--bin", "spindle"],
                 [str(JUPYTER_PYTHON), "kernel/jupyter/benches/jupyter_latency.py",
                  str(target_dir() / "release" / "spindle")]], "jupyter.json", "ipykernel"),
    ("debugger", [[CARGO, "bench", "-p", "spindle-dap", "--bench", "debugger"]], "debugger.json",
     "the same requests with no debugger attached"),
    ("debugger_instructions", [["bash", "scripts/bench-debugger-instructions.sh"]],
     "debugger_instructions.json",
     "the same requests with no debugger attached, in instructions (callgrind)"),
    ("journal", [[CARGO, "bench", "-p", "spindle-replay", "--bench", "journal"]], "journal.json",
     "the same requests with the journal off"),
    ("soak", [[CARGO, "bench", "--bench", "soak"]], "soak.json",
     "none: invariants (one answer each, counters, RSS flat)"),
]


def load_average():
    try:
        return float(pathlib.Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def fresh_json(name, json_name, started_wall):
    """The benchmark's JSON if this run wrote it; the repository's
    target/bench is a second place, for benchmarks that ignore
    CARGO_TARGET_DIR."""
    for folder in dict.fromkeys([bench_dir(), REPO / "target" / "bench"]):
        path = folder / json_name
        try:
            if path.stat().st_mtime >= started_wall:
                return path, json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return None, None


def anchor_missing(name, result):
    """Why the JSON shows that the anchor did not run, for benchmarks that
    still exit 0 then; None when it ran."""
    if isinstance(result, dict) and result.get("anchor_error"):
        return f"anchor failed: {result['anchor_error']}"
    if name == "embed" and isinstance(result, dict):
        rows = result.get("results") or []
        if any(isinstance(row, dict) and "python" in row and row["python"] is None for row in rows):
            return "the Python anchor did not run (embed.json has results with `python: null`)"
    return None


def run_one(name, commands, json_name, anchor):
    print(f"\n=== bench {name}: {' && '.join(' '.join(c) for c in commands)}", flush=True)
    started_wall = time.time()
    started = time.perf_counter()
    load_before = load_average()
    exit_code = 0
    for command in commands:
        try:
            exit_code = subprocess.run(command, cwd=REPO).returncode
        except OSError as error:
            print(f"bench {name}: cannot run {command[0]}: {error}", file=sys.stderr, flush=True)
            exit_code = 127
        if exit_code != 0:
            break
    seconds = time.perf_counter() - started
    path, result = fresh_json(name, json_name, started_wall)
    if exit_code != 0:
        reason = f"exited with status {exit_code}"
    elif result is None:
        reason = f"wrote no fresh {json_name}"
    else:
        reason = anchor_missing(name, result)
    entry = {
        "bench": name,
        "anchor": anchor,
        "commands": [" ".join(command) for command in commands],
        "exit_code": exit_code,
        "ok": reason is None,
        "failure": reason,
        "seconds": round(seconds, 1),
        "load": {"before": load_before, "after": load_average()},
        "json": str(path) if path else None,
    }
    if isinstance(result, dict) and isinstance(result.get("rows"), list):
        entry["anchor_error"] = result.get("anchor_error")
        entry["rows"] = result["rows"]
    elif result is not None:
        entry["result"] = result
    return entry


def main():
    wanted = sys.argv[1:]
    names = [bench[0] for bench in BENCHES]
    if wanted == ["--list"]:
        print("\n".join(names))
        return 0
    unknown = [name for name in wanted if name not in names]
    if unknown:
        sys.exit(f"summary.py: no benchmark named {', '.join(unknown)}; there are: {', '.join(names)}")
    selected = [bench for bench in BENCHES if not wanted or bench[0] in wanted]
    started = time.time()
    entries = [run_one(*bench) for bench in selected]
    summary = {
        "started_unix": round(started),
        "seconds": round(time.time() - started, 1),
        "cpus": os.cpu_count(),
        "pinning": "none",
        "ok": all(entry["ok"] for entry in entries),
        "benches": entries,
    }
    out = bench_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    print("\nbenchmarks (ratio = spindle / anchor; each bench's own table is above)")
    print(f"{'bench':<11} {'status':<8} {'seconds':>8} {'load':>5}  rows met / missed / no target")
    for entry in entries:
        rows = entry.get("rows", [])
        met = sum(1 for row in rows if row.get("met") is True)
        missed = sum(1 for row in rows if row.get("met") is False)
        status = "ok" if entry["ok"] else "FAILED"
        rows_text = f"{met} / {missed} / {len(rows) - met - missed}" if rows else "-"
        load = entry["load"]["after"]
        print(f"{entry['bench']:<11} {status:<8} {entry['seconds']:>8.1f} "
              f"{load if load is not None else float('nan'):>5.2f}  {rows_text}")
        if not entry["ok"]:
            print(f"{'':<11} {entry['failure']}")
    print(f"wrote {out / 'summary.json'}")
    if not summary["ok"]:
        failed = [entry["bench"] for entry in entries if not entry["ok"]]
        print(f"make bench: {len(failed)} benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
