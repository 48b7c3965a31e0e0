"""Shared fixtures of the Jupyter front end's tests with real clients.

The `spindle` binary comes from $SPINDLE_BIN; its kernelspec is installed
into a temporary prefix that JUPYTER_PATH points at, so nothing of the
user's Jupyter setup is touched or used.
"""

import os
import pathlib
import subprocess
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[4]
SPINDLE = os.environ.get("SPINDLE_BIN", str(REPO / "target" / "debug" / "spindle"))


def install_kernelspec() -> str:
    prefix = tempfile.mkdtemp(prefix="spindle-kernelspec-")
    subprocess.run([SPINDLE, "kernel", "install", "--prefix", prefix], check=True, capture_output=True)
    data = os.path.join(prefix, "share", "jupyter")
    os.environ["JUPYTER_PATH"] = data
    # History and cell files of the test kernels stay out of the user's folders.
    os.environ.setdefault("XDG_DATA_HOME", tempfile.mkdtemp(prefix="spindle-data-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="spindle-run-"))
    return data


JUPYTER_DATA = install_kernelspec()


@pytest.fixture
def spindle_bin() -> str:
    return SPINDLE
