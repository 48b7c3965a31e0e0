//! The writer: a thread of its own that owns the segment file, fed by a
//! bounded channel (the shape of the embedding engine's thread).
//!
//! Losing nothing silently, by source:
//! - **Back-pressure** for requests and stages: [`JournalHandle::record`]
//!   (async) and [`JournalHandle::record_blocking`] (a thread outside the
//!   runtime, such as the Lua host) wait for room in the channel. A journal
//!   that falls behind slows admissions down; it never drops a request.
//!   [`JournalStats::waits`] counts the sends that had to wait.
//! - **Gap records** for sources that must not wait (the kernel's event hub
//!   drives the supervisor's view of the world): the kernel's tap writes a
//!   [`crate::GapRecord`] with the count it missed and a snapshot.
//!
//! Records are written in batches (everything waiting in the channel, one
//! `write` per batch). A process that dies loses at most the batch being
//! written, and the reader drops the torn frame at its end; with
//! [`JournalConfig::sync`] each batch is also `fdatasync`ed, which survives
//! a power loss. A segment past [`JournalConfig::max_segment_bytes`] is
//! closed and the next one opened, each starting with a header record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::JournalError;
use crate::codec::{FORMAT_VERSION, MAGIC, encode_frame};
use crate::reader::segments;
use crate::record::{Header, Record};

/// Where and how a journal is written.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub dir: PathBuf,
    /// A segment is rotated once it reaches this size. Default 64 MiB.
    pub max_segment_bytes: u64,
    /// Keep at most this many segments (the oldest are deleted); 0 keeps
    /// all. Default 0.
    pub max_segments: usize,
    /// Records waiting for the writer before senders wait. Default 4,096.
    pub channel: usize,
    /// `fdatasync` after each batch. Default off (a killed process loses
    /// nothing written; a power loss may lose the last batches).
    pub sync: bool,
    pub run_id: String,
    /// The script the kernel runs (absolute), or empty.
    pub script: String,
}

impl JournalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            max_segment_bytes: 64 << 20,
            max_segments: 0,
            channel: 4096,
            sync: false,
            run_id: String::new(),
            script: String::new(),
        }
    }
}

/// What the writer has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalStats {
    pub records: u64,
    pub bytes: u64,
    pub segments: u64,
    /// Sends that found the channel full and waited (back-pressure).
    pub waits: u64,
    /// The first write error; the journal stops writing after it.
    pub failed: Option<String>,
}

/// Starts journals.
#[derive(Debug)]
pub struct Journal;

impl Journal {
    /// Creates the directory, opens the next segment (after any already
    /// there) and starts the writer thread.
    pub fn start(config: JournalConfig) -> Result<JournalHandle, JournalError> {
        std::fs::create_dir_all(&config.dir).map_err(|error| JournalError::Directory {
            path: config.dir.clone(),
            reason: error.to_string(),
        })?;
        let next = segments(&config.dir)?
            .last()
            .map_or(1, |segment| segment.number + 1);
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let shared = Arc::new(Shared::default());
        let mut writer = SegmentWriter {
            config: config.clone(),
            started_unix_ms,
            number: next,
            file: None,
            path: PathBuf::new(),
            size: 0,
            shared: shared.clone(),
            buffer: Vec::with_capacity(64 << 10),
        };
        writer.open_segment()?;
        let (sender, receiver) = mpsc::channel(config.channel.max(1));
        std::thread::Builder::new()
            .name("spindle-journal".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(JournalError::Thread)?;
        Ok(JournalHandle {
            sender,
            started: Instant::now(),
            started_unix_ms,
            shared,
            dir: config.dir,
        })
    }
}

enum Command {
    Record(Record),
    Flush(oneshot::Sender<()>),
}

#[derive(Debug, Default)]
struct Shared {
    records: AtomicU64,
    bytes: AtomicU64,
    segments: AtomicU64,
    waits: AtomicU64,
    failed: Mutex<Option<String>>,
}

/// A cheap handle for whoever records; the writer thread ends (after
/// writing everything sent) when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct JournalHandle {
    sender: mpsc::Sender<Command>,
    started: Instant,
    started_unix_ms: u64,
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl JournalHandle {
    /// Microseconds since the journal started.
    pub fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// A wall-clock time as microseconds since the journal started (0 for
    /// times before it).
    pub fn us_since_start(&self, at: SystemTime) -> u64 {
        let at_ms_us = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        at_ms_us.saturating_sub(self.started_unix_ms * 1000)
    }

    /// The monotonic instant the journal's `at_us` times count from.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records, waiting for room when the writer is behind.
    pub async fn record(&self, record: Record) {
        match self.sender.try_send(Command::Record(record)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(command)) => {
                self.shared.waits.fetch_add(1, Ordering::Relaxed);
                let _ = self.sender.send(command).await;
            }
            // The writer stopped after an error (in the stats).
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Records from a thread outside the async runtime, blocking it while
    /// the writer is behind. Must not be called on a runtime thread.
    pub fn record_blocking(&self, record: Record) {
        match self.sender.try_send(Command::Record(record)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(command)) => {
                self.shared.waits.fetch_add(1, Ordering::Relaxed);
                let _ = self.sender.blocking_send(command);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Waits until every record sent before this call is written.
    pub async fn flush(&self) {
        let (reply, written) = oneshot::channel();
        if self.sender.send(Command::Flush(reply)).await.is_ok() {
            let _ = written.await;
        }
    }

    pub fn stats(&self) -> JournalStats {
        JournalStats {
            records: self.shared.records.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            segments: self.shared.segments.load(Ordering::Relaxed),
            waits: self.shared.waits.load(Ordering::Relaxed),
            failed: self
                .shared
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

struct SegmentWriter {
    config: JournalConfig,
    started_unix_ms: u64,
    number: u32,
    file: Option<File>,
    path: PathBuf,
    size: u64,
    shared: Arc<Shared>,
    buffer: Vec<u8>,
}

/// Records taken from the channel per write.
const BATCH: usize = 1024;

impl SegmentWriter {
    fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut flushes = Vec::new();
            let mut records = 0_u64;
            let mut command = Some(first);
            while let Some(next) = command.take() {
                match next {
                    Command::Record(record) => {
                        encode_frame(&record, &mut self.buffer);
                        records += 1;
                        // A segment reaching its size mid-batch is written
                        // and rotated here, so segments stay near their size.
                        if self.size + self.buffer.len() as u64 >= self.config.max_segment_bytes {
                            if let Err(error) = self.write_batch(records) {
                                self.fail(error);
                                return;
                            }
                            records = 0;
                        }
                    }
                    Command::Flush(reply) => flushes.push(reply),
                }
                if records < BATCH as u64 {
                    command = receiver.try_recv().ok();
                }
            }
            if let Err(error) = self.write_batch(records) {
                self.fail(error);
                // Stop taking records: senders see a closed channel.
                return;
            }
            for reply in flushes {
                let _ = reply.send(());
            }
        }
    }

    fn fail(&self, error: JournalError) {
        *self.shared.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    fn write_batch(&mut self, records: u64) -> Result<(), JournalError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let write_error = |path: &Path, error: std::io::Error| JournalError::Write {
            path: path.to_path_buf(),
            reason: error.to_string(),
        };
        let file = self.file.as_mut().expect("a segment is open");
        file.write_all(&self.buffer)
            .map_err(|error| write_error(&self.path, error))?;
        if self.config.sync {
            file.sync_data()
                .map_err(|error| write_error(&self.path, error))?;
        }
        self.size += self.buffer.len() as u64;
        self.shared
            .bytes
            .fetch_add(self.buffer.len() as u64, Ordering::Relaxed);
        self.shared.records.fetch_add(records, Ordering::Relaxed);
        self.buffer.clear();
        if self.size >= self.config.max_segment_bytes {
            self.number += 1;
            self.open_segment()?;
        }
        Ok(())
    }

    /// Opens segment `self.number` with the magic and a header, and deletes
    /// the oldest segments beyond `max_segments`.
    fn open_segment(&mut self) -> Result<(), JournalError> {
        let path = self
            .config
            .dir
            .join(format!("journal-{:06}.spj", self.number));
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|error| JournalError::Write {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        let mut start = MAGIC.to_vec();
        encode_frame(
            &Record::Header(Header {
                format: FORMAT_VERSION,
                run_id: self.config.run_id.clone(),
                script: self.config.script.clone(),
                started_unix_ms: self.started_unix_ms,
                segment: self.number,
            }),
            &mut start,
        );
        file.write_all(&start)
            .map_err(|error| JournalError::Write {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        self.size = start.len() as u64;
        self.file = Some(file);
        self.path = path;
        self.shared.segments.fetch_add(1, Ordering::Relaxed);
        if self.config.max_segments > 0 {
            let existing = segments(&self.config.dir)?;
            let excess = existing.len().saturating_sub(self.config.max_segments);
            for old in existing.iter().take(excess) {
                let _ = std::fs::remove_file(&old.path);
            }
        }
        Ok(())
    }
}
