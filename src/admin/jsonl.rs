//! The tiny JSON the command line needs: one-line records for `dump` / `load` / `scan --json`,
//! objects for `status --json` / `stats --json` / `pagedump --json`, and base64 for bytes that
//! are not UTF-8.
//!
//! Layer: admin (command-line support); calls nothing else in the crate.
//!
//! Record lines (JSON Lines, one object per line):
//! ```text
//! {"tree": "metadata", "key": "node_id", "value": "abc"}
//! {"tree": "metadata", "key_b64": "AP8=", "value_b64": "..."}
//! {"tree": "empty"}
//! ```
//! A line with a tree and neither key nor value names a tree that holds no records (`dump`
//! writes one for each such tree, so that `load` recreates it).
//! Each of `tree`, `key`, `value` is either a JSON string (the bytes are its UTF-8) or, with
//! the suffix `_b64`, standard base64 with padding. The encoder picks the plain form exactly
//! when the bytes are valid UTF-8, so equal contents encode to identical bytes.
//!
//! Invariants: the decoder reads untrusted input; it never panics, never indexes without a
//! check, never recurses (records are flat), and reports the byte column of the first problem.

use std::fmt;

/// A problem in a JSON line: the byte column (from 1) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub column: usize,
    pub what: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.what)
    }
}

impl std::error::Error for JsonError {}

// ---------------------------------------------------------------- encoding

/// Appends `s` as a JSON string literal (quotes included), escaping `"`, `\` and every control
/// character; U+2028 and U+2029 are escaped too, so the output is also valid JavaScript.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

/// Builds one JSON object on one line, fields in the order they are added.
#[derive(Default)]
pub struct Obj {
    buf: String,
}

impl Obj {
    pub fn new() -> Obj {
        Obj { buf: String::from("{") }
    }
    fn key(&mut self, k: &str) {
        if self.buf.len() > 1 {
            self.buf.push_str(", ");
        }
        push_str(&mut self.buf, k);
        self.buf.push_str(": ");
    }
    /// A string field.
    pub fn str(mut self, k: &str, v: &str) -> Obj {
        self.key(k);
        push_str(&mut self.buf, v);
        self
    }
    /// A number field.
    pub fn num(mut self, k: &str, v: impl Into<u64>) -> Obj {
        self.key(k);
        self.buf.push_str(&v.into().to_string());
        self
    }
    /// A decimal number field (finite; non-finite numbers are written as null).
    pub fn float(mut self, k: &str, v: f64) -> Obj {
        self.key(k);
        if v.is_finite() {
            self.buf.push_str(&format!("{v}"));
        } else {
            self.buf.push_str("null");
        }
        self
    }
    pub fn bool(mut self, k: &str, v: bool) -> Obj {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }
    /// Bytes: `k` as a string when they are UTF-8, else `k_b64` as base64.
    pub fn bytes(mut self, k: &str, v: &[u8]) -> Obj {
        match std::str::from_utf8(v) {
            Ok(s) => {
                self.key(k);
                push_str(&mut self.buf, s);
            }
            Err(_) => {
                self.key(&format!("{k}_b64"));
                self.buf.push('"');
                self.buf.push_str(&b64_encode(v));
                self.buf.push('"');
            }
        }
        self
    }
    /// A field whose value is already JSON (an object or array built here).
    pub fn raw(mut self, k: &str, json: &str) -> Obj {
        self.key(k);
        self.buf.push_str(json);
        self
    }
    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// A JSON array of already-encoded values.
pub fn array<I: IntoIterator<Item = String>>(items: I) -> String {
    let mut s = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&item);
    }
    s.push(']');
    s
}

/// One dump / load record. Its `Debug` shows lengths only, as `IVec`'s does: the bytes are
/// user plaintext (CLI review, low).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub tree: Option<Vec<u8>>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("tree_len", &self.tree.as_ref().map(Vec::len))
            .field("key_len", &self.key.len())
            .field("value_len", &self.value.len())
            .finish()
    }
}

impl Record {
    /// The record as one JSON line (without the newline).
    pub fn to_line(&self) -> String {
        let mut o = Obj::new();
        if let Some(t) = &self.tree {
            o = o.bytes("tree", t);
        }
        o.bytes("key", &self.key).bytes("value", &self.value).finish()
    }
}

// ---------------------------------------------------------------- base64

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn b64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| B64[((n >> shift) & 63) as usize] as char;
        s.push(sextet(18));
        s.push(sextet(12));
        s.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        s.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    s
}

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decodes standard base64. Padding is optional, but when present the length must be a
/// multiple of four; characters outside the alphabet are refused, and so are bits set in a
/// final group beyond its bytes (non-canonical: two spellings of one key).
pub fn b64_decode(s: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = s.as_bytes();
    let body = bytes.strip_suffix(b"==").or_else(|| bytes.strip_suffix(b"=")).unwrap_or(bytes);
    if body.len() != bytes.len() && !bytes.len().is_multiple_of(4) {
        return Err("base64 padding in the wrong place");
    }
    if body.len() % 4 == 1 {
        return Err("base64 length is impossible");
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for chunk in body.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = b64_value(c).ok_or("invalid base64 character")?;
            n |= v << (18 - 6 * i as u32);
        }
        let unused = match chunk.len() {
            2 => n & 0xFFFF,
            3 => n & 0xFF,
            _ => 0,
        };
        if unused != 0 {
            return Err("non-canonical base64 (bits set past the last byte)");
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- decoding

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError { column: self.pos + 1, what }
    }
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }
    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let c = self.peek().ok_or_else(|| self.err("truncated \\u escape"))?;
            let d = (c as char).to_digit(16).ok_or_else(|| self.err("bad hex digit in \\u escape"))?;
            v = v * 16 + d;
            self.pos += 1;
        }
        Ok(v)
    }
    /// A string literal; the input was checked to be UTF-8 before parsing starts.
    fn string(&mut self) -> Result<String, JsonError> {
        self.expect(b'"', "expected a string")?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
            match c {
                b'"' => {
                    self.pos += 1;
                    return String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"));
                }
                b'\\' => {
                    self.pos += 1;
                    let e = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.pos..self.pos + 2) != Some(b"\\u".as_slice()) {
                                    return Err(self.err("lone high surrogate"));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("invalid low surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err("lone low surrogate"));
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| self.err("invalid code point"))?
                        }
                        _ => return Err(self.err("unknown escape")),
                    };
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                c if c < 0x20 => return Err(self.err("control character in string")),
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

/// Parses a flat JSON object whose values are all strings: `(name, value)` in input order.
pub fn parse_flat_object(line: &[u8]) -> Result<Vec<(String, String)>, JsonError> {
    if let Err(e) = std::str::from_utf8(line) {
        return Err(JsonError { column: e.valid_up_to() + 1, what: "line is not UTF-8" });
    }
    let mut p = Parser { s: line, pos: 0 };
    p.skip_ws();
    p.expect(b'{', "expected '{'")?;
    let mut fields = Vec::new();
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.pos += 1;
    } else {
        loop {
            p.skip_ws();
            let name = p.string()?;
            p.skip_ws();
            p.expect(b':', "expected ':'")?;
            p.skip_ws();
            if p.peek() != Some(b'"') {
                return Err(p.err("values must be strings"));
            }
            let value = p.string()?;
            fields.push((name, value));
            p.skip_ws();
            match p.peek() {
                Some(b',') => p.pos += 1,
                Some(b'}') => {
                    p.pos += 1;
                    break;
                }
                _ => return Err(p.err("expected ',' or '}'")),
            }
        }
    }
    p.skip_ws();
    if p.pos != line.len() {
        return Err(p.err("trailing characters after the object"));
    }
    Ok(fields)
}

/// One dump / load line (its `Debug` shows lengths only).
#[derive(Clone, PartialEq, Eq)]
pub enum Line {
    Record(Record),
    /// A tree that holds no records.
    Tree(Vec<u8>),
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Record(r) => f.debug_tuple("Record").field(r).finish(),
            Line::Tree(t) => f.debug_struct("Tree").field("name_len", &t.len()).finish(),
        }
    }
}

impl Line {
    /// The line naming a tree without records (without the newline).
    pub fn tree_line(tree: &[u8]) -> String {
        Obj::new().bytes("tree", tree).finish()
    }
}

/// Parses one line: `tree`/`tree_b64` (optional), `key`/`key_b64`, `value`/`value_b64`; or a
/// tree alone. Unknown, repeated or doubly given fields are refused.
pub fn parse_line(line: &[u8]) -> Result<Line, JsonError> {
    let fields = parse_flat_object(line)?;
    let mut slots: [Option<Vec<u8>>; 3] = [None, None, None];
    for (name, value) in fields {
        let (base, b64) = match name.strip_suffix("_b64") {
            Some(b) => (b, true),
            None => (name.as_str(), false),
        };
        let i = match base {
            "tree" => 0,
            "key" => 1,
            "value" => 2,
            _ => {
                return Err(JsonError {
                    column: 1,
                    what: "unknown field (expected tree, key, value or their _b64 forms)",
                });
            }
        };
        let bytes =
            if b64 { b64_decode(&value).map_err(|what| JsonError { column: 1, what })? } else { value.into_bytes() };
        let slot = slots.get_mut(i).ok_or(JsonError { column: 1, what: "internal field index" })?;
        if slot.is_some() {
            return Err(JsonError { column: 1, what: "field given twice" });
        }
        *slot = Some(bytes);
    }
    let [tree, key, value] = slots;
    if let (Some(tree), None, None) = (&tree, &key, &value) {
        return Ok(Line::Tree(tree.clone()));
    }
    Ok(Line::Record(Record {
        tree,
        key: key.ok_or(JsonError { column: 1, what: "missing field: key (or key_b64)" })?,
        value: value.ok_or(JsonError { column: 1, what: "missing field: value (or value_b64)" })?,
    }))
}

#[cfg(test)]
#[path = "jsonl_tests.rs"]
mod tests;
