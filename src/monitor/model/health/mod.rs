//! Health: findings about the backplane and its nodes, each with a severity, the evidence (the
//! numbers, the channels) and what to do, computed by one pure function, [`evaluate`], from a plain
//! [`HealthInputs`] that the dashboard (tap, census, heartbeats, node stats) and `switchboard check`
//! (one round of `PUBSUB`, `CLIENT LIST`, node stats and a canary message) both fill.
//!
//! Pure: std and serde only, no clock (`now_ms` is an input), no I/O. [`RefreshGate`] keeps the
//! caller from recomputing (and re-querying Redis) more often than every [`MIN_REFRESH`].
//!
//! The rules, one function each, in the order of [`evaluate`]:
//! - `redis-unreachable`: the observer could not talk to Redis;
//! - `servers`: servers per hub from ack/return channels, heartbeats and `NUMSUB` of `:all` and
//!   `:internal:groups`;
//! - `deaf-server`: ack channels subscribed by more servers than `{hub}:all` counts subscribers;
//! - `output-buffer`: a pub/sub client near `client-output-buffer-limit pubsub`;
//! - `foreign-channel`: backplane-shaped channels under another prefix or an unknown hub name;
//! - `pattern-group`: group names with `*`, `?` or `[` (ASP.NET Core subscribes them as patterns);
//! - `node-unreachable`, `backplane-down`: a node that does not answer, or whose Redis link is down;
//!   `stopped`: a node stopped on purpose (info); `needs-token`: a node that answers but requires
//!   a token the dashboard withholds (not trusted: info) or lacks (trusted: warning);
//! - `outage`: a past outage (the tap, nodes or their backplane links down in the same window,
//!   merged into one incident) with its start, end and length and who is to blame, info until
//!   [`HealthInputs::outage_memory_ms`] after it ended (an outage under way is the critical
//!   findings above);
//! - `tap-gap`: windows in which the observer itself saw nothing;
//! - `silent-node`: a node whose clients received nothing while the backplane carried its hub;
//! - `canary`: a test message sent through one node and not received on another;
//! - `sr2-gap`, `sr2-regression`, `sr2-total`: SignalR 2 message ids (SIGNALR-WIRE.md C.2).

//!
//! Files: `finding` (what the rules say), `inputs` (what they look at), `rules`, `adapter` (the
//! dashboard's inputs from its model), `gate` (evaluations and their pace), `outage` (past
//! outages and their culprit) and `ack` (acknowledgements).

mod ack;
mod adapter;
mod finding;
mod gate;
mod inputs;
mod outage;
#[cfg(test)]
mod rule_tests;
mod rules;
#[cfg(test)]
mod tests;

pub use ack::{ACK_NOTE_MAX_CHARS, Ack, AckKey, Acks};
pub use adapter::*;
pub use finding::*;
pub use gate::*;
pub use inputs::*;
pub use outage::{OUTAGE_MERGE_SLACK_MS, OutageLink, OutageSpan};
pub use rules::*;
