//! Message and byte rates per channel kind and per hub.

#[derive(Debug, Default)]
pub struct Rates {}

impl Rates {
    pub fn new() -> Self {
        Self {}
    }
}
