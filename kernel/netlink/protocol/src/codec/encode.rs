//! Messages to bytes: the family's messages, acks, and the attribute
//! writer (also used for the controller's family lookup).

use super::attrs::align4;
use super::{
    Header, NLA_F_NESTED, NLA_HDRLEN, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLMSG_ERROR, NLMSG_HDRLEN,
    NLMSGERR_ATTR_MSG,
};
use crate::message::{Message, ReplyStatus};
use crate::protocol::{FAMILY_VERSION, attr, serve_attr};

/// Encodes `message` as one netlink message with `header` (its `kind` is
/// the family id; the length is filled in).
pub fn encode(message: &Message, header: Header) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(64);
    encode_into(&mut buffer, message, header);
    buffer
}

/// Like [`encode`], appending to `buffer` (several messages may share one
/// datagram).
pub fn encode_into(buffer: &mut Vec<u8>, message: &Message, header: Header) {
    let start = begin_message(buffer, header);
    buffer.extend_from_slice(&[message.command(), FAMILY_VERSION, 0, 0]);
    let mut writer = AttrWriter { buffer };
    match message {
        Message::Register(register) => {
            writer.u32(attr::VERSION, register.version);
            writer.u64(attr::FEATURES, register.features);
            writer.u64(attr::INSTANCE_ID, register.instance_id);
            writer.u32(attr::MAX_INFLIGHT, register.max_inflight);
            for serve in &register.serves {
                let nest = writer.begin_nest(attr::SERVE);
                writer.string(serve_attr::PIPELINE, &serve.pipeline);
                if let Some(model) = &serve.model {
                    writer.string(serve_attr::MODEL, model);
                }
                writer.u32(serve_attr::DIMS, serve.dims);
                writer.end_nest(nest);
            }
        }
        Message::Registered(registered) => {
            writer.u32(attr::VERSION, registered.version);
            writer.u64(attr::FEATURES, registered.features);
            writer.u64(attr::INSTANCE_ID, registered.instance_id);
            writer.u32(attr::MAX_INFLIGHT, registered.max_inflight);
        }
        Message::Request(request) => {
            writer.u64(attr::REQUEST_ID, request.request_id);
            writer.u8(attr::PRIORITY, request.priority.to_wire());
            writer.u32(attr::DEADLINE_MS, request.deadline_ms);
            writer.string(attr::PIPELINE, &request.pipeline);
            writer.bytes(attr::PAYLOAD, request.payload.as_bytes());
        }
        Message::Reply(reply) => {
            writer.u64(attr::REQUEST_ID, reply.request_id);
            writer.u8(attr::STATUS, reply.status.to_wire());
            if reply.status == ReplyStatus::Ok {
                writer.vector(attr::VECTOR, &reply.vector);
            }
            if let Some(error) = &reply.error {
                writer.u32(attr::ERROR_CODE, error.code);
                writer.string(attr::ERROR_TEXT, &error.text);
            }
        }
        Message::Cancel(cancel) => writer.u64(attr::REQUEST_ID, cancel.request_id),
        Message::Heartbeat(heartbeat) => {
            writer.u64(attr::HEARTBEAT_SEQ, heartbeat.seq);
            if let Some(inflight) = heartbeat.inflight {
                writer.u32(attr::INFLIGHT, inflight);
            }
        }
        Message::Error(report) => {
            writer.u32(attr::ERROR_CODE, report.error.code);
            writer.string(attr::ERROR_TEXT, &report.error.text);
            if let Some(request_id) = report.request_id {
                writer.u64(attr::REQUEST_ID, request_id);
            }
        }
        Message::Unregister(unregister) => writer.u64(attr::INSTANCE_ID, unregister.instance_id),
        Message::StatsQuery => {}
        Message::Stats(stats) => {
            let nest = writer.begin_nest(attr::STATS);
            for (&counter, &value) in &stats.counters {
                writer.u64(counter, value);
            }
            writer.end_nest(nest);
        }
        Message::Event(event) => {
            writer.u8(attr::EVENT_KIND, event.kind.to_wire());
            if let Some(instance_id) = event.instance_id {
                writer.u64(attr::INSTANCE_ID, instance_id);
            }
            if let Some(port) = event.port {
                writer.u32(attr::PORT, port);
            }
        }
    }
    finish_message(buffer, start);
}

/// Encodes an `NLMSG_ERROR` answering `acked` (what a kernel sends as an
/// ack or a failure). `error` is 0 or a negative errno; `text` goes into
/// the extended ack. Only the acknowledged message's header is echoed.
pub fn encode_ack(buffer: &mut Vec<u8>, acked: Header, to_port: u32, error: i32, text: &str) {
    let flags = NLM_F_CAPPED | if text.is_empty() { 0 } else { NLM_F_ACK_TLVS };
    let start = begin_message(
        buffer,
        Header {
            kind: NLMSG_ERROR,
            flags,
            seq: acked.seq,
            port: to_port,
        },
    );
    buffer.extend_from_slice(&error.to_ne_bytes());
    buffer.extend_from_slice(&(NLMSG_HDRLEN as u32).to_ne_bytes());
    buffer.extend_from_slice(&acked.kind.to_ne_bytes());
    buffer.extend_from_slice(&acked.flags.to_ne_bytes());
    buffer.extend_from_slice(&acked.seq.to_ne_bytes());
    buffer.extend_from_slice(&acked.port.to_ne_bytes());
    if !text.is_empty() {
        let mut writer = AttrWriter { buffer };
        writer.string(NLMSGERR_ATTR_MSG, text);
    }
    finish_message(buffer, start);
}

/// Starts a netlink message; returns where it starts.
pub fn begin_message(buffer: &mut Vec<u8>, header: Header) -> usize {
    let padding = align4(buffer.len()) - buffer.len();
    buffer.extend(std::iter::repeat_n(0, padding));
    let start = buffer.len();
    buffer.extend_from_slice(&0u32.to_ne_bytes());
    buffer.extend_from_slice(&header.kind.to_ne_bytes());
    buffer.extend_from_slice(&header.flags.to_ne_bytes());
    buffer.extend_from_slice(&header.seq.to_ne_bytes());
    buffer.extend_from_slice(&header.port.to_ne_bytes());
    start
}

/// Fills in the length of the message that starts at `start`.
pub fn finish_message(buffer: &mut [u8], start: usize) {
    let len = (buffer.len() - start) as u32;
    buffer[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends attributes, each padded to four bytes.
pub struct AttrWriter<'a> {
    pub buffer: &'a mut Vec<u8>,
}

impl AttrWriter<'_> {
    pub fn raw(&mut self, kind: u16, value: &[u8]) {
        let len = (NLA_HDRLEN + value.len()) as u16;
        self.buffer.extend_from_slice(&len.to_ne_bytes());
        self.buffer.extend_from_slice(&kind.to_ne_bytes());
        self.buffer.extend_from_slice(value);
        let padding = align4(self.buffer.len()) - self.buffer.len();
        self.buffer.extend(std::iter::repeat_n(0, padding));
    }

    pub fn u8(&mut self, kind: u16, value: u8) {
        self.raw(kind, &[value]);
    }

    pub fn u32(&mut self, kind: u16, value: u32) {
        self.raw(kind, &value.to_ne_bytes());
    }

    pub fn u64(&mut self, kind: u16, value: u64) {
        self.raw(kind, &value.to_ne_bytes());
    }

    pub fn bytes(&mut self, kind: u16, value: &[u8]) {
        self.raw(kind, value);
    }

    pub fn string(&mut self, kind: u16, value: &str) {
        let len = (NLA_HDRLEN + value.len() + 1) as u16;
        self.buffer.extend_from_slice(&len.to_ne_bytes());
        self.buffer.extend_from_slice(&kind.to_ne_bytes());
        self.buffer.extend_from_slice(value.as_bytes());
        self.buffer.push(0);
        let padding = align4(self.buffer.len()) - self.buffer.len();
        self.buffer.extend(std::iter::repeat_n(0, padding));
    }

    fn vector(&mut self, kind: u16, vector: &[f32]) {
        let len = (NLA_HDRLEN + vector.len() * 4) as u16;
        self.buffer.extend_from_slice(&len.to_ne_bytes());
        self.buffer.extend_from_slice(&kind.to_ne_bytes());
        self.buffer.reserve(vector.len() * 4);
        for value in vector {
            self.buffer.extend_from_slice(&value.to_le_bytes());
        }
    }

    pub fn begin_nest(&mut self, kind: u16) -> usize {
        let start = self.buffer.len();
        self.buffer.extend_from_slice(&0u16.to_ne_bytes());
        self.buffer
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    pub fn end_nest(&mut self, start: usize) {
        let len = (self.buffer.len() - start) as u16;
        self.buffer[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}
