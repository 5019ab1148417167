//! One task per watched hub node: monitor WebSocket, RTT, the probe client, test sends.
