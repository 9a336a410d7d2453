//! Damaged trees whose pages all authenticate (a writer bug, or a plaintext file edited with
//! its checksums fixed): a child shared by two parents, a child reference to page 0, keys out
//! of order, an overflow chain whose chunks are not full. Every walk reports them as
//! `Corrupt` and ends; none walks a page twice or reads a reference to page 0 as "empty".

use std::ops::Bound;
use std::sync::Arc;

use super::node::{Branch, Leaf, Node};
use super::overflow::{CHUNK_LEN_OFFSET, CHUNK_OFFSET, NEXT_OFFSET, OVERFLOW_CHUNK};
use super::raw::RawValue;
use super::tx::TxPages;
use super::{read, salvage, verify};
use crate::crypto::seal::PageSealer;
use crate::error::{CorruptReason, Error, PageNo};
use crate::format::page::{PAYLOAD_SIZE, PageKind, PageRef, write_header};
use crate::format::{PAGE_SIZE, put_u32};
use crate::pager::Pager;
use crate::pager::alloc::Allocator;
use crate::storage::MemoryStorage;

fn pager() -> Arc<Pager> {
    let p = Pager::new(Arc::new(MemoryStorage::new()), PageSealer::plaintext(*b"damaged-trees!!!"), 1 << 20);
    p.set_page_limit(64);
    Arc::new(p)
}

/// Seals `node` at `page` (generation 1) and returns its reference.
fn put(pager: &Pager, page: PageNo, node: Node) -> PageRef {
    let mut buf = Box::new([0u8; PAGE_SIZE]);
    node.encode(1, &mut buf[..PAYLOAD_SIZE]).expect("the node fits");
    let tag = pager.write(page, 0, buf).expect("write");
    PageRef { page, tag, generation: 1 }
}

fn leaf(keys: &[&[u8]]) -> Node {
    let mut l = Leaf::default();
    for (i, k) in keys.iter().enumerate() {
        l.insert(i, k, RawValue::Inline(b"v"));
    }
    Node::Leaf(l)
}

fn branch(sep: &[u8], left: PageRef, right: PageRef) -> Node {
    Node::Branch(Branch::new(vec![sep.to_vec()], vec![left, right]))
}

/// The keys salvage copies from the tree at `root`, in order, and the ranges it reports lost.
fn salvaged_keys(p: &Pager, root: PageRef) -> (Vec<Vec<u8>>, Vec<salvage::LostRange>) {
    let (mut records, mut lost) = (Vec::new(), Vec::new());
    let mut keep = |k: &[u8], _: Vec<u8>| {
        records.push(k.to_vec());
        Ok(())
    };
    salvage::walk(p, root, &mut keep, &mut |l| lost.push(l)).unwrap();
    (records, lost)
}

fn reason<T: std::fmt::Debug>(r: crate::Result<T>) -> CorruptReason {
    match r {
        Err(Error::Corrupt { reason, .. }) => reason,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Branches whose two children are one page: each walk stops at the second visit. (Nested,
/// such sharing makes exponentially many paths to the same pages.)
#[test]
fn a_child_shared_by_two_references_is_reported_by_every_walk() {
    let p = pager();
    let l = put(&p, 10, leaf(&[b"a", b"b"]));
    let b1 = put(&p, 11, branch(b"m", l, l));
    let root = put(&p, 12, branch(b"m", b1, b1));
    assert_eq!(reason(verify::verify_since(&p, root, 0)), CorruptReason::DoubleReference);
    let mut out = Vec::new();
    let r = read::collect_range(&p, None, root, Bound::Unbounded, Bound::Unbounded, &mut out);
    assert_eq!(reason(r), CorruptReason::DoubleReference);
    let (mut records, mut lost) = (Vec::new(), Vec::new());
    salvage::walk(
        &p,
        root,
        &mut |k, _| {
            records.push(k.to_vec());
            Ok(())
        },
        &mut |l| lost.push(l),
    )
    .unwrap();
    assert_eq!(records, [b"a".to_vec(), b"b".to_vec()], "each record once");
    assert!(lost.iter().any(|l| l.error.contains("referenced twice")), "{lost:?}");
    let mut tx = TxPages::new(p.clone(), Allocator::new(64, &[]), 2, 0);
    assert_eq!(reason(tx.free_tree(root)), CorruptReason::DoubleReference);
}

/// A child reference to page 0 ("none") below the root is damage, not an empty subtree.
#[test]
fn a_child_naming_page_zero_is_damage() {
    let p = pager();
    let l = put(&p, 10, leaf(&[b"a"]));
    let root = put(&p, 11, branch(b"m", l, PageRef::NONE));
    assert_eq!(reason(read::get(&p, None, root, b"z")), CorruptReason::BadLayout);
    assert!(read::get(&p, None, root, b"a").unwrap().is_some(), "the other child still reads");
    let mut out = Vec::new();
    let r = read::collect_range(&p, None, root, Bound::Unbounded, Bound::Unbounded, &mut out);
    assert_eq!(reason(r), CorruptReason::BadLayout);
}

/// Keys out of order in a leaf, or separators out of order in a branch: refused where a page
/// is decoded for an edit or a range.
#[test]
fn keys_out_of_order_are_refused_at_decode() {
    let p = pager();
    let bad_leaf = put(&p, 10, leaf(&[b"b", b"a"]));
    let page = p.read(bad_leaf, None).unwrap();
    assert_eq!(reason(Node::decode(page.payload(), 10)), CorruptReason::KeyOrder);
    let l = put(&p, 11, leaf(&[b"a"]));
    let bad_branch = Node::Branch(Branch::new(vec![b"m".to_vec(), b"c".to_vec()], vec![l, l, l]));
    let b = put(&p, 12, bad_branch);
    let page = p.read(b, None).unwrap();
    assert_eq!(reason(Node::decode(page.payload(), 12)), CorruptReason::KeyOrder);
    let dup = put(&p, 13, leaf(&[b"a", b"a"]));
    assert_eq!(reason(Node::decode(p.read(dup, None).unwrap().payload(), 13)), CorruptReason::KeyOrder);
}

/// An overflow page that is not the last must hold a full chunk: a chain of short chunks is
/// refused (and with it, a loop through pages of empty chunks, whatever length the leaf
/// states).
#[test]
fn an_overflow_chain_of_short_chunks_is_refused() {
    let p = pager();
    let page = |next: PageRef, clen: usize| {
        let mut buf = Box::new([0u8; PAGE_SIZE]);
        write_header(&mut buf[..], PageKind::Overflow, 0, 1);
        next.encode(&mut buf[NEXT_OFFSET..]);
        put_u32(&mut buf[..], CHUNK_LEN_OFFSET, clen as u32);
        buf[CHUNK_OFFSET..CHUNK_OFFSET + clen].fill(5);
        buf
    };
    let last_tag = p.write(21, 0, page(PageRef::NONE, OVERFLOW_CHUNK)).unwrap();
    let last = PageRef { page: 21, tag: last_tag, generation: 1 };
    let first_tag = p.write(20, 0, page(last, 988)).unwrap();
    let first = PageRef { page: 20, tag: first_tag, generation: 1 };
    let len = (988 + OVERFLOW_CHUNK) as u64;
    assert_eq!(reason(super::overflow::read(&p, first, len)), CorruptReason::OverflowLength);
    // The same length as the writer lays it out (the short chunk last) reads.
    let tail_tag = p.write(23, 0, page(PageRef::NONE, 988)).unwrap();
    let tail = PageRef { page: 23, tag: tail_tag, generation: 1 };
    let head_tag = p.write(22, 0, page(tail, OVERFLOW_CHUNK)).unwrap();
    let value = super::overflow::read(&p, PageRef { page: 22, tag: head_tag, generation: 1 }, len).unwrap();
    assert_eq!(value.len() as u64, len);
}

/// A page read from the cache passes the same checks as one read from disk: asked for as
/// another kind, or with another generation, it is refused either way.
#[test]
fn a_cached_page_is_checked_like_one_read_from_disk() {
    let p = pager();
    let l = put(&p, 10, leaf(&[b"a"]));
    p.read(l, Some(PageKind::Leaf)).unwrap();
    assert_eq!(reason(p.read(l, Some(PageKind::Overflow)).map(|_| ())), CorruptReason::WrongPageKind);
    assert_eq!(reason(p.read(PageRef { generation: 2, ..l }, None).map(|_| ())), CorruptReason::TagMismatch);
    assert!(p.read(l, Some(PageKind::Leaf)).is_ok());
}

/// Salvage loses a bad entry alone, not the rest of its leaf: an entry whose slot points off
/// the page, a key out of order, and a key outside the bounds its parent gives the leaf (which
/// a copy must not let overwrite a real key) are each reported as a range from the last good
/// key to the next, and the entries after them are copied.
#[test]
fn salvage_loses_a_bad_entry_alone() {
    use crate::format::page::PAGE_HEADER_SIZE;
    let p = pager();
    // Entry 1 ("b") gets a slot offset past the page.
    let mut buf = Box::new([0u8; PAGE_SIZE]);
    leaf(&[b"a", b"b", b"c", b"e", b"d", b"f"]).encode(1, &mut buf[..PAYLOAD_SIZE]).expect("fits");
    let slot1 = PAGE_HEADER_SIZE + super::node::SLOT;
    buf[slot1..slot1 + 2].copy_from_slice(&0xFFF0u16.to_le_bytes());
    let left = PageRef { page: 10, tag: p.write(10, 0, buf).unwrap(), generation: 1 };
    let right = put(&p, 11, leaf(&[b"a", b"n"]));
    let root = put(&p, 12, branch(b"m", left, right));
    let (records, lost) = salvaged_keys(&p, root);
    let keys: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    assert_eq!(keys, [&b"a"[..], b"c", b"e", b"f", b"n"]);
    let ranges: Vec<(Option<&[u8]>, Option<&[u8]>, PageNo)> =
        lost.iter().map(|l| (l.lo.as_deref(), l.hi.as_deref(), l.page)).collect();
    // "d" lies below the last key kept ("e"): it could belong anywhere before it, so its range
    // starts at the leaf's lower bound (none, for the leftmost leaf).
    assert_eq!(ranges, [(Some(&b"a"[..]), Some(&b"c"[..]), 10), (None, Some(b"f"), 10), (Some(b"m"), Some(b"n"), 11)]);
    assert!(lost[1].error.contains("order") && lost[2].error.contains("order"), "{lost:?}");
}

/// Branches sharing their children, with empty leaves at the bottom: a cursor meets no entry
/// for the key-order check to stop it, and went down every path (here four; with depth `d`,
/// 119^d). It now stops at the first empty leaf met twice, either way. An empty leaf met once
/// is passed over.
#[test]
fn a_cursor_stops_at_an_empty_leaf_met_twice() {
    let p = pager();
    let empty = put(&p, 10, leaf(&[]));
    let b1 = put(&p, 11, branch(b"m", empty, empty));
    let root = put(&p, 12, branch(b"m", b1, b1));
    let r = read::Cursor::seek_ge(&p, root, None, false);
    assert_eq!(reason(r.map(|c| c.is_some())), CorruptReason::DoubleReference);
    let r = read::Cursor::seek_le(&p, root, None, false);
    assert_eq!(reason(r.map(|c| c.is_some())), CorruptReason::DoubleReference);
    let a = put(&p, 13, leaf(&[b"a"]));
    let z = put(&p, 14, leaf(&[b"z"]));
    let root = put(&p, 15, Node::Branch(Branch::new(vec![b"b".to_vec(), b"y".to_vec()], vec![a, empty, z])));
    let c = read::Cursor::seek_ge(&p, root, Some(b"b"), false).unwrap().expect("an entry");
    assert_eq!(c.current().unwrap().0, b"z");
    let c = read::Cursor::seek_le(&p, root, Some(b"y"), true).unwrap().expect("an entry");
    assert_eq!(c.current().unwrap().0, b"a");
}

/// Compaction's walks (`copy_where`, `repack`) enter each committed branch once: shared
/// branches stopped them neither when nothing was to be copied nor when no leaves could merge,
/// so they went down every path.
#[test]
fn compaction_walks_stop_at_a_branch_entered_twice() {
    use super::TreeRoot;
    use super::copy::{CopyRule, InlineLeaves};
    let p = pager();
    let l = put(&p, 10, leaf(&[b"a", b"b"]));
    let b1 = put(&p, 11, branch(b"m", l, l));
    let root = put(&p, 12, branch(b"m", b1, b1));
    let mut tx = TxPages::new(p.clone(), Allocator::new(64, &[]), 2, 0);
    let (mut at, mut budget) = (root, 1000);
    let r = tx.copy_where(&mut at, CopyRule::AtOrAbove(60), &mut budget, Some(&mut InlineLeaves::default()));
    assert_eq!(reason(r), CorruptReason::DoubleReference);
    let mut tree = TreeRoot { root, count: 2, born: 0 };
    let mut tally = Default::default();
    let r = tx.repack(&mut tree, &mut 1000, &mut tally, &mut InlineLeaves::default());
    assert_eq!(reason(r), CorruptReason::DoubleReference);
    // A leaf under two branches is not a branch entered twice: each walk reads it once per
    // reference (the tree's own checks report it).
    let l2 = put(&p, 13, leaf(&[b"x"]));
    let b2 = put(&p, 14, branch(b"m", l, l2));
    let root = put(&p, 15, branch(b"m", b1, b2));
    let mut at = root;
    assert!(!tx.copy_where(&mut at, CopyRule::AtOrAbove(60), &mut 1000, None).unwrap());
}

/// A leaf two references of one branch share: an edit that merges the pair (a removal that
/// leaves the left one small, or compaction's repacking) copied the committed leaf once per
/// reference and appended it to its own copy, a leaf with a key twice and out of order, and a
/// removed key back. The second copy is refused.
#[test]
fn an_edit_never_copies_a_shared_leaf_twice() {
    use super::TreeRoot;
    use super::copy::InlineLeaves;
    let p = pager();
    let l = put(&p, 10, leaf(&[b"a", b"b"]));
    let root = put(&p, 11, branch(b"m", l, l));
    let mut tx = TxPages::new(p.clone(), Allocator::new(64, &[]), 2, 0);
    let mut tree = TreeRoot { root, count: 2, born: 0 };
    assert_eq!(reason(tx.remove(&mut tree, b"a", true)), CorruptReason::DoubleReference);
    let mut tx = TxPages::new(p.clone(), Allocator::new(64, &[]), 2, 0);
    let mut tree = TreeRoot { root, count: 2, born: 0 };
    let r = tx.repack(&mut tree, &mut 1000, &mut Default::default(), &mut InlineLeaves::default());
    assert_eq!(reason(r), CorruptReason::DoubleReference);
    // The same edits of a sound tree go through.
    let (l1, l2) = (put(&p, 12, leaf(&[b"a", b"b"])), put(&p, 13, leaf(&[b"x"])));
    let root = put(&p, 14, branch(b"m", l1, l2));
    let mut tx = TxPages::new(p.clone(), Allocator::new(64, &[]), 2, 0);
    let mut tree = TreeRoot { root, count: 3, born: 0 };
    assert_eq!(tx.remove(&mut tree, b"a", true).unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(tree.count, 2);
}

/// Two entries of a leaf naming one overflow chain: each walk that records pages stops at the
/// first chain page met twice, with one problem. Walked to its end each time, the chain was
/// read once per entry, by salvage and compaction copied once per entry, and by the check
/// reported once per page.
#[test]
fn an_overflow_chain_shared_by_two_entries_is_walked_once() {
    let p = pager();
    let chunk = |page: PageNo, next: PageRef, clen: usize| {
        let mut buf = Box::new([0u8; PAGE_SIZE]);
        write_header(&mut buf[..], PageKind::Overflow, 0, 1);
        next.encode(&mut buf[NEXT_OFFSET..]);
        put_u32(&mut buf[..], CHUNK_LEN_OFFSET, clen as u32);
        buf[CHUNK_OFFSET..CHUNK_OFFSET + clen].fill(5);
        PageRef { page, tag: p.write(page, 0, buf).unwrap(), generation: 1 }
    };
    let c3 = chunk(22, PageRef::NONE, 100);
    let c2 = chunk(21, c3, OVERFLOW_CHUNK);
    let first = chunk(20, c2, OVERFLOW_CHUNK);
    let len = (2 * OVERFLOW_CHUNK + 100) as u64;
    let mut l = Leaf::default();
    l.insert(0, b"a", RawValue::Overflow { first, len });
    l.insert(1, b"b", RawValue::Overflow { first, len });
    let root = put(&p, 10, Node::Leaf(l));
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    verify::check_tree(&p, "t", root, &mut |pg| seen.insert(pg), &mut problems).unwrap();
    let found: Vec<_> = problems.iter().map(|x| (x.page, x.reason)).collect();
    assert_eq!(found, [(20, CorruptReason::DoubleReference)]);
    assert_eq!(reason(verify::verify_since(&p, root, 0)), CorruptReason::DoubleReference);
    let (mut records, mut lost) = (Vec::new(), Vec::new());
    let mut keep = |k: &[u8], v: Vec<u8>| {
        records.push((k.to_vec(), v.len() as u64));
        Ok(())
    };
    salvage::walk(&p, root, &mut keep, &mut |l| lost.push(l)).unwrap();
    assert_eq!(records, [(b"a".to_vec(), len)]);
    assert_eq!(lost.len(), 1);
    assert!(lost[0].page == 20 && lost[0].error.contains("referenced twice"), "{lost:?}");
    // Compaction's copy walk: the chain was copied, and its pages freed, once per entry.
    let mut tx = TxPages::new(p.clone(), Allocator::new(64, &[]), 2, 0);
    let mut at = root;
    let r = tx.copy_where(&mut at, super::copy::CopyRule::AtOrAbove(15), &mut 1000, None);
    assert_eq!(reason(r), CorruptReason::DoubleReference);
}

/// A key longer than `MAX_KEY_LEN` in a leaf that authenticates (a forged plaintext file) is
/// lost alone in a salvage; copied, it failed the whole salvage with `KeyTooLarge`.
#[test]
fn salvage_loses_an_oversized_key_alone() {
    let p = pager();
    let long = vec![b'b'; super::node::MAX_KEY_LEN + 1];
    let root = put(&p, 10, leaf(&[b"a", &long, b"c"]));
    let (records, lost) = salvaged_keys(&p, root);
    assert_eq!(records, [b"a".to_vec(), b"c".to_vec()]);
    let ranges: Vec<_> = lost.iter().map(|l| (l.lo.as_deref(), l.hi.as_deref(), l.page)).collect();
    assert_eq!(ranges, [(Some(&b"a"[..]), Some(&b"c"[..]), 10)]);
}

/// A separator below its branch's lower bound (a forged plaintext file): the root splits at
/// "m", and its right child at "c". The right child's second leaf holds a key "e" no lookup can
/// reach (lookups for "e" go left of "m"). Salvage bounds each child by its separators within
/// the branch's own bounds, so that "e" is lost, not copied over the real "e" on the left.
#[test]
fn salvage_bounds_a_child_by_its_branch_as_well_as_its_separators() {
    let p = pager();
    let left = put(&p, 10, leaf(&[b"a", b"e"]));
    let below = put(&p, 11, leaf(&[b"n"]));
    let forged = put(&p, 12, leaf(&[b"e", b"x"]));
    let right = put(&p, 13, branch(b"c", below, forged));
    let root = put(&p, 14, branch(b"m", left, right));
    let (records, lost) = salvaged_keys(&p, root);
    assert_eq!(records, [b"a".to_vec(), b"e".to_vec(), b"x".to_vec()], "{lost:?}");
    assert!(lost.iter().any(|l| l.page == 12), "{lost:?}");
}

/// A reference to a page whose tag is wrong (forged, or left by damage) met before the page's
/// real reference: salvage loses the range the bad one covers and copies the page through the
/// real one. It marked the page reached before reading it, and lost the real subtree as
/// `DoubleReference`.
#[test]
fn salvage_reaches_a_page_through_its_real_reference_after_a_bad_one() {
    let p = pager();
    let real = put(&p, 10, leaf(&[b"p", b"q"]));
    let bad = PageRef { tag: crate::format::page::SealTag([7; 16]), ..real };
    let root = put(&p, 11, branch(b"m", bad, real));
    let (records, lost) = salvaged_keys(&p, root);
    assert_eq!(records, [b"p".to_vec(), b"q".to_vec()], "{lost:?}");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!((lost[0].lo.as_deref(), lost[0].hi.as_deref()), (None, Some(&b"m"[..])));
}

/// A page a committed tree still uses, handed out as free (a forged free list in a plaintext
/// file, or a writer's bug): the transaction's edited node there is not that tree's. A read
/// through the committed reference reads the page (and so the committed node), and an edit
/// through it is `DoubleReference`; both used to take the edited node, and the edit joined
/// the two trees at one page (B-tree review, low).
#[test]
fn a_committed_reference_never_reaches_an_edited_node_on_its_page() {
    let p = pager();
    let theirs = put(&p, 10, leaf(&[b"b-key"]));
    let ours = put(&p, 11, leaf(&[b"a-key"]));
    let mut tx = TxPages::new(p.clone(), Allocator::new(64, &[(10, 1)]), 2, 0);
    let edited = tx.make_dirty(ours).unwrap();
    assert_eq!(edited, 10, "the forged free page was handed out");
    let found = read::get_from(&p, Some(&tx.dirty), None, theirs, b"b-key", |_| Ok(())).unwrap();
    assert!(found.is_some(), "the committed node is read, not the edited one");
    let missing = read::get_from(&p, Some(&tx.dirty), None, theirs, b"a-key", |_| Ok(())).unwrap();
    assert!(missing.is_none());
    assert_eq!(reason(tx.make_dirty(theirs)), CorruptReason::DoubleReference);
    assert_eq!(reason(tx.node_size(theirs)), CorruptReason::DoubleReference);
    // The edited node is still reached through the transaction's own reference.
    assert_eq!(tx.make_dirty(PageRef::dirty(10)).unwrap(), 10);
}

/// Separators out of order (`c`, `k`, `a`): salvage gave each child the bounds of its two
/// separators, so the children's ranges overlapped and `d` was copied twice, the second time
/// from a leaf no lookup reaches, over the value a lookup finds. With running bounds the
/// children's ranges are disjoint and in order: no key is copied twice, none a lookup cannot
/// reach, and what is not copied is reported lost.
#[test]
fn salvage_under_separators_out_of_order_copies_no_key_twice() {
    let p = pager();
    let l0 = put(&p, 10, leaf(&[b"b"]));
    let l1 = put(&p, 11, leaf(&[b"d"]));
    let l2 = put(&p, 12, leaf(&[b"x"]));
    let mut unreachable = Leaf::default();
    unreachable.insert(0, b"d", RawValue::Inline(b"unreachable"));
    let l3 = put(&p, 13, Node::Leaf(unreachable));
    let seps = vec![b"c".to_vec(), b"k".to_vec(), b"a".to_vec()];
    let root = put(&p, 14, Node::Branch(Branch::new(seps, vec![l0, l1, l2, l3])));
    let (mut records, mut lost) = (Vec::new(), Vec::new());
    let mut keep = |k: &[u8], v: Vec<u8>| {
        records.push((k.to_vec(), v));
        Ok(())
    };
    salvage::walk(&p, root, &mut keep, &mut |l| lost.push(l)).unwrap();
    let keys: Vec<&[u8]> = records.iter().map(|(k, _)| &k[..]).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "each key once, in order: {keys:?}");
    assert!(records.iter().all(|(_, v)| v != b"unreachable"), "a value no lookup finds was copied");
    assert_eq!(records.len() + lost.len(), 4, "each leaf's key copied or reported lost: {lost:?}");
}

/// A separator equal to its branch's lower bound (`m` first in the right branch under root
/// separator `m`): no writer makes one, and a merge of that branch under the separator made a
/// branch (`m`, `m`, `t`) that no later edit could decode. The check reports it, and the merge
/// is refused as damage instead of written.
#[test]
fn a_separator_equal_to_its_lower_bound_is_reported_and_never_merged_under() {
    use super::TreeRoot;
    let p = pager();
    let (a, d) = (put(&p, 10, leaf(&[b"a"])), put(&p, 11, leaf(&[b"d"])));
    let b1 = put(&p, 12, branch(b"c", a, d));
    let (empty, n, u) = (put(&p, 13, leaf(&[])), put(&p, 14, leaf(&[b"n"])), put(&p, 15, leaf(&[b"u"])));
    let b2 = put(&p, 16, Node::Branch(Branch::new(vec![b"m".to_vec(), b"t".to_vec()], vec![empty, n, u])));
    let root = put(&p, 17, branch(b"m", b1, b2));
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    verify::check_tree(&p, "t", root, &mut |pg| seen.insert(pg), &mut problems).unwrap();
    let found: Vec<_> = problems.iter().map(|x| (x.page, x.reason)).collect();
    assert_eq!(found, [(16, CorruptReason::KeyOrder)]);
    let mut tx = TxPages::new(p.clone(), Allocator::new(64, &[]), 2, 0);
    let mut tree = TreeRoot { root, count: 4, born: 0 };
    assert_eq!(reason(tx.remove(&mut tree, b"a", false)), CorruptReason::KeyOrder);
}

/// A child reference to page 0 below the root loses that child alone in salvage: its sibling
/// reads (as readers and the check take it), and was lost with it, the whole branch's range
/// reported.
#[test]
fn salvage_loses_a_bad_child_reference_alone() {
    let p = pager();
    let z = put(&p, 10, leaf(&[b"z"]));
    let root = put(&p, 11, branch(b"m", PageRef::NONE, z));
    let (records, lost) = salvaged_keys(&p, root);
    assert_eq!(records, [b"z".to_vec()]);
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].lo.is_none() && lost[0].hi.as_deref() == Some(&b"m"[..]), "{lost:?}");
}

/// A reference with a wrong tag met before the page's real one: the check marked the page at
/// the first, took the real reference for a second one, skipped its healthy subtree and called
/// its pages leaked. Now the page is marked once it reads.
#[test]
fn the_check_reaches_a_page_through_its_real_reference_after_a_bad_one() {
    let p = pager();
    let real = put(&p, 10, leaf(&[b"a"]));
    let forged = PageRef { tag: crate::format::page::SealTag([0x55; 16]), ..real };
    // The stack takes the last child first: the forged reference is met first.
    let root = put(&p, 11, branch(b"m", real, forged));
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    let records = verify::check_tree(&p, "t", root, &mut |pg| seen.insert(pg), &mut problems).unwrap();
    assert_eq!(records, 1, "the healthy leaf was skipped");
    let found: Vec<_> = problems.iter().map(|x| (x.page, x.reason)).collect();
    assert_eq!(found, [(10, CorruptReason::TagMismatch)]);
    assert!(seen.contains(&10) && seen.contains(&11));
}

/// A read that fails (EIO) is the salvage's own error, as the check's: the range it would have
/// reported lost may be whole on the disk, and a copy without it looked like a finished one.
#[test]
fn salvage_stops_at_a_failed_read_rather_than_losing_its_range() {
    use crate::storage::{FaultPlan, FaultyStorage};
    // Builds a tree with `build` on a pager over a fault-injecting device, then fails every
    // read from the second on (the root reads, nothing below it does) and salvages it.
    let salvage_failing = |build: &dyn Fn(&Pager) -> PageRef| {
        let dev = FaultyStorage::new();
        let p = Pager::new(Arc::new(dev.clone()), PageSealer::plaintext(*b"damaged-trees!!!"), 1 << 20);
        p.set_page_limit(64);
        let root = build(&p);
        p.clear_cache();
        dev.set_plan(FaultPlan { fail_at: Some(2), persistent: true, ..FaultPlan::default() });
        let mut lost = Vec::new();
        let r = salvage::walk(&p, root, &mut |_, _| Ok(()), &mut |l| lost.push(l));
        assert!(matches!(r, Err(Error::Io(_))), "{r:?}");
        assert!(lost.is_empty(), "a failed read reported as lost: {lost:?}");
    };
    // A branch whose children do not read.
    salvage_failing(&|p| {
        let left = put(p, 10, leaf(&[b"a", b"b"]));
        let right = put(p, 11, leaf(&[b"n", b"o"]));
        put(p, 12, branch(b"m", left, right))
    });
    // An overflow value whose chain does not read: the salvage's error, not a lost key.
    salvage_failing(&|p| {
        let mut buf = Box::new([0u8; PAGE_SIZE]);
        write_header(&mut buf[..], PageKind::Overflow, 0, 1);
        PageRef::NONE.encode(&mut buf[NEXT_OFFSET..]);
        put_u32(&mut buf[..], CHUNK_LEN_OFFSET, 100);
        let first = PageRef { page: 20, tag: p.write(20, 0, buf).unwrap(), generation: 1 };
        let mut l = Leaf::default();
        l.insert(0, b"a", RawValue::Overflow { first, len: 100 });
        put(p, 10, Node::Leaf(l))
    });
}
