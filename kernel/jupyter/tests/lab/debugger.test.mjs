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
import { join } from "node:path";
import { artefacts, startLab } from "./lab_session.mjs";

const source = "local base = 40\nlocal answer = base + 2\nanswer * 1000 + 7";

test("JupyterLab's debugger stops at a breakpoint in a Spindle cell", { timeout: 240_000 }, async () => {
  const lab = await startLab({ name: "debug.ipynb", cellId: "debug-cell", source });
  try {
    const page = await lab.browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(lab.url);
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
      throw new Error(`the debugger button stays disabled: ${html}\n${lab.labLog().slice(-3000)}`, { cause: error });
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
    await lab.close();
  }
});
