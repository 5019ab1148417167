//! A minimal incremental RESP2 reader and command writer for our own Redis connections: the
//! classic link's subscriber and publisher, and the sharded subscribers (redis-rs 1.8's `PubSub`
//! has no SSUBSCRIBE). Incomplete input is `Ok(None)` (read more and call again); nothing is
//! consumed until a whole value is there. Declared lengths are checked against [`MAX_BULK`]
//! before anything is allocated. Pure: no I/O.

use std::ops::Range;

use bytes::Bytes;

/// The largest bulk string accepted: Redis's own limit (`proto-max-bulk-len`, 512 MB).
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// The largest array accepted (a subscriber only ever sees 3-element arrays).
const MAX_ARRAY: usize = 1024;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Bytes>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// A bulk or simple string's bytes.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Resp::Bulk(Some(b)) => Some(b),
            Resp::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

/// Why the bytes are not RESP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad RESP from Redis at byte {offset}: {reason}")]
pub struct RespError {
    pub offset: usize,
    pub reason: String,
}

/// Parses one value from the start of `input`: `Ok(Some((value, bytes used)))`, or `Ok(None)`
/// when more bytes are needed.
pub fn parse(input: &[u8]) -> Result<Option<(Resp, usize)>, RespError> {
    parse_at(input, 0, 0)
}

fn bad(offset: usize, reason: impl Into<String>) -> RespError {
    RespError {
        offset,
        reason: reason.into(),
    }
}

/// The line starting at `at` (without CRLF) and the offset after it.
fn line(input: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = input.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn number(text: &[u8], offset: usize) -> Result<i64, RespError> {
    parse_i64(text).ok_or_else(|| bad(offset, "not a number"))
}

/// A decimal integer as `str::parse::<i64>` reads one (an optional sign, then digits only, in
/// range), digit by digit: every RESP length and integer reply goes through here.
fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        let digit = i64::from(d.wrapping_sub(b'0'));
        if digit > 9 {
            return None;
        }
        // Accumulated negatively, so i64::MIN fits.
        value = value.checked_mul(10)?.checked_sub(digit)?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// A bulk string found in place: the range of its bytes (`None` for the null bulk) and where the
/// next value starts.
pub type BulkAt = (Option<Range<usize>>, usize);

/// The bulk string whose `$` is at `at`: the range of its bytes (`None` for the null bulk) and
/// where the next value starts; `Ok(None)` while it is not all there. The declared length is
/// checked against [`MAX_BULK`] first. The subscriber cuts `message` pushes out with it, in place.
pub fn bulk_at(input: &[u8], at: usize) -> Result<Option<BulkAt>, RespError> {
    match input.get(at) {
        None => return Ok(None),
        Some(b'$') => {}
        Some(_) => return Err(bad(at, "not a bulk string")),
    }
    let Some((text, next)) = line(input, at + 1) else {
        return Ok(None);
    };
    let len = number(text, at + 1)?;
    if len < 0 {
        return Ok(Some((None, next)));
    }
    let len = usize::try_from(len).map_err(|_| bad(at + 1, "bulk length"))?;
    if len > MAX_BULK {
        return Err(bad(at + 1, format!("bulk of {len} bytes is over the limit")));
    }
    let end = next + len;
    if input.len() < end + 2 {
        return Ok(None);
    }
    if &input[end..end + 2] != b"\r\n" {
        return Err(bad(end, "bulk not followed by CRLF"));
    }
    Ok(Some((Some(next..end), end + 2)))
}

fn parse_at(input: &[u8], at: usize, depth: usize) -> Result<Option<(Resp, usize)>, RespError> {
    if depth > 4 {
        return Err(bad(at, "arrays nested too deep"));
    }
    let Some(&kind) = input.get(at) else {
        return Ok(None);
    };
    if kind == b'$' {
        return Ok(bulk_at(input, at)?.map(|(range, after)| {
            let bulk = range.map(|r| Bytes::copy_from_slice(&input[r]));
            (Resp::Bulk(bulk), after)
        }));
    }
    let Some((text, next)) = line(input, at + 1) else {
        return Ok(None);
    };
    let string = || String::from_utf8_lossy(text).into_owned();
    match kind {
        b'+' => Ok(Some((Resp::Simple(string()), next))),
        b'-' => Ok(Some((Resp::Error(string()), next))),
        b':' => Ok(Some((Resp::Int(number(text, at + 1)?), next))),
        b'*' => {
            let count = number(text, at + 1)?;
            if count < 0 {
                return Ok(Some((Resp::Array(None), next)));
            }
            let count = usize::try_from(count).map_err(|_| bad(at + 1, "array length"))?;
            if count > MAX_ARRAY {
                return Err(bad(at + 1, format!("array of {count} items is over the limit")));
            }
            let mut items = Vec::with_capacity(count);
            let mut pos = next;
            for _ in 0..count {
                match parse_at(input, pos, depth + 1)? {
                    Some((item, after)) => {
                        items.push(item);
                        pos = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(Some(items)), pos)))
        }
        other => Err(bad(at, format!("unknown type byte {other:#04x}"))),
    }
}

/// A command as a RESP array of bulk strings: the crate's one RESP command encoder (the sharded
/// subscriber's SSUBSCRIBE, the classic link's SUBSCRIBE, and the tests' raw Redis clients).
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    append_command(&mut out, args);
    out
}

/// [`command`] appended to a buffer (the publisher's pipeline), the lengths written without the
/// formatting machinery: this runs once per published message.
pub fn append_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let header = |out: &mut Vec<u8>, kind: u8, n: usize| {
        out.push(kind);
        crate::protocol::write_decimal(out, n as u64);
        out.extend_from_slice(b"\r\n");
    };
    header(out, b'*', args.len());
    for arg in args {
        header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn integers_are_read_as_str_parse_reads_them() {
        for text in [
            "0",
            "7",
            "-1",
            "+5",
            "42",
            "-0",
            "007",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "",
            "-",
            "+",
            "1a",
            " 1",
            "1 ",
            "--1",
            "+-1",
            "12345678901234567890",
        ] {
            assert_eq!(
                super::parse_i64(text.as_bytes()),
                text.parse::<i64>().ok(),
                "{text:?}"
            );
        }
    }

    use super::*;

    fn bulk(s: &str) -> Resp {
        Resp::Bulk(Some(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn a_message_is_parsed_only_once_complete() {
        let frame = b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
        for cut in 0..frame.len() {
            assert_eq!(parse(&frame[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (value, used) = parse(frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(
            value,
            Resp::Array(Some(vec![bulk("smessage"), bulk("ch"), bulk("hello")]))
        );
    }

    #[test]
    fn every_kind_and_what_follows_is_left_alone() {
        let input = b"+OK\r\n-MOVED 3999 127.0.0.1:6381\r\n:7\r\n$-1\r\n*-1\r\n$0\r\n\r\nrest";
        let mut at = 0;
        let mut seen = Vec::new();
        while let Some((value, used)) = parse(&input[at..]).unwrap() {
            seen.push(value);
            at += used;
        }
        assert_eq!(
            seen,
            vec![
                Resp::Simple("OK".into()),
                Resp::Error("MOVED 3999 127.0.0.1:6381".into()),
                Resp::Int(7),
                Resp::Bulk(None),
                Resp::Array(None),
                bulk(""),
            ]
        );
        assert_eq!(&input[at..], b"rest");
    }

    #[test]
    fn binary_payloads_keep_their_bytes() {
        let frame = b"$4\r\n\x00\r\n\xff\r\n";
        let (value, _) = parse(frame).unwrap().unwrap();
        assert_eq!(value.bytes(), Some(&b"\x00\r\n\xff"[..]));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":abc\r\n").is_err());
        assert!(parse(b"$3\r\nabcXY").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
        assert!(parse(b"*99999999\r\n").is_err());
        assert!(parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n").is_err());
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            command(&[b"SSUBSCRIBE", b"ch"]),
            b"*2\r\n$10\r\nSSUBSCRIBE\r\n$2\r\nch\r\n"
        );
        assert_eq!(command(&[b""]), b"*1\r\n$0\r\n\r\n");
        let mut out = b"*0\r\n".to_vec();
        let long = vec![b'x'; 1_234_567];
        append_command(&mut out, &[&long]);
        assert!(out.starts_with(b"*0\r\n*1\r\n$1234567\r\nxxx") && out.ends_with(b"xx\r\n"));
        assert_eq!(out.len(), 4 + 4 + 10 + 1_234_567 + 2);
    }
}
