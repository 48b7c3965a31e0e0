"""pytest-lsp drives the real `spindle lsp` binary.

The binary is $SPINDLE_BIN, else target/debug/spindle of this checkout
(`make lsp-test` builds it first). Each test gets a fresh server over stdio
and a fresh folder of scripts.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

ROOT = pathlib.Path(__file__).resolve().parents[3]
SPINDLE = os.environ.get("SPINDLE_BIN", str(ROOT / "target" / "debug" / "spindle"))

if not os.access(SPINDLE, os.X_OK):
    # Not a skip: a missing binary is a broken setup, and CI must say so.
    sys.exit(f"spindle binary not found at {SPINDLE}: run `cargo build --bin spindle` first")


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[SPINDLE, "lsp"]),
)
async def client(lsp_client: LanguageClient):
    # Each test initializes with its own folder and options (see `start`).
    yield
    server = lsp_client._server
    if server is not None and server.returncode is None:
        await lsp_client.shutdown_session()


async def start(client: LanguageClient, folder: pathlib.Path, options=None):
    """initialize + initialized with `folder` as the workspace."""
    await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    publish_diagnostics=types.PublishDiagnosticsClientCapabilities(
                        related_information=True
                    ),
                    completion=types.CompletionClientCapabilities(
                        completion_item=types.ClientCompletionItemOptions(
                            snippet_support=True,
                            documentation_format=[types.MarkupKind.Markdown],
                        )
                    ),
                    hover=types.HoverClientCapabilities(content_format=[types.MarkupKind.Markdown]),
                ),
                workspace=types.WorkspaceClientCapabilities(
                    workspace_folders=True,
                    workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=False),
                ),
            ),
            workspace_folders=[types.WorkspaceFolder(uri=folder.as_uri(), name="graph")],
            initialization_options=options,
        )
    )


@pytest.fixture
def folder(tmp_path):
    return tmp_path


def spindle_check(path: pathlib.Path):
    """What `spindle check` prints for a file: (line, column, severity, message, hint)."""
    out = subprocess.run([SPINDLE, "check", str(path)], capture_output=True, text=True)
    found = []
    lines = out.stdout.splitlines()
    for idx, line in enumerate(lines):
        if line.startswith("  hint: "):
            continue
        head, _, rest = line.partition(": ")
        file_line_col = head.rsplit(":", 2)
        severity, _, message = rest.partition(": ")
        hint = None
        if idx + 1 < len(lines) and lines[idx + 1].startswith("  hint: "):
            hint = lines[idx + 1][len("  hint: ") :]
        found.append((int(file_line_col[1]), int(file_line_col[2]), severity, message, hint))
    return found


__all__ = ["start", "spindle_check", "SPINDLE", "shutil"]
