//! TODO(helper)

use super::{HubMessage, ProtocolError};

pub fn encode(message: &HubMessage) -> Vec<u8> {
    let _ = message;
    todo!()
}

pub fn decode(body: &[u8]) -> Result<Option<HubMessage>, ProtocolError> {
    let _ = body;
    todo!()
}
