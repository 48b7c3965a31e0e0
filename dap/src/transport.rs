//! DAP framing: `Content-Length: N\r\n\r\n` then N bytes of JSON, over any
//! `AsyncRead`/`AsyncWrite` (stdio, a TCP stream, `tokio::io::duplex`).
//! The writer numbers outgoing messages (`seq`).

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Messages larger than this are refused (and skipped).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// One frame read: a JSON message, or why the bytes were not one.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Message(Value),
    Malformed(String),
}

pub struct FrameReader<R> {
    reader: BufReader<R>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R) -> FrameReader<R> {
        FrameReader {
            reader: BufReader::new(reader),
        }
    }

    /// The next frame; `None` at the end of the stream.
    pub async fn read(&mut self) -> std::io::Result<Option<Frame>> {
        let mut length = None;
        let mut problem = None;
        let mut saw_header = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                return Ok(if saw_header {
                    Some(Frame::Malformed(
                        "the stream ended inside a header".to_owned(),
                    ))
                } else {
                    None
                });
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !saw_header {
                    continue;
                }
                break;
            }
            saw_header = true;
            match line.split_once(':') {
                Some((name, value)) if name.trim().eq_ignore_ascii_case("content-length") => {
                    match value.trim().parse::<usize>() {
                        Ok(value) => length = Some(value),
                        Err(_) => problem = Some(format!("bad Content-Length `{}`", value.trim())),
                    }
                }
                Some(_) => {}
                None => problem = Some(format!("`{line}` is not a header")),
            }
        }
        let Some(length) = length else {
            return Ok(Some(Frame::Malformed(
                problem.unwrap_or_else(|| "a header without Content-Length".to_owned()),
            )));
        };
        if length > MAX_FRAME {
            let mut skip = (&mut self.reader).take(length as u64);
            tokio::io::copy(&mut skip, &mut tokio::io::sink()).await?;
            return Ok(Some(Frame::Malformed(format!(
                "a message of {length} bytes is larger than {MAX_FRAME}"
            ))));
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok(Some(match serde_json::from_slice(&body) {
            Ok(message) => Frame::Message(message),
            Err(error) => Frame::Malformed(format!("the body is not JSON: {error}")),
        }))
    }
}

pub struct FrameWriter<W> {
    writer: W,
    seq: i64,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(writer: W) -> FrameWriter<W> {
        FrameWriter { writer, seq: 0 }
    }

    /// The stream underneath (to write bytes that are not a frame, or to
    /// shut it down).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.writer
    }

    /// Writes `message` with the next `seq`.
    pub async fn write(&mut self, mut message: Value) -> std::io::Result<()> {
        self.seq += 1;
        message["seq"] = Value::from(self.seq);
        self.write_raw(&message).await
    }

    /// Writes `message` as it is (its `seq` kept).
    pub async fn write_raw(&mut self, message: &Value) -> std::io::Result<()> {
        let body = serde_json::to_vec(message)?;
        let header = format!("Content-Length: {}\r\n\r\n", body.len());
        self.writer.write_all(header.as_bytes()).await?;
        self.writer.write_all(&body).await?;
        self.writer.flush().await
    }
}
