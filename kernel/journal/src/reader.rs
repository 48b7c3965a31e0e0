//! Reading a journal: the segment files of a directory in order (or one
//! file), every whole record, and what was dropped at the end.
//!
//! A frame cut short or failing its checksum at the very end of the last
//! segment is a torn write: it is reported as [`TornTail`] and dropped, and
//! every record before it is returned. The same damage anywhere else is
//! [`JournalError::Corrupt`] in [`ReadReport::problems`]; that segment is
//! read up to it and the next segments are still read.

use std::path::{Path, PathBuf};

use crate::JournalError;
use crate::codec::{Frame, MAGIC, decode_frame};
use crate::record::Record;

/// One segment file of a journal directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub number: u32,
    pub path: PathBuf,
}

/// The segment files of `dir` (`journal-NNNNNN.spj`), oldest first.
pub fn segments(dir: &Path) -> Result<Vec<Segment>, JournalError> {
    let entries = std::fs::read_dir(dir).map_err(|error| JournalError::Read {
        path: dir.to_path_buf(),
        reason: error.to_string(),
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(number) = name
            .strip_prefix("journal-")
            .and_then(|rest| rest.strip_suffix(".spj"))
            .and_then(|digits| digits.parse::<u32>().ok())
        else {
            continue;
        };
        found.push(Segment {
            number,
            path: entry.path(),
        });
    }
    found.sort_by_key(|segment| segment.number);
    Ok(found)
}

/// The last record's frame was cut short or damaged: a write that a crash
/// interrupted. It is dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Where the dropped frame starts.
    pub offset: u64,
    /// Bytes dropped.
    pub bytes: u64,
}

/// What reading found besides the records.
#[derive(Debug, Default)]
pub struct ReadReport {
    pub segments: Vec<PathBuf>,
    pub bytes: u64,
    pub torn_tail: Option<TornTail>,
    /// Damage before the end of a segment (rare: a disk error, an edit).
    pub problems: Vec<JournalError>,
}

/// A whole journal read into memory.
#[derive(Debug)]
pub struct JournalReader {
    pub records: Vec<Record>,
    pub report: ReadReport,
}

impl JournalReader {
    /// Reads a journal directory, or a single segment file.
    pub fn open(path: &Path) -> Result<JournalReader, JournalError> {
        let files: Vec<PathBuf> = if path.is_dir() {
            segments(path)?.into_iter().map(|s| s.path).collect()
        } else {
            vec![path.to_path_buf()]
        };
        if files.is_empty() {
            return Err(JournalError::Read {
                path: path.to_path_buf(),
                reason: "no journal-*.spj segment in it (was it written by spindle run --journal?)"
                    .to_owned(),
            });
        }
        let mut records = Vec::new();
        let mut report = ReadReport::default();
        let last = files.len() - 1;
        for (idx, file) in files.iter().enumerate() {
            let bytes = std::fs::read(file).map_err(|error| JournalError::Read {
                path: file.clone(),
                reason: error.to_string(),
            })?;
            if !bytes.starts_with(MAGIC) {
                // A segment cut before its magic was complete is a torn
                // start of the last segment.
                if idx == last && MAGIC.starts_with(&bytes) {
                    report.torn_tail = Some(TornTail {
                        path: file.clone(),
                        offset: 0,
                        bytes: bytes.len() as u64,
                    });
                    continue;
                }
                return Err(JournalError::NotAJournal { path: file.clone() });
            }
            report.segments.push(file.clone());
            report.bytes += bytes.len() as u64;
            let mut offset = MAGIC.len();
            while offset < bytes.len() {
                match decode_frame(&bytes[offset..]) {
                    Frame::Record(record, used) => {
                        records.push(record);
                        offset += used;
                    }
                    Frame::Truncated => {
                        report.torn_tail = Some(TornTail {
                            path: file.clone(),
                            offset: offset as u64,
                            bytes: (bytes.len() - offset) as u64,
                        });
                        break;
                    }
                    Frame::Bad(reason) => {
                        // The last frame of the file: a torn write whose
                        // length bytes made it but whose payload did not.
                        let frame_end = frame_end(&bytes[offset..]).map(|end| offset + end);
                        if frame_end.is_none_or(|end| end >= bytes.len()) {
                            report.torn_tail = Some(TornTail {
                                path: file.clone(),
                                offset: offset as u64,
                                bytes: (bytes.len() - offset) as u64,
                            });
                        } else {
                            report.problems.push(JournalError::Corrupt {
                                path: file.clone(),
                                offset: offset as u64,
                                reason,
                            });
                        }
                        break;
                    }
                }
            }
        }
        Ok(JournalReader { records, report })
    }

    /// The records of the latest run in the journal (from its last header
    /// whose run id differs from the one before it).
    pub fn latest_run(&self) -> &[Record] {
        let mut start = 0;
        let mut run: Option<&str> = None;
        for (idx, record) in self.records.iter().enumerate() {
            if let Record::Header(header) = record
                && run != Some(header.run_id.as_str())
            {
                run = Some(header.run_id.as_str());
                start = idx;
            }
        }
        &self.records[start..]
    }
}

fn frame_end(bytes: &[u8]) -> Option<usize> {
    let length = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    Some(crate::codec::FRAME_HEADER + length)
}
