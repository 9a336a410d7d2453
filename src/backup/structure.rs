//! The trees a backup's pages form, checked while the stream is read (verify with a key, or of
//! a plaintext backup). A stream gives its pages in page order, not tree order, so each page is
//! reduced to what the walk needs ([`PageFacts`]), and one walk from the catalog then checks the
//! links. The checks are those `Db::check` (`btree::verify::check_tree`, `overflow::walk`)
//! makes on the file restore writes, with the same reasons: a backup verify passes is one
//! restore takes.
//!
//! Invariants:
//! - No page is kept whole. A page's facts are its tag, kind and generation, its links (with
//!   the length of each value whose chain a leaf starts), and the keys that bound what is below
//!   it: a branch's separators, a leaf's first and last key. Keys and catalog entries are user
//!   data, wiped when dropped. What is kept grows with the stream read, never with a count a
//!   header states.
//! - Each page is checked on its own as it arrives (keys in order within it, key lengths, the
//!   layout, an overflow page's chunk), and the walk checks what needs its parent: the tag and
//!   generation the link holds, the key range the parent gives, one leaf depth per tree, each
//!   chain as long as its value, no page reached twice and every page reached.

use std::collections::{BTreeMap, HashMap};

use zeroize::Zeroizing;

use crate::btree::node::MAX_KEY_LEN;
use crate::btree::overflow::{CHUNK_LEN_OFFSET, NEXT_OFFSET, OVERFLOW_CHUNK};
use crate::btree::raw::{RawNode, RawValue};
use crate::btree::{MAX_DEPTH, TREE_ROOT_SIZE, TreeRoot};
use crate::crypto::seal::{KeyPurpose, PageBuf, PageSealer};
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::get_u32;
use crate::format::page::{PAYLOAD_SIZE, PageKind, PageRef, SealTag, generation};

/// What one opened page says about the tree structure.
#[derive(Default)]
pub(super) struct PageFacts {
    tag: Option<SealTag>,
    kind: Option<PageKind>,
    generation: u64,
    /// Pages this one references, with the tags and generations it expects: a branch's
    /// children, the first page of each of a leaf's values held in a chain, an overflow page's
    /// next page.
    children: Vec<PageRef>,
    /// A leaf: the length of the value whose chain starts at `children[i]`.
    value_lens: Vec<u64>,
    /// An overflow page: the bytes of its value it holds.
    chunk_len: u64,
    records: u64,
    /// A branch: its separator keys, in order; a leaf: its first and last key (one key, for a
    /// leaf of one entry; none for an empty one).
    keys: Vec<Zeroizing<Vec<u8>>>,
    /// A leaf whose every value decodes as a tree root (a catalog leaf, or a user leaf that
    /// looks like one): per entry the value's bytes then the key's. Decoded only once the
    /// catalog walk reaches it.
    trees: Vec<Zeroizing<Vec<u8>>>,
    /// A leaf value that is not a tree root (in a catalog leaf: an entry that does not decode).
    not_tree_roots: bool,
}

/// What page `page` of the stream holds, once it opens under its page key (every page in a
/// backup must open and parse: a backup holds only live pages), with the checks that need
/// this page alone.
pub(super) fn page_facts(sealer: &PageSealer, page: PageNo, buf: &mut PageBuf) -> Result<PageFacts> {
    let (tag, _) = sealer.open(KeyPurpose::Page, page, buf)?;
    let payload = &buf[..PAYLOAD_SIZE];
    let mut f = PageFacts { tag: Some(tag), generation: generation(payload), ..PageFacts::default() };
    f.kind = payload.first().copied().and_then(PageKind::from_byte);
    let layout = || Error::corrupt(page, CorruptReason::BadLayout);
    match f.kind {
        Some(PageKind::Branch) | Some(PageKind::Leaf) => {
            let raw = RawNode::new(payload, page)?;
            // Entries that share bytes read, but decode to more than a page (`check_tree`).
            if raw.encoded_size()? > PAYLOAD_SIZE {
                return Err(layout());
            }
            if raw.is_leaf() {
                leaf_facts(&raw, page, &mut f)?;
            } else {
                for i in 0..raw.len() {
                    let k = raw.branch_key(i)?;
                    if f.keys.last().is_some_and(|prev| prev[..] >= *k) {
                        return Err(Error::corrupt(page, CorruptReason::KeyOrder));
                    }
                    f.keys.push(Zeroizing::new(k.to_vec()));
                }
                for i in 0..=raw.len() {
                    f.children.push(raw.child(i)?);
                }
            }
        }
        Some(PageKind::Overflow) => {
            let clen = get_u32(payload, CHUNK_LEN_OFFSET).ok_or_else(layout)? as usize;
            let next = PageRef::decode(payload, NEXT_OFFSET).ok_or_else(layout)?;
            if clen > OVERFLOW_CHUNK {
                return Err(layout());
            }
            if !next.is_none() {
                // The writer fills every chunk but the last.
                if clen != OVERFLOW_CHUNK {
                    return Err(Error::corrupt(page, CorruptReason::OverflowLength));
                }
                f.children.push(next);
            }
            f.chunk_len = clen as u64;
        }
        _ => return Err(Error::corrupt(page, CorruptReason::WrongPageKind)),
    }
    Ok(f)
}

/// A leaf's facts: its entries in key order, no key longer than a write makes, the first and
/// last key, its value chains, and its entries as tree roots if every value decodes as one.
fn leaf_facts(raw: &RawNode<'_>, page: PageNo, f: &mut PageFacts) -> Result<()> {
    let mut prev: Option<&[u8]> = None;
    for i in 0..raw.len() {
        let (k, v) = raw.leaf_entry(i)?;
        if prev.is_some_and(|p| p >= k) {
            return Err(Error::corrupt(page, CorruptReason::KeyOrder));
        }
        if k.len() > MAX_KEY_LEN {
            return Err(Error::corrupt(page, CorruptReason::BadLayout));
        }
        prev = Some(k);
        match v {
            RawValue::Overflow { first, len } => {
                f.children.push(first);
                f.value_lens.push(len);
                f.not_tree_roots = true;
            }
            RawValue::Inline(b) => f.not_tree_roots |= TreeRoot::decode(b).is_none(),
        }
    }
    let n = raw.len();
    for i in [0, n.saturating_sub(1)].into_iter().take(n.min(2)) {
        f.keys.push(Zeroizing::new(raw.leaf_entry(i)?.0.to_vec()));
    }
    f.records = n as u64;
    // A catalog leaf's entries are its own bytes, so together they fit the page. Slots of a
    // forged leaf may name one entry many times over: copied once per slot, such a page took
    // some 2 MB, each, until the walk.
    if !f.not_tree_roots {
        let copied: usize =
            (0..n).map(|i| raw.leaf_entry(i).map(|(k, _)| TREE_ROOT_SIZE + k.len())).sum::<Result<usize>>()?;
        if copied > PAYLOAD_SIZE {
            return Err(Error::corrupt(page, CorruptReason::BadLayout));
        }
        f.trees.reserve_exact(n);
        for i in 0..n {
            let (k, v) = raw.leaf_entry(i)?;
            let mut e = Zeroizing::new(Vec::with_capacity(TREE_ROOT_SIZE + k.len()));
            e.extend_from_slice(v.inline_bytes());
            e.extend_from_slice(k);
            f.trees.push(e);
        }
    }
    Ok(())
}

/// One step of the walk: a link, its branch depth, the key range its parent gives (tree
/// pages), or the bytes of its value still to come (chain pages).
struct Step<'a> {
    link: PageRef,
    depth: usize,
    lo: Option<&'a [u8]>,
    hi: Option<&'a [u8]>,
    chain_left: Option<u64>,
}

/// Walks the page graph from the catalog: every link must name a page in the backup with the
/// tag and generation the parent holds and of the kind the link expects (a branch's child a
/// branch or leaf, a value's chain overflow pages), keys within the range the parent gives,
/// leaves of a tree at one depth, a chain as long as its value, no page reached twice (within
/// a tree or across trees: each walk would otherwise cover a shared subtree again), and every
/// page of the backup reached (restore makes each one live). Depth counts branch levels only:
/// an overflow chain is as long as its value, and is bounded by the pages in the backup.
/// Returns records per tree.
pub(super) fn check_structure(facts: &HashMap<PageNo, PageFacts>, catalog: PageRef) -> Result<BTreeMap<Vec<u8>, u64>> {
    let mut visited = crate::pager::pagemap::PageSet::default();
    let (_, trees) = walk(facts, &mut visited, catalog, true)?;
    let mut out = BTreeMap::new();
    for (name, root) in trees {
        let (n, _) = walk(facts, &mut visited, root.root, false)?;
        if n != root.count {
            return Err(Error::corrupt(root.root.page, CorruptReason::CountMismatch));
        }
        if !name.starts_with(crate::db::engine::RESERVED_PREFIX) {
            out.insert(name, n);
        }
    }
    if visited.len() != facts.len() {
        return Err(Error::BackupCorrupt { offset: 0, chunk: None, what: "a page no tree reaches" });
    }
    Ok(out)
}

/// The facts of the page `r` links to, if they hold the tag and generation the link expects.
fn linked(facts: &HashMap<PageNo, PageFacts>, r: PageRef) -> Result<&PageFacts> {
    let f = facts.get(&r.page).ok_or(Error::BackupCorrupt {
        offset: 0,
        chunk: None,
        what: "a referenced page is missing",
    })?;
    match f.tag {
        Some(t) if t.ct_eq(&r.tag) => {}
        Some(_) => return Err(Error::corrupt(r.page, CorruptReason::TagMismatch)),
        None => return Err(Error::corrupt(r.page, CorruptReason::SealMismatch)),
    }
    // As `Pager::read`: a link of generation 0 names none.
    if r.generation != 0 && f.generation != r.generation {
        return Err(Error::corrupt(r.page, CorruptReason::TagMismatch));
    }
    Ok(f)
}

/// One tree's walk (the catalog's if `catalog`, which also returns its entries): records seen.
fn walk(
    facts: &HashMap<PageNo, PageFacts>,
    visited: &mut crate::pager::pagemap::PageSet,
    root: PageRef,
    catalog: bool,
) -> Result<(u64, Vec<(Vec<u8>, TreeRoot)>)> {
    let mut records = 0;
    let mut trees = Vec::new();
    let mut leaf_depth = None;
    let mut stack = vec![Step { link: root, depth: 0, lo: None, hi: None, chain_left: None }];
    while let Some(s) = stack.pop() {
        let r = s.link;
        if r.is_none() {
            continue;
        }
        if s.depth > MAX_DEPTH {
            return Err(Error::corrupt(r.page, CorruptReason::TooDeep));
        }
        crate::pager::pagemap::reach_once(visited, r.page)?;
        let f = linked(facts, r)?;
        if s.chain_left.is_some() != (f.kind == Some(PageKind::Overflow)) {
            return Err(Error::corrupt(r.page, CorruptReason::WrongPageKind));
        }
        if let Some(left) = s.chain_left {
            // The chain holds no more than its value, and all of it by its last page.
            let left = left.checked_sub(f.chunk_len).ok_or(Error::corrupt(r.page, CorruptReason::OverflowLength))?;
            match f.children.first() {
                // A page past the value's end (an empty last chunk): `overflow::walk` counts the
                // pages a value of this length may take.
                Some(_) if left == 0 => return Err(Error::corrupt(r.page, CorruptReason::OverflowLength)),
                Some(next) => stack.push(Step { link: *next, chain_left: Some(left), ..s }),
                None if left != 0 => return Err(Error::corrupt(r.page, CorruptReason::OverflowLength)),
                None => {}
            }
            continue;
        }
        // A leaf's keys may equal its lower bound; a branch's separators may not (as the check,
        // `btree::verify`: no writer makes one, and an edit merging under it would fail).
        let branch = f.kind == Some(PageKind::Branch);
        let in_range =
            |k: &[u8]| s.lo.is_none_or(|l| if branch { k > l } else { k >= l }) && s.hi.is_none_or(|h| k < h);
        if f.keys.iter().any(|k| !in_range(k)) {
            return Err(Error::corrupt(r.page, CorruptReason::KeyOrder));
        }
        if branch {
            let n = f.keys.len();
            for (i, c) in f.children.iter().enumerate() {
                let lo = if i == 0 { s.lo } else { f.keys.get(i - 1).map(|k| &k[..]) };
                let hi = if i == n { s.hi } else { f.keys.get(i).map(|k| &k[..]) };
                stack.push(Step { link: *c, depth: s.depth + 1, lo, hi, chain_left: None });
            }
            continue;
        }
        // A leaf.
        if *leaf_depth.get_or_insert(s.depth) != s.depth {
            return Err(Error::corrupt(r.page, CorruptReason::BadLayout));
        }
        records += f.records;
        if catalog {
            if f.not_tree_roots || !f.children.is_empty() {
                return Err(Error::corrupt(r.page, CorruptReason::BadLayout));
            }
            for e in &f.trees {
                let bad = || Error::corrupt(r.page, CorruptReason::BadLayout);
                let (root, name) = e.split_at_checked(TREE_ROOT_SIZE).ok_or_else(bad)?;
                trees.push((name.to_vec(), TreeRoot::decode(root).ok_or_else(bad)?));
            }
        }
        for (c, len) in f.children.iter().zip(&f.value_lens) {
            // No value is longer (SPEC §4.3): a chain that holds more is damaged.
            if *len > crate::MAX_VALUE_LEN {
                return Err(Error::corrupt(c.page, CorruptReason::OverflowLength));
            }
            if c.is_none() && *len != 0 {
                return Err(Error::corrupt(r.page, CorruptReason::OverflowLength));
            }
            stack.push(Step { link: *c, depth: s.depth, lo: None, hi: None, chain_left: Some(*len) });
        }
    }
    Ok((records, trees))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::node::{Leaf, Node, SLOT};
    use crate::format::PAGE_SIZE;
    use crate::format::page::PAGE_HEADER_SIZE;

    fn corrupt_reason<T>(r: Result<T>) -> Option<CorruptReason> {
        match r {
            Err(Error::Corrupt { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    /// Two catalog entries rooted at one page: walked once per tree, a subtree shared by a
    /// thousand entries of a forged catalog was walked a thousand times. It is damage.
    #[test]
    fn a_subtree_shared_by_two_trees_is_damage() {
        let tag = SealTag([9; 16]);
        let shared = PageRef { page: 20, tag, generation: 1 };
        let entry = |name: &[u8]| {
            let mut e = TreeRoot { root: shared, count: 1, born: 0 }.encode();
            e.extend_from_slice(name);
            zeroize::Zeroizing::new(e)
        };
        let catalog_tag = SealTag([3; 16]);
        let mut facts = HashMap::new();
        let catalog = PageFacts {
            tag: Some(catalog_tag),
            kind: Some(PageKind::Leaf),
            records: 2,
            trees: vec![entry(b"a"), entry(b"b")],
            generation: 1,
            ..PageFacts::default()
        };
        facts.insert(10, catalog);
        facts.insert(
            20,
            PageFacts { tag: Some(tag), kind: Some(PageKind::Leaf), records: 1, generation: 1, ..PageFacts::default() },
        );
        let r = check_structure(&facts, PageRef { page: 10, tag: catalog_tag, generation: 1 });
        assert_eq!(corrupt_reason(r), Some(CorruptReason::DoubleReference));
        // One tree at that root is sound.
        facts.get_mut(&10).unwrap().trees.pop();
        let trees = check_structure(&facts, PageRef { page: 10, tag: catalog_tag, generation: 1 }).unwrap();
        assert_eq!(trees.into_iter().collect::<Vec<_>>(), [(b"a".to_vec(), 1)]);
    }

    /// One tree, a leaf at page 20 holding one value in an overflow chain of `chain` pages
    /// (21, 22, ...), and its catalog at page 10.
    fn tree_with_chain(chain: u64) -> (HashMap<PageNo, PageFacts>, PageRef) {
        let tag = |p: u64| SealTag([p as u8; 16]);
        let link = |p: u64| PageRef { page: p, tag: tag(p), generation: 1 };
        let mut e = TreeRoot { root: link(20), count: 1, born: 0 }.encode();
        e.extend_from_slice(b"t");
        let mut facts = HashMap::new();
        let catalog = PageFacts {
            tag: Some(tag(10)),
            kind: Some(PageKind::Leaf),
            records: 1,
            trees: vec![zeroize::Zeroizing::new(e)],
            generation: 1,
            ..PageFacts::default()
        };
        facts.insert(10, catalog);
        let leaf = PageFacts {
            tag: Some(tag(20)),
            kind: Some(PageKind::Leaf),
            records: 1,
            children: vec![link(21)],
            value_lens: vec![chain * OVERFLOW_CHUNK as u64],
            not_tree_roots: true,
            generation: 1,
            ..PageFacts::default()
        };
        facts.insert(20, leaf);
        for p in 21..21 + chain {
            let next = if p + 1 < 21 + chain { vec![link(p + 1)] } else { Vec::new() };
            facts.insert(
                p,
                PageFacts {
                    tag: Some(tag(p)),
                    kind: Some(PageKind::Overflow),
                    children: next,
                    chunk_len: OVERFLOW_CHUNK as u64,
                    generation: 1,
                    ..PageFacts::default()
                },
            );
        }
        (facts, link(10))
    }

    /// An overflow chain is as long as its value, not a tree level per page: a value of some
    /// hundred pages (400 KB) verifies. Its pages must be overflow pages, and every page of the
    /// backup must be reached.
    #[test]
    fn chains_are_not_tree_depth_and_every_page_is_reached() {
        let (mut facts, catalog) = tree_with_chain(100);
        let trees = check_structure(&facts, catalog).unwrap();
        assert_eq!(trees.into_iter().collect::<Vec<_>>(), [(b"t".to_vec(), 1)]);
        // A page that nothing references: restore would make it live and unreachable.
        facts.insert(
            500,
            PageFacts {
                tag: Some(SealTag([7; 16])),
                kind: Some(PageKind::Leaf),
                generation: 1,
                ..PageFacts::default()
            },
        );
        let r = check_structure(&facts, catalog);
        assert!(matches!(r, Err(Error::BackupCorrupt { what: "a page no tree reaches", .. })), "{r:?}");
        facts.remove(&500);
        // A chain that goes on into a leaf, and a leaf whose value is a leaf.
        facts.get_mut(&50).unwrap().kind = Some(PageKind::Leaf);
        assert_eq!(corrupt_reason(check_structure(&facts, catalog)), Some(CorruptReason::WrongPageKind));
        let (mut facts, catalog) = tree_with_chain(1);
        facts.get_mut(&21).unwrap().kind = Some(PageKind::Branch);
        assert_eq!(corrupt_reason(check_structure(&facts, catalog)), Some(CorruptReason::WrongPageKind));
    }

    /// A leaf whose slots all name one entry that decodes as a tree root: its entries would be
    /// copied once per slot, far more than the page holds. Refused as `BadLayout`; the same
    /// leaf with its own slots reads.
    #[test]
    fn catalog_entries_beyond_their_page_are_refused() {
        let sealer = PageSealer::plaintext(*b"backup-verify-ut");
        let root =
            TreeRoot { root: PageRef { page: 30, tag: SealTag([1; 16]), generation: 1 }, count: 0, born: 0 }.encode();
        // Eight entries, the first with a long key; then (for `shared`) every slot names it.
        let mut l = Leaf::default();
        l.insert(0, &[b'a'; 900], RawValue::Inline(&root));
        for i in 1..8u8 {
            l.insert(i as usize, &[b'a' + i], RawValue::Inline(&root));
        }
        let page = |shared: bool| {
            let mut buf = Box::new([0u8; PAGE_SIZE]);
            Node::Leaf(l.clone()).encode(1, &mut buf[..PAYLOAD_SIZE]).unwrap();
            let first = [buf[PAGE_HEADER_SIZE], buf[PAGE_HEADER_SIZE + 1]];
            for i in (1..8).filter(|_| shared) {
                let at = PAGE_HEADER_SIZE + SLOT * i;
                buf[at..at + 2].copy_from_slice(&first);
            }
            sealer.seal(KeyPurpose::Page, 12, 0, &mut buf).unwrap();
            buf
        };
        let f = page_facts(&sealer, 12, &mut page(false)).unwrap();
        assert_eq!(f.trees.len(), 8);
        assert_eq!(corrupt_reason(page_facts(&sealer, 12, &mut page(true))), Some(CorruptReason::BadLayout));
    }

    /// A leaf page (plaintext-sealed at page 12) with `keys` in slot order.
    fn leaf_page(keys: &[&[u8]]) -> (PageSealer, Box<PageBuf>) {
        let sealer = PageSealer::plaintext(*b"backup-verify-ut");
        let mut l = Leaf::default();
        for (i, k) in keys.iter().enumerate() {
            l.insert(i, k, RawValue::Inline(b"v"));
        }
        let mut buf = Box::new([0u8; PAGE_SIZE]);
        Node::Leaf(l).encode(1, &mut buf[..PAYLOAD_SIZE]).unwrap();
        (sealer, buf)
    }

    /// Keys out of order within a page, or longer than any write makes, are refused as the page
    /// arrives, as `Db::check` refuses them on the restored file.
    #[test]
    fn keys_out_of_order_or_too_long_in_a_page_are_refused() {
        let (sealer, mut buf) = leaf_page(&[b"a", b"b"]);
        // The two slots swapped: "b" before "a".
        let (s0, s1) = (PAGE_HEADER_SIZE, PAGE_HEADER_SIZE + SLOT);
        let first: [u8; 2] = [buf[s0], buf[s0 + 1]];
        buf.copy_within(s1..s1 + 2, s0);
        buf[s1..s1 + 2].copy_from_slice(&first);
        sealer.seal(KeyPurpose::Page, 12, 0, &mut buf).unwrap();
        assert_eq!(corrupt_reason(page_facts(&sealer, 12, &mut buf)), Some(CorruptReason::KeyOrder));
        let long = vec![b'k'; MAX_KEY_LEN + 1];
        let (sealer, mut buf) = leaf_page(&[&long]);
        sealer.seal(KeyPurpose::Page, 12, 0, &mut buf).unwrap();
        assert_eq!(corrupt_reason(page_facts(&sealer, 12, &mut buf)), Some(CorruptReason::BadLayout));
        let (sealer, mut buf) = leaf_page(&[b"a", b"b"]);
        sealer.seal(KeyPurpose::Page, 12, 0, &mut buf).unwrap();
        let f = page_facts(&sealer, 12, &mut buf).unwrap();
        assert_eq!(f.keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>(), [b"a".to_vec(), b"b".to_vec()]);
    }

    /// One tree under a catalog at page 10: a branch at page 20 with separator `sep` over
    /// leaves 30 (keys `left`) and 31 (keys `right`).
    fn two_leaf_tree(sep: &[u8], left: &[&[u8]], right: &[&[u8]]) -> (HashMap<PageNo, PageFacts>, PageRef) {
        let link = |p: u64| PageRef { page: p, tag: SealTag([p as u8; 16]), generation: 1 };
        let keys = |ks: &[&[u8]]| ks.iter().map(|k| Zeroizing::new(k.to_vec())).collect();
        let mut e = TreeRoot { root: link(20), count: (left.len() + right.len()) as u64, born: 0 }.encode();
        e.extend_from_slice(b"t");
        let mut facts = HashMap::new();
        let tree_page = |p: u64, kind: PageKind| PageFacts {
            tag: Some(link(p).tag),
            kind: Some(kind),
            generation: 1,
            not_tree_roots: true,
            ..PageFacts::default()
        };
        facts.insert(
            10,
            PageFacts {
                records: 1,
                trees: vec![Zeroizing::new(e)],
                not_tree_roots: false,
                ..tree_page(10, PageKind::Leaf)
            },
        );
        facts.insert(
            20,
            PageFacts { keys: keys(&[sep]), children: vec![link(30), link(31)], ..tree_page(20, PageKind::Branch) },
        );
        facts.insert(30, PageFacts { records: left.len() as u64, keys: keys(left), ..tree_page(30, PageKind::Leaf) });
        facts.insert(31, PageFacts { records: right.len() as u64, keys: keys(right), ..tree_page(31, PageKind::Leaf) });
        (facts, link(10))
    }

    /// Keys outside the range their parent gives (each page in order on its own), a leaf at
    /// another depth than its tree's others, and a page of another generation than its link
    /// holds: all refused by the walk, as `Db::check` refuses them.
    #[test]
    fn the_walk_checks_key_ranges_leaf_depth_and_generations() {
        let (facts, catalog) = two_leaf_tree(b"m", &[b"a", b"c"], &[b"m", b"z"]);
        let trees = check_structure(&facts, catalog).unwrap();
        assert_eq!(trees.into_iter().collect::<Vec<_>>(), [(b"t".to_vec(), 4)]);
        let out_of_range: [(&[&[u8]], &[&[u8]]); 2] = [(&[b"a", b"n"], &[b"m", b"z"]), (&[b"a", b"c"], &[b"l", b"z"])];
        for (left, right) in out_of_range {
            let (facts, catalog) = two_leaf_tree(b"m", left, right);
            assert_eq!(corrupt_reason(check_structure(&facts, catalog)), Some(CorruptReason::KeyOrder));
        }
        // A second branch level on one side only.
        let (mut facts, catalog) = two_leaf_tree(b"m", &[b"a", b"c"], &[b"m", b"z"]);
        let deeper = PageRef { page: 32, tag: SealTag([32; 16]), generation: 1 };
        let mut branch = PageFacts {
            tag: Some(deeper.tag),
            kind: Some(PageKind::Branch),
            generation: 1,
            keys: vec![Zeroizing::new(b"x".to_vec())],
            children: vec![PageRef { page: 31, tag: SealTag([31; 16]), generation: 1 }, PageRef::NONE],
            ..PageFacts::default()
        };
        branch.children[1] = PageRef { page: 33, tag: SealTag([33; 16]), generation: 1 };
        facts.insert(32, branch);
        facts.insert(
            33,
            PageFacts {
                tag: Some(SealTag([33; 16])),
                kind: Some(PageKind::Leaf),
                generation: 1,
                not_tree_roots: true,
                ..PageFacts::default()
            },
        );
        facts.get_mut(&20).unwrap().children[1] = deeper;
        facts.get_mut(&31).unwrap().keys.pop();
        assert_eq!(corrupt_reason(check_structure(&facts, catalog)), Some(CorruptReason::BadLayout));
        // A page of another generation than its link holds.
        let (mut facts, catalog) = two_leaf_tree(b"m", &[b"a", b"c"], &[b"m", b"z"]);
        facts.get_mut(&31).unwrap().generation = 7;
        assert_eq!(corrupt_reason(check_structure(&facts, catalog)), Some(CorruptReason::TagMismatch));
    }

    /// A chain must hold its value exactly: fewer bytes, or more, is `OverflowLength`, as
    /// `overflow::walk` finds on the file.
    #[test]
    fn a_chain_must_hold_its_value_exactly() {
        // Full pages then one more, empty: a page more than the value's length takes.
        let (mut facts, catalog) = tree_with_chain(3);
        facts.get_mut(&23).unwrap().chunk_len = 0;
        facts.get_mut(&20).unwrap().value_lens[0] = 2 * OVERFLOW_CHUNK as u64;
        assert_eq!(corrupt_reason(check_structure(&facts, catalog)), Some(CorruptReason::OverflowLength));
        for (len, ok) in [(3 * OVERFLOW_CHUNK as u64, true), (3 * OVERFLOW_CHUNK as u64 + 1, false), (100, false)] {
            let (mut facts, catalog) = tree_with_chain(3);
            facts.get_mut(&20).unwrap().value_lens[0] = len;
            let r = check_structure(&facts, catalog);
            match ok {
                true => assert!(r.is_ok(), "{len}: {r:?}"),
                false => assert_eq!(corrupt_reason(r), Some(CorruptReason::OverflowLength), "{len}"),
            }
        }
    }
}
