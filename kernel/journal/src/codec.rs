//! One record on disk: a frame of `[u32 length][u32 CRC-32][payload]`
//! (little-endian; the CRC is IEEE CRC-32 of the payload). The payload is a
//! tag byte and the record's fields in order: unsigned integers as LEB128
//! varints, strings and lists with a varint length first, `f32`s as four
//! little-endian bytes, options as a 0/1 byte and the value.
//!
//! A frame whose length runs past the end of the file, or whose CRC does not
//! match, is a torn write when it is the last thing in the file: the reader
//! drops it and keeps everything before it.
//!
//! A segment file starts with [`MAGIC`]; decoding never panics on bad input.

use crate::record::{
    Admitted, Answered, GapRecord, Header, OperationRecord, OutcomeRecord, PipelineRecord, Record,
    ServiceRecord, StageRecord,
};

/// The first eight bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"SPNDLJ1\n";
/// The record format's version, in every [`Header`].
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of a frame before its payload.
pub const FRAME_HEADER: usize = 8;
/// The largest payload a reader accepts (a sanity bound against a corrupt
/// length field): 64 MiB.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Appends `record` as one frame to `out`.
pub fn encode_frame(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    encode_payload(record, out);
    let payload = &out[start + FRAME_HEADER..];
    let length = payload.len() as u32;
    let crc = crc32(payload);
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What one frame at the front of a byte slice is.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A whole record and the bytes it took.
    Record(Record, usize),
    /// The slice ends inside the frame (a torn write if nothing follows).
    Truncated,
    /// The CRC does not match, or the payload does not decode.
    Bad(String),
}

/// Reads the frame at the start of `bytes`.
pub fn decode_frame(bytes: &[u8]) -> Frame {
    if bytes.len() < FRAME_HEADER {
        return Frame::Truncated;
    }
    let length = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if length > MAX_PAYLOAD {
        return Frame::Bad(format!("a length of {length} bytes"));
    }
    let Some(payload) = bytes.get(FRAME_HEADER..FRAME_HEADER + length) else {
        return Frame::Truncated;
    };
    if crc32(payload) != crc {
        return Frame::Bad("checksum mismatch".to_owned());
    }
    match decode_payload(payload) {
        Ok(record) => Frame::Record(record, FRAME_HEADER + length),
        Err(reason) => Frame::Bad(reason),
    }
}

const TAG_HEADER: u8 = 1;
const TAG_ADMITTED: u8 = 2;
const TAG_STAGE: u8 = 3;
const TAG_ANSWERED: u8 = 4;
const TAG_SERVICE: u8 = 5;
const TAG_PIPELINE: u8 = 6;
const TAG_OPERATION: u8 = 7;
const TAG_GAP: u8 = 8;

fn encode_payload(record: &Record, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    match record {
        Record::Header(r) => {
            w.u8(TAG_HEADER);
            w.u64(r.format.into());
            w.str(&r.run_id);
            w.str(&r.script);
            w.u64(r.started_unix_ms);
            w.u64(r.segment.into());
        }
        Record::Admitted(r) => {
            w.u8(TAG_ADMITTED);
            w.u64(r.id);
            w.str(&r.correlation_id);
            w.str(&r.pipeline);
            w.str(&r.priority);
            w.str(&r.source);
            w.opt_u64(r.deadline_us);
            w.str(&r.text);
            w.u64(r.at_us);
        }
        Record::Stage(r) => {
            w.u8(TAG_STAGE);
            w.u64(r.id);
            w.str(&r.stage);
            w.u64(r.at_us);
            w.u64(r.elapsed_us);
            w.str(&r.text);
            w.vector(r.vector.as_deref());
            w.fields(&r.fields);
            match &r.error {
                Some(error) => {
                    w.u8(1);
                    w.str(error);
                }
                None => w.u8(0),
            }
        }
        Record::Answered(r) => {
            w.u8(TAG_ANSWERED);
            w.u64(r.id);
            w.u64(r.at_us);
            w.u64(r.queue_us);
            w.u64(r.latency_us);
            match &r.outcome {
                OutcomeRecord::Ok {
                    text,
                    vector,
                    fields,
                    degraded,
                    embed_fallback,
                } => {
                    w.u8(0);
                    w.str(text);
                    w.vector(vector.as_deref());
                    w.fields(fields);
                    w.u8(u8::from(*degraded));
                    w.u8(u8::from(*embed_fallback));
                }
                OutcomeRecord::Error {
                    message,
                    class,
                    stage,
                    file,
                    line,
                } => {
                    w.u8(1);
                    w.str(message);
                    w.str(class);
                    w.str(stage);
                    w.str(file);
                    w.u64((*line).into());
                }
                OutcomeRecord::Timeout => w.u8(2),
                OutcomeRecord::Rejected { reason } => {
                    w.u8(3);
                    w.str(reason);
                }
                OutcomeRecord::Cancelled { reason } => {
                    w.u8(4);
                    w.str(reason);
                }
            }
        }
        Record::Service(r) => {
            w.u8(TAG_SERVICE);
            w.u64(r.seq);
            w.u64(r.at_us);
            w.str(&r.service);
            w.str(&r.from);
            w.str(&r.to);
            w.str(&r.reason);
            w.opt_u64(r.pid.map(u64::from));
            w.u64(r.restarts.into());
        }
        Record::Pipeline(r) => {
            w.u8(TAG_PIPELINE);
            w.u64(r.seq);
            w.u64(r.at_us);
            w.str(&r.pipeline);
            w.str(&r.gate);
            w.str(&r.reason);
        }
        Record::Operation(r) => {
            w.u8(TAG_OPERATION);
            w.u64(r.at_us);
            w.str(&r.operation);
            w.str(&r.target);
            w.u64(r.count.into());
            w.u64(r.delay_us);
        }
        Record::Gap(r) => {
            w.u8(TAG_GAP);
            w.u64(r.at_us);
            w.str(&r.source);
            w.u64(r.missed);
            w.str(&r.snapshot);
        }
    }
}

fn decode_payload(payload: &[u8]) -> Result<Record, String> {
    let mut r = Reader { bytes: payload };
    let record = match r.u8()? {
        TAG_HEADER => Record::Header(Header {
            format: r.u32()?,
            run_id: r.str()?,
            script: r.str()?,
            started_unix_ms: r.u64()?,
            segment: r.u32()?,
        }),
        TAG_ADMITTED => Record::Admitted(Admitted {
            id: r.u64()?,
            correlation_id: r.str()?,
            pipeline: r.str()?,
            priority: r.str()?,
            source: r.str()?,
            deadline_us: r.opt_u64()?,
            text: r.str()?,
            at_us: r.u64()?,
        }),
        TAG_STAGE => Record::Stage(StageRecord {
            id: r.u64()?,
            stage: r.str()?,
            at_us: r.u64()?,
            elapsed_us: r.u64()?,
            text: r.str()?,
            vector: r.vector()?,
            fields: r.fields()?,
            error: match r.u8()? {
                0 => None,
                _ => Some(r.str()?),
            },
        }),
        TAG_ANSWERED => {
            let id = r.u64()?;
            let at_us = r.u64()?;
            let queue_us = r.u64()?;
            let latency_us = r.u64()?;
            let outcome = match r.u8()? {
                0 => OutcomeRecord::Ok {
                    text: r.str()?,
                    vector: r.vector()?,
                    fields: r.fields()?,
                    degraded: r.u8()? != 0,
                    embed_fallback: r.u8()? != 0,
                },
                1 => OutcomeRecord::Error {
                    message: r.str()?,
                    class: r.str()?,
                    stage: r.str()?,
                    file: r.str()?,
                    line: r.u32()?,
                },
                2 => OutcomeRecord::Timeout,
                3 => OutcomeRecord::Rejected { reason: r.str()? },
                4 => OutcomeRecord::Cancelled { reason: r.str()? },
                other => return Err(format!("unknown outcome tag {other}")),
            };
            Record::Answered(Answered {
                id,
                at_us,
                queue_us,
                latency_us,
                outcome,
            })
        }
        TAG_SERVICE => Record::Service(ServiceRecord {
            seq: r.u64()?,
            at_us: r.u64()?,
            service: r.str()?,
            from: r.str()?,
            to: r.str()?,
            reason: r.str()?,
            pid: r.opt_u64()?.map(|pid| pid as u32),
            restarts: r.u32()?,
        }),
        TAG_PIPELINE => Record::Pipeline(PipelineRecord {
            seq: r.u64()?,
            at_us: r.u64()?,
            pipeline: r.str()?,
            gate: r.str()?,
            reason: r.str()?,
        }),
        TAG_OPERATION => Record::Operation(OperationRecord {
            at_us: r.u64()?,
            operation: r.str()?,
            target: r.str()?,
            count: r.u32()?,
            delay_us: r.u64()?,
        }),
        TAG_GAP => Record::Gap(GapRecord {
            at_us: r.u64()?,
            source: r.str()?,
            missed: r.u64()?,
            snapshot: r.str()?,
        }),
        other => return Err(format!("unknown record tag {other}")),
    };
    if !r.bytes.is_empty() {
        return Err(format!("{} bytes left after the record", r.bytes.len()));
    }
    Ok(record)
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    fn u64(&mut self, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn opt_u64(&mut self, value: Option<u64>) {
        match value {
            Some(value) => {
                self.u8(1);
                self.u64(value);
            }
            None => self.u8(0),
        }
    }

    fn str(&mut self, text: &str) {
        self.u64(text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
    }

    fn vector(&mut self, vector: Option<&[f32]>) {
        match vector {
            Some(values) => {
                self.u8(1);
                self.u64(values.len() as u64);
                self.0.reserve(values.len() * 4);
                for value in values {
                    self.0.extend_from_slice(&value.to_le_bytes());
                }
            }
            None => self.u8(0),
        }
    }

    fn fields(&mut self, fields: &[(String, String)]) {
        self.u64(fields.len() as u64);
        for (key, value) in fields {
            self.str(key);
            self.str(value);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], String> {
        if self.bytes.len() < count {
            return Err("the record ends early".to_owned());
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than 64 bits".to_owned())
    }

    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.u64()?).map_err(|_| "a number too large for 32 bits".to_owned())
    }

    fn opt_u64(&mut self) -> Result<Option<u64>, String> {
        match self.u8()? {
            0 => Ok(None),
            _ => Ok(Some(self.u64()?)),
        }
    }

    fn len(&mut self) -> Result<usize, String> {
        let length = self.u64()? as usize;
        if length > self.bytes.len() {
            return Err("a length past the end of the record".to_owned());
        }
        Ok(length)
    }

    fn str(&mut self) -> Result<String, String> {
        let length = self.len()?;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a string that is not UTF-8".to_owned())
    }

    fn vector(&mut self) -> Result<Option<Vec<f32>>, String> {
        if self.u8()? == 0 {
            return Ok(None);
        }
        let count = self.u64()? as usize;
        if count.saturating_mul(4) > self.bytes.len() {
            return Err("a vector past the end of the record".to_owned());
        }
        let bytes = self.take(count * 4)?;
        Ok(Some(
            bytes
                .chunks_exact(4)
                .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("4 bytes")))
                .collect(),
        ))
    }

    fn fields(&mut self) -> Result<Vec<(String, String)>, String> {
        let count = self.u64()? as usize;
        if count > self.bytes.len() {
            return Err("more fields than bytes".to_owned());
        }
        let mut fields = Vec::with_capacity(count);
        for _ in 0..count {
            fields.push((self.str()?, self.str()?));
        }
        Ok(fields)
    }
}

/// IEEE CRC-32 (the one of zip and Ethernet), table-driven.
pub fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0_u32; 256];
        for (idx, entry) in table.iter_mut().enumerate() {
            let mut crc = idx as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    0xEDB8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
            *entry = crc;
        }
        table
    });
    let mut crc = !0_u32;
    for byte in bytes {
        crc = table[((crc ^ u32::from(*byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn every_record_kind_round_trips_and_every_cut_is_detected() {
        let records = crate::record::examples();
        for record in records {
            let mut bytes = Vec::new();
            encode_frame(&record, &mut bytes);
            assert_eq!(
                decode_frame(&bytes),
                Frame::Record(record.clone(), bytes.len())
            );
            for cut in 0..bytes.len() {
                assert_eq!(
                    decode_frame(&bytes[..cut]),
                    Frame::Truncated,
                    "{record:?} cut at {cut}"
                );
            }
            for flip in FRAME_HEADER..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[flip] ^= 0x40;
                assert!(
                    matches!(decode_frame(&damaged), Frame::Bad(_)),
                    "{record:?} flipped at {flip}"
                );
            }
        }
    }
}
