"""`s.state` in cells, through jupyter_client against the real kernel: a
cell writes and reads the same durable store as the stages (a kernel
started with `--data-dir`), a value committed by one kernel is there in
the next kernel on the same folder, and a misuse is a Jupyter error that
names the fix."""

import json
import pathlib

import pytest
from jupyter_client.manager import start_new_kernel

import conftest

TIMEOUT = 30

GRAPH = """local s = require("spindle")
s.pipeline "seen" {
  s.stage("count", function(req)
    req.count = s.state("pipeline", req).incr("n")
    return req
  end),
}
"""


def kernelspec_with_data_dir(tmp_path, data_dir):
    """A kernelspec that starts the kernel on GRAPH with `--data-dir`."""
    script = tmp_path / "graph.lua"
    script.write_text(GRAPH)
    name = f"spindle-state-{tmp_path.name}"
    folder = pathlib.Path(conftest.JUPYTER_DATA) / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = json.loads((pathlib.Path(conftest.JUPYTER_DATA) / "kernels" / "spindle" / "kernel.json").read_text())
    spec["argv"] += ["--script", str(script), "--data-dir", str(data_dir)]
    (folder / "kernel.json").write_text(json.dumps(spec))
    return name


def execute(kc, code):
    """Runs a cell; returns its reply content, its stdout and its results."""
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    stdout, results = "", []
    while True:
        message = kc.get_iopub_msg(timeout=TIMEOUT)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind = message["msg_type"]
        if kind == "status" and message["content"]["execution_state"] == "idle":
            return reply["content"], stdout, results
        if kind == "stream" and message["content"]["name"] == "stdout":
            stdout += message["content"]["text"]
        if kind == "execute_result":
            results.append(message["content"]["data"]["text/plain"])


@pytest.fixture
def kernel_on(tmp_path):
    """Starts kernels on one data directory; shuts each down at the end."""
    started = []
    data_dir = tmp_path / "data"
    name = kernelspec_with_data_dir(tmp_path, data_dir)

    def start():
        km, kc = start_new_kernel(kernel_name=name)
        started.append((km, kc))
        return km, kc

    yield start, data_dir
    for km, kc in started:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)


def test_cells_and_stages_share_the_state_and_it_outlives_the_kernel(kernel_on):
    start, data_dir = kernel_on
    km, kc = start()
    content, stdout, _ = execute(kc, """
s = require("spindle")
state = s.state()
print(state.set("k", "v"), state.get("k"), state.incr("n", 2), state.incr("n"))
print(state.cas("k", "v", "w"))
print(state.cas("k", "v", "x"))
""")
    assert content["status"] == "ok", content
    assert stdout == "nil\tv\t2\t3\ntrue\tw\nfalse\tw\n"
    # Three requests count in the pipeline's scope; the cell reads it.
    content, stdout, _ = execute(kc, """
local answers = s.submit_all("seen", { "a", "b", "c" })
local counts = {}
for i, answer in ipairs(answers) do counts[i] = answer.fields.count end
table.sort(counts)
print(table.concat(counts, ","), s.state("pipeline", { pipeline = "seen" }).get("n"))
""")
    assert content["status"] == "ok", content
    assert stdout == "1,2,3\t3\n"
    assert (data_dir / "state.redb").is_file()
    km.shutdown_kernel(now=False)
    kc.stop_channels()

    # A new kernel on the same folder: every committed value is there.
    _, kc = start()
    content, stdout, results = execute(kc, """
s = require("spindle")
print(s.state().get("k"), s.state().get("n"), s.state("pipeline", { pipeline = "seen" }).get("n"))
s.state().list("")
""")
    assert content["status"] == "ok", content
    assert stdout == "w\t3\t3\n"
    assert results == ['{ k = "w", n = 3 }']


def test_a_misused_state_call_is_an_error_that_names_the_fix(kernel_on):
    start, _ = kernel_on
    _, kc = start()
    content, _, _ = execute(kc, 's = require("spindle")\ns.state("request").get("x")')
    assert content["status"] == "error"
    assert "pass the request as the second argument" in content["evalue"], content
    # The kernel goes on.
    content, stdout, _ = execute(kc, 'print(s.state().incr("after"))')
    assert content["status"] == "ok", content
    assert stdout == "1\n"
