"""The supervisord anchor for `cargo bench --bench operate`.

Runs supervisord (PyPI `supervisor`, pinned by the benchmark) over N flat
programs (`sleep 3600`, startsecs=0 so RUNNING means spawned, as `ready`
does for a spindle service without a readiness probe; the setup of
benches/supervisor_anchor.py) and measures what an operator does:

- status: the XML-RPC `getAllProcessInfo` (what `GET /v1/services` is), and
  the `supervisorctl status` command;
- restart of one program among N: XML-RPC stopProcess + startProcess (each
  waiting), and `supervisorctl restart NAME` (returns once it runs again);
- reload with one program changed: rewrite the config with that program's
  command changed, `supervisorctl update`, until it runs again with a new
  pid; the other N-1 must keep their pids.

Prints one JSON object of millisecond lists.
Usage: python operate_anchor.py WORKDIR N REPEATS
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from supervisor_anchor import connect, start_daemon, wait_all_running, write_config  # noqa: E402


def ms(seconds):
    return round(seconds * 1000.0, 3)


def main():
    workdir, count, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    target = f"s{count // 2:03}"
    conf, sock = write_config(workdir, count)
    daemon = start_daemon(conf)
    ctl = [os.path.join(os.path.dirname(sys.executable), "supervisorctl"), "-c", conf]
    try:
        if wait_all_running(sock, count, time.perf_counter()) is None:
            print(json.dumps({"error": "supervisord did not start every program"}))
            return
        proxy = connect(sock)
        status_rpc = []
        for _ in range(repeats * 10):
            started = time.perf_counter()
            infos = proxy.supervisor.getAllProcessInfo()
            status_rpc.append(ms(time.perf_counter() - started))
            assert len(infos) == count
        status_cli = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(ctl + ["status"], check=False, stdout=subprocess.DEVNULL)
            status_cli.append(ms(time.perf_counter() - started))

        def pid_of(name):
            return proxy.supervisor.getProcessInfo(name)["pid"]

        restart_rpc = []
        for _ in range(repeats):
            before = pid_of(target)
            started = time.perf_counter()
            proxy.supervisor.stopProcess(target, True)
            proxy.supervisor.startProcess(target, True)
            restart_rpc.append(ms(time.perf_counter() - started))
            assert pid_of(target) != before
        restart_cli = []
        for _ in range(repeats):
            before = pid_of(target)
            started = time.perf_counter()
            subprocess.run(ctl + ["restart", target], check=True, stdout=subprocess.DEVNULL)
            restart_cli.append(ms(time.perf_counter() - started))
            assert pid_of(target) != before

        update = []
        untouched = True
        for rep in range(repeats):
            pids = {info["name"]: info["pid"] for info in proxy.supervisor.getAllProcessInfo()}
            seconds = 3601 if rep % 2 == 0 else 3600
            write_config(
                workdir,
                count,
                command=lambda idx, s=seconds: f"sleep {s}" if f"s{idx:03}" == target else "sleep 3600",
            )
            started = time.perf_counter()
            subprocess.run(ctl + ["update"], check=True, stdout=subprocess.DEVNULL)
            while True:
                try:
                    info = proxy.supervisor.getProcessInfo(target)
                except Exception:
                    info = None  # removed and not added back yet
                if info and info["statename"] == "RUNNING" and info["pid"] != pids[target]:
                    break
                time.sleep(0.001)  # polling the RPC is the only way to observe it
            update.append(ms(time.perf_counter() - started))
            after = {info["name"]: info["pid"] for info in proxy.supervisor.getAllProcessInfo()}
            untouched &= all(after[name] == pid for name, pid in pids.items() if name != target)
        print(
            json.dumps(
                {
                    "services": count,
                    "status_rpc_ms": status_rpc,
                    "status_cli_ms": status_cli,
                    "restart_rpc_ms": restart_rpc,
                    "restart_cli_ms": restart_cli,
                    "update_ms": update,
                    "others_untouched": untouched,
                }
            )
        )
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)


if __name__ == "__main__":
    main()
