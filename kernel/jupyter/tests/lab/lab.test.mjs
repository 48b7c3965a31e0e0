// JupyterLab, headless in Debian's Chromium (playwright-core, no browser
// download): open a Spindle notebook, run a cell, see its text output, a
// rich display (an HTML table and an SVG chart) and the page of `s.help`
// (the reply's pager payload, shown below the cell). The screenshot is kept
// under target/jupyter-lab/ as the test's artefact.
//
// Needs: SPINDLE_BIN (default target/debug/spindle), the venv of
// scripts/setup_jupyter.sh, `chromium` on PATH.

import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { artefacts, startLab } from "./lab_session.mjs";

const source = 's = require("spindle")\nprint("lab says hello from " .. _VERSION)\ns.display({ { name = "alpha", score = 1 }, { name = "beta", score = 2 } })\ns.display(s.chart { kind = "bar", title = "scores", x = { "alpha", "beta" }, y = { 1, 2 } })\ns.help(s.cosine)';

test("JupyterLab runs a Spindle cell and shows its output, a rich display and a help page", { timeout: 240_000 }, async () => {
  const lab = await startLab({ name: "lab.ipynb", cellId: "lab-cell", source });
  try {
    const page = await lab.browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(lab.url);
    // The kernel is Spindle's and idle.
    await page.locator(".jp-Notebook").waitFor({ timeout: 120_000 });
    await page.getByText("Spindle (Lua)", { exact: false }).first().waitFor({ timeout: 120_000 });
    await page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first().waitFor({ timeout: 120_000 })
      .catch(() => {});
    await page.locator(".jp-Cell .cm-content").first().click();
    await page.keyboard.press("Shift+Enter");
    const output = page.locator(".jp-Cell").first().locator(".jp-OutputArea");
    await output.getByText("lab says hello from Lua 5.4").waitFor({ timeout: 60_000 });
    await output.locator("table.spindle-table td", { hasText: "beta" }).waitFor({ timeout: 30_000 });
    await output.locator("svg").first().waitFor({ timeout: 30_000 });
    // `s.help`'s page payload, which the notebook shows below the cell.
    await output.getByText("The cosine similarity of two vectors", { exact: false }).waitFor({ timeout: 30_000 });
    await page.screenshot({ path: join(artefacts, "lab.png"), fullPage: true });
    const cellsText = await output.innerText();
    assert.match(cellsText, /lab says hello from Lua 5\.4/);
    assert.match(cellsText, /alpha/);
  } finally {
    await lab.close();
  }
});
