//! One row of the traffic stream: a decoded backplane message, or a gap marker for a time the tap
//! could not see.

use serde::{Deserialize, Serialize};

/// What a message is, from its channel and payload. `label()` is what the table and the filter show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// ASP.NET Core `{hub}:all`.
    All,
    /// ASP.NET Core `{hub}:group:{group}`.
    Group,
    /// ASP.NET Core `{hub}:user:{user}`.
    User,
    /// ASP.NET Core `{hub}:connection:{id}`.
    Connection,
    /// ASP.NET Core `{hub}:internal:groups` (group add/remove commands).
    Groups,
    /// ASP.NET Core `{hub}:internal:ack:{server}`.
    Ack,
    /// ASP.NET Core `{hub}:internal:return:{server}` (client results).
    Return,
    /// SignalR 2 scale-out message (part C), on the single event-key channel.
    Sr2,
    /// A Switchboard node's heartbeat on `{prefix}switchboard:nodes`.
    Heartbeat,
    /// Anything else (shown as text or hex), including payloads that failed to decode.
    Other,
    /// Not a message: the tap was disconnected from `gap.0` to `gap.1`.
    Gap,
}

impl EntryKind {
    pub const ALL: [EntryKind; 11] = [
        EntryKind::All,
        EntryKind::Group,
        EntryKind::User,
        EntryKind::Connection,
        EntryKind::Groups,
        EntryKind::Ack,
        EntryKind::Return,
        EntryKind::Sr2,
        EntryKind::Heartbeat,
        EntryKind::Other,
        EntryKind::Gap,
    ];

    pub fn label(self) -> &'static str {
        match self {
            EntryKind::All => "all",
            EntryKind::Group => "group",
            EntryKind::User => "user",
            EntryKind::Connection => "connection",
            EntryKind::Groups => "groups",
            EntryKind::Ack => "ack",
            EntryKind::Return => "return",
            EntryKind::Sr2 => "signalr2",
            EntryKind::Heartbeat => "heartbeat",
            EntryKind::Other => "other",
            EntryKind::Gap => "gap",
        }
    }

    /// The kind whose [`label`](Self::label) (or capture-file name, e.g. `sr2`) is `text`,
    /// ignoring ASCII case: how a command line names a kind (`switchboard tap --kind group`).
    pub fn from_label(text: &str) -> Option<EntryKind> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("sr2") {
            // The serde name differs from the label for this one only.
            return Some(EntryKind::Sr2);
        }
        EntryKind::ALL
            .into_iter()
            .find(|k| k.label().eq_ignore_ascii_case(text))
    }
}

/// One decoded message (or gap). Built by `monitor::decode` off the UI thread; `seq` is set by
/// the traffic ring when it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficEntry {
    /// Position in the stream since the dashboard started (or the capture was made); 0 until stored.
    #[serde(default)]
    pub seq: u64,
    /// When the tap received it (unix ms).
    pub at_ms: u64,
    /// The wire channel name, prefix included.
    pub channel: String,
    /// Payload size in bytes.
    pub size: usize,
    pub kind: EntryKind,
    /// The hub (ASP.NET Core hub type name, SignalR 2 hub name), when known.
    #[serde(default)]
    pub hub: Option<String>,
    /// The group, user, connection id or server name the message is addressed to, when known.
    #[serde(default)]
    pub scope: Option<String>,
    /// The target method (client method invoked), when the payload is an invocation.
    #[serde(default)]
    pub method: Option<String>,
    /// The arguments as compact JSON text.
    #[serde(default)]
    pub args: Option<String>,
    /// Connection ids excluded from delivery.
    #[serde(default)]
    pub excluded: Vec<String>,
    /// One line for the table ("ReceiveMessage(\"ann\", \"hi\")", "add conn1 to room", ...).
    #[serde(default)]
    pub summary: String,
    /// Why the payload could not be decoded, if it could not.
    #[serde(default)]
    pub error: Option<String>,
    /// The trace id of a dashboard test message found in the arguments.
    #[serde(default)]
    pub trace: Option<u64>,
    /// For `EntryKind::Gap`: the outage (unix ms from, to).
    #[serde(default)]
    pub gap: Option<(u64, u64)>,
    /// The raw payload (hex in the detail pane; base64 in capture files).
    #[serde(default, with = "payload_b64")]
    pub payload: Vec<u8>,
}

impl TrafficEntry {
    /// A gap marker stamped `at_ms`: the tap saw nothing from `from_ms` to `to_ms` (unix ms).
    pub fn gap_marker(from_ms: u64, to_ms: u64, at_ms: u64) -> Self {
        let mut entry = TrafficEntry::new(at_ms, "", EntryKind::Gap, Vec::new());
        entry.summary = format!("no data {} to {}", hms_utc(from_ms), hms_utc(to_ms));
        entry.gap = Some((from_ms, to_ms));
        entry
    }

    /// An entry with nothing decoded yet: `kind`, the channel, the payload and its size.
    pub fn new(at_ms: u64, channel: impl Into<String>, kind: EntryKind, payload: Vec<u8>) -> Self {
        TrafficEntry {
            seq: 0,
            at_ms,
            channel: channel.into(),
            size: payload.len(),
            kind,
            hub: None,
            scope: None,
            method: None,
            args: None,
            excluded: Vec::new(),
            summary: String::new(),
            error: None,
            trace: None,
            gap: None,
            payload,
        }
    }
}

mod payload_b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// `HH:MM:SS` (UTC) of a unix-ms time.
pub fn hms_utc(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_by_its_label_and_its_capture_name() {
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::from_label(kind.label()), Some(kind));
            assert_eq!(EntryKind::from_label(&kind.label().to_uppercase()), Some(kind));
            let name = serde_json::to_value(kind).expect("serialize");
            assert_eq!(
                EntryKind::from_label(name.as_str().expect("a string")),
                Some(kind)
            );
        }
        assert_eq!(EntryKind::from_label("grp"), None);
        assert_eq!(EntryKind::from_label(""), None);
    }

    #[test]
    fn a_gap_marker_says_when() {
        let gap = TrafficEntry::gap_marker(1_000, 5_000, 5_001);
        assert_eq!(
            (gap.kind, gap.gap, gap.at_ms),
            (EntryKind::Gap, Some((1_000, 5_000)), 5_001)
        );
        assert_eq!(gap.summary, "no data 00:00:01 to 00:00:05");
    }
}
