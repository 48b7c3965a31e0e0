// Running the graph of the open script: `spindle run FILE --http ADDRESS` in
// a terminal of its own, stopped with Ctrl-C (services stop in reverse
// dependency order); a status bar item polls the status API meanwhile.

import { ChildProcess, spawn } from "node:child_process";
import * as nodePath from "node:path";
import * as vscode from "vscode";
import { LiveStatus, fetchStatus, summary } from "./status";

/** A terminal showing one `spindle run` process that the extension owns, so
 * that stopping is a signal to that process and its exit is known. */
class RunTerminal implements vscode.Pseudoterminal {
  private readonly writer = new vscode.EventEmitter<string>();
  private readonly closer = new vscode.EventEmitter<number | void>();
  readonly onDidWrite = this.writer.event;
  readonly onDidClose = this.closer.event;
  child: ChildProcess | undefined;

  constructor(
    private readonly command: string,
    private readonly args: string[],
    private readonly cwd: string,
    private readonly exited: (code: number | null) => void,
  ) {}

  open(): void {
    this.writer.fire(`$ ${this.command} ${this.args.join(" ")}\r\n`);
    const child = spawn(this.command, this.args, { cwd: this.cwd, env: process.env });
    this.child = child;
    const show = (data: Buffer) => this.writer.fire(data.toString("utf8").replace(/\r?\n/g, "\r\n"));
    child.stdout?.on("data", show);
    child.stderr?.on("data", show);
    child.on("error", (error) => this.writer.fire(`spindle: ${error.message}\r\n`));
    child.on("close", (code) => {
      this.writer.fire(`\r\n[spindle run exited with ${code}]\r\n`);
      this.exited(code);
    });
  }

  /** Ctrl-C in the terminal stops the graph, as in a shell. */
  handleInput(data: string): void {
    if (data === "\u0003") this.interrupt();
  }

  interrupt(): void {
    this.child?.kill("SIGINT");
  }

  close(): void {
    this.interrupt();
  }
}

export class GraphRunner implements vscode.Disposable {
  private terminal: vscode.Terminal | undefined;
  private process: RunTerminal | undefined;
  private exit: Promise<void> | undefined;
  private script: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly statusItem: vscode.StatusBarItem;
  private readonly listeners: ((status: LiveStatus | Error) => void)[] = [];
  private readonly subscriptions: vscode.Disposable[] = [];

  constructor(private readonly settings: () => { path: string; httpAddress: string; statusInterval: number }) {
    this.statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 10);
    this.statusItem.command = "spindle.showGraph";
    this.poll();
  }

  get running(): boolean {
    return this.process !== undefined;
  }

  /** Calls `listener` with every status read (or the error instead). */
  onStatus(listener: (status: LiveStatus | Error) => void): vscode.Disposable {
    this.listeners.push(listener);
    return new vscode.Disposable(() => {
      const at = this.listeners.indexOf(listener);
      if (at >= 0) this.listeners.splice(at, 1);
    });
  }

  async run(script: string): Promise<void> {
    if (this.terminal) {
      const choice = await vscode.window.showWarningMessage(
        `A graph is already running (${this.script}).`,
        "Stop it and run this one",
      );
      if (!choice) return;
      await this.stop();
    }
    const { path, httpAddress } = this.settings();
    this.script = script;
    let exited: () => void = () => undefined;
    this.exit = new Promise<void>((resolve) => (exited = resolve));
    const cwd = nodePath.dirname(script);
    this.process = new RunTerminal(path, ["run", script, "--http", httpAddress], cwd, (code) => {
      this.process = undefined;
      this.stopped(code);
      exited();
    });
    this.terminal = vscode.window.createTerminal({ name: "Spindle: graph", pty: this.process, isTransient: true });
    this.terminal.show(true);
    await vscode.commands.executeCommand("setContext", "spindle.running", true);
    this.statusItem.text = "$(sync~spin) spindle: starting";
    this.statusItem.tooltip = `spindle run ${script} --http ${httpAddress}`;
    this.statusItem.show();
  }

  /** Ctrl-C to `spindle run`, which stops the services in reverse order and
   * exits; the terminal closes with it. */
  async stop(): Promise<void> {
    if (!this.process) {
      void vscode.window.showInformationMessage("No graph is running.");
      return;
    }
    this.process.interrupt();
    await this.exit;
  }

  private stopped(code: number | null): void {
    void vscode.commands.executeCommand("setContext", "spindle.running", false);
    this.statusItem.text = code === 0 ? "$(circle-slash) spindle: stopped" : `$(error) spindle: exited ${code}`;
  }

  private poll(): void {
    const { httpAddress, statusInterval } = this.settings();
    this.timer = setTimeout(async () => {
      try {
        const status = await fetchStatus(httpAddress);
        this.statusItem.text = `$(pulse) spindle: ${summary(status)}`;
        this.statusItem.show();
        this.listeners.forEach((listener) => listener(status));
      } catch (error) {
        if (this.process) this.statusItem.text = "$(sync~spin) spindle: starting";
        this.listeners.forEach((listener) => listener(error as Error));
      }
      this.poll();
    }, Math.max(200, statusInterval));
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.process?.interrupt();
    this.terminal?.dispose();
    this.statusItem.dispose();
    this.subscriptions.forEach((d) => d.dispose());
  }
}
