//! Counters of one node, updated lock-free on the hot paths and read by the monitor endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters (and two gauges). `Relaxed` everywhere: each is read on its own, for display.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Hub messages received from clients (invocations, pings, ...).
    pub client_in: AtomicU64,
    /// Hub messages written to clients' outbound queues.
    pub client_out: AtomicU64,
    /// System calls that wrote to plain-TCP client sockets: a `send` or a vectored `sendmsg`
    /// (one connection), or one io_uring submission (many), for deliveries and control frames
    /// (the handshake answer, pings) alike. Below `client_out` when writes are batched. HTTPS
    /// connections are written by their TLS stream and are not counted.
    pub client_writes: AtomicU64,
    /// Messages received from the backplane.
    pub backplane_in: AtomicU64,
    /// Messages published to the backplane.
    pub backplane_out: AtomicU64,
    /// Publishes that failed (backplane down or error): remote clients missed these.
    pub forward_failures: AtomicU64,
    /// Messages for one remote connection that Redis accepted but no node had subscribed (the
    /// connection is gone, or its node had not resubscribed yet after a Redis restart).
    pub forward_unreached: AtomicU64,
    /// Clients disconnected because their outbound queue was full.
    pub slow_client_disconnects: AtomicU64,
    /// Connections closed for a protocol error (bad frame, too large, bad handshake).
    pub protocol_errors: AtomicU64,
    /// Requests refused with 503 (too many pending negotiations).
    pub rejected_connections: AtomicU64,
    /// TCP connections closed at once because the node was at its connection cap.
    pub refused_connections: AtomicU64,
    /// TCP connections closed at once because their IP address was at the per-IP cap.
    pub refused_per_ip: AtomicU64,
    /// Invocations refused with a HubException because their connection was past its rate.
    pub invocations_limited: AtomicU64,
    /// TLS handshakes that failed or timed out (a plain HTTP client on the TLS port, a client
    /// that does not trust the certificate, a socket that never sent a ClientHello).
    pub tls_handshake_failures: AtomicU64,
    /// Backplane payloads that could not be decoded (logged and dropped).
    pub backplane_decode_errors: AtomicU64,
    /// Remote group operations that got no ack in time.
    pub group_ack_timeouts: AtomicU64,
    /// Remote AddToGroup commands for a local connection already in its maximum number of
    /// groups: refused, logged, and not acknowledged (the requester reports a failure).
    pub remote_group_refusals: AtomicU64,
    /// Connections accepted since start.
    pub connections_accepted: AtomicU64,
    /// Live connections using JSON (gauge).
    pub connections_json: AtomicU64,
    /// Live connections using MessagePack (gauge).
    pub connections_messagepack: AtomicU64,
}

impl Stats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
