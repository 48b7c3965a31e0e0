//! The server's long answers, snapshot-tested: completion lists at a `$0`
//! cursor, hovers, and document symbols, from a script as a raw string. The
//! server runs in process over an in-memory pipe (the same `serve` that
//! `spindle lsp` runs over stdio); the end-to-end tests with a real client
//! are in `tests/pytest/`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

/// A client over an in-memory pipe to a server task.
struct Client {
    writer: tokio::io::WriteHalf<DuplexStream>,
    reader: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    next_id: i64,
}

impl Client {
    async fn start(folder: &Path) -> Client {
        let (client_side, server_side) = tokio::io::duplex(1 << 20);
        let (server_read, server_write) = tokio::io::split(server_side);
        tokio::spawn(spindle_lsp::serve(server_read, server_write));
        let (read, writer) = tokio::io::split(client_side);
        let mut client = Client {
            writer,
            reader: BufReader::new(read),
            next_id: 1,
        };
        let uri = format!("file://{}", folder.display());
        client
            .request(
                "initialize",
                json!({
                    "capabilities": { "textDocument": {
                        "completion": { "completionItem": { "documentationFormat": ["markdown"] } },
                        "hover": { "contentFormat": ["markdown"] },
                    }},
                    "workspaceFolders": [{ "uri": uri, "name": "test" }],
                }),
            )
            .await;
        client.notify("initialized", json!({})).await;
        client
    }

    async fn send(&mut self, message: Value) {
        let body = serde_json::to_vec(&message).unwrap();
        let header = format!("Content-Length: {}\r\n\r\n", body.len());
        self.writer.write_all(header.as_bytes()).await.unwrap();
        self.writer.write_all(&body).await.unwrap();
    }

    async fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }))
            .await;
    }

    async fn next(&mut self) -> Value {
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(value) = line.strip_prefix("Content-Length: ") {
                length = value.parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.next())
                .await
                .expect("an answer");
            if message["id"] == json!(id) {
                return message;
            }
        }
    }

    /// Opens `text` and waits for its first diagnostics.
    async fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "lua", "version": 1, "text": text } }),
        )
        .await;
        loop {
            let message = self.next().await;
            if message["method"] == "textDocument/publishDiagnostics"
                && message["params"]["uri"] == json!(uri)
            {
                return;
            }
        }
    }
}

/// The line and UTF-16 column of `$0`, and the text without it.
fn cursor(script: &str) -> (String, u32, u32) {
    let offset = script.find("$0").expect("a $0 cursor");
    let before = &script[..offset];
    let line = before.matches('\n').count() as u32;
    let column = before[before.rfind('\n').map_or(0, |n| n + 1)..]
        .encode_utf16()
        .count() as u32;
    (script.replacen("$0", "", 1), line, column)
}

/// Runs `method` at the `$0` of `script` and returns the answer's result.
async fn at_cursor(method: &str, script: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let (text, line, character) = cursor(script);
    let path = dir.path().join("graph.lua");
    std::fs::write(&path, &text).unwrap();
    let uri = format!("file://{}", path.display());
    let mut client = Client::start(dir.path()).await;
    client.open(&uri, &text).await;
    let answer = client
        .request(
            method,
            json!({
                "textDocument": { "uri": uri },
                "position": { "line": line, "character": character },
            }),
        )
        .await;
    answer["result"].clone()
}

/// Completion labels with their detail, one per line.
async fn check_completion(script: &str) -> String {
    let result = at_cursor("textDocument/completion", script).await;
    result
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| {
            format!(
                "{} — {}",
                item["label"].as_str().unwrap_or_default(),
                item["detail"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn check_hover(script: &str) -> String {
    let result = at_cursor("textDocument/hover", script).await;
    result["contents"]["value"]
        .as_str()
        .unwrap_or("(no hover)")
        .to_owned()
}

const GRAPH: &str = r#"local s = require("spindle")
s.service "db" { command = { "sleep", "60" } }
s.service "embedder" { embedding = { model = "all-MiniLM-L6-v2" } }
"#;

#[tokio::test]
async fn completion_of_service_fields() {
    insta::assert_snapshot!(
        check_completion(&format!("{GRAPH}s.service \"api\" {{\n  $0\n}}\n")).await
    );
}

#[tokio::test]
async fn completion_of_probe_fields() {
    insta::assert_snapshot!(
        check_completion(&format!(
            "{GRAPH}s.service \"api\" {{ command = \"x\", ready = s.http_probe {{ $0 }} }}\n"
        ))
        .await
    );
}

#[tokio::test]
async fn completion_of_the_module() {
    insta::assert_snapshot!(check_completion(&format!("{GRAPH}s.$0\n")).await);
}

#[tokio::test]
async fn completion_of_signals() {
    insta::assert_snapshot!(
        check_completion(&format!(
            "{GRAPH}s.service \"api\" {{ command = \"x\", stop = {{ signal = \"$0\" }} }}\n"
        ))
        .await
    );
}

#[tokio::test]
async fn completion_of_pipeline_fields_and_stages() {
    insta::assert_snapshot!(
        check_completion(&format!("{GRAPH}s.pipeline \"p\" {{\n  $0\n}}\n")).await
    );
}

#[tokio::test]
async fn completion_of_models() {
    insta::assert_snapshot!(
        check_completion(&format!(
            "{GRAPH}s.service \"e2\" {{ embedding = {{ model = \"$0\" }} }}\n"
        ))
        .await
    );
}

#[tokio::test]
async fn completion_and_hover_in_settings() {
    insta::assert_snapshot!(check_completion(&format!("{GRAPH}s.settings {{ $0 }}\n")).await);
    insta::assert_snapshot!(
        "hover_on_a_setting",
        check_hover(&format!(
            "{GRAPH}s.settings {{ jour$0nal = \"journal\" }}\n"
        ))
        .await
    );
}

#[tokio::test]
async fn hover_on_a_dependency() {
    insta::assert_snapshot!(
        check_hover(&format!(
            "{GRAPH}s.service \"api\" {{ command = {{ \"sleep\", \"60\" }}, depends_on = {{ d$0b = \"started\" }} }}\n"
        ))
        .await
    );
}

#[tokio::test]
async fn hover_on_a_field() {
    insta::assert_snapshot!(
        check_hover(&format!(
            "{GRAPH}s.service \"api\" {{ command = \"x\", restart = {{ back$0off = \"1s..2s\" }} }}\n"
        ))
        .await
    );
}

#[tokio::test]
async fn document_symbols() {
    let script = format!(
        "{GRAPH}s.pipeline \"ingest\" {{\n  s.stage(\"clean\", function(req) return req end),\n  s.stage(\"embed\", s.embed \"embedder\"),\n}}\n$0"
    );
    let result = at_cursor("textDocument/documentSymbol", &script).await;
    insta::assert_json_snapshot!(result);
}
