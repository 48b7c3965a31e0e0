"""The supervisord anchor for `cargo bench --bench supervisor`.

Runs supervisord (PyPI `supervisor`) over N trivial programs (`sleep 3600`,
flat, startsecs=0 so RUNNING means spawned, as `ready` does for a spindle
service without a readiness probe) and prints one JSON object: time from
spawn to all RUNNING, supervisord's RSS, its CPU over the steady window,
and the time from SIGTERM until supervisord has stopped every program and
exited.

Usage: python supervisor_anchor.py WORKDIR N STEADY_SECONDS
(run with the Python of the venv that has `supervisor` installed).
"""

import json
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client

from supervisor.xmlrpc import SupervisorTransport


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def write_config(workdir, count, command=lambda idx: "sleep 3600"):
    """supervisord.conf for `count` flat programs s000.. (startsecs=0: RUNNING
    means spawned); returns (conf path, socket path). Shared with
    benches/operate_anchor.py."""
    os.makedirs(workdir, exist_ok=True)
    sock = os.path.join(workdir, "supervisor.sock")
    conf = os.path.join(workdir, "supervisord.conf")
    with open(conf, "w") as out:
        out.write(
            f"[unix_http_server]\nfile={sock}\n\n"
            f"[supervisord]\nnodaemon=true\nlogfile={workdir}/supervisord.log\n"
            f"pidfile={workdir}/supervisord.pid\nchildlogdir={workdir}\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{sock}\n\n"
        )
        for idx in range(count):
            out.write(
                f"[program:s{idx:03}]\ncommand={command(idx)}\nstartsecs=0\nautorestart=true\n"
                f"redirect_stderr=true\nstdout_logfile={workdir}/s{idx:03}.log\n\n"
            )
    return conf, sock


def connect(sock):
    return xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{sock}")
    )


def start_daemon(conf):
    return subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "supervisord"), "-c", conf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_all_running(sock, count, started, limit=120):
    """Seconds from `started` until every program is RUNNING, or None."""
    proxy = connect(sock)
    deadline = started + limit
    while time.perf_counter() < deadline:
        try:
            infos = proxy.supervisor.getAllProcessInfo()
        except Exception:
            # Not listening yet; a failed request leaves the proxy unusable.
            proxy = connect(sock)
            infos = []
        if len(infos) == count and all(info["statename"] == "RUNNING" for info in infos):
            return time.perf_counter() - started
        time.sleep(0.005)  # polling the RPC is the only way to observe it
    return None


def main():
    workdir, count, steady = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    conf, sock = write_config(workdir, count)
    started = time.perf_counter()
    daemon = start_daemon(conf)
    ready_s = wait_all_running(sock, count, started)
    rss = rss_kib(daemon.pid)
    cpu_before = cpu_seconds(daemon.pid)
    time.sleep(steady)
    cpu_after = cpu_seconds(daemon.pid)
    stop_started = time.perf_counter()
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=120)
    stopped_s = time.perf_counter() - stop_started
    print(
        json.dumps(
            {
                "services": count,
                "ready_s": ready_s,
                "stopped_s": stopped_s,
                "rss_kib": rss,
                "steady_cpu_percent": 100.0 * (cpu_after - cpu_before) / steady,
                "steady_window_s": steady,
            }
        )
    )


if __name__ == "__main__":
    main()
