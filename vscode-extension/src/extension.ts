// The Spindle extension: the language client for `spindle lsp`, commands to
// run, stop and check the graph of the open script, a status bar item, the
// graph view, and the `spindle` debugger (`spindle dap`).

import { execFile } from "node:child_process";
import * as vscode from "vscode";
import { LanguageClient, LanguageClientOptions, ServerOptions } from "vscode-languageclient/node";
import { SpindleConfigurationProvider, SpindleDebugAdapterFactory } from "./debug";
import { GraphRunner } from "./graphRun";
import { GraphView } from "./graphView";

let client: LanguageClient | undefined;

function settings() {
  const config = vscode.workspace.getConfiguration("spindle");
  return {
    path: config.get<string>("path", "spindle"),
    httpAddress: config.get<string>("httpAddress", "127.0.0.1:7700"),
    statusInterval: config.get<number>("statusInterval", 1000),
  };
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  const { path, httpAddress } = settings();
  const serverOptions: ServerOptions = { command: path, args: ["lsp"] };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file", language: "lua" }],
    initializationOptions: { httpAddress },
    synchronize: { configurationSection: "spindle" },
    outputChannelName: "Spindle Language Server",
  };
  client = new LanguageClient("spindle", "Spindle", serverOptions, clientOptions);
  context.subscriptions.push(client);
  await client.start();
}

function activeScript(): vscode.Uri | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.languageId !== "lua") {
    void vscode.window.showErrorMessage("Open a Spindle script (a .lua file) first.");
    return undefined;
  }
  return editor.document.uri;
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const runner = new GraphRunner(settings);
  const view = new GraphView(() => client);
  context.subscriptions.push(runner, view);
  context.subscriptions.push(runner.onStatus((status) => view.setLive(status)));

  context.subscriptions.push(
    vscode.commands.registerCommand("spindle.runGraph", async () => {
      const uri = activeScript();
      if (!uri) return;
      await vscode.window.activeTextEditor?.document.save();
      await runner.run(uri.fsPath);
    }),
    vscode.commands.registerCommand("spindle.stopGraph", () => runner.stop()),
    vscode.commands.registerCommand("spindle.showGraph", async () => {
      const uri = activeScript();
      if (uri) await view.show(uri);
    }),
    vscode.commands.registerCommand("spindle.checkScript", async () => {
      const uri = activeScript();
      if (!uri) return;
      const output = vscode.window.createOutputChannel("Spindle check");
      execFile(settings().path, ["check", uri.fsPath], (error, stdout, stderr) => {
        output.clear();
        output.append(stdout + stderr);
        output.show(true);
        if (error) void vscode.window.showWarningMessage(stderr.trim() || error.message);
      });
    }),
    vscode.commands.registerCommand("spindle.restartServer", async () => {
      await client?.restart();
    }),
    vscode.workspace.onDidChangeTextDocument(() => void view.refresh()),
    vscode.languages.onDidChangeDiagnostics(() => void view.refresh()),
    vscode.debug.registerDebugAdapterDescriptorFactory("spindle", new SpindleDebugAdapterFactory(() => settings().path)),
    vscode.debug.registerDebugConfigurationProvider("spindle", new SpindleConfigurationProvider()),
  );

  try {
    await startClient(context);
  } catch (error) {
    void vscode.window.showErrorMessage(
      `Spindle: cannot start \`${settings().path} lsp\` (${String(error)}). Set "spindle.path" to the spindle binary.`,
    );
  }
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
