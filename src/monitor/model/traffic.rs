//! The captured stream: ring, filter, pause, and the filtered newest-first view.

#[derive(Debug)]
pub struct Traffic {}

impl Traffic {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        let _ = (max_entries, max_bytes);
        Self {}
    }
}
