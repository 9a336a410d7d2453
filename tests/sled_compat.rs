//! The sled 0.34 surface, method by method, as FoldDB-like code calls it: every `Tree` method,
//! `IVec` conversions, errors, `Config` (temporary databases, reopening)
//! and the limits (key length, large values, space reuse under overwrites and dropped trees).
//! sled-style transactions and ids: `tests/sled_transactions.rs`.
//!
//! Databases here are plaintext and ignore `FOLDVAULT_*` variables (`use_env(false)`) so the
//! suite does not depend on the caller's environment; the encrypted paths are covered by
//! `encryption_at_rest.rs` and `folddb_style.rs`.

#[path = "common/sled_env.rs"]
mod sled_env;

use foldvault::transaction::TransactionResult;
use foldvault::{Batch, CompareAndSwapError, Config, Db, Error, IVec, MAX_KEY_LEN, Tree};
use sled_env::*;

#[path = "sled_compat/temporary.rs"]
mod temporary;

// ---------------------------------------------------------------------------------------------
// Single-key operations and key/value argument types.

#[test]
fn insert_get_remove_contains_with_every_key_type() {
    let db = temp_db();
    let t = db.open_tree("kinds").unwrap();

    let slice: &[u8] = b"slice";
    assert_eq!(t.insert(slice, b"v1").unwrap(), None);
    assert_eq!(t.insert(slice, &b"v2"[..]).unwrap().unwrap(), b"v1");
    assert_eq!(t.get(slice).unwrap().unwrap(), b"v2");
    assert!(t.contains_key(slice).unwrap());

    t.insert("str", "from &str").unwrap();
    assert_eq!(t.get("str").unwrap().unwrap(), "from &str");

    let owned = String::from("string");
    t.insert(&owned, &owned).unwrap();
    assert_eq!(t.get(&owned).unwrap().unwrap(), owned.as_str());
    t.insert(owned.clone(), owned.clone()).unwrap();
    assert_eq!(t.get(owned.clone()).unwrap().unwrap(), owned.as_bytes());

    let vec_key: Vec<u8> = vec![0, 1, 2, 255];
    t.insert(vec_key.clone(), vec![9u8; 3]).unwrap();
    assert_eq!(t.get(&vec_key).unwrap().unwrap(), vec![9u8; 3]);
    assert!(t.contains_key(vec_key.clone()).unwrap());

    let ivec_key = IVec::from("ivec");
    t.insert(&ivec_key, IVec::from(&b"ivalue"[..])).unwrap();
    assert_eq!(t.get(&ivec_key).unwrap().unwrap(), b"ivalue");

    assert_eq!(t.len(), 5);
    assert_eq!(t.remove("str").unwrap().unwrap(), "from &str");
    assert_eq!(t.remove("str").unwrap(), None);
    assert!(!t.contains_key("str").unwrap());
    assert_eq!(t.remove(&owned).unwrap().unwrap(), owned.as_bytes());
    assert_eq!(t.remove(vec_key).unwrap().unwrap(), vec![9u8; 3]);
    assert_eq!(t.remove(slice).unwrap().unwrap(), b"v2");
    assert_eq!(t.len(), 1);
    assert_eq!(t.get("missing").unwrap(), None);
}

#[test]
fn default_tree_is_the_db_itself() {
    let db = temp_db();
    db.insert("k", "v").unwrap();
    let default = db.open_tree(foldvault::DEFAULT_TREE).unwrap();
    assert_eq!(default.get("k").unwrap().unwrap(), "v");
    assert_eq!(db.name(), foldvault::DEFAULT_TREE);
    assert!(db.tree_names().iter().any(|n| n == foldvault::DEFAULT_TREE));
    assert!(matches!(db.drop_tree(foldvault::DEFAULT_TREE), Err(Error::Unsupported(_))));
    // Nor through a transaction; the records stay.
    let tx = db.begin_write().unwrap();
    assert!(matches!(tx.drop_tree(foldvault::DEFAULT_TREE), Err(Error::Unsupported(_))));
    tx.commit().unwrap();
    assert_eq!(db.get("k").unwrap().unwrap(), "v");
}

#[test]
fn empty_key_and_empty_value() {
    let db = temp_db();
    db.insert(b"", b"empty key").unwrap();
    db.insert(b"empty value", b"").unwrap();
    assert_eq!(db.get(b"").unwrap().unwrap(), b"empty key");
    assert_eq!(db.get(b"empty value").unwrap().unwrap(), b"");
    assert!(db.get(b"empty value").unwrap().unwrap().is_empty());
    assert_eq!(db.first().unwrap().map(kv), Some((vec![], b"empty key".to_vec())));
    assert_eq!(db.get_gt(b"").unwrap().map(kv), Some((b"empty value".to_vec(), vec![])));
    assert_eq!(db.remove(b"").unwrap().unwrap(), b"empty key");
    assert_eq!(db.len(), 1);
}

#[test]
fn key_too_large_and_ten_mib_value() {
    let db = temp_db();
    assert_eq!(MAX_KEY_LEN, 1024);
    let ok = vec![b'k'; MAX_KEY_LEN];
    db.insert(&ok, b"max").unwrap();
    assert_eq!(db.get(&ok).unwrap().unwrap(), b"max");
    let too_long = vec![b'k'; MAX_KEY_LEN + 1];
    match db.insert(&too_long, b"v") {
        Err(Error::KeyTooLarge { len, max }) => assert_eq!((len, max), (1025, 1024)),
        other => panic!("expected KeyTooLarge, got {other:?}"),
    }
    assert_eq!(db.len(), 1);

    let big: Vec<u8> = (0..10 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    db.insert(b"big", big.clone()).unwrap();
    db.flush().unwrap();
    let back = db.get(b"big").unwrap().unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back == big);
    assert_eq!(db.remove(b"big").unwrap().unwrap().len(), 10 << 20);
}

// ---------------------------------------------------------------------------------------------
// Ordered access.

fn filled(db: &Db) -> Tree {
    let t = db.open_tree("ordered").unwrap();
    for i in 0..100u32 {
        t.insert(format!("k{i:03}"), format!("v{i}").into_bytes()).unwrap();
    }
    t
}

#[test]
fn range_and_iter_are_double_ended() {
    let db = temp_db();
    let t = filled(&db);

    let all = entries(t.iter());
    assert_eq!(all.len(), 100);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    let mut rev = entries(t.iter().rev());
    rev.reverse();
    assert_eq!(rev, all);

    let r = entries(t.range("k010".."k020"));
    assert_eq!(r.len(), 10);
    assert_eq!(r[0].0, b"k010");
    assert_eq!(r[9].0, b"k019");
    assert_eq!(entries(t.range("k010"..="k020")).len(), 11);
    assert_eq!(entries(t.range(.."k005")).len(), 5);
    assert_eq!(entries(t.range("k095"..)).len(), 5);
    let r_rev = entries(t.range("k010".."k020").rev());
    assert_eq!(r_rev[0].0, b"k019");

    // Both ends of one iterator meet without repeating an entry.
    let mut it = t.range("k040".."k050");
    let mut seen = Vec::new();
    loop {
        match (it.next(), it.next_back()) {
            (Some(a), Some(b)) => {
                seen.push(a.unwrap().0);
                seen.push(b.unwrap().0);
            }
            (Some(a), None) | (None, Some(a)) => seen.push(a.unwrap().0),
            (None, None) => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 10);

    let keys: Vec<IVec> = t.range("k000".."k003").keys().map(Result::unwrap).collect();
    assert_eq!(keys, vec![IVec::from("k000"), IVec::from("k001"), IVec::from("k002")]);
    let values: Vec<IVec> = t.range("k000".."k002").values().rev().map(Result::unwrap).collect();
    assert_eq!(values, vec![IVec::from("v1"), IVec::from("v0")]);

    // An iterator keeps its snapshot.
    let it = t.iter();
    t.clear().unwrap();
    assert_eq!(it.count(), 100);
    assert_eq!(t.iter().count(), 0);
}

/// Ranges a caller may pass that hold nothing: reversed, or empty between equal bounds. sled
/// yields nothing for them (its `bounds_collapsed`); so do `Tree`, a read snapshot's `ReadTree`
/// and a write transaction's tree, from either end, with no panic.
#[test]
fn empty_and_reversed_ranges_yield_nothing() {
    use std::ops::Bound::{self, Excluded, Included, Unbounded};
    type Range<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);
    let db = temp_db();
    let t = filled(&db);
    let (a, b) = (b"k010".to_vec(), b"k020".to_vec());
    let empty: [Range; 5] = [
        (Included(&b[..]), Included(&a[..])),
        (Included(&b[..]), Excluded(&a[..])),
        (Excluded(&a[..]), Excluded(&a[..])),
        (Included(&a[..]), Excluded(&a[..])),
        (Excluded(&b[..]), Included(&a[..])),
    ];
    let snap = db.begin_read().unwrap();
    let rt = snap.open_tree(t.name()).unwrap();
    let tx = db.begin_write().unwrap();
    let tt = tx.open_tree(t.name()).unwrap();
    for r in empty {
        assert_eq!(t.range::<&[u8], _>(r).count(), 0, "{r:?}");
        assert_eq!(t.range::<&[u8], _>(r).rev().count(), 0, "{r:?}");
        assert_eq!(rt.range::<&[u8], _>(r).count(), 0, "{r:?}");
        assert_eq!(rt.range::<&[u8], _>(r).rev().count(), 0, "{r:?}");
        assert!(tt.range::<&[u8], _>(r).unwrap().is_empty(), "{r:?}");
    }
    // One key between equal inclusive bounds; the whole tree between unbounded ones.
    let one = (Included(&a[..]), Included(&a[..]));
    assert_eq!(t.range::<&[u8], _>(one).count(), 1);
    assert_eq!(rt.range::<&[u8], _>(one).rev().count(), 1);
    assert_eq!(tt.range::<&[u8], _>(one).unwrap().len(), 1);
    let all: Range = (Unbounded, Unbounded);
    assert_eq!(t.range::<&[u8], _>(all).count(), t.len());
    drop(tt);
    tx.commit().unwrap();
}

/// A transaction closure that panics: the panic reaches the caller, nothing it wrote is kept,
/// and the writer lock is free again (another thread commits).
#[test]
fn a_panicking_transaction_rolls_back_and_frees_the_writer() {
    let db = temp_db();
    db.insert("before", "x").unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: TransactionResult<(), ()> = db.transaction(|t| {
            t.insert("inside", "y")?;
            panic!("closure panics");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(db.get("inside").unwrap(), None);
    let other = db.clone();
    std::thread::spawn(move || other.insert("after", "z").unwrap()).join().unwrap();
    assert_eq!(db.get("after").unwrap().unwrap(), "z");
    assert_eq!(db.len(), 2);
}

#[test]
fn scan_prefix_forward_and_back() {
    let db = temp_db();
    for (k, v) in [("atom:1", "a1"), ("atom:2", "a2"), ("atoms", "x"), ("ref:1", "r1"), ("atom", "bare")] {
        db.insert(k, v).unwrap();
    }
    let atoms: Vec<_> = db.scan_prefix("atom:").flatten().map(|(k, _)| k).collect();
    assert_eq!(atoms, vec![IVec::from("atom:1"), IVec::from("atom:2")]);
    assert_eq!(db.scan_prefix("atom").count(), 4);
    assert_eq!(db.scan_prefix("atom:").next_back().unwrap().unwrap().0, "atom:2");
    assert_eq!(db.scan_prefix("").count(), 5);
    assert_eq!(db.scan_prefix("zzz").count(), 0);

    let t = db.open_tree("bytes").unwrap();
    t.insert([0xFFu8, 0xFF, 1], b"a").unwrap();
    t.insert([0xFFu8, 0xFF], b"b").unwrap();
    t.insert([0xFEu8], b"c").unwrap();
    assert_eq!(t.scan_prefix([0xFFu8, 0xFF]).count(), 2);

    // The same through a write transaction's tree (its own writes included).
    let tx = db.begin_write().unwrap();
    let tt = tx.open_tree(foldvault::DEFAULT_TREE).unwrap();
    tt.insert("atom:3", &b"a3"[..]).unwrap();
    let keys = |v: Vec<(IVec, IVec)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(tt.scan_prefix("atom:").unwrap()),
        vec![IVec::from("atom:1"), IVec::from("atom:2"), IVec::from("atom:3")]
    );
    assert_eq!(tt.scan_prefix("atom").unwrap().len(), 5);
    assert_eq!(tt.scan_prefix("").unwrap().len(), 6);
    assert!(tt.scan_prefix("zzz").unwrap().is_empty());
    drop(tt);
    let tb = tx.open_tree("bytes").unwrap();
    assert_eq!(tb.scan_prefix([0xFFu8, 0xFF]).unwrap().len(), 2);
    assert_eq!(tb.scan_prefix([0xFFu8]).unwrap().len(), 2);
    drop(tb);
    tx.commit().unwrap();
}

#[test]
fn first_last_neighbours_and_pops() {
    let db = temp_db();
    let t = db.open_tree("pop").unwrap();
    assert_eq!(t.first().unwrap(), None);
    assert_eq!(t.last().unwrap(), None);
    assert_eq!(t.pop_min().unwrap(), None);
    assert_eq!(t.pop_max().unwrap(), None);
    for k in ["b", "d", "f", "h"] {
        t.insert(k, k.to_uppercase().as_str()).unwrap();
    }
    assert_eq!(t.first().unwrap().unwrap().0, "b");
    assert_eq!(t.last().unwrap().unwrap().0, "h");
    assert_eq!(t.get_lt("d").unwrap().unwrap().0, "b");
    assert_eq!(t.get_lt("e").unwrap().unwrap().0, "d");
    assert_eq!(t.get_lt("b").unwrap(), None);
    assert_eq!(t.get_gt("d").unwrap().unwrap().0, "f");
    assert_eq!(t.get_gt("a").unwrap().unwrap().0, "b");
    assert_eq!(t.get_gt("h").unwrap(), None);
    assert_eq!(t.pop_min().unwrap().map(kv), Some((b"b".to_vec(), b"B".to_vec())));
    assert_eq!(t.pop_max().unwrap().map(kv), Some((b"h".to_vec(), b"H".to_vec())));
    assert_eq!(t.len(), 2);
    assert_eq!(t.first().unwrap().unwrap().0, "d");
}

#[test]
fn len_is_empty_clear() {
    let db = temp_db();
    let t = db.open_tree("counts").unwrap();
    assert!(t.is_empty());
    assert_eq!(t.len(), 0);
    for i in 0..1000u32 {
        t.insert(i.to_be_bytes(), &b"x"[..]).unwrap();
    }
    t.insert(5u32.to_be_bytes(), &b"overwrite"[..]).unwrap();
    assert_eq!(t.len(), 1000);
    assert!(!t.is_empty());
    t.remove(5u32.to_be_bytes()).unwrap();
    t.remove(5u32.to_be_bytes()).unwrap();
    assert_eq!(t.len(), 999);
    t.clear().unwrap();
    assert!(t.is_empty());
    assert_eq!(t.iter().count(), 0);
    t.insert("again", "1").unwrap();
    assert_eq!(t.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Atomic single-key updates and batches.

#[test]
fn compare_and_swap_outcomes() {
    let db = temp_db();
    // Absent -> present.
    assert_eq!(db.compare_and_swap("k", None as Option<&[u8]>, Some("v1")).unwrap(), Ok(()));
    assert_eq!(db.get("k").unwrap().unwrap(), "v1");
    // Present and matching -> new value.
    assert_eq!(db.compare_and_swap("k", Some("v1"), Some("v2")).unwrap(), Ok(()));
    // Mismatch: the current and proposed values come back and nothing changes.
    let err = db.compare_and_swap("k", Some("wrong"), Some("v3")).unwrap().unwrap_err();
    assert_eq!(err, CompareAndSwapError { current: Some(IVec::from("v2")), proposed: Some(IVec::from("v3")) });
    assert!(err.to_string().contains("compare and swap"));
    assert_eq!(db.get("k").unwrap().unwrap(), "v2");
    // Expecting absent while present.
    let err = db.compare_and_swap("k", None as Option<&[u8]>, Some("v4")).unwrap().unwrap_err();
    assert_eq!(err.current, Some(IVec::from("v2")));
    // Present and matching -> removed.
    assert_eq!(db.compare_and_swap("k", Some("v2"), None as Option<&[u8]>).unwrap(), Ok(()));
    assert_eq!(db.get("k").unwrap(), None);
    // Expecting a value while absent.
    let err = db.compare_and_swap("k", Some("v2"), Some("v5")).unwrap().unwrap_err();
    assert_eq!((err.current, err.proposed), (None, Some(IVec::from("v5"))));
    // A key that cannot be stored is refused whether or not `old` matches (a mismatch was
    // answered as a failed swap, after reading the current value).
    let long = vec![b'k'; foldvault::MAX_KEY_LEN + 1];
    for old in [None, Some("x")] {
        let r = db.compare_and_swap(&long, old, Some("v"));
        assert!(matches!(r, Err(foldvault::Error::KeyTooLarge { .. })), "{r:?}");
    }
}

#[test]
fn update_and_fetch_and_fetch_and_update() {
    let db = temp_db();
    fn incr(old: Option<&[u8]>) -> Option<Vec<u8>> {
        let n = old.map(|b| u64::from_be_bytes(b.try_into().unwrap())).unwrap_or(0);
        Some((n + 1).to_be_bytes().to_vec())
    }
    assert_eq!(db.update_and_fetch("ctr", incr).unwrap().unwrap(), 1u64.to_be_bytes());
    assert_eq!(db.update_and_fetch("ctr", incr).unwrap().unwrap(), 2u64.to_be_bytes());
    assert_eq!(db.fetch_and_update("ctr", incr).unwrap().unwrap(), 2u64.to_be_bytes());
    assert_eq!(db.get("ctr").unwrap().unwrap(), 3u64.to_be_bytes());
    assert_eq!(db.fetch_and_update("new", incr).unwrap(), None);
    // Returning None removes the key.
    assert_eq!(db.update_and_fetch("ctr", |_| None::<Vec<u8>>).unwrap(), None);
    assert!(!db.contains_key("ctr").unwrap());
}

/// As in sled, an update's closure runs with no lock held: it may panic without harming the
/// database (it once ran inside the write and its panic dropped the page allocator, so the
/// next write took pages from 0 up, over the file's headers), and it may write elsewhere.
#[test]
fn a_panicking_update_closure_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        for i in 0..200u32 {
            db.insert(i.to_be_bytes(), vec![7u8; 64]).unwrap();
        }
        db.flush().unwrap();
        for fetch_new in [true, false] {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let f = |_: Option<&[u8]>| -> Option<Vec<u8>> { panic!("the caller's bug") };
                if fetch_new { db.update_and_fetch("k", f) } else { db.fetch_and_update("k", f) }
            }));
            assert!(r.is_err());
        }
        db.insert("after", "v").unwrap();
        assert_eq!(db.get(0u32.to_be_bytes()).unwrap().unwrap(), vec![7u8; 64]);
        assert_eq!(db.len(), 201);
        db.flush().unwrap();
    }
    let db = open(dir.path());
    assert_eq!(db.len(), 201);
    assert_eq!(db.get("after").unwrap().unwrap(), "v");
    assert_eq!(db.get("k").unwrap(), None);
}

#[test]
fn an_update_closure_may_write_and_runs_again_when_the_value_changed_under_it() {
    let db = temp_db();
    let other = db.open_tree("other").unwrap();
    db.insert("k", "v0").unwrap();
    let mut seen = Vec::new();
    let new = db
        .update_and_fetch("k", |old| {
            seen.push(old.map(|o| o.to_vec()));
            // Writes from inside: to another tree, an id, and (the first time) to the key itself,
            // which makes the first result stale.
            other.insert(format!("call{}", seen.len()), "x").unwrap();
            db.generate_id().unwrap();
            if seen.len() == 1 {
                db.insert("k", "changed").unwrap();
            }
            Some(format!("{}+1", String::from_utf8_lossy(old.unwrap_or_default())))
        })
        .unwrap();
    assert_eq!(seen, vec![Some(b"v0".to_vec()), Some(b"changed".to_vec())]);
    assert_eq!(new.unwrap(), "changed+1");
    assert_eq!(db.get("k").unwrap().unwrap(), "changed+1");
    assert_eq!(other.len(), 2);
}

/// A handle kept across `drop_tree` answers `CollectionNotFound` to every call, as sled's
/// does, also once the name is made again (the new tree is another instance); `len` is 0.
/// Before, a write through it made the dropped tree again and reads saw nothing, or saw the
/// new tree of the same name.
#[test]
fn a_handle_on_a_dropped_tree_is_not_found() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    t.insert("a", "1").unwrap();
    let kept = t.clone();
    assert!(db.drop_tree("t").unwrap());
    let listed = |db: &Db, name: &str| db.tree_names().iter().any(|n| n == name);
    let gone = |t: &Tree| {
        let nf = |r: Result<(), Error>| matches!(r, Err(Error::CollectionNotFound));
        assert!(nf(t.insert("b", "2").map(drop)));
        assert!(nf(t.remove("a").map(drop)));
        assert!(nf(t.get("a").map(drop)));
        assert!(nf(t.contains_key("a").map(drop)));
        assert!(nf(t.compare_and_swap("a", Some("1"), Some("2")).map(drop)));
        assert!(nf(t.pop_min().map(drop)));
        assert!(nf(t.update_and_fetch("a", |_| Some(b"x".to_vec())).map(drop)));
        assert!(nf(t.iter().next().unwrap().map(drop)));
        assert!(nf(t.range("a"..).next_back().unwrap().map(drop)));
        assert!(nf(t.scan_prefix("a").next().unwrap().map(drop)));
        let mut b = Batch::default();
        b.insert("c", "3");
        assert!(nf(t.apply_batch(b)));
        assert!(nf(t.clear()));
        let r: TransactionResult<()> = t.transaction(|tx| {
            tx.insert("d", "4")?;
            Ok(())
        });
        assert!(matches!(r, Err(foldvault::transaction::TransactionError::Storage(Error::CollectionNotFound))));
        assert_eq!(t.len(), 0);
    };
    gone(&t);
    gone(&kept);
    assert!(!listed(&db, "t"), "a write through the old handle made the dropped tree again");
    // Made again: a new instance, which the old handles do not reach.
    let again = db.open_tree("t").unwrap();
    assert!(again.is_empty());
    again.insert("n", "new").unwrap();
    gone(&t);
    assert_eq!(entries(again.iter()), vec![(b"n".to_vec(), b"new".to_vec())]);
    // Dropped and made again within one transaction: the same.
    let u = db.open_tree("u").unwrap();
    u.insert("x", "old").unwrap();
    let tx = db.begin_write().unwrap();
    assert!(tx.drop_tree("u").unwrap());
    tx.open_tree("u").unwrap().insert("y", "new").unwrap();
    tx.commit().unwrap();
    gone(&u);
    assert_eq!(entries(db.open_tree("u").unwrap().iter()), vec![(b"y".to_vec(), b"new".to_vec())]);
    // Handles on trees no one dropped, and the default tree, are unaffected.
    assert_eq!(again.get("n").unwrap().unwrap(), "new");
    db.insert("k", "v").unwrap();
    assert_eq!(db.get("k").unwrap().unwrap(), "v");
}

/// The same in a sled transaction: a removal of a key that is not there (alone, or all a
/// batch holds) commits nothing and does not bring the dropped tree back.
#[test]
fn a_transaction_that_changes_nothing_commits_nothing() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    t.insert("a", "1").unwrap();
    let seq = db.commit_seq();
    let mut absent = Batch::default();
    absent.remove("absent");
    let r: TransactionResult<()> = t.transaction(|tx| {
        assert_eq!(tx.remove("absent")?, None);
        tx.apply_batch(&absent)?;
        Ok(())
    });
    r.unwrap();
    assert_eq!(db.commit_seq(), seq, "a transaction that changed nothing committed");
    // A transaction on a handle whose tree was dropped is refused before its closure runs.
    assert!(db.drop_tree("t").unwrap());
    let listed = |db: &Db| db.tree_names().iter().any(|n| n == "t");
    let r: TransactionResult<()> = t.transaction(|_| panic!("ran on a dropped tree"));
    assert!(matches!(r, Err(foldvault::transaction::TransactionError::Storage(Error::CollectionNotFound))));
    assert!(!listed(&db), "the dropped tree came back");
}

/// `iter().last()` reads from the back end, as sled's does, and `keys()` reads no values: both
/// are measured in pages looked up (cache hits and misses), on values of several pages each.
#[test]
fn last_and_keys_read_no_more_than_they_need() {
    let db = temp_db();
    for i in 0u32..300 {
        db.insert(i.to_be_bytes(), vec![7u8; 20_000]).unwrap();
    }
    let lookups = |db: &Db| {
        let m = db.metrics();
        m.cache_hits + m.cache_misses
    };
    let a = lookups(&db);
    let back = db.iter().next_back().unwrap().unwrap();
    let b = lookups(&db);
    let last = db.iter().last().unwrap().unwrap();
    let c = lookups(&db);
    assert_eq!(back, last);
    assert_eq!(last.0, 299u32.to_be_bytes());
    assert!(c - b <= b - a, "last() looked up {} pages, next_back() {}", c - b, b - a);
    let keys: Vec<IVec> = db.iter().keys().map(|k| k.unwrap()).collect();
    let d = lookups(&db);
    assert_eq!(keys.len(), 300);
    assert_eq!(keys[7], 7u32.to_be_bytes());
    assert!(d - c < 100, "keys() looked up {} pages", d - c);
    let back: Vec<IVec> = db.range(10u32.to_be_bytes()..20u32.to_be_bytes()).keys().rev().map(|k| k.unwrap()).collect();
    assert_eq!(back.first().unwrap(), &19u32.to_be_bytes());
    assert_eq!(back.len(), 10);
    let values: Vec<IVec> = db.iter().values().take(2).map(|v| v.unwrap()).collect();
    assert_eq!(values[1].len(), 20_000, "values() still reads values");
}

/// `for kv in &tree`, as with sled's `Tree`.
#[test]
fn a_tree_reference_iterates() {
    let db = temp_db();
    db.insert("a", "1").unwrap();
    db.insert("b", "2").unwrap();
    let t: &Tree = &db;
    let mut n = 0;
    for kv in t {
        let (k, _) = kv.unwrap();
        assert!(k == "a" || k == "b");
        n += 1;
    }
    assert_eq!(n, 2);
}

#[test]
fn apply_batch_is_atomic_and_ordered() {
    let db = temp_db();
    db.insert("gone", "x").unwrap();
    let mut batch = Batch::default();
    batch.insert("a", "1");
    batch.insert(b"b", b"2");
    batch.remove("gone");
    batch.insert("a", "3"); // later operations win
    batch.insert(String::from("c"), vec![4u8]);
    batch.remove("c");
    assert_eq!(batch.len(), 4, "one operation per key, the last (as sled's)");
    db.apply_batch(batch).unwrap();
    assert_eq!(entries(db.iter()), vec![(b"a".to_vec(), b"3".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
    db.apply_batch(Batch::default()).unwrap();
    assert_eq!(db.len(), 2);
    // A key written again and again is held once.
    let mut again = Batch::default();
    for i in 0..1000u32 {
        again.insert("k", i.to_be_bytes());
    }
    assert_eq!(again.len(), 1);
    db.apply_batch(again).unwrap();
    assert_eq!(db.get("k").unwrap().unwrap(), 999u32.to_be_bytes());
}

// ---------------------------------------------------------------------------------------------
// Trees.

#[test]
fn drop_tree_frees_pages_and_tree_names() {
    let dir = tempfile::tempdir().unwrap();
    let db = config(dir.path()).flush_every_ms(None).open().unwrap();
    let value = vec![0x5Au8; 1000];
    let mut sizes = Vec::new();
    for round in 0..6 {
        let t = db.open_tree("big").unwrap();
        let mut batch = Batch::default();
        for i in 0..3000u32 {
            batch.insert(format!("{round}-{i:05}"), &value);
        }
        t.apply_batch(batch).unwrap();
        db.flush().unwrap();
        assert!(db.tree_names().iter().any(|n| n == "big"));
        drop(t);
        assert!(db.drop_tree("big").unwrap());
        assert!(!db.drop_tree("big").unwrap());
        db.flush().unwrap();
        assert!(!db.tree_names().iter().any(|n| n == "big"));
        sizes.push(db.size_on_disk().unwrap());
    }
    // Measured (the file and its log): 5,226,496 bytes after the first round and 5,230,592
    // after each later one; without reuse six rounds would need about 36 MB.
    println!("file size after each create/drop round: {sizes:?}");
    let first = sizes[0];
    assert!(sizes.iter().all(|&s| s <= first + first / 2), "file grew across drop_tree rounds: {sizes:?}");

    let names: Vec<IVec> = db.tree_names();
    assert_eq!(names, vec![IVec::from(foldvault::DEFAULT_TREE)]);
    db.open_tree("x").unwrap();
    db.open_tree("y").unwrap();
    let mut names: Vec<Vec<u8>> = db.tree_names().into_iter().map(|n| n.to_vec()).collect();
    names.sort();
    assert_eq!(names, vec![foldvault::DEFAULT_TREE.to_vec(), b"x".to_vec(), b"y".to_vec()]);
}

#[test]
fn tree_outlives_its_db() {
    let dir = tempfile::tempdir().unwrap();
    let tree = {
        let db = open(dir.path());
        let t = db.open_tree("survivor").unwrap();
        t.insert("before", "1").unwrap();
        t
    };
    tree.insert("after", "2").unwrap();
    assert_eq!(tree.get("before").unwrap().unwrap(), "1");
    assert_eq!(tree.iter().count(), 2);
    tree.flush().unwrap();
    // Still locked while the tree lives.
    assert!(matches!(config(dir.path()).open(), Err(Error::Locked)));
    drop(tree);
    let db = open(dir.path());
    assert_eq!(db.open_tree("survivor").unwrap().get("after").unwrap().unwrap(), "2");
}

// ---------------------------------------------------------------------------------------------
// IVec and errors.

#[test]
fn ivec_conversions() {
    let from_vec = IVec::from(vec![1u8, 2, 3]);
    let from_slice = IVec::from(&[1u8, 2, 3][..]);
    let from_array_ref = IVec::from(&[1u8, 2, 3]);
    assert_eq!(from_vec, from_slice);
    assert_eq!(from_vec, from_array_ref);
    assert_eq!(IVec::from("abc"), IVec::from(String::from("abc")));
    assert_eq!(IVec::from("abc"), b"abc");
    assert_eq!(IVec::from("abc"), &b"abc"[..]);
    assert_eq!(IVec::from("abc"), *b"abc".as_slice());
    assert_eq!(IVec::from("abc"), "abc");
    assert_eq!(IVec::from("abc"), vec![b'a', b'b', b'c']);
    assert_eq!(from_vec.to_vec(), vec![1u8, 2, 3]);
    assert_eq!(Vec::<u8>::from(from_vec.clone()), vec![1u8, 2, 3]);
    assert_eq!(&*from_vec, &[1u8, 2, 3]);
    assert_eq!(from_vec.as_ref(), &[1u8, 2, 3]);
    assert_eq!(from_vec.len(), 3);
    assert!(IVec::default().is_empty());
    assert_eq!((1u8..4).collect::<IVec>(), from_vec);
    let (a, b) = (IVec::from("a"), IVec::from("b"));
    assert!(a < b);
    assert_eq!(std::str::from_utf8(&IVec::from("json")).unwrap(), "json");
    let mut map = std::collections::BTreeMap::new();
    map.insert(IVec::from("k"), 1);
    assert_eq!(map.get(&b"k"[..]), Some(&1));
    // Equality with anything that is bytes, as sled's generic `PartialEq<T: AsRef<[u8]>>`.
    let v = IVec::from("json");
    let (string, bytes, same, other) = (String::from("json"), b"json".to_vec(), v.clone(), IVec::from("jsonx"));
    let (string_ref, bytes_ref, same_ref) = (&string, &bytes, &same);
    assert!(v == string && v == string_ref && v == *"json" && v == b"json"[..]);
    assert!(v == bytes && v == bytes_ref && v == same && v == same_ref);
    assert!(v != "jso" && v != other);
    // Debug never prints the bytes.
    assert!(!format!("{:?}", IVec::from("secret")).contains("secret"));
    // Into `Arc<[u8]>`, and maps keyed by `&IVec` looked up by bytes, as sled's.
    let shared: std::sync::Arc<[u8]> = IVec::from("json").into();
    assert_eq!(&shared[..], b"json");
    let mut by_ref = std::collections::HashMap::new();
    by_ref.insert(&v, 1);
    assert_eq!(by_ref.get(&b"json"[..]), Some(&1));
}

#[test]
fn errors_display_and_construct_like_sled() {
    let e = Error::Unsupported("tree names must be UTF-8".to_string());
    assert!(e.to_string().contains("tree names must be UTF-8"));
    let boxed: Box<dyn std::error::Error> = Box::new(e.clone());
    assert!(boxed.to_string().contains("tree names must be UTF-8"));

    let err = Config::new().file("/nonexistent/dir/x").use_env(false).open().unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(err.to_string().contains("No such file or directory"), "{err}");
    // Read-only too (it said "does not exist", the system's text lost).
    let err = Config::new().file("/nonexistent/dir/x").read_only(true).use_env(false).open().unwrap_err();
    assert!(matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound), "{err:?}");
    assert!(err.to_string().contains("No such file or directory"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Config: reopening (temporary databases and creates that fail: `sled_compat/temporary.rs`).

/// A cache capacity above 1 TiB is taken as 1 TiB, as sled caps its own, not an error at
/// open (sled review, low).
#[test]
fn any_cache_capacity_opens() {
    let db = Config::new().temporary(true).use_env(false).cache_capacity(u64::MAX).open().unwrap();
    db.insert("k", "v").unwrap();
    assert_eq!(db.get("k").unwrap().unwrap(), "v");
}

#[test]
fn close_and_reopen_immediately() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20u32 {
        let db = foldvault::Config::new().path(dir.path()).use_env(false).open().expect("reopen");
        assert_eq!(db.len(), i as usize);
        db.insert(i.to_be_bytes(), &b"v"[..]).unwrap();
        let t = db.open_tree("side").unwrap();
        t.insert("n", i.to_be_bytes()).unwrap();
        // Dropping the last handle flushes, closes and unlocks.
    }
    let db = open(dir.path());
    assert_eq!(db.len(), 20);
    assert_eq!(db.open_tree("side").unwrap().get("n").unwrap().unwrap(), 19u32.to_be_bytes());
    // A second handle while the first lives is refused rather than sharing the file.
    assert!(matches!(config(dir.path()).open(), Err(Error::Locked)));
}

// ---------------------------------------------------------------------------------------------
// Space reuse.

/// File size bound after 100,000 overwrites of 1,000 keys (about 160 KB of live data).
/// Measured: 634,880 bytes (155 pages); `--nocapture` prints the figure.
const OVERWRITE_FILE_BOUND: u64 = 2 << 20;

#[test]
fn overwrites_keep_the_file_small() {
    let dir = tempfile::tempdir().unwrap();
    let db = config(dir.path()).flush_every_ms(None).open().unwrap();
    let t = db.open_tree("hot").unwrap();
    for i in 0..100_000u32 {
        let k = i % 1000;
        t.insert(format!("key-{k:04}"), format!("{{\"version\":{i},\"pad\":\"{:0>100}\"}}", k).into_bytes()).unwrap();
        if (i + 1) % 1000 == 0 {
            db.flush().unwrap();
        }
    }
    let size = db.size_on_disk().unwrap();
    let path = dir.path().join("db.foldvault");
    let file = std::fs::metadata(&path).unwrap().len();
    let log = std::fs::metadata(foldvault::storage::wal::sidecar_path(&path)).map(|m| m.len()).unwrap_or(0);
    println!("file after 100,000 overwrites of 1,000 keys: {file} bytes, its log {log} (size_on_disk {size})");
    assert_eq!(t.len(), 1000);
    assert!(file < OVERWRITE_FILE_BOUND, "{file} bytes");
    // As sled's, `size_on_disk` counts every file the database keeps: the log too, while open.
    assert_eq!(size, file + log);
    drop(t);
    drop(db);
    assert!(!foldvault::storage::wal::sidecar_path(&path).exists());
    assert_eq!(open(dir.path()).size_on_disk().unwrap(), std::fs::metadata(&path).unwrap().len());
}

/// Regression: `tree_names` of a read transaction lists the default tree before its first
/// write, and `open_tree` of that name failed with `CollectionNotFound`.
#[test]
fn every_name_a_read_transaction_lists_opens() {
    let db = temp_db();
    db.open_tree("named").unwrap().insert("k", "v").unwrap();
    let rt = db.begin_read().unwrap();
    let names = rt.tree_names();
    assert!(names.iter().any(|n| n == "named") && names.iter().any(|n| n == foldvault::DEFAULT_TREE), "{names:?}");
    for name in names {
        let t = rt.open_tree(&name).unwrap();
        assert_eq!(t.len(), usize::from(&*name == b"named"));
    }
    assert!(matches!(rt.open_tree("missing"), Err(Error::CollectionNotFound)));
}

/// A key whose `as_ref` panics (the caller's code): the panic reaches the caller before the
/// write begins, and the database goes on. It came inside the write, with the writer held, and
/// poisoned the handle until it was reopened.
#[test]
fn a_panicking_key_conversion_does_not_poison_the_database() {
    struct Panicky;
    impl AsRef<[u8]> for Panicky {
        fn as_ref(&self) -> &[u8] {
            panic!("the caller's conversion panics")
        }
    }
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    for op in 0..3 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match op {
            0 => drop(t.insert(Panicky, "v")),
            1 => drop(t.remove(Panicky)),
            _ => drop(t.compare_and_swap("k", Some(Panicky), Some("v"))),
        }));
        assert!(r.is_err(), "operation {op}");
        t.insert("k", "v").unwrap_or_else(|e| panic!("after operation {op}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// flush_async.

/// `Tree::flush_async` syncs off the thread that polls it (sled 0.34 hands its flush to a pool
/// of its own), in a build without the tokio feature too and outside any runtime: it synced on
/// the polling thread, and an executor's other tasks waited for the disk.
#[test]
fn flush_async_syncs_off_the_polling_thread() {
    use foldvault::storage::{MemoryStorage, Storage};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake, Waker};
    struct SyncThreads {
        inner: MemoryStorage,
        at: Mutex<Vec<std::thread::ThreadId>>,
    }
    impl Storage for SyncThreads {
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            self.inner.read_at(offset, buf)
        }
        fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
            self.inner.write_at(offset, buf)
        }
        fn sync(&self) -> std::io::Result<()> {
            self.at.lock().unwrap().push(std::thread::current().id());
            self.inner.sync()
        }
        fn len(&self) -> std::io::Result<u64> {
            self.inner.len()
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.inner.set_len(len)
        }
    }
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let storage = Arc::new(SyncThreads { inner: MemoryStorage::new(), at: Mutex::new(Vec::new()) });
    let db = Config::new().storage(storage.clone()).plaintext().use_env(false).flush_every_ms(None).open().unwrap();
    db.insert("k", "v").unwrap();
    storage.at.lock().unwrap().clear();
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(db.flush_async());
    let flushed = loop {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            break r.unwrap();
        }
        std::thread::park();
    };
    assert!(flushed > 0, "the insert was flushed");
    let at = storage.at.lock().unwrap().clone();
    assert!(!at.is_empty(), "flush_async synced");
    assert!(!at.contains(&std::thread::current().id()), "the polling thread synced");
    assert_eq!(db.durable_commit_seq(), db.commit_seq());
}
