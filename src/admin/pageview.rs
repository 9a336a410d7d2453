//! How `pagedump` describes one page: the decoders for each page kind, as text lines and as
//! one JSON object. Pure functions over an already opened payload; every read is checked
//! (`RawNode`'s accessors, `get_u32`/`get_u64`), so a damaged payload gives an error, never a
//! panic.
//!
//! Layer: admin (pagedump); reads `btree::node`, `btree::overflow`, `pager::freelist` layouts.

use super::jsonl::{Obj, array};
use crate::Error;
use crate::btree::overflow;
use crate::btree::raw::{RawNode, RawValue};
use crate::error::PageNo;
use crate::format::commit::CommitRecord;
use crate::format::page::{self, PageKind, PageRef, hex};
use crate::format::{COMMIT_PAGE_B, get_u32, get_u64};
use crate::pager::freelist;

/// Bytes of a key or value shown before it is cut.
const SHOW_BYTES: usize = 64;

/// The first `SHOW_BYTES` bytes (or fewer, to end on a character boundary) as text when they
/// are UTF-8 without control characters, else `None`.
fn as_text(b: &[u8]) -> Option<&str> {
    let mut end = b.len().min(SHOW_BYTES);
    let cut = loop {
        match std::str::from_utf8(&b[..end]) {
            Ok(s) => break s,
            // A character cut by the limit: end before it (at most 3 bytes back).
            Err(e) if end < b.len() && e.error_len().is_none() && e.valid_up_to() + 4 > end => end = e.valid_up_to(),
            Err(_) => return None,
        }
    };
    if cut.chars().any(char::is_control) { None } else { Some(cut) }
}

/// Printable bytes as quoted text, others as hex; cut at `SHOW_BYTES` with the length noted.
pub(crate) fn show(b: &[u8]) -> String {
    let mut s = match as_text(b) {
        Some(t) => format!("{t:?}"),
        None => format!("hex:{}", hex(&b[..b.len().min(SHOW_BYTES)])),
    };
    if b.len() > SHOW_BYTES {
        s.push_str(&format!("... ({} bytes)", b.len()));
    }
    s
}

/// Adds bytes to a JSON object: `name` (text) or `name_hex`, cut like [`show`], and `name_len`.
fn bytes_json(o: Obj, name: &str, b: &[u8]) -> Obj {
    let o = match as_text(b) {
        Some(t) => o.str(name, t),
        None => o.str(&format!("{name}_hex"), &hex(&b[..b.len().min(SHOW_BYTES)])),
    };
    o.num(&format!("{name}_len"), b.len() as u64)
}

fn ref_json(r: &PageRef) -> String {
    Obj::new().num("page", r.page).str("tag", &r.tag.to_hex()).finish()
}

pub(crate) fn ref_text(r: &PageRef) -> String {
    if r.is_none() { "none".into() } else { format!("page {} (tag {})", r.page, r.tag.to_hex()) }
}

/// One page's description: text lines (the first is the title) and a JSON object.
pub(crate) struct Desc {
    pub(crate) lines: Vec<String>,
    pub(crate) obj: Obj,
}

impl Desc {
    pub(crate) fn new(page: PageNo, title: String) -> Desc {
        Desc { lines: vec![format!("page {page}: {title}")], obj: Obj::new().num("page", page) }
    }
    pub(crate) fn line(&mut self, l: String) {
        self.lines.push(format!("  {l}"));
    }
}

pub(crate) fn commit_desc(p: PageNo, r: &CommitRecord) -> Desc {
    let mut d = Desc::new(p, format!("commit record {}, seq {}", if p == COMMIT_PAGE_B { "B" } else { "A" }, r.seq));
    d.line(format!(
        "previous durable seq {}, page count {}, header generation {}",
        r.prev_durable_seq, r.page_count, r.header_generation
    ));
    d.line(format!("catalog {}", ref_text(&r.catalog)));
    d.line(format!("free list {}", ref_text(&r.freelist)));
    if !r.free_delta.is_empty() {
        d.line(format!(
            "free-list delta: {} freed {:?}, {} used {:?}",
            r.free_delta.freed.len(),
            r.free_delta.freed,
            r.free_delta.used.len(),
            r.free_delta.used
        ));
    }
    d.line(format!(
        "key epoch {} (oldest {}), seals in epoch {}, rekey cursor {}",
        r.key_epoch, r.oldest_epoch, r.seals_in_epoch, r.rekey_cursor
    ));
    d.obj = d
        .obj
        .str("kind", "commit")
        .num("seq", r.seq)
        .num("prev_durable_seq", r.prev_durable_seq)
        .num("page_count", r.page_count)
        .raw("catalog", &ref_json(&r.catalog))
        .raw("freelist", &ref_json(&r.freelist))
        .raw("free_delta_freed", &array(r.free_delta.freed.iter().map(u64::to_string)))
        .raw("free_delta_used", &array(r.free_delta.used.iter().map(u64::to_string)))
        .num("key_epoch", r.key_epoch)
        .num("oldest_epoch", r.oldest_epoch)
        .num("seals_in_epoch", r.seals_in_epoch)
        .num("header_generation", r.header_generation)
        .num("rekey_cursor", r.rekey_cursor);
    d
}

/// Decodes an opened payload by its kind byte.
pub(crate) fn describe_payload(p: PageNo, payload: &[u8]) -> crate::Result<Desc> {
    let generation = page::generation(payload);
    let kind = payload.first().copied().and_then(PageKind::from_byte);
    let mut d;
    match kind {
        Some(PageKind::Leaf) | Some(PageKind::Branch) => {
            let n = RawNode::new(payload, p)?;
            if n.is_leaf() {
                d = Desc::new(p, format!("leaf, {} entries, generation {generation}", n.len()));
                let mut entries = Vec::new();
                for i in 0..n.len() {
                    let (k, v) = n.leaf_entry(i)?;
                    let e = bytes_json(Obj::new(), "key", k);
                    match v {
                        RawValue::Inline(v) => {
                            d.line(format!("[{i}] {} = {}", show(k), show(v)));
                            entries.push(bytes_json(e, "value", v).finish());
                        }
                        RawValue::Overflow { first, len } => {
                            d.line(format!("[{i}] {} = overflow {}, {len} bytes", show(k), ref_text(&first)));
                            entries.push(e.raw("overflow", &ref_json(&first)).num("value_len", len).finish());
                        }
                    }
                }
                d.obj = d.obj.str("kind", "leaf").num("generation", generation).raw("entries", &array(entries));
            } else {
                d = Desc::new(p, format!("branch, {} keys, generation {generation}", n.len()));
                let (mut children, mut keys) = (Vec::new(), Vec::new());
                for i in 0..=n.len() {
                    let c = n.child_as_stored(i)?;
                    d.line(format!("child {i}: {}", ref_text(&c)));
                    children.push(ref_json(&c));
                    if i < n.len() {
                        let k = n.branch_key(i)?;
                        d.line(format!("key {i}: {}", show(k)));
                        keys.push(bytes_json(Obj::new(), "key", k).finish());
                    }
                }
                d.obj = d
                    .obj
                    .str("kind", "branch")
                    .num("generation", generation)
                    .raw("children", &array(children))
                    .raw("keys", &array(keys));
            }
        }
        Some(PageKind::Overflow) => {
            let bad = || Error::Corrupt { page: p, reason: crate::CorruptReason::BadLayout };
            let next = PageRef::decode(payload, overflow::NEXT_OFFSET).ok_or_else(bad)?;
            let len = get_u32(payload, overflow::CHUNK_LEN_OFFSET).ok_or_else(bad)?;
            d = Desc::new(p, format!("overflow, {len} bytes here, generation {generation}"));
            d.line(format!("next {}", ref_text(&next)));
            d.obj = d
                .obj
                .str("kind", "overflow")
                .num("generation", generation)
                .num("chunk_len", len)
                .raw("next", &ref_json(&next));
        }
        Some(PageKind::FreeList) => {
            let bad = || Error::Corrupt { page: p, reason: crate::CorruptReason::BadLayout };
            let next = PageRef::decode(payload, freelist::NEXT_OFFSET).ok_or_else(bad)?;
            let count = usize::from(page::count(payload)).min(freelist::EXTENTS_PER_PAGE);
            d = Desc::new(p, format!("free list, {count} extents, generation {generation}"));
            d.line(format!("next {}", ref_text(&next)));
            let mut extents = Vec::new();
            for j in 0..count {
                let off = freelist::EXTENTS_OFFSET + j * freelist::EXTENT_SIZE;
                let start = get_u64(payload, off).ok_or_else(bad)?;
                let len = get_u32(payload, off + 8).ok_or_else(bad)?;
                d.line(format!("extent: pages {start}..{} ({len})", start.saturating_add(u64::from(len))));
                extents.push(Obj::new().num("first", start).num("len", len).finish());
            }
            d.obj = d
                .obj
                .str("kind", "freelist")
                .num("generation", generation)
                .raw("next", &ref_json(&next))
                .raw("extents", &array(extents));
        }
        Some(PageKind::Commit) => {
            d = Desc::new(p, "a commit-record payload outside pages 2-3 (unexpected)".into());
            d.obj = d.obj.str("kind", "commit-misplaced");
        }
        None => {
            let b = payload.first().copied().unwrap_or(0);
            d = Desc::new(p, format!("unknown kind byte {b}"));
            d.obj = d.obj.str("kind", "unknown").num("kind_byte", b);
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_cuts_and_picks_text_or_hex() {
        assert_eq!(show(b"abc"), "\"abc\"");
        assert_eq!(show(&[0, 255]), "hex:00ff");
        let long = vec![b'x'; 100];
        assert!(show(&long).ends_with("... (100 bytes)"));
        assert_eq!(show("é ✓".as_bytes()), "\"é ✓\"");
        // The cut falls inside a two-byte character: the text ends before it.
        let s = format!("a{}", "é".repeat(40));
        assert_eq!(show(s.as_bytes()), format!("{:?}... (81 bytes)", &s[..63]));
        assert!(show(b"a\nb").starts_with("hex:"));
    }

    #[test]
    fn a_commit_record_shows_its_free_list_delta() {
        let delta = crate::format::commit::FreeDelta { freed: vec![5, 9], used: vec![14] };
        let r = CommitRecord { seq: 3, page_count: 20, free_delta: delta, ..CommitRecord::default() };
        let d = commit_desc(2, &r);
        assert!(d.lines.iter().any(|l| l.contains("free-list delta: 2 freed [5, 9], 1 used [14]")), "{:?}", d.lines);
        let j = d.obj.finish();
        assert!(j.contains("\"free_delta_freed\": [5, 9]") && j.contains("\"free_delta_used\": [14]"), "{j}");
        // Without one, no line.
        let d = commit_desc(2, &CommitRecord { seq: 3, page_count: 20, ..CommitRecord::default() });
        assert!(!d.lines.iter().any(|l| l.contains("delta")), "{:?}", d.lines);
    }

    #[test]
    fn garbage_payloads_describe_without_panicking() {
        let mut p = vec![0xA5u8; crate::format::page::PAYLOAD_SIZE];
        for kind in 0..=6u8 {
            p[0] = kind;
            let _ = describe_payload(9, &p);
        }
    }
}
