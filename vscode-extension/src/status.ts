// The running graph's state, read from `GET /v1/status` of
// `spindle run FILE --http ADDRESS` (docs/http.md). Used by the status bar
// and the graph view; the language server reads the same API for hover.

import * as http from "node:http";

export interface LiveService {
  name: string;
  state: string;
  reason: string | null;
  pid: number | null;
  restarts: number;
}

export interface LiveStatus {
  services: LiveService[];
  pipelines: string[];
}

/** The status of the graph served at `address` (`host:port`), or an error
 * saying why there is none. */
export function fetchStatus(address: string, timeoutMs = 800): Promise<LiveStatus> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const request = http.get(
      { host, port, path: "/v1/status", timeout: timeoutMs, headers: { accept: "application/json" } },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => (body += chunk));
        response.on("end", () => {
          if (response.statusCode !== 200) {
            reject(new Error(`status API answered ${response.statusCode}`));
            return;
          }
          try {
            const parsed = JSON.parse(body) as Partial<LiveStatus>;
            resolve({ services: parsed.services ?? [], pipelines: parsed.pipelines ?? [] });
          } catch (error) {
            reject(new Error(`not the status API: ${String(error)}`));
          }
        });
      },
    );
    request.on("timeout", () => request.destroy(new Error(`${address} did not answer in ${timeoutMs} ms`)));
    request.on("error", reject);
  });
}

export function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  const host = colon > 0 ? address.slice(0, colon) : "127.0.0.1";
  const port = Number(colon >= 0 ? address.slice(colon + 1) : address);
  return [host.replace(/^\[|\]$/g, ""), port];
}

/** "3/4 ready" and the like, for the status bar. */
export function summary(status: LiveStatus): string {
  const total = status.services.length;
  const ready = status.services.filter((s) => s.state === "ready").length;
  const failed = status.services.filter((s) => s.state === "failed" || s.state === "gave-up").length;
  return failed > 0 ? `${ready}/${total} ready, ${failed} failed` : `${ready}/${total} ready`;
}
