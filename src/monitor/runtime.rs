//! [`MonitorHandle`]: the front of the monitor's tasks.

/// The cloneable front of the monitor's tasks.
#[derive(Clone)]
pub struct MonitorHandle {}
