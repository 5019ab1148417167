//! The WebSocket wire format (RFC 6455) as the hub needs it, pure, without I/O: server frames
//! encoded once and shared by every recipient, and an incremental reader of client frames.
//!
//! Server frames are never masked, so one broadcast's frame (header + SignalR payload) is the same
//! bytes for every client of a protocol: `connection` and `registry` write these bytes as they are.
//! Client frames are always masked; the reader unmasks their payload into the SignalR `Framer` as
//! it arrives (it never buffers a whole WebSocket message: the framer enforces the hub's message
//! size limit), answers pings, and reports the close handshake and protocol violations.
//!
//! Used by `connection` (reading, control replies), `registry` (the frame type) and `lifetime`
//! (one frame per protocol per message). Uses `protocol` only.

use bytes::Bytes;

use crate::protocol::{Framer, HubMessage, Protocol};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close codes the node sends (RFC 6455 7.4.1).
pub(crate) const CLOSE_NORMAL: u16 = 1000;
pub(crate) const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub(crate) const CLOSE_INVALID_DATA: u16 = 1007;

/// Longest control frame payload (RFC 6455 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// One server frame, complete on the wire (header and payload), shared between recipients
/// (cloning is a refcount).
#[derive(Debug, Clone)]
pub(crate) struct WsFrame {
    bytes: Bytes,
}

impl WsFrame {
    /// A text frame: `payload` must be UTF-8 (our JSON writer's output always is).
    pub fn text(payload: &[u8]) -> WsFrame {
        Self::encode(OP_TEXT, payload)
    }

    pub fn binary(payload: &[u8]) -> WsFrame {
        Self::encode(OP_BINARY, payload)
    }

    /// A Close frame with `code` and no reason.
    pub fn close(code: u16) -> WsFrame {
        Self::encode(OP_CLOSE, &code.to_be_bytes())
    }

    /// The answer to a ping: a Pong with the same payload (at most 125 bytes).
    pub fn pong(payload: &[u8]) -> WsFrame {
        Self::encode(OP_PONG, &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)])
    }

    fn encode(opcode: u8, payload: &[u8]) -> WsFrame {
        let (header, n) = header(opcode, payload.len());
        let mut out = Vec::with_capacity(n + payload.len());
        out.extend_from_slice(&header[..n]);
        out.extend_from_slice(payload);
        WsFrame {
            bytes: Bytes::from(out),
        }
    }

    /// The frame as written to the socket.
    pub fn wire(&self) -> &Bytes {
        &self.bytes
    }

    /// The payload alone (what a backplane message carries), after the header our frames have:
    /// unmasked, its length in 7, 16 or 64 bits.
    #[cfg(test)]
    pub fn payload(&self) -> &[u8] {
        let header = match self.bytes[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        &self.bytes[header..]
    }
}

/// Serializes one message for one protocol as a WebSocket frame (text for JSON, binary for
/// MessagePack, A.3).
///
/// The message is written once, after room for the longest WebSocket header (MessagePack's VarInt
/// prefix goes just before its body, `msgpack::encode_prefixed_into`); the header then goes just
/// before the message, and the frame is that one buffer from its first header byte (no second
/// buffer, no copy of the message).
pub(crate) fn frame_of(protocol: Protocol, message: &HubMessage) -> WsFrame {
    const ROOM: usize = 10;
    let mut buf = Vec::with_capacity(ROOM + 10 + 128);
    buf.resize(ROOM, 0);
    let (opcode, mut start) = match protocol {
        Protocol::Json => {
            crate::protocol::json::encode_into(message, &mut buf);
            (OP_TEXT, ROOM)
        }
        Protocol::MessagePack => (
            OP_BINARY,
            crate::protocol::msgpack::encode_prefixed_into(message, &mut buf),
        ),
    };
    let (header, n) = header(opcode, buf.len() - start);
    start -= n;
    buf[start..start + n].copy_from_slice(&header[..n]);
    WsFrame {
        bytes: Bytes::from(buf).slice(start..),
    }
}

/// A server frame's header (FIN set, unmasked) for `len` payload bytes: its bytes and length.
fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    out[0] = 0x80 | opcode;
    match len {
        0..=125 => {
            out[1] = len as u8;
            (out, 2)
        }
        126..=0xFFFF => {
            out[1] = 126;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            (out, 4)
        }
        _ => {
            out[1] = 127;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            (out, 10)
        }
    }
}

/// Unmasks `chunk` (RFC 6455 5.3) in place, the payload's bytes from `offset` on: eight bytes at a
/// time with the mask turned to start where `chunk` does, then the rest one by one.
fn unmask(chunk: &mut [u8], mask: [u8; 4], offset: u64) {
    let turn = (offset % 4) as usize;
    let key = [
        mask[turn],
        mask[(turn + 1) % 4],
        mask[(turn + 2) % 4],
        mask[(turn + 3) % 4],
    ];
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut words = chunk.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// What the reader found besides message data (which goes straight into the framer).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// Answer with a Pong carrying this payload.
    Ping(Bytes),
    /// The client started the close handshake (its code, if it gave one).
    Close(Option<u16>),
    /// The client broke RFC 6455: close with the violation's code.
    Violation(Violation),
}

/// How a client broke the WebSocket protocol, and the close code that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Violation {
    pub what: &'static str,
    pub code: u16,
}

impl Violation {
    /// A framing error: 1002.
    const fn protocol(what: &'static str) -> Violation {
        Violation {
            what,
            code: CLOSE_PROTOCOL_ERROR,
        }
    }

    /// A text message that is not UTF-8: 1007, as RFC 6455 (8.1) requires.
    const INVALID_TEXT: Violation = Violation {
        what: "a text message that is not valid UTF-8",
        code: CLOSE_INVALID_DATA,
    };
}

/// UTF-8 checked as a text message arrives in pieces: a character split between reads or frames
/// waits here (at most 3 bytes) for its rest.
#[derive(Debug, Default)]
struct Utf8Check {
    pending: [u8; 4],
    len: u8,
}

impl Utf8Check {
    /// Whether `chunk` continues valid UTF-8.
    fn push(&mut self, mut chunk: &[u8]) -> bool {
        // First complete a character left over from the previous piece, byte by byte.
        while self.len > 0 {
            let Some((&byte, rest)) = chunk.split_first() else {
                return true;
            };
            self.pending[usize::from(self.len)] = byte;
            self.len += 1;
            chunk = rest;
            match std::str::from_utf8(&self.pending[..usize::from(self.len)]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() && self.len < 4 => {}
                Err(_) => return false,
            }
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let rest = &chunk[e.valid_up_to()..];
                self.pending[..rest.len()].copy_from_slice(rest);
                self.len = rest.len() as u8;
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the message ended on a whole character (and resets for the next one).
    fn finish(&mut self) -> bool {
        std::mem::take(&mut self.len) == 0
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for (the rest of) a frame header.
    Header,
    /// Inside a frame's payload.
    Payload {
        opcode: u8,
        remaining: u64,
        mask: [u8; 4],
        /// Payload bytes already unmasked (the mask's phase).
        done: u64,
    },
}

/// An incremental reader of client frames. Small on purpose (it lives in every idle connection):
/// the header being assembled is kept inline; only a control frame's payload is buffered.
#[derive(Debug)]
pub(crate) struct WsReader {
    state: State,
    header: [u8; 14],
    header_len: u8,
    /// A data message was started and not finished (a continuation is expected).
    in_message: bool,
    /// The current data message is text: its UTF-8 is checked as it arrives.
    text: bool,
    utf8: Utf8Check,
    /// The payload of the control frame being read (at most 125 bytes; rarely allocated).
    control: Vec<u8>,
}

impl Default for WsReader {
    fn default() -> Self {
        WsReader {
            state: State::Header,
            header: [0; 14],
            header_len: 0,
            in_message: false,
            text: false,
            utf8: Utf8Check::default(),
            control: Vec::new(),
        }
    }
}

impl WsReader {
    /// Consumes received bytes: message data is unmasked into `framer` (in place, in `data`);
    /// the first event that needs an answer or ends the connection is returned, and the bytes
    /// after it are not read (after a Close or a violation nothing more is read anyway; after a
    /// ping the caller feeds the rest again: `consumed` says how far this call got).
    pub fn feed(&mut self, data: &mut [u8], framer: &mut Framer) -> (usize, Option<Inbound>) {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                State::Header => {
                    let need = self.header_need();
                    let take = (need - usize::from(self.header_len)).min(data.len() - at);
                    let start = usize::from(self.header_len);
                    self.header[start..start + take].copy_from_slice(&data[at..at + take]);
                    self.header_len += take as u8;
                    at += take;
                    // The length field's size is known after two bytes: it may need more.
                    if usize::from(self.header_len) < self.header_need() {
                        continue;
                    }
                    if let Some(event) = self.start_frame() {
                        return (at, Some(event));
                    }
                    if let Some(event) = self.finish_if_empty() {
                        return (at, Some(event));
                    }
                }
                State::Payload {
                    opcode,
                    remaining,
                    mask,
                    done,
                } => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(data.len() - at);
                    let chunk = &mut data[at..at + take];
                    unmask(chunk, mask, done);
                    at += take;
                    let remaining = remaining - take as u64;
                    self.state = State::Payload {
                        opcode,
                        remaining,
                        mask,
                        done: done + take as u64,
                    };
                    if opcode >= OP_CLOSE {
                        self.control.extend_from_slice(chunk);
                    } else {
                        if self.text && !self.utf8.push(chunk) {
                            return (at, Some(Inbound::Violation(Violation::INVALID_TEXT)));
                        }
                        // The caller pulls messages after every read, so the framer refuses a
                        // message over the limit within one read of it (nothing buffers more).
                        framer.push(chunk);
                    }
                    if remaining == 0 {
                        self.state = State::Header;
                        if let Some(event) = self.end_frame(opcode) {
                            return (at, Some(event));
                        }
                    }
                }
            }
        }
        (at, None)
    }

    /// Header bytes needed, from what is known so far.
    fn header_need(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        let len_bytes = match self.header[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask_bytes = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + len_bytes + mask_bytes
    }

    /// A complete header is in `self.header`: checks it and enters the payload.
    fn start_frame(&mut self) -> Option<Inbound> {
        let b0 = self.header[0];
        let b1 = self.header[1];
        self.header_len = 0;
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if b0 & 0x70 != 0 {
            return Some(Inbound::Violation(Violation::protocol(
                "reserved bits set without an extension",
            )));
        }
        if b1 & 0x80 == 0 {
            return Some(Inbound::Violation(Violation::protocol(
                "an unmasked client frame",
            )));
        }
        let (len, at) = match b1 & 0x7F {
            126 => (u64::from(u16::from_be_bytes([self.header[2], self.header[3]])), 4),
            127 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&self.header[2..10]);
                (u64::from_be_bytes(raw), 10)
            }
            n => (u64::from(n), 2),
        };
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&self.header[at..at + 4]);
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > MAX_CONTROL_PAYLOAD as u64 {
                    return Some(Inbound::Violation(Violation::protocol(
                        "a fragmented or oversized control frame",
                    )));
                }
                self.control.clear();
            }
            OP_CONTINUATION => {
                if !self.in_message {
                    return Some(Inbound::Violation(Violation::protocol(
                        "a continuation without a message",
                    )));
                }
                self.in_message = !fin;
            }
            OP_TEXT | OP_BINARY => {
                if self.in_message {
                    return Some(Inbound::Violation(Violation::protocol(
                        "a new message inside a fragmented one",
                    )));
                }
                self.in_message = !fin;
                self.text = opcode == OP_TEXT;
                self.utf8 = Utf8Check::default();
            }
            _ => return Some(Inbound::Violation(Violation::protocol("a reserved opcode"))),
        }
        self.state = State::Payload {
            opcode,
            remaining: len,
            mask,
            done: 0,
        };
        None
    }

    /// A frame with an empty payload ends at its header.
    fn finish_if_empty(&mut self) -> Option<Inbound> {
        if let State::Payload {
            opcode, remaining: 0, ..
        } = self.state
        {
            self.state = State::Header;
            return self.end_frame(opcode);
        }
        None
    }

    fn end_frame(&mut self, opcode: u8) -> Option<Inbound> {
        match opcode {
            OP_PING => Some(Inbound::Ping(Bytes::from(std::mem::take(&mut self.control)))),
            OP_PONG => {
                self.control = Vec::new();
                None
            }
            OP_CLOSE => {
                let control = std::mem::take(&mut self.control);
                match control.len() {
                    0 => Some(Inbound::Close(None)),
                    1 => Some(Inbound::Violation(Violation::protocol(
                        "a close frame with a one-byte payload",
                    ))),
                    _ => Some(Inbound::Close(Some(u16::from_be_bytes([control[0], control[1]])))),
                }
            }
            // A data frame: the end of a text message must end a character.
            _ if !self.in_message && self.text && !self.utf8.finish() => {
                Some(Inbound::Violation(Violation::INVALID_TEXT))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unmasking_eight_bytes_at_a_time_equals_byte_by_byte_from_any_offset() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let original: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for offset in 0..9u64 {
            for len in [0, 1, 3, 7, 8, 9, 15, 16, 17, 100, 1000] {
                let mut ours = original[..len].to_vec();
                super::unmask(&mut ours, mask, offset);
                let expected: Vec<u8> = original[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(offset as usize + i) % 4])
                    .collect();
                assert_eq!(ours, expected, "offset {offset}, {len} bytes");
            }
        }
    }

    use super::*;
    use crate::protocol::FrameKind;

    /// A client frame: masked, as RFC 6455 requires.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn framer() -> Framer {
        Framer::new(FrameKind::Text, 32 * 1024)
    }

    fn bodies(framer: &mut Framer) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Some(body)) = framer.next_frame() {
            out.push(String::from_utf8(body.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn server_frames_have_the_three_length_forms_and_expose_their_payload() {
        let small = WsFrame::text(b"{}\x1e");
        assert_eq!(&small.wire()[..], b"\x81\x03{}\x1e");
        assert_eq!(small.payload(), b"{}\x1e");
        let mid = WsFrame::binary(&[7u8; 300]);
        assert_eq!(&mid.wire()[..4], &[0x82, 126, 0x01, 0x2C]);
        assert_eq!(mid.payload().len(), 300);
        let big = WsFrame::binary(&vec![1u8; 70_000]);
        assert_eq!(&big.wire()[..2], &[0x82, 127]);
        assert_eq!(&big.wire()[2..10], &70_000u64.to_be_bytes());
        assert_eq!(big.payload().len(), 70_000);
        assert_eq!(&WsFrame::close(1002).wire()[..], &[0x88, 2, 0x03, 0xEA]);
        assert_eq!(&WsFrame::pong(b"hi").wire()[..], b"\x8A\x02hi");
    }

    #[test]
    fn messages_arrive_whatever_the_byte_boundaries_and_fragmentation() {
        let mut wire = client_frame(true, OP_TEXT, b"{\"a\":1}\x1e", [1, 2, 3, 4]);
        wire.extend(client_frame(false, OP_TEXT, b"{\"b\":", [9, 8, 7, 6]));
        wire.extend(client_frame(true, OP_PONG, b"x", [5, 5, 5, 5]));
        wire.extend(client_frame(
            true,
            OP_CONTINUATION,
            b"2}\x1e",
            [0xAA, 0xBB, 0xCC, 0xDD],
        ));
        let long = format!("{}\x1e", "z".repeat(70_000));
        wire.extend(client_frame(true, OP_BINARY, long.as_bytes(), [3, 1, 4, 1]));
        for split in [1usize, 2, 3, 7, 13, 4096, usize::MAX] {
            let mut reader = WsReader::default();
            let mut framer = Framer::new(FrameKind::Text, 100_000);
            let mut data = wire.clone();
            let mut got = Vec::new();
            for chunk in data.chunks_mut(split.min(wire.len())) {
                let (used, event) = reader.feed(chunk, &mut framer);
                assert_eq!((used, event), (chunk.len(), None));
                got.extend(bodies(&mut framer));
            }
            assert_eq!(got.len(), 3, "split {split}");
            assert_eq!(got[0], "{\"a\":1}");
            assert_eq!(got[1], "{\"b\":2}");
            assert_eq!(got[2].len(), 70_000);
        }
    }

    #[test]
    fn pings_and_closes_are_reported_where_they_are() {
        let mut wire = client_frame(true, OP_PING, b"abc", [1, 2, 3, 4]);
        let ping_end = wire.len();
        wire.extend(client_frame(true, OP_TEXT, b"{}\x1e", [1, 1, 1, 1]));
        wire.extend(client_frame(true, OP_CLOSE, &1001u16.to_be_bytes(), [2, 2, 2, 2]));
        let mut reader = WsReader::default();
        let mut f = framer();
        let (used, event) = reader.feed(&mut wire, &mut f);
        assert_eq!(
            (used, event),
            (ping_end, Some(Inbound::Ping(Bytes::from_static(b"abc"))))
        );
        let (_, event) = reader.feed(&mut wire[ping_end..], &mut f);
        assert_eq!(event, Some(Inbound::Close(Some(1001))));
        assert_eq!(bodies(&mut f), ["{}"]);
        let mut empty_close = client_frame(true, OP_CLOSE, b"", [0; 4]);
        assert_eq!(
            WsReader::default().feed(&mut empty_close, &mut framer()).1,
            Some(Inbound::Close(None))
        );
    }

    #[test]
    fn rfc_violations_are_reported() {
        let unmasked = &mut [0x81u8, 0x01, b'a'][..];
        let mut cases: Vec<Vec<u8>> = vec![unmasked.to_vec()];
        cases.push(client_frame(true, OP_CONTINUATION, b"x", [1; 4]));
        cases.push(client_frame(false, OP_PING, b"x", [1; 4]));
        cases.push(client_frame(true, OP_PING, &[0u8; 126], [1; 4]));
        cases.push(client_frame(true, 0x3, b"x", [1; 4]));
        let mut rsv = client_frame(true, OP_TEXT, b"x", [1; 4]);
        rsv[0] |= 0x40;
        cases.push(rsv);
        let mut nested = client_frame(false, OP_TEXT, b"x", [1; 4]);
        nested.extend(client_frame(true, OP_TEXT, b"y", [1; 4]));
        cases.push(nested);
        cases.push(client_frame(true, OP_CLOSE, b"x", [1; 4]));
        for mut case in cases {
            let (_, event) = WsReader::default().feed(&mut case, &mut framer());
            assert!(
                matches!(event, Some(Inbound::Violation(_))),
                "{case:?}: {event:?}"
            );
        }
    }

    #[test]
    fn text_must_be_utf8_across_frames_and_reads_and_binary_need_not() {
        let euro = "€".as_bytes(); // three bytes
        // A character split between two frames of one message, fed one byte at a time.
        let mut wire = client_frame(false, OP_TEXT, &[b'{', euro[0]], [1, 2, 3, 4]);
        wire.extend(client_frame(
            true,
            OP_CONTINUATION,
            &[euro[1], euro[2], b'}', 0x1e],
            [5; 4],
        ));
        let mut reader = WsReader::default();
        let mut f = framer();
        for i in 0..wire.len() {
            let (_, event) = reader.feed(&mut wire[i..=i], &mut f);
            assert_eq!(event, None, "byte {i}");
        }
        assert_eq!(f.next_frame().unwrap().unwrap(), Bytes::from("{€}"));
        // Not UTF-8, a message that ends inside a character, an overlong encoding: 1007.
        let invalid: [&[u8]; 3] = [b"{\xff}\x1e", &[b'{', euro[0], euro[1]], &[0xc0, 0xaf]];
        for bytes in invalid {
            let mut wire = client_frame(true, OP_TEXT, bytes, [9, 8, 7, 6]);
            let (_, event) = WsReader::default().feed(&mut wire, &mut framer());
            assert_eq!(
                event,
                Some(Inbound::Violation(Violation::INVALID_TEXT)),
                "{bytes:?}"
            );
            assert_eq!(Violation::INVALID_TEXT.code, 1007);
        }
        // The same bytes in a binary message (MessagePack) are data.
        let mut wire = client_frame(true, OP_BINARY, &[0xff, 0xc0], [9, 8, 7, 6]);
        assert_eq!(WsReader::default().feed(&mut wire, &mut framer()).1, None);
    }

    #[test]
    fn a_message_over_the_limit_is_refused_before_it_is_all_read() {
        let mut f = Framer::new(FrameKind::Text, 1000);
        let mut wire = client_frame(true, OP_TEXT, &[b'a'; 5000], [1, 2, 3, 4]);
        let (used, event) = WsReader::default().feed(&mut wire[..1200], &mut f);
        assert_eq!((used, event), (1200, None));
        assert!(matches!(
            f.next_frame(),
            Err(crate::protocol::FrameError::TooLarge { .. })
        ));
    }
}
