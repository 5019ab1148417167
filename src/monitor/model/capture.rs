//! Capture files: JSON Lines and CSV export, JSON Lines import (offline browsing). A JSON Lines
//! capture is one [`TrafficEntry`] per line (payload in base64), optionally preceded by a
//! [`CaptureHeader`] line; the reader accepts both. Pure: works on any `Write` / `BufRead`.

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use super::entry::TrafficEntry;
use super::traffic::hms_utc;
use crate::config::DEFAULT_RING_ENTRIES;

/// The optional first line of a JSON Lines capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureHeader {
    /// Format version (1).
    pub switchboard_capture: u32,
    #[serde(default)]
    pub created_ms: u64,
    #[serde(default)]
    pub prefix: String,
}

/// A capture read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub header: Option<CaptureHeader>,
    /// The newest entries (at most the cap), oldest first.
    pub entries: Vec<TrafficEntry>,
    /// Older entries left out past the cap.
    pub skipped: u64,
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("reading line {line}: {source}")]
    Io { line: u64, source: io::Error },
    #[error("line {line} is not a capture entry: {reason}")]
    BadLine { line: u64, reason: String },
    #[error("the file is empty (no capture entries)")]
    Empty,
}

/// Writes `header` then one JSON object per entry; returns the number of entries written.
pub fn write_jsonl_with_header<'a>(
    header: &CaptureHeader,
    entries: impl Iterator<Item = &'a TrafficEntry>,
    mut w: impl Write,
) -> io::Result<u64> {
    serde_json::to_writer(&mut w, header)?;
    w.write_all(b"\n")?;
    write_jsonl(entries, w)
}

/// Writes one JSON object per entry (no header); returns the number written.
pub fn write_jsonl<'a>(
    entries: impl Iterator<Item = &'a TrafficEntry>,
    mut w: impl Write,
) -> io::Result<u64> {
    let mut n = 0;
    for entry in entries {
        serde_json::to_writer(&mut w, entry)?;
        w.write_all(b"\n")?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

/// The CSV columns, in order.
pub const CSV_HEADER: &str =
    "seq,time_utc,at_ms,channel,kind,hub,scope,method,args,excluded,size,summary,error";

/// Writes a CSV file (RFC 4180: CRLF line ends, fields with `,` `"` CR or LF quoted, quotes
/// doubled) with the [`CSV_HEADER`] row; excluded ids are joined with spaces. Returns the number
/// of entries written.
pub fn write_csv<'a>(entries: impl Iterator<Item = &'a TrafficEntry>, mut w: impl Write) -> io::Result<u64> {
    write!(w, "{CSV_HEADER}\r\n")?;
    let mut n = 0;
    for e in entries {
        let ms = e.at_ms % 1000;
        let fields = [
            e.seq.to_string(),
            format!("{}.{ms:03}", hms_utc(e.at_ms)),
            e.at_ms.to_string(),
            e.channel.clone(),
            e.kind.label().to_string(),
            e.hub.clone().unwrap_or_default(),
            e.scope.clone().unwrap_or_default(),
            e.method.clone().unwrap_or_default(),
            e.args.clone().unwrap_or_default(),
            e.excluded.join(" "),
            e.size.to_string(),
            e.summary.clone(),
            e.error.clone().unwrap_or_default(),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        write!(w, "{}\r\n", row.join(","))?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

/// Reads a JSON Lines capture, keeping the newest [`DEFAULT_RING_ENTRIES`] entries.
pub fn read_jsonl(r: impl BufRead) -> Result<Capture, CaptureError> {
    read_jsonl_capped(r, DEFAULT_RING_ENTRIES)
}

/// Reads a JSON Lines capture, keeping the newest `max` entries (the rest are counted in
/// `skipped`). Blank lines are ignored; any other line that is not an entry (or, first, a header)
/// is an error naming its line number.
pub fn read_jsonl_capped(r: impl BufRead, max: usize) -> Result<Capture, CaptureError> {
    let mut header = None;
    let mut entries = VecDeque::new();
    let mut skipped = 0;
    let mut seen_any = false;
    for (i, line) in r.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|source| CaptureError::Io {
            line: line_no,
            source,
        })?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let bad = |reason: String| CaptureError::BadLine {
            line: line_no,
            reason,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            let looks_csv = text.starts_with("seq,");
            bad(if looks_csv {
                "this looks like a CSV export, not JSON Lines".to_string()
            } else {
                e.to_string()
            })
        })?;
        if !value.is_object() {
            return Err(bad("not a JSON object".to_string()));
        }
        if !seen_any && value.get("switchboard_capture").is_some() {
            header = Some(serde_json::from_value(value).map_err(|e| bad(format!("bad header: {e}")))?);
            seen_any = true;
            continue;
        }
        seen_any = true;
        let entry: TrafficEntry = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        entries.push_back(entry);
        if entries.len() > max {
            entries.pop_front();
            skipped += 1;
        }
    }
    if entries.is_empty() && header.is_none() {
        return Err(CaptureError::Empty);
    }
    Ok(Capture {
        header,
        entries: entries.into(),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::model::EntryKind;

    fn entry(seq: u64, summary: &str) -> TrafficEntry {
        TrafficEntry {
            seq,
            at_ms: 45_296_789,
            channel: "app:H:all".into(),
            size: 3,
            kind: EntryKind::All,
            hub: Some("H".into()),
            scope: None,
            method: Some("Send".into()),
            args: Some(r#"["a,b","say \"hi\""]"#.into()),
            excluded: vec!["c1".into(), "c2".into()],
            summary: summary.into(),
            error: None,
            trace: Some(9),
            gap: None,
            payload: vec![0, 0xff, 0x1e],
        }
    }

    #[test]
    fn jsonl_round_trip_with_and_without_header() {
        let entries = vec![entry(1, "one"), entry(2, "two\nlines")];
        let mut out = Vec::new();
        assert_eq!(write_jsonl(entries.iter(), &mut out).expect("write"), 2);
        let back = read_jsonl(out.as_slice()).expect("read");
        assert_eq!(
            (back.entries, back.header, back.skipped),
            (entries.clone(), None, 0)
        );

        let header = CaptureHeader {
            switchboard_capture: 1,
            created_ms: 5,
            prefix: "app:".into(),
        };
        let mut out = Vec::new();
        write_jsonl_with_header(&header, entries.iter(), &mut out).expect("write");
        out.extend_from_slice(b"\n\n");
        let back = read_jsonl(out.as_slice()).expect("read");
        assert_eq!((back.entries, back.header), (entries, Some(header)));
    }

    #[test]
    fn cap_keeps_the_newest() {
        let entries: Vec<_> = (1..=5).map(|i| entry(i, "x")).collect();
        let mut out = Vec::new();
        write_jsonl(entries.iter(), &mut out).expect("write");
        let back = read_jsonl_capped(out.as_slice(), 2).expect("read");
        assert_eq!(back.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(back.skipped, 3);
    }

    #[test]
    fn corrupt_files_name_the_line() {
        let mut good = Vec::new();
        write_jsonl([entry(1, "a")].iter(), &mut good).expect("write");
        let good = String::from_utf8(good).expect("utf8");
        let cases = [
            (format!("{good}garbage here\n"), 2, ""),
            (format!("{good}{}\n", &good[..good.len() / 2]), 2, ""),
            (format!("{good}{{\"at_ms\":\"soon\",\"channel\":1}}\n"), 2, ""),
            (format!("{good}[1,2]\n"), 2, "not a JSON object"),
            (
                format!(
                    "{good}{{\"seq\":1,\"at_ms\":1,\"channel\":\"c\",\"size\":0,\"kind\":\"all\",\"payload\":\"!!\"}}\n"
                ),
                2,
                "",
            ),
            (format!("{CSV_HEADER}\r\n1,00:00:00.000,0\r\n"), 1, "CSV"),
        ];
        for (text, line, what) in cases {
            match read_jsonl(text.as_bytes()) {
                Err(CaptureError::BadLine { line: l, reason }) => {
                    assert_eq!(l, line, "{text}");
                    assert!(reason.contains(what), "{reason}");
                }
                other => panic!("expected a bad line for {text:?}, got {other:?}"),
            }
        }
        assert!(matches!(read_jsonl(&b""[..]), Err(CaptureError::Empty)));
        assert!(matches!(read_jsonl(&b"\n \n"[..]), Err(CaptureError::Empty)));
        let err = read_jsonl(&b"\xff\xfe\n"[..]).expect_err("not utf8");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn csv_quoting() {
        let mut out = Vec::new();
        assert_eq!(
            write_csv([entry(3, "x, \"y\"\nz")].iter(), &mut out).expect("write"),
            1
        );
        let text = String::from_utf8(out).expect("utf8");
        let mut lines = text.split("\r\n");
        assert_eq!(lines.next(), Some(CSV_HEADER));
        let row = lines.next().expect("row");
        assert!(
            row.starts_with("3,12:34:56.789,45296789,app:H:all,all,H,,Send,"),
            "{row}"
        );
        assert!(
            row.contains(r#","[""a,b"",""say \""hi\""""]",c1 c2,3,"x, ""y"""#),
            "{row}"
        );
        assert!(text.ends_with("z\",\r\n"), "{text}");
    }
}
