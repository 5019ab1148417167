//! A plain TCP listener the test owns, on loopback, that reads the head of every HTTP request that
//! arrives (whatever it is: negotiate, a WebSocket upgrade, a stats GET) and answers it with a
//! fixed response, then closes. What the tools under test send is read off the wire, unparsed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Longest request head kept.
const MAX_HEAD: usize = 64 * 1024;

/// The listener's port and the request heads it read, in arrival order.
pub struct Recorder {
    pub port: u16,
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A 404 with a one-line body.
pub const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n";

/// A 401 as a hub with `--auth jwt` answers: `WWW-Authenticate: Bearer` and one line.
pub const REFUSED: &str = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\nConnection: close\r\n\r\nthe token is not valid\n";

impl Recorder {
    /// Listens on 127.0.0.1:0, answering every request with `response`.
    pub async fn start(response: &'static str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        // Unbounded within a test: every head is kept for the assertions.
        let (tx, rx) = mpsc::channel(100_000);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    let read = tokio::time::timeout(Duration::from_secs(10), async {
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                    })
                    .await;
                    if read.is_ok() && !head.is_empty() {
                        let _ = tx.try_send(String::from_utf8_lossy(&head).into_owned());
                        let _ = stream.write_all(response.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                });
            }
        });
        Recorder {
            port,
            rx,
            seen: Vec::new(),
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Takes in what arrived so far.
    pub fn drain(&mut self) {
        while let Ok(head) = self.rx.try_recv() {
            self.seen.push(head);
        }
    }

    /// Waits (within `limit`) until some request head satisfies `f`; returns its index in `seen`.
    pub async fn wait_for(
        &mut self,
        from: usize,
        limit: Duration,
        what: &str,
        f: impl Fn(&str) -> bool,
    ) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        let mut index = from;
        loop {
            while index < self.seen.len() {
                if f(&self.seen[index]) {
                    return index;
                }
                index += 1;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(head)) => self.seen.push(head),
                Ok(None) => panic!("the listener stopped while waiting for {what}"),
                Err(_) => panic!(
                    "no request with {what} within {limit:?}; requests so far: {:#?}",
                    self.seen
                ),
            }
        }
    }
}

/// The request line of a head (`POST /chat/negotiate?… HTTP/1.1`).
pub fn request_line(head: &str) -> &str {
    head.lines().next().unwrap_or("")
}

/// The value of header `name` in a head, if present (first one, case-insensitive name).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
