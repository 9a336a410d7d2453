//! `pagedump --tree NAME`: one tree of the newest commit, drawn level by level from its root.
//!
//! Layer: admin (pagedump). Pages are read through `Pager::read`, so each child is checked
//! against the tag its parent holds (the Merkle link); a page that fails is reported and its
//! subtree skipped. Descent stops at `MAX_DEPTH` and never visits a page twice, so a damaged
//! file with a cycle cannot loop.

use std::collections::HashSet;
use std::io::Write;

use super::CliError;
use super::jsonl::{Obj, array};
use super::pagedump::Dumper;
use super::pageview::show;
use crate::Error;
use crate::btree::MAX_DEPTH;
use crate::btree::raw::RawNode;
use crate::error::{CorruptReason, PageNo};
use crate::format::commit::CommitRecord;
use crate::format::page::PageRef;
use crate::format::{COMMIT_PAGE_A, COMMIT_PAGE_B};

/// One node as drawn.
struct Drawn {
    text: String,
    json: String,
    children: Vec<PageRef>,
}

fn draw_node(payload: &[u8], r: &PageRef) -> crate::Result<Drawn> {
    let n = RawNode::new(payload, r.page)?;
    let obj = Obj::new().num("page", r.page).str("tag", &r.tag.to_hex()).num("count", n.len() as u64);
    if n.is_leaf() {
        let (first, last) = if n.len() == 0 {
            (String::new(), String::new())
        } else {
            (show(n.leaf_key(0)?), show(n.leaf_key(n.len() - 1)?))
        };
        Ok(Drawn {
            text: format!("page {} leaf, {} entries, {} .. {}", r.page, n.len(), first, last),
            json: obj.str("kind", "leaf").str("first_key", &first).str("last_key", &last).finish(),
            children: Vec::new(),
        })
    } else {
        let children = (0..=n.len()).map(|i| n.child(i)).collect::<crate::Result<Vec<_>>>()?;
        let list: Vec<String> = children.iter().map(|c| c.page.to_string()).collect();
        Ok(Drawn {
            text: format!("page {} branch, {} keys, children {}", r.page, n.len(), list.join(" ")),
            json: obj.str("kind", "branch").raw("children", &array(list)).finish(),
            children,
        })
    }
}

/// Draws tree `name` of the newest commit that opens.
pub(crate) fn draw(d: &mut Dumper, name: &[u8], o: &mut dyn Write) -> Result<(), CliError> {
    let file = d.file.clone();
    let Some(pager) = &d.pager else {
        return Err(CliError::db(Error::WrongKey { hint: "drawing a tree of an encrypted file needs its key" }, &file));
    };
    let mut best: Option<CommitRecord> = None;
    for slot in [COMMIT_PAGE_A, COMMIT_PAGE_B] {
        if let Ok(r) = pager.read_commit(slot)
            && best.as_ref().is_none_or(|b| r.seq > b.seq)
        {
            best = Some(r);
        }
    }
    let rec = best.ok_or_else(|| {
        CliError::db(Error::Corrupt { page: COMMIT_PAGE_A, reason: CorruptReason::NoValidCommit }, &file)
    })?;
    // Not past the file's end: the record has not been verified, and a page number near 2^64
    // would overflow its byte offset.
    let file_pages = pager.file_len().map_err(|e| CliError::db(e, &file))? / crate::format::PAGE_SIZE as u64;
    pager.set_page_limit(rec.page_count.min(file_pages));
    let catalog = crate::db::open::load_catalog(pager, rec.catalog).map_err(|e| CliError::db(e, &file))?;
    // The default tree is there from the start, as `get`, `scan` and `dump --tree` take it: a
    // database that never wrote to it has no catalog entry for it, and an empty tree to show.
    let root = match catalog.get(name).copied() {
        Some(root) => root,
        None if name == crate::db::api::DEFAULT_TREE => crate::btree::TreeRoot::default(),
        None => return Err(CliError::NotFound { what: "tree not found", file }),
    };
    let w = CliError::stdout;
    let label = super::commands::printable(name);
    if d.json {
        let head = Obj::new()
            .bytes("tree", name)
            .raw("root", &Obj::new().num("page", root.root.page).str("tag", &root.root.tag.to_hex()).finish());
        writeln!(o, "{}", head.num("records", root.count).num("commit_seq", rec.seq).finish()).map_err(w)?;
    } else {
        writeln!(o, "tree {label}: {} records, root page {}, commit seq {}", root.count, root.root.page, rec.seq)
            .map_err(w)?;
    }
    let mut level = if root.root.is_none() { Vec::new() } else { vec![root.root] };
    let mut seen: HashSet<PageNo> = HashSet::new();
    let mut failures = 0u64;
    for depth in 0..MAX_DEPTH {
        if level.is_empty() {
            break;
        }
        let mut next = Vec::new();
        let mut texts = Vec::new();
        let mut jsons = Vec::new();
        for r in &level {
            let drawn = if !seen.insert(r.page) {
                Err(Error::Corrupt { page: r.page, reason: CorruptReason::DoubleReference })
            } else {
                pager.read(*r, None).and_then(|p| draw_node(p.payload(), r))
            };
            match drawn {
                Ok(dn) => {
                    texts.push(dn.text);
                    jsons.push(dn.json);
                    next.extend(dn.children);
                }
                Err(Error::Io(e)) => {
                    texts.push(format!("page {} cannot be read: {e}", r.page));
                    jsons.push(Obj::new().num("page", r.page).str("error", &e.to_string()).finish());
                    d.unreadable.get_or_insert(e);
                }
                Err(e) => {
                    failures += 1;
                    texts.push(format!("page {} FAILS: {e}", r.page));
                    jsons.push(Obj::new().num("page", r.page).str("error", &e.to_string()).finish());
                }
            }
        }
        if d.json {
            writeln!(o, "{}", Obj::new().num("level", depth as u64).raw("pages", &array(jsons)).finish()).map_err(w)?;
        } else {
            writeln!(o, "level {depth}: {} pages", level.len()).map_err(w)?;
            for t in texts {
                writeln!(o, "  {t}").map_err(w)?;
            }
        }
        level = next;
    }
    if !level.is_empty() {
        failures += 1;
        writeln!(o, "tree deeper than {MAX_DEPTH} levels: stopped").map_err(w)?;
    }
    d.failures += failures;
    Ok(())
}
