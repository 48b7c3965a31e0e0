// What both JupyterLab tests need: a one-cell notebook in a fresh folder,
// Spindle's kernelspec installed under a prefix of that folder, JupyterLab
// serving it on a free loopback port (resolved once it says where it
// serves), and headless Debian Chromium (playwright-core, no browser
// download). Artefacts (screenshots) go under target/jupyter-lab/.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const repo = resolve(import.meta.dirname, "../../../..");
const spindle = process.env.SPINDLE_BIN ?? join(repo, "target/debug/spindle");
const venv = join(repo, ".cache/jupyter-venv/bin");
export const artefacts = join(process.env.CARGO_TARGET_DIR ?? join(repo, "target"), "jupyter-lab");
const token = "spindle-test";

function freePort() {
  return new Promise((done) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

/** A notebook of one Spindle code cell. */
function notebook(cellId, source) {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: "spindle", display_name: "Spindle (Lua)", language: "lua" } },
    cells: [{ cell_type: "code", id: cellId, metadata: {}, outputs: [], execution_count: null, source }],
  };
}

/**
 * Starts JupyterLab on a notebook `name` holding one cell, and a browser.
 * Resolves with `{ browser, url, labLog, close }`: `url` opens the
 * notebook with the token; `labLog()` is Lab's stderr so far; `close()`
 * stops both.
 */
export async function startLab({ name, cellId, source }) {
  const root = mkdtempSync(join(tmpdir(), "spindle-lab-"));
  const prefix = join(root, "prefix");
  execFileSync(spindle, ["kernel", "install", "--prefix", prefix]);
  writeFileSync(join(root, name), JSON.stringify(notebook(cellId, source)));
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
    "--no-browser", `--port=${port}`, "--ServerApp.ip=127.0.0.1", `--IdentityProvider.token=${token}`,
    `--ServerApp.root_dir=${root}`, "--LabApp.news_url=", "--ServerApp.allow_root=True",
  ], { env, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  lab.stderr.on("data", (chunk) => { log += chunk; });
  // Lab is up when it says where it serves.
  await new Promise((ready, fail) => {
    const check = () => (log.includes(`127.0.0.1:${port}`) ? ready() : null);
    lab.stderr.on("data", check);
    lab.on("exit", (code) => fail(new Error(`jupyter lab exited ${code}: ${log}`)));
  });
  const executablePath = execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--headless=new"] });
  return {
    browser,
    url: `http://127.0.0.1:${port}/lab/tree/${name}?token=${token}`,
    labLog: () => log,
    close: async () => {
      await browser.close();
      lab.kill("SIGTERM");
    },
  };
}
