"""The Jupyter debugger driven from jupyter_client: debug_request on the
control channel, debug_event on iopub, on `spindle run GRAPH --jupyter`.

A breakpoint in a cell stops the cell: its frame, locals and an evaluation
are read while it is stopped, HTTP requests through the graph's pipeline
and control requests keep being answered meanwhile, and continue lets the
cell finish with its result. A breakpoint in the graph's script stops one
HTTP request (a DAP thread) while the others are answered."""

import json
import os
import re
import signal
import subprocess
import tempfile
import textwrap
import threading
import urllib.request

import pytest
from jupyter_client.blocking import BlockingKernelClient

import conftest

TIMEOUT = 30

GRAPH = textwrap.dedent(
    """\
    local s = require("spindle")

    s.pipeline "shout" {
      s.stage("upper", function(req)
        local loud = req.text:upper()
        req.text = loud
        return req
      end),
    }
    """
)
# The line of `req.text = loud` in GRAPH.
GRAPH_LINE = 6

CELL = textwrap.dedent(
    """\
    local base = 40
    local answer = base + 2
    greeting = "hello"
    answer"""
)


def read_until(stream, pattern, seen):
    for line in stream:
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"no {pattern!r} in {''.join(seen)}")


class Debugger:
    """A debug client on a kernel client: numbered requests on control,
    events collected from iopub."""

    def __init__(self, kc):
        self.kc = kc
        self.seq = 0
        self.events = []
        self.iopub = []

    def request(self, command, arguments=None):
        self.seq += 1
        content = {"type": "request", "seq": self.seq, "command": command, "arguments": arguments or {}}
        message = self.kc.session.msg("debug_request", content)
        self.kc.control_channel.send(message)
        while True:
            reply = self.kc.get_control_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == message["header"]["msg_id"]:
                break
        assert reply["msg_type"] == "debug_reply"
        return reply["content"]

    def ok(self, command, arguments=None):
        reply = self.request(command, arguments)
        assert reply["success"], reply
        assert reply["request_seq"] == self.seq
        assert reply["command"] == command
        return reply.get("body", {})

    def event(self, name, **fields):
        """Waits for debug_event `name` whose body has `fields`."""
        def matches(event):
            body = event.get("body") or {}
            return event["event"] == name and all(body.get(k) == v for k, v in fields.items())

        for event in self.events:
            if matches(event):
                self.events.remove(event)
                return event
        while True:
            message = self.kc.get_iopub_msg(timeout=TIMEOUT)
            if message["msg_type"] != "debug_event":
                self.iopub.append(message)
                continue
            event = message["content"]
            if matches(event):
                return event
            self.events.append(event)

    def iopub_of(self, msg_id, msg_type):
        """Waits for an iopub message of `msg_type` caused by `msg_id`."""
        for message in self.iopub:
            if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == msg_type:
                self.iopub.remove(message)
                return message
        while True:
            message = self.kc.get_iopub_msg(timeout=TIMEOUT)
            if message["msg_type"] == "debug_event":
                self.events.append(message["content"])
                continue
            if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == msg_type:
                return message
            self.iopub.append(message)


def shout(address, text):
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(f"http://{address}/v1/pipelines/shout", data=body)
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def graph():
    folder = tempfile.mkdtemp(prefix="spindle-debug-")
    script = os.path.join(folder, "shout.lua")
    with open(script, "w") as file:
        file.write(GRAPH)
    env = dict(os.environ, XDG_RUNTIME_DIR=folder, XDG_STATE_HOME=folder)
    run = subprocess.Popen(
        [conftest.SPINDLE, "run", script, "--jupyter", "--http", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    seen = []
    try:
        address = read_until(run.stderr, r"on http://(\S+)", seen).group(1)
        connection_file = read_until(run.stderr, r"--existing (\S+)", seen).group(1)
        threading.Thread(target=lambda: [seen.append(line) for line in run.stderr], daemon=True).start()
        kc = BlockingKernelClient()
        kc.load_connection_file(connection_file)
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        yield kc, address, os.path.realpath(script)
        kc.stop_channels()
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=TIMEOUT)


def start(debugger):
    capabilities = debugger.ok("initialize", {"clientID": "pytest", "adapterID": "spindle", "linesStartAt1": True, "pathFormat": "path"})
    assert capabilities["supportsConditionalBreakpoints"]
    debugger.ok("attach")
    debugger.event("initialized")


def test_kernel_info_advertises_the_debugger(graph):
    kc, _, _ = graph
    kc.kernel_info()
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["content"]["debugger"] is True
    assert "debugger" in reply["content"]["supported_features"]


def test_a_breakpoint_in_a_cell_stops_it_while_requests_flow(graph):
    kc, address, _ = graph
    debugger = Debugger(kc)
    start(debugger)

    info = debugger.ok("debugInfo")
    assert info["isStarted"] is True
    assert info["hashMethod"] == "Murmur2"
    assert info["tmpFileSuffix"] == ".lua"
    cell_path = debugger.ok("dumpCell", {"code": CELL})["sourcePath"]
    assert cell_path.startswith(info["tmpFilePrefix"]) and cell_path.endswith(".lua")
    with open(cell_path) as file:
        assert file.read() == CELL
    bound = debugger.ok("setBreakpoints", {"source": {"path": cell_path}, "breakpoints": [{"line": 2}], "sourceModified": False})
    assert bound["breakpoints"][0]["verified"] is True
    assert bound["breakpoints"][0]["line"] == 2
    debugger.ok("configurationDone")
    assert debugger.ok("debugInfo")["breakpoints"] == [{"source": cell_path, "breakpoints": [{"line": 2}]}]

    msg_id = kc.execute(CELL)
    stopped = debugger.event("stopped", reason="breakpoint")
    thread = stopped["body"]["threadId"]
    assert debugger.ok("debugInfo")["stoppedThreads"] == [thread]
    threads = debugger.ok("threads")["threads"]
    assert {"id": thread, "name": "cell " + os.path.basename(cell_path)} in threads

    frames = debugger.ok("stackTrace", {"threadId": thread})["stackFrames"]
    assert frames[0]["source"]["path"] == cell_path
    assert frames[0]["line"] == 2
    assert frames[0]["name"] == "cell " + os.path.basename(cell_path)
    scopes = debugger.ok("scopes", {"frameId": frames[0]["id"]})["scopes"]
    locals_scope = next(scope for scope in scopes if scope["name"] == "Locals")
    variables = debugger.ok("variables", {"variablesReference": locals_scope["variablesReference"]})["variables"]
    # Types as JupyterLab's variables view shows values (int, float, bool, str).
    assert {"name": "base", "value": "40", "type": "int"}.items() <= next(v for v in variables if v["name"] == "base").items()
    evaluated = debugger.ok("evaluate", {"expression": "base * 2", "frameId": frames[0]["id"], "context": "repl"})
    assert evaluated["result"] == "80"
    rich = debugger.ok("richInspectVariables", {"variableName": "base", "frameId": frames[0]["id"]})
    assert rich["data"]["text/plain"] == "40"

    # While the cell is stopped: the graph answers HTTP requests, control
    # answers, the shell's cell stays unanswered.
    for i in range(5):
        status, answer = shout(address, f"request {i}")
        assert status == 200 and answer["text"] == f"REQUEST {i}"
    kc.control_channel.send(kc.session.msg("kernel_info_request", {}))
    assert kc.get_control_msg(timeout=TIMEOUT)["msg_type"] == "kernel_info_reply"
    assert not kc.shell_channel.msg_ready()

    debugger.ok("continue", {"threadId": thread})
    debugger.event("continued", threadId=thread)
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok"
    result = debugger.iopub_of(msg_id, "execute_result")
    assert result["content"]["data"]["text/plain"] == "42"
    assert debugger.ok("debugInfo")["stoppedThreads"] == []

    globals_now = debugger.ok("inspectVariables")["variables"]
    assert {"name": "greeting", "value": '"hello"', "type": "str"}.items() <= next(
        v for v in globals_now if v["name"] == "greeting"
    ).items()

    debugger.ok("disconnect", {"restart": False, "terminateDebuggee": False})
    assert debugger.ok("debugInfo")["isStarted"] is False


def test_a_breakpoint_in_the_graph_script_stops_one_request(graph):
    kc, address, script = graph
    debugger = Debugger(kc)
    start(debugger)
    bound = debugger.ok("setBreakpoints", {"source": {"path": script}, "breakpoints": [{"line": GRAPH_LINE}]})
    assert bound["breakpoints"][0]["verified"] is True
    debugger.ok("configurationDone")

    answers = {}
    stopped_one = threading.Thread(target=lambda: answers.setdefault("first", shout(address, "paused one")))
    stopped_one.start()
    stopped = debugger.event("stopped", reason="breakpoint")
    thread = stopped["body"]["threadId"]
    frames = debugger.ok("stackTrace", {"threadId": thread})["stackFrames"]
    assert frames[0]["source"]["path"] == script
    assert frames[0]["line"] == GRAPH_LINE
    source = debugger.ok("source", {"source": {"path": script}})
    assert source["content"] == GRAPH
    modules = debugger.ok("modules")["modules"]
    assert script in [module["path"] for module in modules]

    # Another request stops at the same line; clear the breakpoint first so
    # that the one below is answered while the first stays stopped.
    debugger.ok("setBreakpoints", {"source": {"path": script}, "breakpoints": []})
    status, answer = shout(address, "flows on")
    assert status == 200 and answer["text"] == "FLOWS ON"
    assert "first" not in answers

    debugger.ok("setVariable", {
        "variablesReference": next(
            scope["variablesReference"]
            for scope in debugger.ok("scopes", {"frameId": frames[0]["id"]})["scopes"]
            if scope["name"] == "Locals"
        ),
        "name": "loud",
        "value": '"CHANGED"',
    })
    debugger.ok("continue", {"threadId": thread})
    stopped_one.join(timeout=TIMEOUT)
    status, answer = answers["first"]
    assert status == 200 and answer["text"] == "CHANGED"
    debugger.ok("disconnect", {"restart": False, "terminateDebuggee": False})
    # Detached: the graph serves on.
    assert shout(address, "after")[1]["text"] == "AFTER"


def test_an_interrupt_ends_a_cell_stopped_at_a_breakpoint(graph):
    kc, _, _ = graph
    debugger = Debugger(kc)
    start(debugger)
    code = "local spent = 1\nspent = spent + 1\nspent"
    cell_path = debugger.ok("dumpCell", {"code": code})["sourcePath"]
    debugger.ok("setBreakpoints", {"source": {"path": cell_path}, "breakpoints": [{"line": 2}]})
    debugger.ok("configurationDone")
    execute_kept = kc.execute("kept = 41")
    assert kc.get_shell_msg(timeout=TIMEOUT)["parent_header"]["msg_id"] == execute_kept
    msg_id = kc.execute(code)
    thread = debugger.event("stopped", reason="breakpoint")["body"]["threadId"]
    kc.control_channel.send(kc.session.msg("interrupt_request", {}))
    assert kc.get_control_msg(timeout=TIMEOUT)["msg_type"] == "interrupt_reply"
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    debugger.event("continued", threadId=thread)
    assert debugger.ok("debugInfo")["stoppedThreads"] == []
    # The state is kept and the next cell runs (the breakpoint is elsewhere).
    msg_id = kc.execute("kept + 1")
    assert kc.get_shell_msg(timeout=TIMEOUT)["content"]["status"] == "ok"
    assert debugger.iopub_of(msg_id, "execute_result")["content"]["data"]["text/plain"] == "42"
    debugger.ok("disconnect", {"restart": False, "terminateDebuggee": False})
