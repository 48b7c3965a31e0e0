// JupyterLab's debugger panel on a Spindle notebook, headless in Debian's
// Chromium (playwright-core, no browser download): enable the debugger,
// set a breakpoint in a cell's gutter, run the cell, see the call stack
// stop in the cell and its locals in the variables panel, continue, and
// see the cell's result. The screenshot of the stopped cell is kept under
// target/jupyter-lab/debugger.png.
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
      cell_type: "code", id: "debug-cell", metadata: {}, outputs: [], execution_count: null,
      source: "local base = 40\nlocal answer = base + 2\nanswer * 1000 + 7",
    },
  ],
};

test("JupyterLab's debugger stops at a breakpoint in a Spindle cell", { timeout: 240_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), "spindle-lab-debug-"));
  const prefix = join(root, "prefix");
  execFileSync(spindle, ["kernel", "install", "--prefix", prefix]);
  writeFileSync(join(root, "debug.ipynb"), JSON.stringify(notebook));
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
  await new Promise((ready, fail) => {
    const check = () => (labLog.includes(`127.0.0.1:${port}`) ? ready() : null);
    lab.stderr.on("data", check);
    lab.on("exit", (code) => fail(new Error(`jupyter lab exited ${code}: ${labLog}`)));
  });
  const executablePath = execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--headless=new"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`http://127.0.0.1:${port}/lab/tree/debug.ipynb?token=spindle-test`);
    await page.locator(".jp-Notebook").waitFor({ timeout: 120_000 });
    await page.getByText("Spindle (Lua)", { exact: false }).first().waitFor({ timeout: 120_000 });
    // The bug button is enabled once Lab knows the kernel supports debugging.
    const bug = page.locator(".jp-DebuggerBugButton").first();
    await bug.waitFor({ timeout: 120_000 });
    const enabled = () => {
      const item = document.querySelector(".jp-DebuggerBugButton");
      if (!item) return false;
      const all = [item, ...item.querySelectorAll("*")];
      return !all.some((element) => element.disabled || element.getAttribute("aria-disabled") === "true" || element.hasAttribute("disabled"));
    };
    await page.waitForFunction(enabled, null, { timeout: 60_000 }).catch(async (error) => {
      const html = await bug.evaluate((element) => element.outerHTML);
      await page.screenshot({ path: join(artefacts, "debugger-failed.png"), fullPage: true });
      throw new Error(`the debugger button stays disabled: ${html}\n${labLog.slice(-3000)}`, { cause: error });
    });
    await bug.click();
    // The breakpoint gutter appears with the debugger; click it beside line 2.
    const cell = page.locator(".jp-Cell").first();
    const gutter = cell.locator("div.cm-gutter.cm-breakpoint-gutter");
    await gutter.waitFor({ timeout: 60_000 });
    const line = await cell.locator(".cm-line").nth(1).boundingBox();
    const gutterBox = await gutter.boundingBox();
    await page.mouse.click(gutterBox.x + gutterBox.width / 2, line.y + line.height / 2);
    await page.locator(".jp-DebuggerBreakpoint").first().waitFor({ timeout: 30_000 });

    await cell.locator(".cm-content").click();
    await page.keyboard.press("Shift+Enter");
    // Stopped: the call stack shows the cell's frame at line 2, the
    // variables panel the cell's locals.
    const frame = page.locator(".jp-DebuggerCallstackFrame").first();
    await frame.waitFor({ timeout: 60_000 });
    const location = await frame.locator(".jp-DebuggerCallstackFrame-location").innerText();
    assert.match(location, /\.lua:2$/);
    const variables = page.locator(".jp-DebuggerVariables-body.jp-debuggerVariables-local");
    await variables.getByText("base", { exact: true }).first().waitFor({ timeout: 30_000 });
    await page.screenshot({ path: join(artefacts, "debugger.png"), fullPage: true });
    const shown = await variables.innerText();
    assert.match(shown, /base\W*40/, shown);
    assert.doesNotMatch(shown, /answer/, "answer is not assigned yet at line 2");

    // Continue: the cell finishes with its result.
    const continueButton = page.locator("[data-command='debugger:continue']").first();
    if (await continueButton.count()) {
      await continueButton.click();
    } else {
      await page.keyboard.press("F9");
    }
    const output = cell.locator(".jp-OutputArea");
    await output.getByText("42007").waitFor({ timeout: 60_000 });
    await frame.waitFor({ state: "detached", timeout: 30_000 });
  } finally {
    await browser.close();
    lab.kill("SIGTERM");
  }
});
