"""`spindle lsp` driven by pytest-lsp: diagnostics (the same as `spindle
check`), completion, hover (with a real running graph's live state),
definition, references, rename, symbols, code actions, inlay hints, bad
input, and a restart.

Synchronisation is on events only: published diagnostics, the running
graph's own output lines.
"""

import asyncio
import pathlib
import re

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from conftest import SPINDLE, spindle_check, start

GRAPH = """local s = require("spindle")
local common = require("common")

s.service "db" {
  command = { "sleep", "60" },
  restart = { policy = "on-failure", backoff = "200ms..10s" },
}

s.service "api" {
  command = { "sleep", "60" },
  depends_on = { db = "started", cache = "started" },
}

s.service "embedder" {
  embedding = { model = "all-MiniLM-L6-v2" },
}

s.pipeline "ingest" {
  s.stage("clean", function(req) return req end),
  s.stage("embed", s.embed "embedder"),
}
"""

COMMON = """local s = require("spindle")

s.service "cache" {
  command = { "sleep", "60" },
  depends_on = { "db" },
}

return {}
"""


def write(folder: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = folder / name
    path.write_text(text)
    return path


def open_doc(client: LanguageClient, path: pathlib.Path, text: str | None = None, version=1):
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=path.as_uri(),
                language_id="lua",
                version=version,
                text=path.read_text() if text is None else text,
            )
        )
    )


def change_doc(client: LanguageClient, path: pathlib.Path, text: str, version: int):
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=path.as_uri(), version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def diagnostics_where(client: LanguageClient, path: pathlib.Path, predicate):
    """Waits for published diagnostics of `path` that satisfy `predicate`."""
    uri = path.as_uri()
    while True:
        if uri in client.diagnostics and predicate(client.diagnostics[uri]):
            return client.diagnostics[uri]
        await asyncio.wait_for(
            client.wait_for_notification("textDocument/publishDiagnostics"), timeout=60
        )


def pos(text: str, needle: str, delta: int = 0) -> types.Position:
    """The position of the first `needle` in `text`, moved `delta` characters."""
    offset = text.index(needle) + delta
    line = text.count("\n", 0, offset)
    character = offset - (text.rfind("\n", 0, offset) + 1)
    return types.Position(line=line, character=character)


async def open_graph(client, folder, graph=GRAPH, options=None):
    write(folder, "common.lua", COMMON)
    path = write(folder, "graph.lua", graph)
    await start(client, folder, options)
    open_doc(client, path)
    await diagnostics_where(client, path, lambda d: True)
    return path


# --- diagnostics -----------------------------------------------------------


@pytest.mark.asyncio
async def test_diagnostics_are_those_of_spindle_check_and_clear_when_fixed(client, folder):
    broken = GRAPH.replace("backoff =", "bakoff =").replace('db = "started"', 'db = "helthy"')
    path = write(folder, "graph.lua", broken)
    write(folder, "common.lua", COMMON)
    await start(client, folder)
    open_doc(client, path)
    found = await diagnostics_where(client, path, lambda d: len(d) > 0)
    expected = spindle_check(path)
    got = []
    for d in found:
        message, _, hint = d.message.partition("\nhint: ")
        severity = "error" if d.severity == types.DiagnosticSeverity.Error else "warning"
        got.append((d.range.start.line + 1, d.range.start.character + 1, severity, message, hint or None))
    assert got == expected
    assert any("did you mean `backoff`?" in d.message for d in found)
    bakoff = next(d for d in found if "bakoff" in d.message)
    assert bakoff.range == types.Range(start=pos(broken, "bakoff"), end=pos(broken, "bakoff", 6))

    change_doc(client, path, GRAPH, 2)
    await diagnostics_where(client, path, lambda d: len(d) == 0)


@pytest.mark.asyncio
async def test_unsaved_text_is_checked_not_the_file(client, folder):
    path = write(folder, "graph.lua", GRAPH)
    write(folder, "common.lua", COMMON)
    await start(client, folder)
    unsaved = GRAPH.replace("command = { \"sleep\", \"60\" },\n  restart", "comand = { \"sleep\", \"60\" },\n  restart")
    open_doc(client, path, unsaved)
    found = await diagnostics_where(client, path, lambda d: len(d) > 0)
    assert any("unknown field `comand`" in d.message for d in found)


@pytest.mark.asyncio
async def test_a_cycle_points_at_each_edge_and_a_duplicate_at_the_first(client, folder):
    graph = """local s = require("spindle")
s.service "a" { command = "x", depends_on = { "b" } }
s.service "b" { command = "x", depends_on = { "c" } }
s.service "c" { command = "x", depends_on = { "a" } }
s.service "a" { command = "y" }
"""
    path = write(folder, "graph.lua", graph)
    await start(client, folder)
    open_doc(client, path)
    found = await diagnostics_where(client, path, lambda d: len(d) >= 2)
    cycle = next(d for d in found if d.message.startswith("dependency cycle"))
    edges = sorted((r.message, r.location.range.start.line) for r in cycle.related_information)
    assert edges == [
        ("`a` depends on `b`", 1),
        ("`b` depends on `c`", 2),
        ("`c` depends on `a`", 3),
    ]
    duplicate = next(d for d in found if "declared twice" in d.message)
    assert duplicate.range.start.line == 4
    first = duplicate.related_information[0]
    assert first.message == "first declared here"
    assert first.location.range.start.line == 1


@pytest.mark.asyncio
async def test_a_script_that_never_ends_is_cut_off_and_the_server_lives_on(client, folder):
    path = write(folder, "graph.lua", 'local s = require("spindle")\nwhile true do end\n')
    await start(client, folder)
    open_doc(client, path)
    found = await diagnostics_where(client, path, lambda d: len(d) > 0)
    assert "evaluation budget" in found[0].message
    assert found[0].range.start.line == 1
    # Still answering, and a memory hog is reported too.
    change_doc(client, path, "local t = {}\nwhile true do t[#t + 1] = string.rep('x', 4096) end\n", 2)
    found = await diagnostics_where(client, path, lambda d: any("memory limit" in x.message for x in d))
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=path.as_uri()))
    )
    assert symbols == []


@pytest.mark.asyncio
async def test_a_module_is_checked_through_the_script_that_requires_it(client, folder):
    path = await open_graph(client, folder)
    common = folder / "common.lua"
    # `cache` depends on `db`, declared in graph.lua: no false "not declared".
    open_doc(client, common)
    await diagnostics_where(client, common, lambda d: len(d) == 0)
    change_doc(client, common, COMMON.replace('{ "db" }', '{ "dbb" }'), 2)
    found = await diagnostics_where(client, common, lambda d: len(d) > 0)
    assert "depends on `dbb`, which is not declared" in found[0].message
    assert "did you mean `db`?" in found[0].message
    assert len(client.diagnostics[path.as_uri()]) == 0


# --- completion ------------------------------------------------------------


async def complete(client, path, text, needle, delta=0):
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            position=pos(text, needle, delta),
        )
    )
    items = result.items if hasattr(result, "items") else result
    return {item.label: item for item in items}


@pytest.mark.asyncio
async def test_completion(client, folder):
    text = GRAPH.replace(
        's.service "api" {\n  command',
        's.service "api" {\n  res\n  command',
    ).replace('db = "started"', 'db = "sta"')
    path = await open_graph(client, folder)
    change_doc(client, path, text, 2)

    api = await complete(client, path, text, 's.service "db"', 2)
    assert {"service", "pipeline", "stage", "embed", "http_probe", "exec_probe"} <= set(api)
    assert api["service"].insert_text_format == types.InsertTextFormat.Snippet
    assert "Declares a service" in api["service"].documentation.value

    fields = await complete(client, path, text, "  res\n", 5)
    assert "restart" in fields and "ready" in fields, sorted(fields)
    assert "depends_on" not in fields
    assert "command" not in fields  # already written
    assert fields["restart"].text_edit.new_text.startswith("restart = {")

    conditions = await complete(client, path, text, 'db = "sta"', 9)
    assert list(conditions) == ["started", "healthy", "completed"]

    policies = await complete(client, path, text, 'policy = "on-failure"', 10)
    assert set(policies) == {"on-failure", "always", "no"}

    deps = await complete(client, path, text, "depends_on = { ", 15)
    # Neither the service itself nor what it already depends on.
    assert set(deps) == {"embedder"}

    embeds = await complete(client, path, text, 's.embed "embedder"', 9)
    assert list(embeds) == ["embedder"]

    models = await complete(client, path, text, 'model = "all', 9)
    assert "all-MiniLM-L6-v2" in models


# --- hover -----------------------------------------------------------------


async def hover(client, path, text, needle, delta=1):
    result = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            position=pos(text, needle, delta),
        )
    )
    return result.contents.value if result else None


@pytest.mark.asyncio
async def test_hover_documents_the_api_and_describes_services(client, folder):
    path = await open_graph(client, folder)
    assert "Declares a service" in await hover(client, path, GRAPH, 's.service "db"', 3)
    assert "Recovery" in await hover(client, path, GRAPH, "restart = {", 1)
    text = await hover(client, path, GRAPH, '"api"', 1)
    assert "**service** `api` — process" in text
    assert "`db` (started), `cache` (started)" in text
    assert "wave 2 of 3" in text
    assert "live" not in text  # no address configured
    text = await hover(client, path, GRAPH, 's.embed "embedder"', 10)
    assert "embedding" in text and "all-MiniLM-L6-v2" in text


@pytest.mark.asyncio
async def test_hover_shows_the_live_state_of_a_running_graph(client, folder):
    graph = """local s = require("spindle")
s.service "db" { command = { "sleep", "60" } }
s.pipeline "echo" { s.stage("upper", function(req) return req end) }
"""
    path = write(folder, "graph.lua", graph)
    running = await asyncio.create_subprocess_exec(
        SPINDLE, "run", str(path), "--events", "jsonl", "--http", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        address = None
        while address is None:
            line = (await asyncio.wait_for(running.stderr.readline(), 60)).decode()
            assert line, "spindle run ended before serving"
            match = re.search(r"on http://(\S+)", line)
            address = match and match.group(1)
        while True:
            event = (await asyncio.wait_for(running.stdout.readline(), 60)).decode()
            assert event, "spindle run ended before db was ready"
            if '"service":"db"' in event and '"to":"ready"' in event:
                pid = re.search(r'"pid":(\d+)', event).group(1)
                break
        await start(client, folder, {"httpAddress": address})
        open_doc(client, path)
        await diagnostics_where(client, path, lambda d: True)
        text = await hover(client, path, graph, '"db"', 1)
        assert f"**live**: ready · pid {pid} · restarts 0" in text
    finally:
        running.terminate()
        await running.wait()
    # The graph stopped: hover says so instead of failing.
    text = await hover(client, path, graph, '"db"', 1)
    assert "**live**: not running at" in text


# --- navigation --------------------------------------------------------------


@pytest.mark.asyncio
async def test_definition_references_and_rename_across_files(client, folder):
    path = await open_graph(client, folder)
    common = folder / "common.lua"
    uri = path.as_uri()

    found = await client.text_document_definition_async(
        types.DefinitionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=pos(GRAPH, "cache =")
        )
    )
    assert [(l.uri, l.range.start.line) for l in found] == [(common.as_uri(), 2)]

    found = await client.text_document_definition_async(
        types.DefinitionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=pos(GRAPH, '"common"', 2)
        )
    )
    assert [l.uri for l in found] == [common.as_uri()]

    refs = await client.text_document_references_async(
        types.ReferenceParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=pos(GRAPH, '"db"', 1),
            context=types.ReferenceContext(include_declaration=True),
        )
    )
    assert sorted((pathlib.Path(l.uri[7:]).name, l.range.start.line) for l in refs) == [
        ("common.lua", 4),
        ("graph.lua", 3),
        ("graph.lua", 10),
    ]

    prepared = await client.text_document_prepare_rename_async(
        types.PrepareRenameParams(text_document=types.TextDocumentIdentifier(uri=uri), position=pos(GRAPH, '"db"', 1))
    )
    assert prepared.placeholder == "db"
    edit = await client.text_document_rename_async(
        types.RenameParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=pos(GRAPH, '"db"', 1),
            new_name="postgres",
        )
    )
    assert sorted(pathlib.Path(u[7:]).name for u in edit.changes) == ["common.lua", "graph.lua"]
    assert {e.new_text for e in edit.changes[uri]} == {"postgres"}
    # A name that is not a Lua name stays valid as a depends_on key.
    edit = await client.text_document_rename_async(
        types.RenameParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=pos(GRAPH, '"db"', 1), new_name="my-db"
        )
    )
    assert sorted(e.new_text for e in edit.changes[uri]) == ['["my-db"]', "my-db"]


@pytest.mark.asyncio
async def test_symbols(client, folder):
    path = await open_graph(client, folder)
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=path.as_uri()))
    )
    assert [(s.name, s.detail) for s in symbols] == [
        ("db", "process"),
        ("api", "process"),
        ("embedder", "embedding"),
        ("ingest", "pipeline"),
    ]
    assert [c.name for c in symbols[3].children] == ["clean", "embed"]
    found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="ca"))
    assert [(s.name, pathlib.Path(s.location.uri[7:]).name) for s in found] == [("cache", "common.lua")]


@pytest.mark.asyncio
async def test_code_action_applies_the_did_you_mean_hint(client, folder):
    broken = GRAPH.replace('policy = "on-failure"', 'policy = "on-failur"')
    path = await open_graph(client, folder, broken)
    found = await diagnostics_where(client, path, lambda d: len(d) > 0)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            range=found[0].range,
            context=types.CodeActionContext(diagnostics=found),
        )
    )
    assert [a.title for a in actions] == ['Change to "on-failure"']
    edit = actions[0].edit.changes[path.as_uri()][0]
    assert edit.new_text == '"on-failure"'
    assert edit.range.start == pos(broken, '"on-failur"')


@pytest.mark.asyncio
async def test_inlay_hints_show_waves(client, folder):
    path = await open_graph(client, folder)
    hints = await client.text_document_inlay_hint_async(
        types.InlayHintParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            range=types.Range(start=types.Position(line=0, character=0), end=types.Position(line=99, character=0)),
        )
    )
    assert [(h.position.line, h.label) for h in hints] == [(3, "wave 0"), (8, "wave 2"), (13, "wave 0")]


@pytest.mark.asyncio
async def test_graph_request_lists_services_by_wave(client, folder):
    path = await open_graph(client, folder)
    answer = await client.protocol.send_request_async("spindle/graph", {"uri": path.as_uri()})
    waves = [[s.name for s in wave] for wave in answer.waves]
    assert waves == [["db", "embedder"], ["cache"], ["api"]]
    assert answer.errors == 0


# --- bad input, restart ------------------------------------------------------


@pytest.mark.asyncio
async def test_a_request_for_an_unknown_document_is_an_error(client, folder):
    await start(client, folder)
    with pytest.raises(Exception, match="unknown document"):
        await client.text_document_hover_async(
            types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=(folder / "nope.lua").as_uri()),
                position=types.Position(line=0, character=0),
            )
        )


@pytest.mark.asyncio
async def test_a_restarted_server_gives_the_same_diagnostics(client, folder):
    broken = GRAPH.replace("backoff =", "bakoff =")
    path = write(folder, "graph.lua", broken)
    write(folder, "common.lua", COMMON)
    await start(client, folder)
    open_doc(client, path)
    before = await diagnostics_where(client, path, lambda d: len(d) > 0)
    await client.shutdown_session()
    assert client._server.returncode == 0

    # A second server, as an editor's "restart" starts it.
    second = await ClientServerConfig(server_command=[SPINDLE, "lsp"]).start()
    try:
        await start(second, folder)
        open_doc(second, path)
        after = await diagnostics_where(second, path, lambda d: len(d) > 0)
        assert after == before
    finally:
        await second.shutdown_session()
        await second.stop()
