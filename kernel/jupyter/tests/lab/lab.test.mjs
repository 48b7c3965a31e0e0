// JupyterLab, headless in Debian's Chromium (playwright-core, no browser
// download): open a Spindle notebook, run a cell, see its text output and
// a rich display (an HTML table and an SVG chart). The screenshot is kept
// under target/jupyter-lab/ as the test's artefact.
//
// Needs: SPINDLE_BIN (default target/debug/spindle), the venv of
// scripts/setup_jupyter.sh, `chromium` on PATH.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const repo = resolve(import.meta.dirname, "../../../..");
const spindle = process.env.SPINDLE_BIN ?? join(repo, "target/debug/spindle");
const venv = join(repo, ".cache/jupyter-venv/bin");
const artefacts = join(process.env.CARGO_TARGET_DIR ?? join(repo, "target"), "jupyter-lab");

function freePort() {
  return new Promise((done) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

const notebook = {
  nbformat: 4,
  nbformat_minor: 5,
  metadata: { kernelspec: { name: "spindle", display_name: "Spindle (Lua)", language: "lua" } },
  cells: [
    {
      cell_type: "code", id: "lab-cell", metadata: {}, outputs: [], execution_count: null,
      source: 's = require("spindle")\nprint("lab says hello from " .. _VERSION)\ns.display({ { name = "alpha", score = 1 }, { name = "beta", score = 2 } })\ns.display(s.chart { kind = "bar", title = "scores", x = { "alpha", "beta" }, y = { 1, 2 } })',
    },
  ],
};

test("JupyterLab runs a Spindle cell and shows its output and a rich display", { timeout: 240_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), "spindle-lab-"));
  const prefix = join(root, "prefix");
  execFileSync(spindle, ["kernel", "install", "--prefix", prefix]);
  writeFileSync(join(root, "lab.ipynb"), JSON.stringify(notebook));
  mkdirSync(artefacts, { recursive: true });
  const port = await freePort();
  const env = {
    ...process.env,
    JUPYTER_PATH: join(prefix, "share/jupyter"),
    JUPYTER_CONFIG_DIR: join(root, "config"),
    JUPYTER_RUNTIME_DIR: join(root, "runtime"),
    XDG_DATA_HOME: join(root, "data"),
    XDG_RUNTIME_DIR: join(root, "run"),
  };
  const lab = spawn(join(venv, "jupyter-lab"), [
    "--no-browser", `--port=${port}`, "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=spindle-test",
    `--ServerApp.root_dir=${root}`, "--LabApp.news_url=", "--ServerApp.allow_root=True",
  ], { env, stdio: ["ignore", "ignore", "pipe"] });
  let labLog = "";
  lab.stderr.on("data", (chunk) => { labLog += chunk; });
  // Lab is up when it says where it serves.
  await new Promise((ready, fail) => {
    const check = () => (labLog.includes(`127.0.0.1:${port}`) ? ready() : null);
    lab.stderr.on("data", check);
    lab.on("exit", (code) => fail(new Error(`jupyter lab exited ${code}: ${labLog}`)));
  });
  const executablePath = execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--headless=new"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`http://127.0.0.1:${port}/lab/tree/lab.ipynb?token=spindle-test`);
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
    await page.screenshot({ path: join(artefacts, "lab.png"), fullPage: true });
    const cellsText = await output.innerText();
    assert.match(cellsText, /lab says hello from Lua 5\.4/);
    assert.match(cellsText, /alpha/);
  } finally {
    await browser.close();
    lab.kill("SIGTERM");
  }
});
