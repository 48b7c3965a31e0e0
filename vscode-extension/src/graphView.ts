// The graph view: a webview drawing the services of the open script by
// startup wave (from the language server's `spindle/graph`) with the live
// state of each (from the status API while the graph runs).

import * as vscode from "vscode";
import { LanguageClient } from "vscode-languageclient/node";
import { LiveStatus } from "./status";

interface GraphService {
  name: string;
  kind: string;
  dependsOn: string[];
  line: number;
}

interface GraphAnswer {
  uri: string;
  errors: number;
  waves: GraphService[][];
  pipelines: { name: string; stages: string[] }[];
}

export class GraphView implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private uri: vscode.Uri | undefined;
  private graph: GraphAnswer | undefined;
  private live: LiveStatus | Error | undefined;

  constructor(private readonly client: () => LanguageClient | undefined) {}

  async show(uri: vscode.Uri): Promise<void> {
    this.uri = uri;
    if (!this.panel) {
      this.panel = vscode.window.createWebviewPanel("spindle.graph", "Spindle graph", vscode.ViewColumn.Beside, {
        enableScripts: false,
      });
      this.panel.onDidDispose(() => (this.panel = undefined));
    }
    this.panel.reveal(vscode.ViewColumn.Beside, true);
    await this.refresh();
  }

  /** Reads the graph again (after an edit) and redraws. */
  async refresh(): Promise<void> {
    const client = this.client();
    if (!this.panel || !this.uri || !client) return;
    try {
      this.graph = await client.sendRequest<GraphAnswer>("spindle/graph", { uri: this.uri.toString() });
    } catch (error) {
      this.graph = undefined;
      this.live = error as Error;
    }
    this.draw();
  }

  setLive(live: LiveStatus | Error): void {
    this.live = live;
    this.draw();
  }

  private draw(): void {
    if (!this.panel) return;
    this.panel.webview.html = render(this.uri, this.graph, this.live);
  }

  dispose(): void {
    this.panel?.dispose();
  }
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function render(uri: vscode.Uri | undefined, graph: GraphAnswer | undefined, live: LiveStatus | Error | undefined): string {
  const states = new Map<string, { state: string; pid: number | null; restarts: number }>();
  if (live && !(live instanceof Error)) live.services.forEach((s) => states.set(s.name, s));
  const liveLine =
    live === undefined
      ? "not running"
      : live instanceof Error
        ? `not running (${escape(live.message)})`
        : `running: ${live.services.length} service(s)`;
  let body: string;
  if (!graph) {
    body = "<p>No graph yet: open a Spindle script.</p>";
  } else if (graph.errors > 0 && graph.waves.length === 0) {
    body = `<p class="errors">${graph.errors} error(s): fix them to see the graph (Problems panel).</p>`;
  } else {
    const waves = graph.waves
      .map((wave, index) => {
        const services = wave
          .map((service) => {
            const live = states.get(service.name);
            const state = live ? live.state : "not running";
            const detail = live ? `pid ${live.pid ?? "none"} · restarts ${live.restarts}` : "";
            const deps = service.dependsOn.length ? `after ${service.dependsOn.map(escape).join(", ")}` : "no dependencies";
            return `<div class="service state-${escape(state)}" data-service="${escape(service.name)}">
  <div class="name">${escape(service.name)}</div>
  <div class="kind">${escape(service.kind)} · line ${service.line}</div>
  <div class="deps">${deps}</div>
  <div class="state">${escape(state)}</div>
  <div class="detail">${escape(detail)}</div>
</div>`;
          })
          .join("\n");
        return `<section class="wave"><h2>wave ${index}</h2>${services}</section>`;
      })
      .join("\n");
    const pipelines = graph.pipelines
      .map((p) => `<li><b>${escape(p.name)}</b>: ${p.stages.map(escape).join(" → ")}</li>`)
      .join("");
    body = `<div class="waves">${waves}</div>${pipelines ? `<h2>pipelines</h2><ul>${pipelines}</ul>` : ""}`;
  }
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline';">
<style>
  body { font-family: var(--vscode-font-family); color: var(--vscode-foreground); }
  .waves { display: flex; gap: 16px; align-items: flex-start; }
  .wave { min-width: 160px; }
  .service { border: 1px solid var(--vscode-panel-border); border-radius: 4px; padding: 6px; margin: 6px 0; }
  .name { font-weight: bold; }
  .kind, .deps, .detail { opacity: 0.8; font-size: 90%; }
  .state-ready .state, .state-running .state { color: var(--vscode-testing-iconPassed); }
  .state-failed .state, .state-gave-up .state { color: var(--vscode-errorForeground); }
  .errors { color: var(--vscode-errorForeground); }
</style></head>
<body>
<h1>${uri ? escape(uri.path.split("/").pop() ?? "") : "Spindle graph"}</h1>
<p class="live">${liveLine}</p>
${body}
</body></html>`;
}
