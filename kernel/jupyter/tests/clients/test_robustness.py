"""The kernel under misbehaving clients: interrupts keep the Lua state, a
forged or missing signature is refused (and logged) while the kernel keeps
working, and a client that goes away mid-execution wedges nothing."""

import time

import pytest
import zmq
from jupyter_client.manager import start_new_kernel
from jupyter_client.session import Session

import conftest  # noqa: F401  (installs the kernelspec)

TIMEOUT = 20


@pytest.fixture
def kernel():
    km, kc = start_new_kernel(kernel_name="spindle")
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def execute(kc, code, **kwargs):
    """Runs a cell; returns its reply content and iopub messages until idle."""
    msg_id = kc.execute(code, **kwargs)
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    outputs = []
    while True:
        message = kc.get_iopub_msg(timeout=TIMEOUT)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return reply["content"], outputs
        outputs.append(message)


def result_text(outputs):
    return [m["content"]["data"]["text/plain"] for m in outputs if m["msg_type"] == "execute_result"]


def wait_for_input_of(kc, msg_id):
    while True:
        message = kc.get_iopub_msg(timeout=TIMEOUT)
        if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "execute_input":
            return


def test_interrupt_stops_a_runaway_cell_and_keeps_earlier_variables(kernel):
    km, kc = kernel
    execute(kc, "kept = 41")
    msg_id = kc.execute("while true do end")
    wait_for_input_of(kc, msg_id)
    # The cell may not have reached the Lua thread yet: interrupt until it
    # answers (each interrupt is answered at once on control).
    while True:
        km.interrupt_kernel()
        if kc.shell_channel.msg_ready() or kc.shell_channel.socket.poll(200):
            break
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "Interrupted"
    content, outputs = execute(kc, "kept + 1")
    assert content["status"] == "ok"
    assert result_text(outputs) == ["42"]


def test_an_interrupt_stops_a_cell_waiting_for_input(kernel):
    km, kc = kernel
    msg_id = kc.execute("name = io.read()", allow_stdin=True)
    request = kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["msg_type"] == "input_request"
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    content, outputs = execute(kc, "2 + 2")
    assert result_text(outputs) == ["4"]


def test_io_read_asks_the_client(kernel):
    _, kc = kernel
    msg_id = kc.execute('name = io.read()\nreturn "hi " .. name', allow_stdin=True)
    request = kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["msg_type"] == "input_request"
    kc.input("ada")
    reply = kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok"


def raw_shell(km):
    """A DEALER on the kernel's shell socket and a Session with the real key."""
    info = km.get_connection_info()
    context = zmq.Context.instance()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(f"tcp://{info['ip']}:{info['shell_port']}")
    return socket, Session(key=info["key"], signature_scheme="hmac-sha256")


def test_a_forged_signature_is_refused_and_the_kernel_keeps_working(kernel):
    km, kc = kernel
    socket, session = raw_shell(km)
    forged = Session(key=b"not-the-key", signature_scheme="hmac-sha256")
    forged.send(socket, "execute_request", {"code": "forged = true", "silent": False, "store_history": True,
                                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
    # A message without any signature at all.
    unsigned = Session(key=b"", signature_scheme="hmac-sha256")
    unsigned.send(socket, "execute_request", {"code": "unsigned = true", "silent": False, "store_history": True,
                                              "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
    # The real key works on the same socket, and nothing forged ran.
    session.send(socket, "execute_request", {"code": "return forged, unsigned", "silent": False,
                                             "store_history": True, "user_expressions": {},
                                             "allow_stdin": False, "stop_on_error": True})
    assert socket.poll(TIMEOUT * 1000)
    _, reply = session.recv(socket, mode=0)
    assert reply["msg_type"] == "execute_reply"
    assert reply["content"]["status"] == "ok"
    # Only one reply: the forged messages got none.
    assert not socket.poll(300)
    socket.close()
    content, outputs = execute(kc, "forged == nil and unsigned == nil")
    assert result_text(outputs) == ["true"]


def test_a_client_that_disconnects_mid_execution_wedges_nothing(kernel):
    km, kc = kernel
    # Client A asks for input, then goes away without answering. Its
    # channels go as soon as they came: no heartbeat thread, whose socket
    # would be made after the client's context is gone (a warning of
    # jupyter_client's thread, not of the kernel).
    gone = km.client()
    gone.start_channels(hb=False)
    msg_id = gone.execute("answer = io.read()", allow_stdin=True)
    request = gone.get_stdin_msg(timeout=TIMEOUT)
    assert request["msg_type"] == "input_request"
    gone.stop_channels()
    # Client B is served: its cell runs once A's has failed.
    started = time.monotonic()
    content, outputs = execute(kc, "answer == nil")
    assert content["status"] == "ok", content
    assert result_text(outputs) == ["true"]
    assert time.monotonic() - started < TIMEOUT
    # A client gone while its long cell runs: its reply goes nowhere.
    gone = km.client()
    gone.start_channels(hb=False)
    gone.execute("local n = 0 for i = 1, 3e6 do n = n + i end")
    gone.stop_channels()
    content, outputs = execute(kc, "7 * 6")
    assert result_text(outputs) == ["42"]
