"""Benchmark: Spindle's Jupyter kernel against ipykernel, in the same run.

For each kernel: spawn to the first kernel_info_reply, then N trivial
cells (execute_request to execute_reply, each after the previous cell's
`idle`), then the kernel's idle RSS. Both kernels are driven the same way:
jupyter_client's Session signs and parses, pyzmq carries (no client event
loop in the timed path). Prints a table and the ratio, writes
target/bench/jupyter.json.

Usage: python jupyter_latency.py SPINDLE_BIN [--cells N]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import zmq
from jupyter_client.connect import write_connection_file
from jupyter_client.session import Session

REPO = pathlib.Path(__file__).resolve().parents[3]


def quantile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(name, argv_for, cell, cells):
    workdir = tempfile.mkdtemp(prefix=f"bench-{name}-")
    connection_file = os.path.join(workdir, "kernel.json")
    _, info = write_connection_file(connection_file, ip="127.0.0.1")
    context = zmq.Context()
    session = Session(key=info["key"].encode(), signature_scheme="hmac-sha256")
    shell = context.socket(zmq.DEALER)
    shell.setsockopt(zmq.LINGER, 0)
    # The kernel is not listening yet when the client connects; ZeroMQ's
    # default reconnect interval (100 ms) would then make "spawn to first
    # reply" measure the client's retry timer. Retry every 5 ms, for both
    # kernels alike.
    shell.setsockopt(zmq.RECONNECT_IVL, 5)
    iopub = context.socket(zmq.SUB)
    iopub.setsockopt(zmq.RECONNECT_IVL, 5)
    iopub.setsockopt(zmq.SUBSCRIBE, b"")
    iopub.setsockopt(zmq.LINGER, 0)
    env = dict(os.environ, XDG_DATA_HOME=workdir, XDG_RUNTIME_DIR=workdir)

    spawned = time.perf_counter()
    process = subprocess.Popen(argv_for(connection_file), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shell.connect(f"tcp://127.0.0.1:{info['shell_port']}")
    iopub.connect(f"tcp://127.0.0.1:{info['iopub_port']}")
    session.send(shell, "kernel_info_request", {})
    shell.poll(30_000)
    session.recv(shell, mode=0)
    first_reply_ms = (time.perf_counter() - spawned) * 1000

    def wait_idle(msg_id):
        while True:
            if not iopub.poll(10_000):
                raise TimeoutError("no idle status")
            _, message = session.recv(iopub, mode=0)
            if (
                message["msg_type"] == "status"
                and message["parent_header"].get("msg_id") == msg_id
                and message["content"]["execution_state"] == "idle"
            ):
                return

    # The iopub subscription takes a moment; warm up until idle arrives.
    for _ in range(50):
        sent = session.send(shell, "kernel_info_request", {})
        session.recv(shell, mode=0) if shell.poll(10_000) else None
        try:
            wait_idle(sent["header"]["msg_id"])
            break
        except TimeoutError:
            continue
    latencies = []
    for idx in range(cells + 50):
        content = {"code": cell, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
        started = time.perf_counter()
        sent = session.send(shell, "execute_request", content)
        if not shell.poll(10_000):
            raise TimeoutError("no execute_reply")
        _, reply = session.recv(shell, mode=0)
        elapsed = (time.perf_counter() - started) * 1000
        assert reply["content"]["status"] == "ok", reply["content"]
        if idx >= 50:
            latencies.append(elapsed)
        wait_idle(sent["header"]["msg_id"])
    time.sleep(0.5)  # idle: let the allocator settle before reading RSS
    rss = rss_mb(process.pid)
    session.send(shell, "shutdown_request", {"restart": False})
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    context.destroy(linger=0)
    return {
        "kernel": name,
        "first_kernel_info_ms": round(first_reply_ms, 2),
        "cells": len(latencies),
        "p50_ms": round(quantile(latencies, 0.50), 4),
        "p90_ms": round(quantile(latencies, 0.90), 4),
        "p99_ms": round(quantile(latencies, 0.99), 4),
        "max_ms": round(max(latencies), 4),
        "mean_ms": round(statistics.mean(latencies), 4),
        "idle_rss_mb": round(rss, 1),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("spindle")
    parser.add_argument("--cells", type=int, default=2000)
    args = parser.parse_args()
    spindle = measure("spindle", lambda cf: [args.spindle, "kernel", "start", "--connection-file", cf], "x = 1", args.cells)
    ipykernel = measure("ipykernel", lambda cf: [sys.executable, "-m", "ipykernel_launcher", "-f", cf], "x = 1", args.cells)
    rows = [spindle, ipykernel]
    print(f"{'kernel':<10} {'first reply':>12} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9} {'idle RSS':>9}")
    for row in rows:
        print(
            f"{row['kernel']:<10} {row['first_kernel_info_ms']:>9.1f} ms {row['p50_ms']:>6.3f} ms {row['p90_ms']:>6.3f} ms"
            f" {row['p99_ms']:>6.3f} ms {row['max_ms']:>6.2f} ms {row['idle_rss_mb']:>6.1f} MB"
        )
    ratio = {
        "p50": round(ipykernel["p50_ms"] / spindle["p50_ms"], 1),
        "p99": round(ipykernel["p99_ms"] / spindle["p99_ms"], 1),
        "first_kernel_info": round(ipykernel["first_kernel_info_ms"] / spindle["first_kernel_info_ms"], 1),
    }
    print(f"ipykernel / spindle: p50 {ratio['p50']}x, p99 {ratio['p99']}x, first reply {ratio['first_kernel_info']}x")
    out = REPO / "target" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "jupyter.json").write_text(json.dumps({"kernels": rows, "ratio_ipykernel_over_spindle": ratio, "cell": "x = 1", "client": "jupyter_client Session over pyzmq, unpinned"}, indent=2) + "\n")
    print(f"wrote {out / 'jupyter.json'}")


if __name__ == "__main__":
    main()
