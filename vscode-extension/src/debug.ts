// The `spindle` debugger: every session runs `spindle dap` (the debug
// adapter over stdio) and hands it the configuration: launch runs the graph
// under it, attach has it connect to a running `spindle run --debug-port N`
// with the port's token. The adapter itself is Spindle's; this file only
// starts it.

import * as vscode from "vscode";

export class SpindleDebugAdapterFactory implements vscode.DebugAdapterDescriptorFactory {
  constructor(private readonly spindlePath: () => string) {}

  createDebugAdapterDescriptor(_session: vscode.DebugSession): vscode.ProviderResult<vscode.DebugAdapterDescriptor> {
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
        config.program = editor.document.uri.fsPath;
      }
    }
    if (config.request === "launch" && !config.program) {
      return vscode.window.showErrorMessage("Name the graph script to debug (\"program\")").then(() => undefined);
    }
    return config;
  }
}
