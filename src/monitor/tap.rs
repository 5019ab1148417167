//! The tap: PSUBSCRIBE on the backplane's Redis (or a tap on the demo's in-memory bus), decoded
//! in batches; heartbeat discovery; the PUBSUB census.
