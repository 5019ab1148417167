//! The classic pub/sub connection, spoken with our own RESP reader instead of redis-rs's `PubSub`
//! (whose combine parser, unbounded queue and extra task cost about a fifth of a node's
//! instructions per message).
//!
//! One reader task owns the read half: a `message` push is read in place (no general parse) and
//! its payload copied out once, so the read buffer is reused for every read, and handed straight
//! to the node's bounded inbox, never waiting (a full inbox drops and counts, as before). Confirmations
//! and error replies go to the connection's [`Pipeline`], which matches them to the commands
//! written: Redis answers SUBSCRIBE and UNSUBSCRIBE with one confirmation per channel named, in
//! the order the commands were written, and a refused command (ACL `NOPERM`) with one error.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::ReadHalf;
use tokio::task::JoinHandle;

use super::pipeline::{CommandError, Pipeline, READ_CHUNK, read_more};
use super::resp::{self, Resp, RespError};
use crate::backplane::reconnect::{Failure, LinkFailure};
use crate::backplane::{BackplaneMessage, Inbox};
use crate::tls::BoxedIo;

/// Commands that may wait for their confirmations at once. The subscription manager has at most
/// two in flight (one UNSUBSCRIBE, one SUBSCRIBE batch), so more means a stuck connection.
const COMMAND_QUEUE: usize = 64;

/// The sending side of a subscriber connection: cheap to clone, shared by the subscription
/// manager's concurrent UNSUBSCRIBE and SUBSCRIBE.
#[derive(Clone)]
pub struct SubSink {
    pipeline: Pipeline,
}

/// A subscriber connection's two tasks; both end with the connection (and are aborted on drop,
/// failing every command still waiting).
pub struct Subscriber {
    pub sink: SubSink,
    /// Ends with why the connection ended, or `None` when the node's inbox closed.
    pub reader: JoinHandle<Option<Failure>>,
    /// Ends when a write failed or the connection closed (why).
    pub writer: JoinHandle<Failure>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.sink.pipeline.close("connection to Redis closed");
    }
}

impl Subscriber {
    /// Starts the reader and writer of an authenticated connection (`RedisConnector::raw`).
    pub fn start(io: BoxedIo, inbox: Inbox) -> Subscriber {
        let (read, write) = tokio::io::split(io);
        let (pipeline, writer) = Pipeline::start(write, COMMAND_QUEUE, None, None, None);
        let reader = tokio::spawn(read_loop(read, inbox, pipeline.clone()));
        Subscriber {
            sink: SubSink { pipeline },
            reader,
            writer,
        }
    }
}

impl SubSink {
    /// SUBSCRIBE `channels`; returns once Redis confirmed every one.
    pub async fn subscribe(&self, channels: &[String]) -> Result<(), CommandError> {
        self.command("SUBSCRIBE", channels).await
    }

    /// UNSUBSCRIBE `channels`; returns once Redis confirmed every one.
    pub async fn unsubscribe(&self, channels: &[String]) -> Result<(), CommandError> {
        self.command("UNSUBSCRIBE", channels).await
    }

    async fn command(&self, name: &str, channels: &[String]) -> Result<(), CommandError> {
        if channels.is_empty() {
            return Ok(());
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(channels.len() + 1);
        args.push(name.as_bytes());
        args.extend(channels.iter().map(|c| c.as_bytes()));
        self.pipeline.send(&args, channels.len()).await.map(|_| ())
    }
}

async fn read_loop(mut read: ReadHalf<BoxedIo>, inbox: Inbox, pipeline: Pipeline) -> Option<Failure> {
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    let failure = 'read: loop {
        loop {
            // A `message` push (the common case), read once, in place: the last one of what was
            // read goes straight to the node when nothing waits in its inbox (see the backplane
            // docs); any other is copied into the inbox.
            let push = match message_at(&buffer) {
                Ok(Some(at)) => {
                    let direct = at.end == buffer.len()
                        && inbox.try_direct(&buffer[at.channel.clone()], &buffer[at.payload.clone()]);
                    let message = (!direct).then(|| message_of(&buffer, &at));
                    buffer.advance(at.end);
                    match message {
                        Some(message) => Ok(Some(Push::Message(message))),
                        None => continue,
                    }
                }
                Ok(None) => next_push(&mut buffer),
                Err(e) => Err(e),
            };
            match push {
                Ok(None) => break,
                Ok(Some(Push::Message(message))) => {
                    // Never waits: a full inbox drops and counts (see the backplane docs).
                    if !inbox.offer(message) && inbox.is_closed() {
                        return None;
                    }
                }
                Ok(Some(Push::Confirmed(value))) => pipeline.answer(Ok(value)),
                Ok(Some(Push::Refused(text))) => pipeline.answer(Err(text)),
                Ok(Some(Push::Other)) => {}
                Err(e) => break 'read Failure::new(LinkFailure::Protocol, e.to_string()),
            }
        }
        if let Err(why) = read_more(&mut read, &mut buffer).await {
            break Failure::new(LinkFailure::Lost, why);
        }
    };
    // Every waiting command hears that the connection is gone; the writer ends.
    pipeline.close(&failure.message);
    Some(failure)
}

/// What one reply on a subscriber connection is.
#[derive(Debug, PartialEq)]
enum Push {
    Message(BackplaneMessage),
    /// A `subscribe` or `unsubscribe` confirmation (one per channel), as Redis wrote it.
    Confirmed(Resp),
    /// An error reply: the command at the front was refused.
    Refused(String),
    /// Anything else (a `pong`, a pattern message we never asked for).
    Other,
}

/// The `*3\r\n$7\r\nmessage\r\n` that starts every `message` push.
const MESSAGE_HEAD: &[u8] = b"*3\r\n$7\r\nmessage\r\n";

/// Takes the next whole reply off the front of `buffer`; `Ok(None)` until one is complete.
/// A `message` push, the common case, is read in place and its channel and payload copied out.
/// Everything else goes through the general reader.
fn next_push(buffer: &mut BytesMut) -> Result<Option<Push>, RespError> {
    if let Some(at) = message_at(buffer)? {
        let message = message_of(buffer, &at);
        buffer.advance(at.end);
        return Ok(Some(Push::Message(message)));
    }
    if buffer.starts_with(MESSAGE_HEAD) {
        return Ok(None); // a message push, not complete yet
    }
    let Some((value, used)) = resp::parse(buffer)? else {
        return Ok(None);
    };
    buffer.advance(used);
    Ok(Some(classify(value)))
}

/// A `message` push read in place: where its channel and its payload are, and where it ends.
struct MessageAt {
    channel: Range<usize>,
    payload: Range<usize>,
    end: usize,
}

/// The `message` push at the front of `buffer`; `Ok(None)` when the front is not a whole
/// `message` push.
fn message_at(buffer: &[u8]) -> Result<Option<MessageAt>, RespError> {
    if !buffer.starts_with(MESSAGE_HEAD) {
        return Ok(None);
    }
    let null = |at| RespError {
        offset: at,
        reason: "a message push's channel or payload is null".to_string(),
    };
    let at = MESSAGE_HEAD.len();
    let Some((channel, after)) = resp::bulk_at(buffer, at)? else {
        return Ok(None);
    };
    let channel = channel.ok_or_else(|| null(at))?;
    let Some((payload, end)) = resp::bulk_at(buffer, after)? else {
        return Ok(None);
    };
    let payload = payload.ok_or_else(|| null(after))?;
    Ok(Some(MessageAt {
        channel,
        payload,
        end,
    }))
}

/// The `message` push at `at`, copied out of `buffer`, so the read buffer stays this reader's
/// alone and is reused for the next read (a payload sharing it would make every read allocate a
/// fresh buffer).
fn message_of(buffer: &[u8], at: &MessageAt) -> BackplaneMessage {
    BackplaneMessage {
        channel: utf8_lossy(&buffer[at.channel.clone()]),
        payload: Bytes::copy_from_slice(&buffer[at.payload.clone()]),
    }
}

/// A channel name as text (Redis channels are bytes; ours are UTF-8).
fn utf8_lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn classify(value: Resp) -> Push {
    let Resp::Array(Some(items)) = value else {
        return match value {
            Resp::Error(text) => Push::Refused(text),
            _ => Push::Other,
        };
    };
    let kind = items.first().and_then(Resp::bytes).unwrap_or_default();
    if kind.eq_ignore_ascii_case(b"subscribe") || kind.eq_ignore_ascii_case(b"unsubscribe") {
        Push::Confirmed(Resp::Array(Some(items)))
    } else if kind.eq_ignore_ascii_case(b"message")
        && let [_, channel, payload] = items.as_slice()
        && let (Some(channel), Some(payload)) = (channel.bytes(), payload.bytes())
    {
        Push::Message(BackplaneMessage {
            channel: utf8_lossy(channel),
            payload: Bytes::copy_from_slice(payload),
        })
    } else {
        Push::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Resp {
        Resp::Bulk(Some(Bytes::copy_from_slice(bytes)))
    }

    fn message(channel: &str, payload: &[u8]) -> Vec<u8> {
        resp::command(&[b"message", channel.as_bytes(), payload])
    }

    fn take_all(input: &[u8]) -> (Vec<Push>, usize) {
        let mut buffer = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(push) = next_push(&mut buffer).unwrap() {
            out.push(push);
        }
        (out, buffer.len())
    }

    #[test]
    fn message_pushes_are_cut_out_whole_and_only_when_complete() {
        let mut input = message("chat:all", b"\x00hello\r\nworld");
        input.extend(resp::command(&[b"subscribe", b"c", b"1"]));
        input.extend(b"-NOPERM no permissions\r\n");
        input.extend(message("x", b""));
        let (pushes, left) = take_all(&input);
        assert_eq!(left, 0);
        assert_eq!(
            pushes,
            vec![
                Push::Message(BackplaneMessage {
                    channel: "chat:all".into(),
                    payload: Bytes::from_static(b"\x00hello\r\nworld"),
                }),
                Push::Confirmed(Resp::Array(Some(vec![
                    bulk(b"subscribe"),
                    bulk(b"c"),
                    bulk(b"1")
                ]))),
                Push::Refused("NOPERM no permissions".into()),
                Push::Message(BackplaneMessage {
                    channel: "x".into(),
                    payload: Bytes::new(),
                }),
            ]
        );
        // Every prefix of a message is incomplete, never an error or a partial message.
        let one = message("chat:all", b"payload");
        for cut in 0..one.len() {
            let (pushes, left) = take_all(&one[..cut]);
            assert!(pushes.is_empty() && left == cut, "cut at {cut}");
        }
    }

    #[test]
    fn real_confirmations_and_bad_input() {
        // As Redis writes them: `*3 $9 subscribe $1 c :1`.
        let confirm =
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n";
        let (pushes, left) = take_all(confirm);
        let confirmed = |kind: &[u8], count| {
            Push::Confirmed(Resp::Array(Some(vec![bulk(kind), bulk(b"c"), Resp::Int(count)])))
        };
        assert_eq!(
            (pushes, left),
            (vec![confirmed(b"subscribe", 1), confirmed(b"unsubscribe", 0)], 0)
        );
        let mut bad = BytesMut::from(&b"*3\r\n$7\r\nmessage\r\n$x\r\n"[..]);
        assert!(
            next_push(&mut bad).is_err(),
            "a bad length is an error, not a panic"
        );
        let mut bad = BytesMut::from(&b"*3\r\n$7\r\nmessage\r\n:1\r\n"[..]);
        assert!(next_push(&mut bad).is_err());
        let mut null = BytesMut::from(&b"*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\nx\r\n"[..]);
        assert!(next_push(&mut null).is_err(), "a null channel is an error");
        let mut huge = BytesMut::from(&b"*3\r\n$7\r\nmessage\r\n$99999999999\r\n"[..]);
        assert!(
            next_push(&mut huge).is_err(),
            "over the limit before anything is allocated"
        );
    }
}
