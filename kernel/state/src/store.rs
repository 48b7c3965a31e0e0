//! The store's thread: owns the redb database, applies commands in batches
//! (one write transaction each, answered after its commit), and sweeps
//! expired keys out every second. Reads see expiry too: an expired key is
//! absent from the moment it expires, swept or not.

#![allow(
    clippy::result_large_err,
    reason = "redb::Error is large; it only travels from a failed transaction to the one place that turns it into StateError::Storage"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

use crate::StateError;
use crate::clock::{Clock, SystemClock};
use crate::value::{StateKey, StateOp, StateResult, StateValue, decode, encode};

/// The stored entries: full key to `[expiry][value]`.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
/// Keys with an expiry, ordered by it, for the sweep.
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");

/// How often expired keys are removed from disk.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);
/// Commands applied in one transaction at most.
const BATCH: usize = 512;

/// Where the store lives.
#[derive(Clone)]
pub struct StateConfig {
    /// The database file; `None` keeps state in memory (lost at exit).
    pub path: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateConfig")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StateConfig {
    pub fn at(path: impl Into<PathBuf>) -> StateConfig {
        StateConfig {
            path: Some(path.into()),
            clock: Arc::new(SystemClock),
        }
    }

    pub fn in_memory() -> StateConfig {
        StateConfig {
            path: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Receives one operation's answer, on the store's thread.
pub type StateReply = Box<dyn FnOnce(Result<StateResult, StateError>) + Send>;

struct Command {
    key: StateKey,
    op: StateOp,
    reply: StateReply,
}

/// Housekeeping asked of the thread; answers a count.
enum Chore {
    /// Remove expired keys now (the thread does it every second anyway).
    Sweep,
    /// Entries physically stored, expired or not.
    Count,
}

enum Message {
    Command(Command),
    Chore(Chore, mpsc::SyncSender<Result<usize, StateError>>),
}

/// A handle to the store's thread; cheap to clone. The thread ends when the
/// last handle is dropped, after answering every command sent.
#[derive(Clone)]
pub struct StateStore {
    commands: mpsc::Sender<Message>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish()
    }
}

impl StateStore {
    /// Opens (or creates) the database and starts the thread. A database a
    /// killed process left behind is repaired to its last commit here.
    pub fn open(config: StateConfig) -> Result<StateStore, StateError> {
        let database = match &config.path {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|error| StateError::Open {
                        path: path.clone(),
                        reason: error.to_string(),
                    })?;
                }
                Database::create(path).map_err(|error| StateError::Open {
                    path: path.clone(),
                    reason: error.to_string(),
                })?
            }
            None => Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(|error| StateError::Storage(error.to_string()))?,
        };
        // Create the tables, so that reads never meet a missing one.
        let setup = || -> Result<(), redb::Error> {
            let txn = database.begin_write()?;
            txn.open_table(ENTRIES)?;
            txn.open_table(EXPIRY)?;
            txn.commit()?;
            Ok(())
        };
        setup().map_err(|error| StateError::Storage(error.to_string()))?;
        let (commands, receiver) = mpsc::channel();
        let clock = config.clock.clone();
        std::thread::Builder::new()
            .name("spindle-state".to_owned())
            .spawn(move || serve(database, clock, receiver))
            .map_err(|error| StateError::Storage(error.to_string()))?;
        Ok(StateStore {
            commands,
            path: config.path,
        })
    }

    /// The database file, if the store is on disk.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Sends one operation; `reply` runs on the store's thread once the
    /// operation is committed.
    pub fn submit(&self, key: StateKey, op: StateOp, reply: StateReply) {
        if let Err(error) = self
            .commands
            .send(Message::Command(Command { key, op, reply }))
            && let Message::Command(command) = error.0
        {
            (command.reply)(Err(StateError::Stopped));
        }
    }

    /// Removes expired keys now; answers how many were removed.
    pub fn sweep(&self) -> Result<usize, StateError> {
        self.chore(Chore::Sweep)
    }

    /// Entries physically stored, expired ones not swept yet included.
    pub fn stored_entries(&self) -> Result<usize, StateError> {
        self.chore(Chore::Count)
    }

    fn chore(&self, chore: Chore) -> Result<usize, StateError> {
        let (sender, receiver) = mpsc::sync_channel(1);
        self.commands
            .send(Message::Chore(chore, sender))
            .map_err(|_| StateError::Stopped)?;
        receiver.recv().unwrap_or(Err(StateError::Stopped))
    }

    /// [`StateStore::submit`], waiting for the answer (tests, benches,
    /// tools; never on an async runtime's thread).
    pub fn call(&self, key: StateKey, op: StateOp) -> Result<StateResult, StateError> {
        let (sender, receiver) = mpsc::sync_channel(1);
        self.submit(
            key,
            op,
            Box::new(move |result| {
                let _ = sender.send(result);
            }),
        );
        receiver.recv().unwrap_or(Err(StateError::Stopped))
    }
}

fn serve(database: Database, clock: Arc<dyn Clock>, receiver: mpsc::Receiver<Message>) {
    let mut last_sweep = Instant::now();
    loop {
        let first = match receiver.recv_timeout(SWEEP_PERIOD) {
            Ok(Message::Command(command)) => command,
            Ok(Message::Chore(chore, reply)) => {
                let storage = |error: redb::Error| StateError::Storage(error.to_string());
                let _ = reply.send(match chore {
                    Chore::Sweep => sweep(&database, clock.now_ms()).map_err(storage),
                    Chore::Count => count(&database).map_err(storage),
                });
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = sweep(&database, clock.now_ms());
                last_sweep = Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        let mut pending_chores = Vec::new();
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(Message::Command(command)) => batch.push(command),
                Ok(Message::Chore(chore, reply)) => {
                    // Rare: answered after this batch, in order.
                    pending_chores.push((chore, reply));
                    break;
                }
                Err(_) => break,
            }
        }
        let now = clock.now_ms();
        match apply_batch(&database, now, &batch) {
            Ok(results) => {
                for (command, result) in batch.into_iter().zip(results) {
                    (command.reply)(result);
                }
            }
            Err(error) => {
                for command in batch {
                    (command.reply)(Err(StateError::Storage(error.to_string())));
                }
            }
        }
        for (chore, reply) in pending_chores {
            let storage = |error: redb::Error| StateError::Storage(error.to_string());
            let _ = reply.send(match chore {
                Chore::Sweep => sweep(&database, clock.now_ms()).map_err(storage),
                Chore::Count => count(&database).map_err(storage),
            });
        }
        if last_sweep.elapsed() >= SWEEP_PERIOD {
            let _ = sweep(&database, clock.now_ms());
            last_sweep = Instant::now();
        }
    }
}

/// Applies every command in one transaction, committed if any wrote.
fn apply_batch(
    database: &Database,
    now: u64,
    batch: &[Command],
) -> Result<Vec<Result<StateResult, StateError>>, redb::Error> {
    let txn = database.begin_write()?;
    let mut wrote = false;
    let mut results = Vec::with_capacity(batch.len());
    for command in batch {
        results.push(apply(&txn, now, command, &mut wrote)?);
    }
    if wrote {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(results)
}

/// One command; the outer error is the store's, the inner one the
/// command's own.
fn apply(
    txn: &WriteTransaction,
    now: u64,
    command: &Command,
    wrote: &mut bool,
) -> Result<Result<StateResult, StateError>, redb::Error> {
    let stored = command.key.stored();
    let mut entries = txn.open_table(ENTRIES)?;
    let mut expiry = txn.open_table(EXPIRY)?;
    let current = match entries.get(stored.as_str())? {
        Some(bytes) => match decode(&stored, bytes.value()) {
            Ok((expires, value)) if expires == 0 || now < expires => Some((expires, value)),
            Ok(_) => None,
            Err(error) => return Ok(Err(error)),
        },
        None => None,
    };
    let expires_at = |ttl: Option<std::time::Duration>| {
        ttl.map_or(0, |ttl| now + (ttl.as_millis() as u64).max(1))
    };
    let mut put = |value: Option<&StateValue>, expires: u64| -> Result<(), redb::Error> {
        if let Some((old_expires, _)) = &current
            && *old_expires != 0
        {
            expiry.remove((*old_expires, stored.as_str()))?;
        }
        match value {
            Some(value) => {
                entries.insert(stored.as_str(), encode(value, expires).as_slice())?;
                if expires != 0 {
                    expiry.insert((expires, stored.as_str()), ())?;
                }
            }
            None => {
                entries.remove(stored.as_str())?;
            }
        }
        *wrote = true;
        Ok(())
    };
    let current_value = current.as_ref().map(|(_, value)| value.clone());
    let result = match &command.op {
        StateOp::Get => StateResult::Value(current_value),
        StateOp::Set { value, ttl } => {
            put(Some(value), expires_at(*ttl))?;
            StateResult::Value(current_value)
        }
        StateOp::Delete => {
            if current.is_some() {
                put(None, 0)?;
            }
            StateResult::Value(current_value)
        }
        StateOp::CompareAndSwap { expected, new, ttl } => {
            if current_value == *expected {
                put(new.as_ref(), expires_at(*ttl))?;
                StateResult::Swapped {
                    swapped: true,
                    current: new.clone(),
                }
            } else {
                StateResult::Swapped {
                    swapped: false,
                    current: current_value,
                }
            }
        }
        StateOp::Increment { by, ttl } => {
            let before = match &current_value {
                None => 0,
                Some(StateValue::Integer(number)) => *number,
                Some(other) => {
                    return Ok(Err(StateError::NotAnInteger {
                        key: command.key.key.clone(),
                        found: other.type_name(),
                    }));
                }
            };
            let after = before.wrapping_add(*by);
            let expires = match (ttl, &current) {
                (Some(_), _) => expires_at(*ttl),
                (None, Some((expires, _))) => *expires,
                (None, None) => 0,
            };
            put(Some(&StateValue::Integer(after)), expires)?;
            StateResult::Integer(after)
        }
        StateOp::List { limit } => {
            let scope = command.key.scope_prefix();
            let mut found = Vec::new();
            for entry in entries.range(stored.as_str()..)? {
                let (key, bytes) = entry?;
                let key = key.value();
                if !key.starts_with(stored.as_str()) || found.len() >= *limit {
                    break;
                }
                match decode(key, bytes.value()) {
                    Ok((expires, value)) if expires == 0 || now < expires => {
                        found.push((key[scope.len()..].to_owned(), value));
                    }
                    Ok(_) => {}
                    Err(error) => return Ok(Err(error)),
                }
            }
            StateResult::Entries(found)
        }
    };
    Ok(Ok(result))
}

/// Removes every key whose expiry has passed.
fn sweep(database: &Database, now: u64) -> Result<usize, redb::Error> {
    let txn = database.begin_write()?;
    let mut removed = 0;
    {
        let mut entries = txn.open_table(ENTRIES)?;
        let mut expiry = txn.open_table(EXPIRY)?;
        let mut due = Vec::new();
        for entry in expiry.range((0_u64, "")..(now + 1, ""))? {
            let (key, _) = entry?;
            let (expires, stored) = key.value();
            due.push((expires, stored.to_owned()));
        }
        for (expires, stored) in &due {
            expiry.remove((*expires, stored.as_str()))?;
            // Only if the entry still has this expiry (it may have been set
            // again since).
            let still_due = match entries.get(stored.as_str())? {
                Some(bytes) => bytes.value().get(0..8).map(|b| b == expires.to_le_bytes()),
                None => None,
            };
            if still_due == Some(true) {
                entries.remove(stored.as_str())?;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(removed)
}

fn count(database: &Database) -> Result<usize, redb::Error> {
    let txn = database.begin_read()?;
    let table = txn.open_table(ENTRIES)?;
    Ok(table.len()? as usize)
}
