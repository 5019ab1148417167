//! The one way the crate reaches Redis: a connection spec parsed from a URL and flags (`spec`,
//! pure, also shown by the UI), and the connector that opens TCP/TLS connections, authenticates,
//! and finds the servers behind a spec: a single server, a sentinel set's primary, or a
//! cluster's shards (`connect`).
//!
//! Used by `backplane::redis` (the node), `monitor` (the tap, census, lookups), `demo` and `cli`.
//! Uses `tls` and `config` only.

pub mod connect;
pub mod spec;

pub use connect::{ClusterNode, ConnectError, Reached, RedisConnector, Role, Shard, describe, describe_text};
pub use spec::{Addr, ClusterMode, RedisOptions, RedisSpec, SpecError, Topology, redact, without_password};
