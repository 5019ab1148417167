//! The classic link's command connection, spoken with our own RESP writer and reader instead of
//! redis-rs's multiplexed connection: PUBLISH on the hot path, and the odd ROLE check.
//!
//! Commands go through a [`Pipeline`] (pipelined, so under load many PUBLISHes share a write);
//! the reader task takes replies off the socket in order and hands each to it. When the
//! connection fails, every waiting command fails at once and so does every later one, until the
//! link replaces the connection.

use bytes::{Buf, BytesMut};
use tokio::io::ReadHalf;
use tokio::task::JoinHandle;

use super::pipeline::{CommandError, Counter, Pipeline, READ_CHUNK, Reply, read_more};
use super::resp::{self, Resp, RespError};
use crate::backplane::reconnect::Failure;
use crate::tls::BoxedIo;

/// The commands written and not yet answered, at most: a publisher that runs this far ahead of
/// Redis is told the link is overloaded (the hub counts it as a failed publish and delivers
/// locally) instead of queueing without bound.
const MAX_WAITING: usize = 64 * 1024;

/// A command connection: cheap to clone; its tasks end with the connection.
#[derive(Clone)]
pub struct Publisher {
    pipeline: Pipeline,
}

/// The publisher's two tasks, aborted when dropped (the link lost or replaced the connection);
/// every command still waiting, and any later one, fails then.
pub struct PublisherTasks {
    /// Ends when the connection does.
    pub reader: JoinHandle<()>,
    /// Ends when a write fails or Redis answers nothing for `COMMAND_TIMEOUT` while commands
    /// wait.
    pub writer: JoinHandle<Failure>,
    pipeline: Pipeline,
}

impl Drop for PublisherTasks {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.pipeline.close("connection to Redis closed");
    }
}

impl Publisher {
    /// Starts the reader and writer of an authenticated connection
    /// (`RedisConnector::raw_with_socket`: with its plain socket, a command is written by its
    /// caller when the writer is idle, see `Pipeline`); `counted` hears the outcome of each
    /// `publish_counted`.
    pub fn start(
        io: BoxedIo,
        socket: Option<std::net::TcpStream>,
        counted: Option<Counter>,
    ) -> (Publisher, PublisherTasks) {
        let (read, write) = tokio::io::split(io);
        let (pipeline, writer) =
            Pipeline::start(write, MAX_WAITING, Some(super::COMMAND_TIMEOUT), counted, socket);
        let reader = tokio::spawn(read_loop(read, pipeline.clone()));
        let tasks = PublisherTasks {
            reader,
            writer,
            pipeline: pipeline.clone(),
        };
        (Publisher { pipeline }, tasks)
    }

    /// PUBLISH `payload` on `channel`: the number of subscribers that received it.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<i64, CommandError> {
        publish_reply(self.query(&[b"PUBLISH", channel.as_bytes(), payload]).await)
    }

    /// PUBLISH without waiting: the reply (the receiver count, or why it failed) goes to the
    /// connection's `Counter` (`publish_reply` reads it). `Err` when it could not even be queued.
    pub fn publish_counted(&self, channel: &str, payload: &[u8]) -> Result<(), CommandError> {
        self.pipeline
            .send_counted(&[b"PUBLISH", channel.as_bytes(), payload], 1)
    }

    /// Any command; its reply as Redis wrote it.
    pub async fn query(&self, args: &[&[u8]]) -> Result<Resp, CommandError> {
        self.pipeline.send(args, 1).await
    }
}

/// A PUBLISH's reply as its receiver count: an integer, anything else a refusal.
pub fn publish_reply(reply: Result<Resp, CommandError>) -> Result<i64, CommandError> {
    match reply? {
        Resp::Int(n) => Ok(n),
        other => Err(CommandError::Refused(format!(
            "unexpected reply to PUBLISH: {other:?}"
        ))),
    }
}

async fn read_loop(mut read: ReadHalf<BoxedIo>, pipeline: Pipeline) {
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    let why = 'read: loop {
        loop {
            match next_reply(&buffer) {
                Ok(None) => break,
                Ok(Some((reply, used))) => {
                    buffer.advance(used);
                    pipeline.answer(reply);
                }
                Err(e) => break 'read e.to_string(),
            }
        }
        if let Err(why) = read_more(&mut read, &mut buffer).await {
            break why;
        }
    };
    pipeline.close(&why); // and the writer ends
}

/// The next whole reply at the front of `input` and its length (an integer, PUBLISH's reply,
/// allocates nothing); an error reply is `Err(text)`.
fn next_reply(input: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    Ok(resp::parse(input)?.map(|(value, used)| match value {
        Resp::Error(text) => (Err(text), used),
        value => (Ok(value), used),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_taken_whole_in_order() {
        let input = b":3\r\n-NOPERM no\r\n*1\r\n$6\r\nmaster\r\n:-1\r\n";
        let mut at = 0;
        let mut got = Vec::new();
        while let Some((reply, used)) = next_reply(&input[at..]).unwrap() {
            got.push(reply);
            at += used;
        }
        assert_eq!(at, input.len());
        assert_eq!(got[0], Ok(Resp::Int(3)));
        assert_eq!(got[1], Err("NOPERM no".to_string()));
        assert!(matches!(&got[2], Ok(Resp::Array(Some(items))) if items[0].bytes() == Some(&b"master"[..])));
        assert_eq!(got[3], Ok(Resp::Int(-1)));
        // Incomplete input waits for more; bad input is an error, never a panic.
        assert_eq!(next_reply(b":12").unwrap(), None);
        assert_eq!(next_reply(b":12\r").unwrap(), None);
        assert!(next_reply(b"?x\r\n").is_err());
    }
}
