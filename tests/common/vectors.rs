//! Loads the byte-exact test vectors (tests/data/vectors.json, a copy of
//! ../shared/protocol/vectors.json, kept in the repository so CI needs nothing beside it).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Vector {
    pub id: String,
    pub category: String,
    pub hex: String,
    pub length: usize,
    #[serde(default)]
    pub derived: bool,
    #[serde(default)]
    pub framed_hex: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub ticks: Option<serde_json::Value>,
    #[serde(default)]
    pub description: String,
}

impl Vector {
    pub fn bytes(&self) -> Vec<u8> {
        hex_decode(&self.hex)
    }

    pub fn framed_bytes(&self) -> Option<Vec<u8>> {
        self.framed_hex.as_deref().map(hex_decode)
    }
}

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

pub const VECTORS_JSON: &str = include_str!("../data/vectors.json");

/// Every vector of the file.
pub fn all() -> Vec<Vector> {
    let file: File = serde_json::from_str(VECTORS_JSON).expect("tests/data/vectors.json parses");
    for v in &file.vectors {
        assert_eq!(v.hex.len(), v.length * 2, "vector {} length field", v.id);
    }
    file.vectors
}

/// The vectors of one category (e.g. "json-hub").
pub fn category(name: &str) -> Vec<Vector> {
    let found: Vec<Vector> = all().into_iter().filter(|v| v.category == name).collect();
    assert!(!found.is_empty(), "no vectors in category {name}");
    found
}

/// One vector by id.
pub fn get(id: &str) -> Vector {
    all()
        .into_iter()
        .find(|v| v.id == id)
        .unwrap_or_else(|| panic!("no vector {id}"))
}

pub fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
