//! The JSON protocol's common case, read without serde: an invocation (type 1) or a ping (type 6)
//! whose properties are `type`, `target`, `invocationId`, `arguments` and `streamIds` only, each
//! at most once, with string arguments and no escape in any string. That is what the official
//! clients send for a chat message.
//!
//! Anything else, valid or not, is not this reader's: it answers `None`, and `json::decode` reads
//! the message in full (with its exact error text for a bad one). So whatever this reader
//! accepts, it reads as `json::decode` does (json.rs's tests hold the two to it).
//!
//! Also here: `needs_escape`, the eight-bytes-at-a-time test for a byte that ends or escapes a
//! JSON string, which json.rs's string writer uses too.

use super::message::{HubMessage, Value};

/// The message, when it is of the common shape; `None` for anything else.
pub(super) fn decode(body: &[u8]) -> Option<HubMessage> {
    // Checked once for the whole body (a word at a time where it is ASCII), not string by
    // string: the strings are then slices of it.
    let text = std::str::from_utf8(body).ok()?;
    let mut scan = Scan {
        text,
        bytes: body,
        at: 0,
    };
    let mut message_type = None;
    let mut target: Option<&str> = None;
    let mut invocation_id: Option<&str> = None;
    let mut arguments: Option<Vec<Value>> = None;
    let mut stream_ids: Option<Vec<String>> = None;
    scan.eat(b'{')?;
    loop {
        let key = scan.string()?;
        scan.eat(b':')?;
        match key {
            "type" if message_type.is_none() => message_type = Some(scan.small_int()?),
            "target" if target.is_none() => target = Some(scan.string()?),
            "invocationId" if invocation_id.is_none() => invocation_id = Some(scan.string()?),
            "arguments" if arguments.is_none() => {
                let mut values = Vec::new();
                scan.strings(|s| values.push(Value::from(s)))?;
                arguments = Some(values);
            }
            "streamIds" if stream_ids.is_none() => {
                let mut ids = Vec::new();
                scan.strings(|s| ids.push(s.to_owned()))?;
                stream_ids = Some(ids);
            }
            _ => return None,
        }
        match scan.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    scan.skip_space();
    if scan.at != body.len() {
        return None;
    }
    match message_type? {
        1 => Some(HubMessage::Invocation {
            headers: Vec::new(),
            invocation_id: invocation_id.filter(|id| !id.is_empty()).map(str::to_owned),
            target: target.filter(|t| !t.is_empty())?.to_owned(),
            arguments: arguments?,
            stream_ids,
        }),
        6 => Some(HubMessage::Ping),
        _ => None,
    }
}

/// Whether any of the eight bytes of `word` is `"`, `\\` or a control character (below 0x20):
/// the usual has-zero-byte test, on the word XOR each character and on the word less 0x20.
/// Exact about whether one is there (which one, the byte loop finds).
pub(super) fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    (below(word ^ (ONES * u64::from(b'"')), 1)
        | below(word ^ (ONES * u64::from(b'\\')), 1)
        | below(word, 0x20))
        != 0
}

/// A cursor over the body.
struct Scan<'a> {
    text: &'a str,
    /// `text`'s bytes.
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after any whitespace.
    fn next(&mut self) -> Option<u8> {
        self.skip_space();
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let rest = &self.bytes[start..];
        // Eight bytes at a time while none ends the string or needs escaping.
        let mut len = 0;
        while let Some(word) = rest.get(len..len + 8) {
            if needs_escape(u64::from_le_bytes(word.try_into().unwrap_or_default())) {
                break;
            }
            len += 8;
        }
        len += rest[len..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Both ends are next to a quote, so on character boundaries.
        self.text.get(start..start + len)
    }

    /// A one-digit message type (every type SignalR defines is one digit).
    fn small_int(&mut self) -> Option<u8> {
        let digit = self.next()?;
        if !digit.is_ascii_digit()
            || self
                .bytes
                .get(self.at)
                .is_some_and(|b| b.is_ascii_digit() || *b == b'.' || *b == b'e' || *b == b'E')
        {
            return None;
        }
        Some(digit - b'0')
    }

    /// An array of strings, each handed to `each`.
    fn strings(&mut self, mut each: impl FnMut(&'a str)) -> Option<()> {
        self.eat(b'[')?;
        self.skip_space();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            return Some(());
        }
        loop {
            each(self.string()?);
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// What the official clients send, and shapes around it.
    pub(in crate::protocol) const COMMON: &[&str] = &[
        r#"{"arguments":["alice","hello"],"invocationId":"0","target":"SendMessage","type":1}"#,
        r#"{"arguments":["alice","hello"],"target":"SendMessage","type":1}"#,
        r#"{"type":1,"target":"SendMessage","arguments":["alice","hello"],"streamIds":[]}"#,
        r#"{"type":1,"invocationId":"","target":"JoinGroup","arguments":["room"]}"#,
        r#" { "type" : 1 , "target" : "Echo" , "arguments" : [ ] } "#,
        r#"{"type":1,"target":"SendMessage","arguments":["ünï","😀 text"],"streamIds":["1","2"]}"#,
        r#"{"type":6}"#,
        r#"{"type":6,"target":"x"}"#,
    ];

    /// Not this reader's: it must answer None (the full decoder reads or refuses them).
    const OTHER: &[&str] = &[
        r#"{"type":1,"target":"SendMessage","arguments":["a\"b","c"]}"#,
        r#"{"type":1,"target":"SendMessage","arguments":["a\u0041","c"]}"#,
        r#"{"type":1,"target":"SendMessage","arguments":[1,"c"]}"#,
        r#"{"type":1,"target":"SendMessage","arguments":[null]}"#,
        r#"{"type":1,"target":"SendMessage","arguments":[{"a":1}]}"#,
        r#"{"type":1,"target":"","arguments":[]}"#,
        r#"{"type":1,"arguments":[]}"#,
        r#"{"type":1,"target":"X"}"#,
        r#"{"type":1,"type":1,"target":"X","arguments":[]}"#,
        r#"{"type":1,"target":"X","target":"Y","arguments":[]}"#,
        r#"{"type":1,"target":"X","arguments":[],"headers":{"a":"b"}}"#,
        r#"{"type":10,"target":"X","arguments":[]}"#,
        r#"{"type":1.0,"target":"X","arguments":[]}"#,
        r#"{"type":1e0,"target":"X","arguments":[]}"#,
        r#"{"type":"1","target":"X","arguments":[]}"#,
        r#"{"type":3,"invocationId":"1"}"#,
        r#"{"type":7}"#,
        r#"{"type":1,"target":"X","arguments":[]}x"#,
        r#"{"type":1,"target":"X","arguments":[],}"#,
        r#"{"type":1,"target":"X","arguments":["a",]}"#,
        r#"{"type":1,"target":"X","arguments":["a"}"#,
        r#"{"type":1,"target":"X","arguments":["a"]"#,
        r#"{"type":1,"target":"X","arguments":["a	b"]}"#,
        r#"{"type":1,"target":"X","arguments":[],"invocationId":null}"#,
        r#"{}"#,
        r#"[]"#,
        r#""#,
        r#"{"type":1,"target":"X","arguments":[]}}"#,
    ];

    #[test]
    fn anything_else_is_left_to_the_full_decoder() {
        for text in OTHER {
            assert_eq!(decode(text.as_bytes()), None, "read by the fast path: {text}");
        }
        // Invalid UTF-8 inside a string.
        assert_eq!(
            decode(b"{\"type\":1,\"target\":\"X\",\"arguments\":[\"\xff\"]}"),
            None
        );
    }
}
