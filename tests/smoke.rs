mod common;
use common::*;

#[test]
fn insert_get_iterate_reopen() {
    for encrypted in [false, true] {
        let (db, m) = mem_db(encrypted);
        let t = db.open_tree("metadata").unwrap();
        for i in 0..2000u32 {
            t.insert(format!("key{i:06}"), format!("value{i}").into_bytes()).unwrap();
        }
        assert_eq!(t.len(), 2000);
        assert_eq!(t.get("key000042").unwrap().unwrap(), b"value42".as_slice());
        let all: Vec<_> = t.iter().flatten().collect();
        assert_eq!(all.len(), 2000);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        let rev: Vec<_> = t.iter().rev().flatten().collect();
        assert_eq!(rev.len(), 2000);
        assert_eq!(t.scan_prefix("key001").count(), 1000);
        assert_eq!(t.scan_prefix("key0001").count(), 100);
        assert_eq!(t.scan_prefix("key0001").rev().count(), 100);
        for i in (0..2000u32).step_by(2) {
            assert!(t.remove(format!("key{i:06}")).unwrap().is_some());
        }
        assert_eq!(t.len(), 1000);
        db.flush().unwrap();
        drop(t);
        drop(db);
        let db = reopen(&m, encrypted);
        let t = db.open_tree("metadata").unwrap();
        assert_eq!(t.len(), 1000);
        assert_eq!(t.get("key000043").unwrap().unwrap(), b"value43".as_slice());
        assert!(t.get("key000042").unwrap().is_none());
        let big = vec![7u8; 10 << 20];
        t.insert("big", big.clone()).unwrap();
        assert_eq!(t.get("big").unwrap().unwrap().len(), big.len());
        db.flush().unwrap();
        drop(t);
        drop(db);
        let db = reopen(&m, encrypted);
        let t = db.open_tree("metadata").unwrap();
        assert_eq!(&*t.get("big").unwrap().unwrap(), &big[..]);
    }
}

/// Ranges a caller can write but that hold nothing: the start after the end, or both ends
/// excluded at one key (where `BTreeMap::range` panics). Each is empty, forwards, backwards
/// and from both ends, in a tree, a write transaction and a read snapshot; no panic.
#[test]
fn ranges_that_hold_nothing_are_empty() {
    use std::ops::Bound::{self, Excluded, Included, Unbounded};
    let (db, _m) = mem_db(true);
    let t = db.open_tree("t").unwrap();
    for i in 0..500u32 {
        t.insert(format!("k{i:04}"), vec![1u8; 40]).unwrap();
    }
    let k = |i: u32| format!("k{i:04}").into_bytes();
    type Range = (Bound<Vec<u8>>, Bound<Vec<u8>>);
    let empty: Vec<Range> = vec![
        (Included(k(300)), Included(k(100))),
        (Included(k(300)), Excluded(k(100))),
        (Excluded(k(300)), Included(k(100))),
        (Excluded(k(300)), Excluded(k(100))),
        (Excluded(k(200)), Excluded(k(200))),
        (Excluded(k(200)), Included(k(200))),
        (Included(k(200)), Excluded(k(200))),
        (Included(b"zz".to_vec()), Unbounded),
        (Unbounded, Excluded(b"k".to_vec())),
        (Excluded(k(499)), Unbounded),
        (Unbounded, Excluded(k(0))),
        (Excluded(b"zz".to_vec()), Excluded(b"a".to_vec())),
    ];
    let drain = |mut it: foldvault::Iter| {
        let mut n = 0;
        while let Some(r) = it.next() {
            r.unwrap();
            n += 1;
            if let Some(r) = it.next_back() {
                r.unwrap();
                n += 1;
            }
        }
        n
    };
    let snapshot = db.begin_read().unwrap();
    let rt = snapshot.open_tree("t").unwrap();
    for r in &empty {
        assert_eq!(t.range(r.clone()).count(), 0, "{r:?}");
        assert_eq!(t.range(r.clone()).rev().count(), 0, "{r:?}");
        assert_eq!(drain(t.range(r.clone())), 0, "{r:?}");
        assert_eq!(rt.range(r.clone()).count(), 0, "{r:?}");
        assert_eq!(rt.range(r.clone()).rev().count(), 0, "{r:?}");
        let w = db.begin_write().unwrap();
        assert!(w.open_tree("t").unwrap().range(r.clone()).unwrap().is_empty(), "{r:?}");
        w.abort();
    }
    // One key, both ends included, and a range that holds all but the ends: not empty.
    assert_eq!(t.range(k(200)..=k(200)).count(), 1);
    assert_eq!(t.range::<Vec<u8>, _>((Excluded(k(0)), Excluded(k(499)))).count(), 498);
    assert_eq!(drain(t.range::<Vec<u8>, _>((Excluded(k(0)), Excluded(k(499))))), 498);
}
