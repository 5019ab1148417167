//! The one reconnect loop of every long-lived link, and the typed failure that decides how soon
//! to try again: the node's Redis backplane (`redis`, and its sharded half `redis/sharded`), the
//! dashboard's tap (`monitor::tap`) and the two parts of each node probe (`monitor::probe`: the
//! monitor WebSocket and the probe client).
//!
//! A caller implements [`Link`] (connect, serve, report) and hands it to [`run`], which owns the
//! rest: attempt counting ([`Attempts`]), the backoff (doubling from
//! [`DEFAULT_RECONNECT_BASE`](config::DEFAULT_RECONNECT_BASE), capped by the failure's
//! [`LinkFailure`], never by its text), the reported states (Connecting → Connected →
//! Reconnecting{attempt, retry_in, error} → Connected …; each caller maps them to its own state
//! type and writes its own log line), the reset of the attempt count after a successful
//! connection, and cancellation.
//!
//! A failure is classified where it is still typed: `io::ErrorKind`, redis-rs's `RedisError`
//! kinds and reply codes, `redis_conn`'s `ConnectError` variants (here), the SignalR client's
//! `ClientError` variants (in `monitor::probe`, since the backplane never sees `client`). What a
//! server says in words (a 401 body, an error reply's text) is carried as the message only.
//!
//! Uses `config`, `redis_conn` (its error type) and the backplane's `backoff`. Never `hub`,
//! `client`, `monitor` or `ui`.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backoff;
use crate::config;
use crate::redis_conn::{ConnectError, describe};

/// Why a link failed, as far as the retry pace is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFailure {
    /// Nothing listens there (the server is restarting): retrying costs nobody anything.
    Refused,
    /// A connection that was up went away (closed, reset, end of stream).
    Lost,
    /// Credentials missing or wrong, or not allowed (a 401, WRONGPASS, NOPERM).
    Auth,
    /// The other side answered, but not as expected (an error reply, a bad document, an HTTP
    /// status): not something a quick retry fixes.
    Protocol,
    /// No answer in time.
    Timeout,
    /// The TLS handshake or configuration failed.
    Tls,
    /// Anything else (a configuration error, an I/O error of another kind).
    Other,
}

impl LinkFailure {
    /// The backoff cap for this kind: a refused or lost link is retried within
    /// [`DEFAULT_RECONNECT_MAX_REFUSED`](config::DEFAULT_RECONNECT_MAX_REFUSED) (the server may be
    /// back any moment and a dead port costs nothing to try); everything else costs the server or
    /// the network something and backs off up to
    /// [`DEFAULT_RECONNECT_MAX`](config::DEFAULT_RECONNECT_MAX).
    pub fn retry_cap(self) -> Duration {
        match self {
            LinkFailure::Refused | LinkFailure::Lost => config::DEFAULT_RECONNECT_MAX_REFUSED,
            LinkFailure::Auth
            | LinkFailure::Protocol
            | LinkFailure::Timeout
            | LinkFailure::Tls
            | LinkFailure::Other => config::DEFAULT_RECONNECT_MAX,
        }
    }

    /// The kind of an I/O error.
    pub fn of_io(kind: io::ErrorKind) -> Self {
        match kind {
            io::ErrorKind::ConnectionRefused => LinkFailure::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected => LinkFailure::Lost,
            io::ErrorKind::TimedOut => LinkFailure::Timeout,
            _ => LinkFailure::Other,
        }
    }

    /// The kind of a redis-rs error: its I/O cause, its kind, or the reply's error code (the
    /// reply's first word, e.g. `NOAUTH`; never the words after it).
    pub fn of_redis(e: &redis::RedisError) -> Self {
        if e.is_connection_refusal() {
            return LinkFailure::Refused;
        }
        if e.is_timeout() {
            return LinkFailure::Timeout;
        }
        if e.is_connection_dropped() {
            return LinkFailure::Lost;
        }
        match e.kind() {
            redis::ErrorKind::AuthenticationFailed
            | redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => LinkFailure::Auth,
            redis::ErrorKind::Io => LinkFailure::Other,
            _ => e.code().map_or(LinkFailure::Protocol, LinkFailure::of_error_code),
        }
    }

    /// The kind of a Redis error reply by its code (its first word): a refused login or
    /// permission is the credentials', anything else the protocol's. For replies read with our
    /// own RESP reader, and for redis-rs's errors above.
    pub fn of_error_code(code: &str) -> Self {
        match code {
            "NOPERM" | "NOAUTH" | "WRONGPASS" => LinkFailure::Auth,
            _ => LinkFailure::Protocol,
        }
    }
}

/// A link failure: its kind (which sets the retry pace) and the message shown to the user (which
/// never does, and never holds a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: LinkFailure,
    pub message: String,
}

impl Failure {
    pub fn new(kind: LinkFailure, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// The same failure with `what` in front of its message (`"{what}: {message}"`).
    pub fn context(mut self, what: impl Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// A redis-rs error, classified ([`LinkFailure::of_redis`]) and worded (`redis_conn::describe`).
    pub fn redis(e: &redis::RedisError) -> Self {
        Failure::new(LinkFailure::of_redis(e), describe(e))
    }
}

impl From<ConnectError> for Failure {
    fn from(e: ConnectError) -> Self {
        let kind = match &e {
            ConnectError::Refused { .. } => LinkFailure::Refused,
            ConnectError::Timeout { .. } => LinkFailure::Timeout,
            ConnectError::Tls(_) => LinkFailure::Tls,
            ConnectError::Auth { .. } => LinkFailure::Auth,
            // Another error reply, or sentinels and cluster seeds that answered wrongly.
            ConnectError::Redis { .. } | ConnectError::Sentinel(_) | ConnectError::Cluster(_) => {
                LinkFailure::Protocol
            }
            ConnectError::Io { .. } | ConnectError::Config(_) => LinkFailure::Other,
        };
        Failure::new(kind, e.to_string())
    }
}

/// A state change [`run`] reports; the caller maps it to its own state type and logs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Report<'a> {
    /// The first attempt is under way.
    Connecting,
    /// [`Link::connect`] succeeded: the link is usable.
    Connected,
    /// The link failed with `error`; attempt number `attempt` (1 for the first retry) is made
    /// in `retry_in`.
    Reconnecting {
        attempt: u32,
        retry_in: Duration,
        error: &'a Failure,
    },
}

/// One kind of link: how to connect, how to serve a connection, how to show its state.
pub trait Link: Send {
    /// What a successful connection hands to [`serve`](Self::serve).
    type Conn: Send;

    /// Opens the connection and readies it (subscribes, joins, reads a first document): when it
    /// returns Ok the link is reported Connected and the attempt count starts over. Dropped if
    /// cancelled meanwhile.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Conn, Failure>> + Send;

    /// Uses the connection until it fails (`Err`: retried after the backoff) or the link's
    /// consumer is gone (`Ok`: [`run`] returns).
    fn serve(&mut self, conn: Self::Conn) -> impl Future<Output = Result<(), Failure>> + Send;

    /// A state change, in order; nothing is reported once cancelled.
    fn report(&mut self, state: Report<'_>);

    /// The longest wait between attempts after a failure of `kind`: the kind's own cap
    /// ([`LinkFailure::retry_cap`]) unless the link waits longer (the dashboard's links, whose
    /// countdown a person reads, wait whole seconds).
    fn retry_cap(&self, kind: LinkFailure) -> Duration {
        kind.retry_cap()
    }

    /// How long a serving link, once cancelled, may take to end by itself (to say goodbye to
    /// the server) before it is dropped. Zero (the default): dropped at once.
    fn stop_grace(&self) -> Duration {
        Duration::ZERO
    }
}

/// Consecutive failed attempts, and the delay before the next one.
#[derive(Debug, Default, Clone)]
pub struct Attempts {
    failed: u32,
}

impl Attempts {
    /// Counts a failure; returns the next attempt's number (1 for the first retry) and the delay
    /// before it: doubling from `DEFAULT_RECONNECT_BASE`, capped by the failure's kind.
    pub fn fail(&mut self, failure: &Failure) -> (u32, Duration) {
        self.fail_within(failure.kind.retry_cap())
    }

    /// Counts a failure, as [`Attempts::fail`], with the delay capped at `cap`.
    pub fn fail_within(&mut self, cap: Duration) -> (u32, Duration) {
        let delay = backoff(self.failed, config::DEFAULT_RECONNECT_BASE, cap);
        self.failed = self.failed.saturating_add(1);
        (self.failed, delay)
    }

    /// A connection succeeded: the next failure starts from the base delay again.
    pub fn reset(&mut self) {
        self.failed = 0;
    }
}

/// Runs `link` until `cancel` or until a served connection ends with `Ok`: connect, serve,
/// and after each failure report it and wait out the backoff. Cancellation stops a connect or
/// a wait at once, and a serving link after its [`stop_grace`](Link::stop_grace).
pub async fn run<L: Link>(link: &mut L, cancel: &CancellationToken) {
    let mut attempts = Attempts::default();
    link.report(Report::Connecting);
    loop {
        let connected = tokio::select! {
            _ = cancel.cancelled() => return,
            r = link.connect() => r,
        };
        let ended = match connected {
            Ok(conn) => {
                attempts.reset();
                link.report(Report::Connected);
                let grace = link.stop_grace();
                let serve = link.serve(conn);
                tokio::pin!(serve);
                tokio::select! {
                    r = &mut serve => r,
                    _ = cancel.cancelled() => {
                        if !grace.is_zero() {
                            let _ = tokio::time::timeout(grace, serve).await;
                        }
                        return;
                    }
                }
            }
            Err(failure) => Err(failure),
        };
        let failure = match ended {
            Ok(()) => return,
            Err(failure) => failure,
        };
        if cancel.is_cancelled() {
            return;
        }
        let (attempt, retry_in) = attempts.fail_within(link.retry_cap(failure.kind));
        link.report(Report::Reconnecting {
            attempt,
            retry_in,
            error: &failure,
        });
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(retry_in) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    const TEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// What a scripted attempt does.
    enum Step {
        /// `connect` fails.
        Fail(Failure),
        /// `connect` succeeds, then `serve` ends with this.
        Serve(Result<(), Failure>),
        /// `connect` succeeds and `serve` never ends by itself.
        ServeForever,
        /// `connect` never ends.
        Hang,
    }

    /// What the test saw, reports and marks, in order.
    #[derive(Debug, Clone, PartialEq)]
    enum Seen {
        Connecting,
        Connected,
        Reconnecting(u32, Duration, LinkFailure, String),
        Serving,
        Goodbye,
    }

    struct Scripted {
        steps: VecDeque<Step>,
        seen: Arc<Mutex<Vec<Seen>>>,
        grace: Duration,
        cancel: CancellationToken,
        /// A cap longer than the kind's (as the dashboard's links have), if set.
        cap: Option<Duration>,
    }

    impl Scripted {
        fn new(steps: Vec<Step>) -> Self {
            Scripted {
                steps: steps.into(),
                seen: Arc::default(),
                grace: Duration::ZERO,
                cancel: CancellationToken::new(),
                cap: None,
            }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Link for Scripted {
        type Conn = Option<Result<(), Failure>>;

        async fn connect(&mut self) -> Result<Self::Conn, Failure> {
            match self.steps.pop_front() {
                Some(Step::Fail(f)) => Err(f),
                Some(Step::Serve(r)) => Ok(Some(r)),
                Some(Step::ServeForever) => Ok(None),
                Some(Step::Hang) | None => std::future::pending().await,
            }
        }

        async fn serve(&mut self, conn: Self::Conn) -> Result<(), Failure> {
            self.seen.lock().unwrap().push(Seen::Serving);
            match conn {
                Some(r) => r,
                None => {
                    // Says goodbye when cancelled, as the probe client does.
                    self.cancel.cancelled().await;
                    tokio::task::yield_now().await;
                    self.seen.lock().unwrap().push(Seen::Goodbye);
                    Ok(())
                }
            }
        }

        fn report(&mut self, state: Report<'_>) {
            let seen = match state {
                Report::Connecting => Seen::Connecting,
                Report::Connected => Seen::Connected,
                Report::Reconnecting {
                    attempt,
                    retry_in,
                    error,
                } => Seen::Reconnecting(attempt, retry_in, error.kind, error.message.clone()),
            };
            self.seen.lock().unwrap().push(seen);
        }

        fn stop_grace(&self) -> Duration {
            self.grace
        }

        fn retry_cap(&self, kind: LinkFailure) -> Duration {
            self.cap.unwrap_or_else(|| kind.retry_cap())
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_cap_follows_the_kind() {
        let short = config::DEFAULT_RECONNECT_MAX_REFUSED;
        let long = config::DEFAULT_RECONNECT_MAX;
        assert_eq!(LinkFailure::Refused.retry_cap(), short);
        assert_eq!(LinkFailure::Lost.retry_cap(), short);
        for kind in [
            LinkFailure::Auth,
            LinkFailure::Protocol,
            LinkFailure::Timeout,
            LinkFailure::Tls,
            LinkFailure::Other,
        ] {
            assert_eq!(kind.retry_cap(), long, "{kind:?}");
        }
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_kind_s_cap() {
        let base = config::DEFAULT_RECONNECT_BASE;
        let mut refused = Attempts::default();
        let failure = Failure::new(LinkFailure::Refused, "x");
        let delays: Vec<(u32, Duration)> = (0..6).map(|_| refused.fail(&failure)).collect();
        assert_eq!(delays[0], (1, base));
        assert_eq!(delays[1], (2, base * 2));
        assert!(
            delays
                .iter()
                .all(|(_, d)| *d <= config::DEFAULT_RECONNECT_MAX_REFUSED)
        );
        assert_eq!(delays[5].1, config::DEFAULT_RECONNECT_MAX_REFUSED);
        let mut auth = Attempts::default();
        let failure = Failure::new(LinkFailure::Auth, "x");
        let worst = (0..30).map(|_| auth.fail(&failure).1).max();
        assert_eq!(worst, Some(config::DEFAULT_RECONNECT_MAX));
    }

    #[test]
    fn a_401_body_that_says_connection_refused_does_not_shorten_the_backoff() {
        let failure = Failure::new(
            LinkFailure::Auth,
            "http://h:1/negotiate: the node refused the token: connection refused, connection lost, reset",
        );
        let mut attempts = Attempts::default();
        let worst = (0..30).map(|_| attempts.fail(&failure).1).max();
        assert_eq!(worst, Some(config::DEFAULT_RECONNECT_MAX));
    }

    #[test]
    fn io_and_connect_errors_are_classified_by_kind() {
        assert_eq!(
            LinkFailure::of_io(io::ErrorKind::ConnectionRefused),
            LinkFailure::Refused
        );
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            assert_eq!(LinkFailure::of_io(kind), LinkFailure::Lost, "{kind:?}");
        }
        assert_eq!(LinkFailure::of_io(io::ErrorKind::TimedOut), LinkFailure::Timeout);
        let refused = Failure::from(ConnectError::Refused {
            addr: "127.0.0.1:1".into(),
        });
        assert_eq!(refused.kind, LinkFailure::Refused);
        assert!(refused.message.contains("connection refused"));
        // An error reply whose words say "refused" is still a reply.
        let reply = Failure::from(ConnectError::Redis {
            addr: "127.0.0.1:1".into(),
            reason: "SELECT: connection refused".into(),
        });
        assert_eq!(reply.kind, LinkFailure::Protocol);
        let auth = Failure::from(ConnectError::Auth {
            addr: "127.0.0.1:1".into(),
            reason: "AUTH: connection refused".into(),
        });
        assert_eq!(auth.kind, LinkFailure::Auth);
        assert_eq!(auth.message, "127.0.0.1:1: AUTH: connection refused");
        let io_refused = redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(LinkFailure::of_redis(&io_refused), LinkFailure::Refused);
        let reset = redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(LinkFailure::of_redis(&reset), LinkFailure::Lost);
        let auth = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "connection refused"));
        assert_eq!(LinkFailure::of_redis(&auth), LinkFailure::Auth);
        assert_eq!(
            Failure::new(LinkFailure::Lost, "gone").context("shard a:1"),
            Failure::new(LinkFailure::Lost, "shard a:1: gone")
        );
    }

    /// A link that waits longer than its failure's cap (the dashboard's tap and probes) gets
    /// delays that keep doubling past the 250 ms of a refused connection, up to its own cap
    /// (400 ms here, to keep the test short).
    #[tokio::test]
    async fn a_link_s_own_cap_lets_the_backoff_grow_past_the_kind_s() {
        let refused = || Step::Fail(Failure::new(LinkFailure::Refused, "refused"));
        let mut steps: Vec<Step> = (0..5).map(|_| refused()).collect();
        steps.push(Step::Serve(Ok(())));
        let mut link = Scripted::new(steps);
        link.cap = Some(ms(400));
        let cancel = CancellationToken::new();
        tokio::time::timeout(TEST_TIMEOUT, run(&mut link, &cancel))
            .await
            .expect("the link ends when served Ok");
        let delays: Vec<Duration> = link
            .seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Reconnecting(_, d, _, _) => Some(d),
                _ => None,
            })
            .collect();
        let base = config::DEFAULT_RECONNECT_BASE;
        assert_eq!(delays, [base, base * 2, base * 4, ms(400), ms(400)]);
        assert!(ms(400) > config::DEFAULT_RECONNECT_MAX_REFUSED);
    }

    #[tokio::test]
    async fn failures_back_off_by_kind_and_a_connection_resets_the_count() {
        let refused = || Failure::new(LinkFailure::Refused, "refused");
        let auth = || Failure::new(LinkFailure::Auth, "HTTP 401: connection refused");
        let mut link = Scripted::new(vec![
            Step::Fail(refused()),
            Step::Fail(auth()),
            Step::Serve(Err(Failure::new(LinkFailure::Lost, "lost"))),
            Step::Fail(refused()),
            Step::Serve(Ok(())),
        ]);
        let cancel = CancellationToken::new();
        tokio::time::timeout(TEST_TIMEOUT, run(&mut link, &cancel))
            .await
            .expect("the link ends when served Ok");
        let base = config::DEFAULT_RECONNECT_BASE;
        let again = |attempt, delay, kind, text: &str| Seen::Reconnecting(attempt, delay, kind, text.into());
        assert_eq!(
            link.seen(),
            vec![
                Seen::Connecting,
                again(1, base, LinkFailure::Refused, "refused"),
                again(2, base * 2, LinkFailure::Auth, "HTTP 401: connection refused"),
                Seen::Connected,
                Seen::Serving,
                again(1, base, LinkFailure::Lost, "lost"),
                again(2, base * 2, LinkFailure::Refused, "refused"),
                Seen::Connected,
                Seen::Serving,
            ]
        );
        assert!(base * 2 <= ms(250), "the test's waits stay short");
    }

    #[tokio::test]
    async fn cancelling_stops_a_connect_a_wait_and_a_serving_link() {
        // While connecting.
        let mut link = Scripted::new(vec![Step::Hang]);
        let cancel = CancellationToken::new();
        cancel.cancel();
        tokio::time::timeout(TEST_TIMEOUT, run(&mut link, &cancel))
            .await
            .expect("stopped while connecting");
        assert_eq!(link.seen(), vec![Seen::Connecting]);

        // While waiting out a long backoff: nothing reported after the cancel.
        let timeout = || Failure::new(LinkFailure::Timeout, "slow");
        let steps = (0..20).map(|_| Step::Fail(timeout())).collect();
        let mut link = Scripted::new(steps);
        let seen = link.seen.clone();
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let running = tokio::spawn(async move {
            run(&mut link, &cancel).await;
            link
        });
        // Waits for a positive marker (the fifth retry, due in 800 ms) before cancelling.
        tokio::time::timeout(TEST_TIMEOUT, async {
            while !seen
                .lock()
                .unwrap()
                .iter()
                .any(|s| matches!(s, Seen::Reconnecting(5, ..)))
            {
                tokio::time::sleep(ms(5)).await;
            }
        })
        .await
        .expect("five retries reported");
        stop.cancel();
        let link = tokio::time::timeout(TEST_TIMEOUT, running)
            .await
            .expect("stopped while waiting")
            .unwrap();
        let seen = link.seen();
        assert!(matches!(seen.last(), Some(Seen::Reconnecting(5, ..))), "{seen:?}");

        // While serving: a link with a grace says goodbye first.
        let mut link = Scripted::new(vec![Step::ServeForever]);
        link.grace = Duration::from_secs(5);
        let cancel = link.cancel.clone();
        let seen = link.seen.clone();
        let stop = cancel.clone();
        let running = tokio::spawn(async move { run(&mut link, &cancel).await });
        tokio::time::timeout(TEST_TIMEOUT, async {
            while !seen.lock().unwrap().contains(&Seen::Serving) {
                tokio::time::sleep(ms(5)).await;
            }
        })
        .await
        .expect("serving");
        stop.cancel();
        tokio::time::timeout(TEST_TIMEOUT, running)
            .await
            .expect("stopped while serving")
            .unwrap();
        assert_eq!(
            seen.lock().unwrap().clone(),
            vec![Seen::Connecting, Seen::Connected, Seen::Serving, Seen::Goodbye]
        );
    }
}
