//! Tests of `btree::node`: the leaf and branch layouts against models (a sorted list of
//! entries, a list of separators), splits, and the page round trip.

use super::*;

fn leaf(n: usize, vlen: usize) -> Leaf {
    let mut l = Leaf::default();
    for i in 0..n {
        l.insert(i, format!("key{i:05}").as_bytes(), RawValue::Inline(&vec![i as u8; vlen]));
    }
    l
}

#[test]
fn leaf_round_trip_and_search() {
    let l = leaf(30, 100);
    let mut buf = vec![0u8; PAYLOAD_SIZE];
    Node::Leaf(l.clone()).encode(7, &mut buf).unwrap();
    let raw = RawNode::new(&buf, 9).unwrap();
    assert_eq!(raw.len(), 30);
    assert_eq!(raw.leaf_search(b"key00010").unwrap(), Ok(10));
    assert_eq!(raw.leaf_search(b"key00010x").unwrap(), Err(11));
    let Node::Leaf(d) = Node::decode(&buf, 9).unwrap() else { panic!() };
    assert_eq!(d.len(), 30);
    assert_eq!(d.key(3), l.key(3));
}

#[test]
fn a_full_buffer_with_dead_bytes_makes_room_for_the_next_entry() {
    // 40 entries of 100 bytes fill 4,000 of the first buffer's 4,064 (a payload); one removed leaves
    // 100 dead; the next needs 305, more than the dead and spare bytes together, so the
    // compaction must reserve it (the buffer must not grow by itself, unwiped: in debug
    // builds `store` asserts this).
    let mut l = Leaf::default();
    for i in 0..40u8 {
        l.insert(i as usize, &[i; 4], RawValue::Inline(&[7; 96]));
    }
    assert_eq!(l.bytes.capacity() - l.bytes.len(), PAYLOAD_SIZE - 4_000);
    l.remove(0);
    l.insert(0, &[0; 5], RawValue::Inline(&[9; 300]));
    assert_eq!(l.dead, 0);
    assert!(matches!(l.value(0), RawValue::Inline(v) if v == [9; 300]));
    assert!((1..40).all(|i| l.key(i) == [i as u8; 4] && matches!(l.value(i), RawValue::Inline(v) if v == [7; 96])));
}

#[test]
fn split_halves_fit() {
    let mut l = leaf(40, 1800);
    let r = l.split();
    assert!(!l.is_empty() && !r.is_empty());
    let mut b = Branch::new((0..200).map(|i| vec![i as u8; 1000]).collect(), vec![PageRef::NONE; 201]);
    let (sep, rb) = b.split();
    assert_eq!(b.children.len(), b.key_count() + 1);
    assert_eq!(rb.children.len(), rb.key_count() + 1);
    // The prefixes moved with their keys: every key routes to the child it separates.
    for (half, lo) in [(&b, 0usize), (&rb, b.key_count() + 1)] {
        assert_eq!(half.prefixes.len(), half.key_count());
        for (i, k) in half.keys().enumerate() {
            assert_eq!(half.child_index(k), i + 1, "key {} of the half from {lo}", i);
        }
    }
    assert_eq!(b.child_index(&sep), b.key_count());
}

/// The inline limit is the largest that keeps the split argument of SPEC.md §4.2: a leaf one
/// insertion past full, whatever the sizes of its entries (up to `MAX_ENTRY_SIZE` each), splits
/// into two halves that each fit a page and round-trip through it.
#[test]
fn leaves_of_maximal_entries_split_into_halves_that_fit() {
    assert_eq!(MAX_INLINE_ENTRY, 2015, "SPEC.md §4.2 states this number");
    let sizes = [1usize, 300, 1000, 1500, MAX_INLINE_ENTRY - 7];
    for a in sizes {
        for b in sizes {
            for c in sizes {
                let mut l = Leaf::default();
                let mut i = 0usize;
                while l.size() <= PAYLOAD_SIZE {
                    let v = vec![i as u8; [a, b, c][i % 3]];
                    l.insert(i, format!("key{i:04}").as_bytes(), RawValue::Inline(&v));
                    i += 1;
                }
                let r = l.split();
                for half in [&l, &r] {
                    assert!(!half.is_empty() && half.size() <= PAYLOAD_SIZE, "{a} {b} {c}: a half of {}", half.size());
                    let mut page = vec![0u8; PAYLOAD_SIZE];
                    Node::Leaf(half.clone()).encode(1, &mut page).unwrap();
                    assert_eq!(RawNode::new(&page, 9).unwrap().len(), half.len());
                }
            }
        }
    }
}

/// The edge splits: a branch one key past full splits off its last separator and last two
/// children (`split_last`) or keeps its first two (`split_first`); the halves fit, keep their
/// children in step with their keys, and route every key as the whole branch did.
#[test]
fn branch_edge_splits_keep_routing() {
    let all: Vec<Vec<u8>> = (0..200u32).map(|i| format!("sep{i:04}-{}", "x".repeat(30)).into_bytes()).collect();
    let branch = |n: usize| {
        let children = (0..=n as u64).map(|p| PageRef { page: p + 10, ..PageRef::NONE }).collect();
        Branch::new(all[..n].to_vec(), children)
    };
    // The fewest keys past a page: one key more than fitted.
    let n = (1..all.len()).find(|&n| branch(n).size() > PAYLOAD_SIZE).unwrap();
    let (keys, children) = (&all[..n], branch(n).children.clone());
    for last in [true, false] {
        let mut b = branch(n);
        let (sep, right) = if last { b.split_last() } else { b.split_first() };
        assert_eq!(if last { right.key_count() } else { b.key_count() }, 1);
        for half in [&b, &right] {
            assert!(half.size() <= PAYLOAD_SIZE && half.children.len() == half.key_count() + 1);
        }
        for (i, k) in keys.iter().enumerate() {
            let (half, offset) = if k < &sep { (&b, 0) } else { (&right, b.children.len()) };
            assert_eq!(half.children[half.child_index(k)].page, children[i + 1].page, "key {i} ({offset})");
        }
    }
}

/// A damaged leaf whose offsets overlap (two slots naming the same entry) decodes to more than
/// a page: refused as `BadLayout`, so that no edit starts from a node that does not fit.
#[test]
fn a_leaf_whose_entries_overlap_past_a_page_is_refused() {
    let mut l = Leaf::default();
    l.insert(0, b"a", RawValue::Inline(&[1; 2500]));
    l.insert(1, b"b", RawValue::Inline(&[2; 10]));
    let mut page = vec![0u8; PAYLOAD_SIZE];
    Node::Leaf(l).encode(1, &mut page).unwrap();
    assert!(Node::decode(&page, 9).is_ok());
    let first = crate::format::get_u16(&page, PAGE_HEADER_SIZE).unwrap();
    crate::format::put_u16(&mut page, PAGE_HEADER_SIZE + SLOT, first);
    assert!(matches!(
        Node::decode(&page, 9),
        Err(Error::Corrupt { page: 9, reason: crate::error::CorruptReason::BadLayout })
    ));
}

/// A stored reference that reads as a transaction's own (tag zero, generation 0: no commit
/// writes one) is damage, in a branch, a catalog entry or a commit record: a transaction took
/// it for the node it had just copied to that page, and joined two trees there.
#[test]
fn a_stored_reference_that_reads_as_a_transactions_own_is_refused() {
    let page_no = crate::format::FIRST_DATA_PAGE + 3;
    let committed = PageRef { page: page_no, generation: 1, ..PageRef::NONE };
    for (child, ok) in [(committed, true), (PageRef::dirty(page_no), false)] {
        let b = Branch::new(vec![b"m".to_vec()], vec![committed, child]);
        let mut page = vec![0u8; PAYLOAD_SIZE];
        Node::Branch(b).encode(1, &mut page).unwrap();
        let r = Node::decode(&page, 9);
        assert_eq!(r.is_ok(), ok, "{:?}", r.err());
        let root = crate::btree::TreeRoot { root: child, count: 1, born: 0 };
        assert_eq!(crate::btree::TreeRoot::decode(&root.encode()).is_some(), ok);
        let rec = crate::format::commit::CommitRecord { seq: 2, catalog: child, page_count: 20, ..Default::default() };
        let mut p = vec![0u8; PAYLOAD_SIZE];
        rec.encode(&mut p);
        assert_eq!(crate::format::commit::CommitRecord::decode(&p, 2, 2).is_ok(), ok);
    }
}

/// The key buffer of a branch against a list of keys: inserts, removals, splits and merges,
/// each followed by the checks that keys, prefixes, size and the page encoding agree.
fn branch_model(ops: &[(u8, u16, Vec<u8>)]) {
    // Any data page: a child reference to page 0 does not decode.
    let child = PageRef { page: crate::format::FIRST_DATA_PAGE, generation: 1, ..PageRef::NONE };
    let mut b = Branch::new(Vec::new(), vec![child]);
    let mut model: Vec<Vec<u8>> = Vec::new();
    for (op, at, key) in ops {
        let n = model.len();
        match op % 4 {
            // In key order, as the tree inserts (so the page encoding round-trips below).
            0 | 1 => {
                if let Err(i) = model.binary_search(key) {
                    b.insert_key(i, key.clone());
                    b.children.insert(i + 1, child);
                    model.insert(i, key.clone());
                }
            }
            2 if n > 0 => {
                let i = *at as usize % n;
                assert_eq!(b.remove_key(i), Some(model.remove(i)));
                b.children.remove(i + 1);
            }
            3 if n >= 2 => {
                let (sep, mut right) = b.split();
                let (l, r) = (b.key_count(), right.key_count());
                assert_eq!(l + 1 + r, n);
                assert_eq!(sep, model[l]);
                assert!(right.keys().eq(model[l + 1..].iter().map(Vec::as_slice)));
                b.merge(sep, &mut right);
            }
            _ => {}
        }
        assert!(b.keys().eq(model.iter().map(Vec::as_slice)), "keys");
        assert_eq!((b.prefixes.len(), b.children.len()), (model.len(), model.len() + 1));
        for (i, k) in model.iter().enumerate() {
            assert_eq!(b.prefixes[i], key_prefix(k));
            assert_eq!(b.key(i), Some(&k[..]));
        }
        assert_eq!(b.key(model.len()), None);
        let size = PAGE_HEADER_SIZE + (model.len() + 1) * PAGE_REF_SIZE;
        assert_eq!(b.size(), size + model.iter().map(|k| SLOT + 2 + k.len()).sum::<usize>());
        if b.size() <= PAYLOAD_SIZE {
            let mut buf = vec![0u8; PAYLOAD_SIZE];
            Node::Branch(b.clone()).encode(3, &mut buf).unwrap();
            let Node::Branch(d) = Node::decode(&buf, 9).unwrap() else { panic!("kind") };
            assert!(d.keys().eq(b.keys()) && d.prefixes == b.prefixes && d.size() == b.size());
        }
    }
}

/// A value of the leaf model: inline bytes, or an overflow reference (page, length).
#[derive(Clone, Debug, PartialEq)]
enum ModelValue {
    Inline(Vec<u8>),
    Overflow(u64, u64),
}

fn model_value(v: &ModelValue) -> RawValue<'_> {
    match v {
        ModelValue::Inline(b) => RawValue::Inline(b),
        ModelValue::Overflow(page, len) => {
            RawValue::Overflow { first: PageRef { page: *page, ..PageRef::NONE }, len: *len }
        }
    }
}

fn same_value(a: RawValue<'_>, b: &ModelValue) -> bool {
    match (a, b) {
        (RawValue::Inline(x), ModelValue::Inline(y)) => x == &y[..],
        (RawValue::Overflow { first, len }, ModelValue::Overflow(p, l)) => first.page == *p && len == *l,
        _ => false,
    }
}

/// A decoded leaf against a sorted list of (key, value): inserts, value replacements (larger,
/// smaller, to and from overflow), removals, splits and moves of a front part, each followed
/// by the checks that keys, values, prefixes, sizes, the buffer's accounting and the page
/// encoding agree.
fn leaf_model(ops: &[(u8, u16, Vec<u8>, u16)]) {
    let mut l = Leaf::default();
    let mut model: Vec<(Vec<u8>, ModelValue)> = Vec::new();
    for (op, at, key, vlen) in ops {
        let value = if vlen % 5 == 0 {
            ModelValue::Overflow(*vlen as u64, 5_000 + *vlen as u64)
        } else {
            ModelValue::Inline(vec![*vlen as u8; *vlen as usize % 300])
        };
        let n = model.len();
        match op % 6 {
            0 | 1 => match l.search(key) {
                Ok(i) => {
                    let old = l.replace_value(i, model_value(&value)).expect("present");
                    assert!(same_value(old.as_raw(), &model[i].1), "the old value comes back");
                    model[i].1 = value;
                }
                Err(i) => {
                    l.insert(i, key, model_value(&value));
                    model.insert(i, (key.clone(), value));
                }
            },
            2 if n > 0 => {
                let i = *at as usize % n;
                let old = l.remove(i).expect("present");
                assert!(same_value(old.as_raw(), &model.remove(i).1));
            }
            3 if n >= 2 => {
                let mut right = l.split();
                assert!(!l.is_empty() && !right.is_empty());
                assert!((0..right.len()).all(|i| right.key(i) == &model[l.len() + i].0[..]));
                l.append(&mut right);
                assert!(right.is_empty());
            }
            4 if n > 0 => {
                let k = *at as usize % (n + 1);
                let mut front = l.split_front(k);
                assert_eq!((front.len(), l.len()), (k, n - k));
                front.append(&mut l);
                l = front;
            }
            5 if n > 0 => {
                let i = *at as usize % n;
                let page = 77 + *at as u64;
                l.set_overflow_first(i, PageRef { page, ..PageRef::NONE });
                if let ModelValue::Overflow(p, _) = &mut model[i].1 {
                    *p = page;
                }
            }
            _ => {}
        }
        assert_eq!(l.len(), model.len());
        for (i, (k, v)) in model.iter().enumerate() {
            assert_eq!(l.key(i), &k[..]);
            assert!(same_value(l.value(i), v), "value {i}");
            assert_eq!(l.prefixes[i], key_prefix(k));
        }
        let stored: usize = l.at.iter().map(EntryAt::stored).sum();
        assert_eq!(l.bytes.len() - l.dead, stored, "dead bytes accounted");
        let encoded: usize = model
            .iter()
            .map(|(k, v)| {
                SLOT + LEAF_ENTRY_HEADER
                    + k.len()
                    + match v {
                        ModelValue::Inline(b) => b.len(),
                        ModelValue::Overflow(..) => OVERFLOW_REF_SIZE,
                    }
            })
            .sum();
        assert_eq!(l.size(), PAGE_HEADER_SIZE + encoded);
        assert!((0..l.len()).map(|i| l.entry_size(i)).sum::<usize>() == encoded);
        if l.size() <= PAYLOAD_SIZE {
            let mut buf = vec![0u8; PAYLOAD_SIZE];
            Node::Leaf(l.clone()).encode(3, &mut buf).unwrap();
            let Node::Leaf(d) = Node::decode(&buf, 9).unwrap() else { panic!("kind") };
            assert_eq!(d.len(), l.len());
            assert!((0..d.len()).all(|i| d.key(i) == l.key(i) && same_value(d.value(i), &model[i].1)));
            assert_eq!(d.size(), l.size());
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn leaf_entries_follow_a_list(
        ops in proptest::collection::vec(
            (0u8..6, 0u16..1000, proptest::collection::vec(0u8..3, 0..12), 0u16..400), 1..120),
    ) {
        leaf_model(&ops);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn branch_keys_follow_a_list(
        ops in proptest::collection::vec(
            (0u8..4, 0u16..1000, proptest::collection::vec(0u8..3, 0..12)), 1..80),
    ) {
        branch_model(&ops);
    }
}
