"""The supervisord anchor for `cargo bench --bench supervisor`.

Runs supervisord (PyPI `supervisor` 4.3.0, installed into .cache/venv by
`make setup`) over N trivial programs (`sleep 3600`, flat, startsecs=0 so
RUNNING means spawned, as `ready` does for a spindle service without a
readiness probe) and prints one JSON object on stdout: time from spawn to
every program RUNNING, supervisord's RSS, its CPU over the steady window,
the time from SIGTERM until supervisord has stopped every program and
exited, and how many programs outlived it. Progress lines go to stderr.

Readiness is observed the way supervisord offers it, without loading it:
an event listener (supervisord's own protocol, subscribed to
PROCESS_STATE_RUNNING) forwards each event as a datagram to this process,
which waits on its socket. Nothing polls supervisord's RPC. supervisord
itself moves a program from STARTING to RUNNING at the next pass of its
main loop, which wakes on I/O or once a second.

Usage (with the Python of the venv that has `supervisor`):
    python supervisor_anchor.py run WORKDIR N STEADY_SECONDS
    python supervisor_anchor.py listen SOCKET      (run by supervisord)
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

WANTED_VERSION = "4.3.0"
READY_LIMIT_S = 120.0
STOP_LIMIT_S = 60.0


def log(message):
    print(f"  supervisord anchor: {message}", file=sys.stderr, flush=True)


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


def is_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def write_config(workdir, count, listener_socket=None, command=lambda idx: "sleep 3600"):
    """supervisord.conf for `count` flat programs s000.. (startsecs=0:
    RUNNING means spawned) and, given `listener_socket`, the readiness event
    listener; returns (config path, RPC socket path). Shared with
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
        if listener_socket is not None:
            # The listener starts first (lower priority number) and buffers
            # one event per program, so none is discarded.
            out.write(
                "[eventlistener:ready_events]\n"
                f"command={sys.executable} {os.path.abspath(__file__)} listen {listener_socket}\n"
                f"events=PROCESS_STATE_RUNNING\nbuffer_size={count + 16}\n"
                f"startsecs=0\npriority=1\nautorestart=false\n"
                f"stderr_logfile={workdir}/ready_events.err\n\n"
            )
        for idx in range(count):
            out.write(
                f"[program:s{idx:03}]\ncommand={command(idx)}\nstartsecs=0\nautorestart=true\n"
                f"redirect_stderr=true\nstdout_logfile={workdir}/s{idx:03}.log\n\n"
            )
    return conf, sock


def connect(sock):
    """An XML-RPC proxy on supervisord's unix socket (benches/operate_anchor.py)."""
    from supervisor.xmlrpc import SupervisorTransport
    import xmlrpc.client

    return xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{sock}")
    )


def wait_all_running(sock, count, started, limit=READY_LIMIT_S):
    """Seconds from `started` until every program is RUNNING, or None, by
    polling the RPC every 5 ms. benches/operate_anchor.py waits with it
    before it measures; this benchmark's readiness figure uses the event
    listener instead (ReadyEvents), which does not load supervisord."""
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
        time.sleep(0.005)  # operate's wait before it measures, not a figure here
    return None


def start_daemon(conf):
    return subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "supervisord"), "-c", conf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class ReadyEvents:
    """The datagram socket the event listener sends PROCESS_STATE_RUNNING
    payloads to; bound before supervisord starts."""

    def __init__(self, path):
        if os.path.exists(path):
            os.unlink(path)
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(path)

    def wait_all_running(self, names, started, limit):
        """Seconds from `started` until every program in `names` was
        reported RUNNING, and their pids; raises TimeoutError past `limit`."""
        pids = {}
        deadline = started + limit
        while len(pids) < len(names):
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(
                    f"only {len(pids)} of {len(names)} programs RUNNING after {limit:.0f} s"
                )
            self.socket.settimeout(left)
            try:
                payload = self.socket.recv(4096)
            except socket.timeout:
                continue
            fields = dict(token.split(":", 1) for token in payload.decode().split())
            if fields.get("processname") in names:
                pids[fields["processname"]] = int(fields.get("pid", "0"))
        return time.perf_counter() - started, pids


def run(workdir, count, steady):
    from importlib.metadata import version

    installed = version("supervisor")
    if installed != WANTED_VERSION:
        raise RuntimeError(
            f"supervisor {installed} is installed, the benchmark pins {WANTED_VERSION}: run `make setup`"
        )
    listener_socket = os.path.join(workdir, "ready.sock")
    os.makedirs(workdir, exist_ok=True)
    events = ReadyEvents(listener_socket)
    conf, _ = write_config(workdir, count, listener_socket)
    names = {f"s{idx:03}" for idx in range(count)}
    started = time.perf_counter()
    daemon = start_daemon(conf)
    try:
        ready_s, pids = events.wait_all_running(names, started, READY_LIMIT_S)
        log(f"{count} programs RUNNING after {ready_s * 1000:.1f} ms")
        rss = rss_kib(daemon.pid)
        log(f"steady window {steady:g} s")
        cpu_before = cpu_seconds(daemon.pid)
        time.sleep(steady)  # the measurement window itself
        cpu_after = cpu_seconds(daemon.pid)
        stop_started = time.perf_counter()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=STOP_LIMIT_S)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"supervisord did not exit within {STOP_LIMIT_S:.0f} s of SIGTERM")
        stopped_s = time.perf_counter() - stop_started
        log(f"stopped after {stopped_s * 1000:.1f} ms")
        left_behind = sum(1 for pid in pids.values() if is_alive(pid))
        return {
            "supervisor_version": installed,
            "services": count,
            "ready_s": ready_s,
            "stopped_s": stopped_s,
            "rss_kib": rss,
            "steady_cpu_percent": 100.0 * (cpu_after - cpu_before) / steady,
            "steady_window_s": steady,
            "processes_left_behind": left_behind,
            "readiness": "event listener on PROCESS_STATE_RUNNING, datagram per event",
        }
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=STOP_LIMIT_S)
        events.socket.close()


def listen(path):
    """supervisord's event listener protocol: READY, a header line, a
    payload of `len` bytes, then RESULT. Each payload goes to `path`."""
    out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        header = stdin.readline()
        if not header:
            return
        fields = dict(token.split(b":", 1) for token in header.split())
        payload = stdin.read(int(fields[b"len"]))
        try:
            out.sendto(payload, path)
        except OSError as error:
            print(f"ready_events: {error}", file=sys.stderr, flush=True)
        stdout.write(b"RESULT 2\nOK")
        stdout.flush()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "listen":
        listen(sys.argv[2])
        return
    if len(sys.argv) != 5 or sys.argv[1] != "run":
        sys.exit(__doc__)
    # SIGTERM from the benchmark (its time bound) ends the run through the
    # `finally` above, which takes supervisord down too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("supervisord anchor: stopped by SIGTERM"))
    try:
        result = run(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    except Exception as error:  # reported as data; the benchmark fails on it
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
