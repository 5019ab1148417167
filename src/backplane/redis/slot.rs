//! Redis Cluster key slots: CRC16 (XMODEM) of the key, or of its hash tag (the text between the
//! first `{` and the next `}` when that is not empty), modulo 16384. Pure; used to route sharded
//! channels (SSUBSCRIBE / SPUBLISH) to the shard that owns them.

/// The number of slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection (Redis `crc16.c`).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`, respecting hash tags like Redis's `keyHashSlot`.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS
}

/// Which shard owns each slot: inclusive ranges, each with an index into the caller's shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMap {
    ranges: Vec<(u16, u16, usize)>,
}

impl SlotMap {
    /// A map from `(start, end, shard)` ranges (any order).
    pub fn new(mut ranges: Vec<(u16, u16, usize)>) -> Self {
        ranges.sort_unstable();
        SlotMap { ranges }
    }

    /// The shard that owns `slot`, if any range covers it.
    pub fn owner(&self, slot: u16) -> Option<usize> {
        let i = self.ranges.partition_point(|(start, _, _)| *start <= slot);
        let (start, end, shard) = *self.ranges.get(i.checked_sub(1)?)?;
        (start <= slot && slot <= end).then_some(shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_reference_vector() {
        // The check value of CRC-16/XMODEM, also in Redis's crc16.c.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_match_redis_and_respect_hash_tags() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag is no tag: the whole key is hashed.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        // Only the first tag counts.
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"a{b"), crc16(b"a{b") % SLOTS);
    }

    #[test]
    fn the_map_finds_the_owner_of_every_slot() {
        let map = SlotMap::new(vec![(5461, 10922, 1), (0, 5460, 0), (10923, 16383, 2)]);
        assert_eq!(map.owner(0), Some(0));
        assert_eq!(map.owner(5460), Some(0));
        assert_eq!(map.owner(5461), Some(1));
        assert_eq!(map.owner(16383), Some(2));
        let holes = SlotMap::new(vec![(10, 20, 0)]);
        assert_eq!(holes.owner(9), None);
        assert_eq!(holes.owner(21), None);
        assert_eq!(SlotMap::default().owner(0), None);
    }
}
