//! The nodes a watcher has seen on one backplane (a Redis and a channel prefix), remembered
//! between runs in a small JSON file, so that a node that stops answering is missed instead of
//! forgotten: `switchboard check` reports a node seen before and missing now (`node-gone`), and
//! `switchboard agent` keeps the same file.
//!
//! The API is four calls: [`load`] (a missing file is an empty set; an unreadable or corrupt one
//! is an error the caller turns into a warning before starting afresh), [`KnownNodes::observe`]
//! (this run's nodes in, the nodes known before and missing now out), [`KnownNodes::forget`], and
//! [`save`] (a temporary file renamed over the old one, so a crash never leaves half a file).
//! Bounded: at most [`config::DEFAULT_KNOWN_NODES_MAX`] nodes, the longest unseen dropped first.
//!
//! Pure but for the two file calls; time is passed in. Uses `config` and serde only; used by
//! `check` (and `agent`), never by `hub`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config;

/// The file format's version; a file with another version is read as corrupt (and replaced).
const FORMAT_VERSION: u32 = 1;

/// The largest state file read: 256 nodes take ~60 KiB; anything much larger is not ours.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// One node seen in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// What the node calls itself (its `--name`), or its hub URL when it does not say.
    pub name: String,
    /// Its hub URL: the identity a node keeps across runs.
    pub hub_url: String,
}

/// One node remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownNode {
    pub name: String,
    pub hub_url: String,
    /// Unix ms of the first run that saw it.
    pub first_seen_ms: u64,
    /// Unix ms of the latest run that saw it.
    pub last_seen_ms: u64,
}

/// The nodes remembered for one backplane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownNodes {
    version: u32,
    nodes: Vec<KnownNode>,
}

/// Why the state file could not be read or written. Never repeats the file's content.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a known-nodes file ({why})")]
    Corrupt { path: PathBuf, why: String },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Normalized hub URL: no trailing slash, so `…/chat/` and `…/chat` are one node.
fn key(url: &str) -> &str {
    url.trim_end_matches('/')
}

impl KnownNodes {
    /// The nodes remembered, the longest known first.
    pub fn nodes(&self) -> &[KnownNode] {
        &self.nodes
    }

    /// Records this run's nodes (new ones are added, known ones refreshed) and returns the nodes
    /// known before and missing from `seen`, the longest unseen first. They stay remembered
    /// until seen again or forgotten; past the bound the longest unseen are dropped.
    pub fn observe(&mut self, seen: &[Seen], now_ms: u64) -> Vec<KnownNode> {
        for s in seen {
            let url = key(&s.hub_url);
            if url.is_empty() {
                continue;
            }
            match self.nodes.iter_mut().find(|n| n.hub_url == url) {
                Some(known) => {
                    known.last_seen_ms = known.last_seen_ms.max(now_ms);
                    if !s.name.is_empty() {
                        known.name = s.name.clone();
                    }
                }
                None => self.nodes.push(KnownNode {
                    name: if s.name.is_empty() {
                        url.to_string()
                    } else {
                        s.name.clone()
                    },
                    hub_url: url.to_string(),
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                }),
            }
        }
        self.bound();
        let mut gone: Vec<KnownNode> = self
            .nodes
            .iter()
            .filter(|n| !seen.iter().any(|s| key(&s.hub_url) == n.hub_url))
            .cloned()
            .collect();
        gone.sort_by_key(|n| n.last_seen_ms);
        gone
    }

    /// Forgets every node whose name or hub URL is `what`; returns them.
    pub fn forget(&mut self, what: &str) -> Vec<KnownNode> {
        let what = what.trim();
        let (forgotten, kept): (Vec<KnownNode>, Vec<KnownNode>) = std::mem::take(&mut self.nodes)
            .into_iter()
            .partition(|n| n.name == what || n.hub_url == key(what));
        self.nodes = kept;
        forgotten
    }

    /// Drops the longest unseen nodes beyond the bound.
    fn bound(&mut self) {
        let max = config::DEFAULT_KNOWN_NODES_MAX;
        if self.nodes.len() > max {
            self.nodes
                .sort_by_key(|n| std::cmp::Reverse((n.last_seen_ms, n.first_seen_ms)));
            self.nodes.truncate(max);
        }
        self.nodes.sort_by_key(|n| (n.first_seen_ms, n.last_seen_ms));
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        let doc = KnownNodes {
            version: FORMAT_VERSION,
            nodes: self.nodes.clone(),
        };
        // A struct of strings and integers always serializes.
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }

    /// Reads a file's text; anything but this format's version is an error (`why`).
    pub fn from_json(text: &str) -> Result<KnownNodes, String> {
        let mut doc: KnownNodes = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if doc.version != FORMAT_VERSION {
            return Err(format!(
                "format version {}, expected {FORMAT_VERSION}",
                doc.version
            ));
        }
        doc.nodes.retain(|n| !n.hub_url.is_empty());
        for n in &mut doc.nodes {
            n.hub_url = key(&n.hub_url).to_string();
        }
        doc.bound();
        Ok(doc)
    }
}

/// Reads the state file: a missing file is an empty set (the first run).
pub fn load(path: &Path) -> Result<KnownNodes, StateError> {
    let read = std::fs::File::open(path).and_then(|f| {
        use std::io::Read;
        let mut text = String::new();
        f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map(|_| text)
    });
    let text = match read {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KnownNodes::default()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(StateError::Corrupt {
                path: path.to_path_buf(),
                why: "not UTF-8".to_string(),
            });
        }
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            why: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    KnownNodes::from_json(&text).map_err(|why| StateError::Corrupt {
        path: path.to_path_buf(),
        why,
    })
}

/// Writes the state file atomically: a temporary file beside it (its folder created when
/// missing), flushed, then renamed over the old one.
pub fn save(path: &Path, nodes: &KnownNodes) -> Result<(), StateError> {
    let write_err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(nodes.to_json().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    Ok(())
}

/// The default state file of a backplane: `{state dir}/switchboard/known-nodes-{hash}.json`, the
/// hash (FNV-1a, 64 bits: stable across builds) over the redacted Redis address and the prefix,
/// so the password never reaches a file name. The state dir is `$XDG_STATE_HOME`, else
/// `$HOME/.local/state`; `None` when neither is set.
pub fn default_path(redacted_redis: &str, prefix: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("state"))
        })?;
    Some(
        base.join("switchboard")
            .join(format!("known-nodes-{:016x}.json", fnv1a(redacted_redis, prefix))),
    )
}

/// FNV-1a over `redis`, a zero byte, and `prefix`.
fn fnv1a(redis: &str, prefix: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in redis.bytes().chain([0u8]).chain(prefix.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(name: &str, url: &str) -> Seen {
        Seen {
            name: name.into(),
            hub_url: url.into(),
        }
    }

    #[test]
    fn a_node_seen_before_and_missing_now_is_gone_until_seen_again() {
        let mut k = KnownNodes::default();
        let a = seen("a", "http://h:1/chat");
        let b = seen("b", "http://h:2/chat/");
        assert!(k.observe(&[a.clone(), b.clone()], 100).is_empty());
        let gone = k.observe(std::slice::from_ref(&a), 200);
        assert_eq!(gone.len(), 1);
        assert_eq!(
            (gone[0].name.as_str(), gone[0].hub_url.as_str()),
            ("b", "http://h:2/chat")
        );
        assert_eq!((gone[0].first_seen_ms, gone[0].last_seen_ms), (100, 100));
        // Still gone on the next run; back once seen (with or without the trailing slash).
        assert_eq!(k.observe(std::slice::from_ref(&a), 300).len(), 1);
        assert!(k.observe(&[a, seen("b", "http://h:2/chat")], 400).is_empty());
        assert_eq!(k.nodes()[1].last_seen_ms, 400);
        assert_eq!(k.nodes()[1].first_seen_ms, 100);
    }

    #[test]
    fn forget_by_name_or_hub_url() {
        let mut k = KnownNodes::default();
        k.observe(&[seen("a", "http://h:1/chat"), seen("", "http://h:2/chat")], 1);
        assert_eq!(k.nodes()[1].name, "http://h:2/chat", "no name: the URL stands in");
        assert_eq!(k.forget("a").len(), 1);
        assert_eq!(k.forget("http://h:2/chat/").len(), 1);
        assert!(k.forget("nobody").is_empty());
        assert!(k.observe(&[], 2).is_empty());
    }

    #[test]
    fn the_set_is_bounded_and_drops_the_longest_unseen() {
        let mut k = KnownNodes::default();
        let max = config::DEFAULT_KNOWN_NODES_MAX;
        for i in 0..max + 10 {
            k.observe(&[seen("", &format!("http://h:{i}/chat"))], i as u64);
        }
        assert_eq!(k.nodes().len(), max);
        assert!(
            k.nodes().iter().all(|n| n.last_seen_ms >= 10),
            "the oldest went first"
        );
    }

    #[test]
    fn json_round_trips_and_rejects_what_is_not_ours() {
        let mut k = KnownNodes::default();
        k.observe(&[seen("a", "http://h:1/chat")], 5);
        let back = KnownNodes::from_json(&k.to_json()).unwrap();
        assert_eq!(back.nodes(), k.nodes());
        assert!(KnownNodes::from_json("{").is_err());
        assert!(KnownNodes::from_json("[]").is_err());
        assert!(KnownNodes::from_json(r#"{"version":9,"nodes":[]}"#).is_err());
    }

    #[test]
    fn files_load_save_and_survive_corruption() {
        let dir = std::env::temp_dir().join(format!("sb-known-{}", std::process::id()));
        let path = dir.join("sub").join("k.json");
        assert_eq!(load(&path).unwrap(), KnownNodes::default(), "missing: empty");
        let mut k = KnownNodes::default();
        k.observe(&[seen("a", "http://h:1/chat")], 5);
        save(&path, &k).unwrap();
        assert_eq!(load(&path).unwrap().nodes(), k.nodes());
        std::fs::write(&path, b"\xff\xfe garbage").unwrap();
        assert!(matches!(load(&path), Err(StateError::Corrupt { .. })));
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(load(&path), Err(StateError::Corrupt { .. })));
        // Saving over a corrupt file replaces it.
        save(&path, &k).unwrap();
        assert_eq!(load(&path).unwrap().nodes(), k.nodes());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_default_name_hashes_address_and_prefix_never_the_password() {
        let a = fnv1a("redis://:***@h:6379", "p:");
        assert_eq!(a, fnv1a("redis://:***@h:6379", "p:"));
        assert_ne!(a, fnv1a("redis://:***@h:6379", "q:"));
        assert_ne!(fnv1a("ab", "c"), fnv1a("a", "bc"));
    }
}
