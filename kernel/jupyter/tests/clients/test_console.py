"""`jupyter console --existing` attached to `spindle run FILE --jupyter`:
a cell reads the live services' states and sends a request through a
pipeline while HTTP clients keep being served, and `s.help` shows in the
console's pager."""

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import urllib.request

import conftest

CONSOLE = os.path.join(os.path.dirname(__import__("sys").executable), "jupyter-console")


def read_until(stream, pattern, seen):
    for line in stream:
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"no {pattern!r} in {''.join(seen)}")


def test_console_attaches_to_a_running_graph_while_http_is_served():
    runtime = tempfile.mkdtemp(prefix="spindle-run-")
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime, XDG_STATE_HOME=runtime)
    script = conftest.REPO / "notebooks" / "graphs" / "pipelines.lua"
    run = subprocess.Popen(
        [conftest.SPINDLE, "run", str(script), "--jupyter", "--http", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    seen = []
    try:
        address = read_until(run.stderr, r"on http://(\S+)", seen).group(1)
        connection_file = read_until(run.stderr, r"--existing (\S+)", seen).group(1)
        assert connection_file.startswith(os.path.join(runtime, "spindle"))
        threading.Thread(target=lambda: [seen.append(line) for line in run.stderr], daemon=True).start()

        # HTTP clients keep sending while the console works.
        http_answers = []
        stop = threading.Event()

        def http_client():
            for i in range(2000):
                if stop.is_set():
                    return
                body = json.dumps({"text": f"http request {i}"}).encode()
                request = urllib.request.Request(f"http://{address}/v1/pipelines/score", data=body)
                with urllib.request.urlopen(request, timeout=20) as response:
                    http_answers.append(response.status)

        clients = [threading.Thread(target=http_client) for _ in range(2)]
        for client in clients:
            client.start()

        cells = "\n".join([
            's = require("spindle")',
            'for _, svc in ipairs(s.service_list()) do print("SERVICE", svc.name, svc.state) end',
            'a = s.submit("score", "hello from the console") print("ANSWER", a.outcome, a.fields.score)',
            "s.help(s.cosine)",
            "",
        ])
        before = len(http_answers)
        console = subprocess.run(
            [CONSOLE, "--existing", connection_file, "--simple-prompt", "--ZMQTerminalInteractiveShell.kernel_timeout=30"],
            input=cells, capture_output=True, text=True, timeout=120, env=env,
        )
        during = len(http_answers) - before
        stop.set()
        for client in clients:
            client.join(timeout=60)
        assert "SERVICE\tstore\t" in console.stdout, console.stdout + console.stderr
        assert re.search(r"ANSWER\tok\t\d+", console.stdout), console.stdout + console.stderr
        # `s.help`'s page, shown by the console's pager.
        assert "s.cosine(a, b)" in console.stdout, console.stdout + console.stderr
        assert "cosine similarity" in console.stdout, console.stdout + console.stderr
        assert during > 0, "no HTTP answer while the console ran"
        assert set(http_answers) == {200}
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
    # The connection file goes with the run.
    assert not os.path.exists(connection_file)
