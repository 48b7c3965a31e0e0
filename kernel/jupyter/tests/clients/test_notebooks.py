"""Every notebook in notebooks/ executed by nbclient against the real
kernel, and its outputs checked: each code cell's `spindle_expect`
metadata says what it must show (stdout text, a result, a MIME type and
text inside it). A notebook whose metadata names a graph script runs on a
kernel started from that script (a kernelspec made for it)."""

import json
import os
import pathlib
import subprocess

import nbformat
import pytest
from nbclient import NotebookClient

import conftest

NOTEBOOKS = sorted((conftest.REPO / "notebooks").glob("*.ipynb"))


def kernel_for(notebook_path, book):
    script = book.metadata.get("spindle", {}).get("script")
    if not script:
        return "spindle"
    name = f"spindle-{notebook_path.stem}"
    folder = pathlib.Path(conftest.JUPYTER_DATA) / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = json.loads((pathlib.Path(conftest.JUPYTER_DATA) / "kernels" / "spindle" / "kernel.json").read_text())
    spec["argv"] += ["--script", str((notebook_path.parent / script).resolve())]
    spec["display_name"] = f"Spindle ({script})"
    (folder / "kernel.json").write_text(json.dumps(spec))
    return name


def outputs_text(cell):
    stdout = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
    results = [o.data.get("text/plain", "") for o in cell.outputs if o.output_type == "execute_result"]
    bundles = [o.data for o in cell.outputs if o.output_type in ("execute_result", "display_data")]
    return stdout, results, bundles


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_shows_what_it_should(path):
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=120, kernel_name=kernel_for(path, book),
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    checked = 0
    for index, cell in enumerate(book.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"cell {index} failed: {errors[0].get('evalue')}"
        expect = cell.metadata.get("spindle_expect")
        if not expect:
            continue
        checked += 1
        stdout, results, bundles = outputs_text(cell)
        where = f"{path.name} cell {index}"
        if "stdout" in expect:
            assert expect["stdout"] in stdout, f"{where}: stdout {stdout!r}"
        if "result" in expect:
            assert results == [expect["result"]], f"{where}: results {results!r}"
        if "result_prefix" in expect:
            assert results and results[0].startswith(expect["result_prefix"]), f"{where}: {results!r}"
        if "mime" in expect:
            shown = [b[expect["mime"]] for b in bundles if expect["mime"] in b]
            assert shown, f"{where}: no {expect['mime']} among {[list(b) for b in bundles]}"
            if "contains" in expect:
                assert any(expect["contains"] in text for text in shown), f"{where}: {shown[0][:300]!r}"
    assert checked >= 4, f"{path.name}: only {checked} cells have expectations"
