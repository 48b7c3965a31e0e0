// The `spindle` debugger: launch runs `spindle dap` (the debug adapter over
// stdio) and hands it the configuration; attach connects to a kernel's
// adapter listening on TCP. The adapter itself is Spindle's (`spindle dap`);
// this file only starts or reaches it.

import * as vscode from "vscode";

export class SpindleDebugAdapterFactory implements vscode.DebugAdapterDescriptorFactory {
  constructor(private readonly spindlePath: () => string) {}

  createDebugAdapterDescriptor(session: vscode.DebugSession): vscode.ProviderResult<vscode.DebugAdapterDescriptor> {
    if (session.configuration.request === "attach") {
      const address = String(session.configuration.address ?? "127.0.0.1:4711");
      const colon = address.lastIndexOf(":");
      return new vscode.DebugAdapterServer(Number(address.slice(colon + 1)), address.slice(0, colon) || "127.0.0.1");
    }
    return new vscode.DebugAdapterExecutable(this.spindlePath(), ["dap"]);
  }
}

/** Fills in a launch configuration when there is none (F5 on a script). */
export class SpindleConfigurationProvider implements vscode.DebugConfigurationProvider {
  resolveDebugConfiguration(
    _folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration,
  ): vscode.ProviderResult<vscode.DebugConfiguration> {
    if (!config.type && !config.request && !config.name) {
      const editor = vscode.window.activeTextEditor;
      if (editor && editor.document.languageId === "lua") {
        config.type = "spindle";
        config.name = "Debug graph";
        config.request = "launch";
        config.script = editor.document.uri.fsPath;
      }
    }
    if (config.request === "launch" && !config.script) {
      return vscode.window.showErrorMessage("Name the graph script to debug (\"script\")").then(() => undefined);
    }
    return config;
  }
}
