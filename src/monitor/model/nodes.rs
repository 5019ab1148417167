//! The node table.

#[derive(Debug, Default)]
pub struct Nodes {}
