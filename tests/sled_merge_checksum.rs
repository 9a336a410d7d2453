//! sled 0.34's merge operators (`Tree::set_merge_operator`, `Tree::merge`) and `Db::checksum`.
//! Their results against sled itself are compared in `src/db/sled_diff_tests.rs` (feature
//! `sled-import`); these tests hold what a comparison of results does not: the operator's
//! scope (one tree instance, every handle on it), merges racing on threads, an operator that
//! panics, and a checksum that depends on contents only, not on pages, order of writes or
//! encryption.

#[path = "common/sled_env.rs"]
mod sled_env;

use foldvault::{Config, Error, MasterKey};
use sled_env::*;

fn concatenate_merge(_key: &[u8], old: Option<&[u8]>, merged: &[u8]) -> Option<Vec<u8>> {
    let mut v = old.map(<[u8]>::to_vec).unwrap_or_default();
    v.extend_from_slice(merged);
    Some(v)
}

/// A counter of eight little-endian bytes; merging `b"-"` removes it.
fn add_merge(_key: &[u8], old: Option<&[u8]>, merged: &[u8]) -> Option<Vec<u8>> {
    if merged == b"-" {
        return None;
    }
    let n = |b: Option<&[u8]>| b.and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_le_bytes);
    Some((n(old) + n(Some(merged))).to_le_bytes().to_vec())
}

/// sled's documented example, step by step.
#[test]
fn merge_follows_sleds_example() {
    let db = temp_db();
    db.set_merge_operator(concatenate_merge);
    let k = b"k1";
    db.insert(k, vec![0]).unwrap();
    assert_eq!(db.merge(k, vec![1]).unwrap().unwrap(), [0, 1]);
    db.merge(k, vec![2]).unwrap();
    assert_eq!(db.get(k).unwrap().unwrap(), [0, 1, 2]);
    // An insert replaces what was merged; the operator is not called.
    db.insert(k, vec![3]).unwrap();
    assert_eq!(db.get(k).unwrap().unwrap(), [3]);
    // A merge into an absent key gets `None` as the old value.
    db.remove(k).unwrap();
    db.merge(k, vec![4]).unwrap();
    assert_eq!(db.get(k).unwrap().unwrap(), [4]);
}

#[test]
fn an_operator_that_returns_none_removes_the_key() {
    let db = temp_db();
    db.set_merge_operator(add_merge);
    db.merge("n", 5u64.to_le_bytes()).unwrap();
    assert_eq!(db.get("n").unwrap().unwrap(), 5u64.to_le_bytes());
    assert_eq!(db.merge("n", b"-").unwrap(), None);
    assert_eq!(db.get("n").unwrap(), None);
    assert!(db.is_empty());
}

#[test]
fn merge_without_an_operator_is_unsupported_and_writes_nothing() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    // An operator on another tree is not this tree's.
    db.set_merge_operator(concatenate_merge);
    assert!(matches!(t.merge("k", "v"), Err(Error::Unsupported(_))));
    assert_eq!(t.get("k").unwrap(), None);
    let seq = db.commit_seq();
    assert!(matches!(t.merge("k", "v"), Err(Error::Unsupported(_))));
    assert_eq!(db.commit_seq(), seq, "a refused merge commits nothing");
}

/// The operator is the tree's, shared by its clones and by handles opened later; setting it
/// again replaces it; a tree dropped and made again starts without one, as a new sled tree.
#[test]
fn the_operator_belongs_to_one_tree_instance() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    t.set_merge_operator(concatenate_merge);
    let clone = t.clone();
    let later = db.open_tree("t").unwrap();
    clone.merge("k", "a").unwrap();
    later.merge("k", "b").unwrap();
    assert_eq!(t.get("k").unwrap().unwrap(), "ab");

    later.set_merge_operator(|_: &[u8], _: Option<&[u8]>, m: &[u8]| Some(m.to_vec()));
    t.merge("k", "c").unwrap();
    assert_eq!(t.get("k").unwrap().unwrap(), "c", "the operator set last replaced the first");

    assert!(db.drop_tree("t").unwrap());
    assert!(matches!(t.merge("k", "d"), Err(Error::CollectionNotFound)), "a handle on the dropped tree");
    let again = db.open_tree("t").unwrap();
    assert!(matches!(again.merge("k", "d"), Err(Error::Unsupported(_))), "the new tree has no operator");
    assert_eq!(again.get("k").unwrap(), None);
    // An operator set through the stale handle is not the new tree's, nor does it take away
    // the one the new tree has.
    again.set_merge_operator(concatenate_merge);
    t.set_merge_operator(|_: &[u8], _: Option<&[u8]>, _: &[u8]| None);
    again.merge("k", "x").unwrap();
    assert_eq!(again.merge("k", "y").unwrap().unwrap(), "xy");
}

/// A handle on a dropped tree setting an operator while the tree is dropped and made again,
/// and the new tree's operator set, on another thread: the new tree keeps its operator. The
/// old handle's check that its tree lives was made before the lock its put took, so its put
/// could land after the new tree's and take that operator away (a stress test: the window is
/// narrow, and a round that misses it proves nothing).
#[test]
fn an_old_handle_setting_an_operator_never_takes_the_new_trees_away() {
    let db = temp_db();
    for round in 0..300u32 {
        let old = db.open_tree("t").unwrap();
        let gate = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                gate.wait();
                old.set_merge_operator(add_merge);
            });
            gate.wait();
            assert!(db.drop_tree("t").unwrap());
            db.open_tree("t").unwrap().set_merge_operator(concatenate_merge);
        });
        let new = db.open_tree("t").unwrap();
        assert!(new.merge("k", b"x").is_ok(), "round {round}: the new tree lost its operator");
        assert!(matches!(old.merge("k", b"x"), Err(Error::CollectionNotFound)));
    }
}

/// Merges on many threads into one key lose none (each is an atomic read-modify-write).
#[test]
fn merges_racing_on_threads_lose_nothing() {
    let db = temp_db();
    let t = db.open_tree("counters").unwrap();
    t.set_merge_operator(add_merge);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let t = t.clone();
            s.spawn(move || {
                for _ in 0..250 {
                    t.merge("hits", 1u64.to_le_bytes()).unwrap();
                }
            });
        }
    });
    assert_eq!(t.get("hits").unwrap().unwrap(), 1000u64.to_le_bytes());
}

/// An operator that panics leaves nothing held: the panic reaches the caller, the value is as
/// it was, and the next write on any thread goes through.
#[test]
fn a_panicking_operator_holds_nothing() {
    let db = temp_db();
    db.set_merge_operator(|_: &[u8], _: Option<&[u8]>, m: &[u8]| {
        assert!(m != b"boom", "the operator's own panic");
        Some(m.to_vec())
    });
    db.insert("k", "before").unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.merge("k", "boom")));
    assert!(caught.is_err());
    assert_eq!(db.get("k").unwrap().unwrap(), "before");
    let db2 = db.clone();
    std::thread::spawn(move || db2.insert("other", "x").unwrap()).join().unwrap();
    assert_eq!(db.merge("k", "after").unwrap().unwrap(), "after");
}

/// The operator is code, not data: a reopened database has none until it is set again, and
/// what was merged before stays.
#[test]
fn the_operator_is_not_stored_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        db.set_merge_operator(concatenate_merge);
        db.merge("k", "a").unwrap();
        db.flush().unwrap();
    }
    let db = open(dir.path());
    assert!(matches!(db.merge("k", "b"), Err(Error::Unsupported(_))));
    db.set_merge_operator(concatenate_merge);
    assert_eq!(db.merge("k", "b").unwrap().unwrap(), "ab");
}

fn fill(db: &foldvault::Db, order: impl Iterator<Item = u32>) {
    let t = db.open_tree("second").unwrap();
    for i in order {
        db.insert(format!("key{i:05}"), vec![i as u8; (i % 700) as usize]).unwrap();
        if i % 3 == 0 {
            t.insert(i.to_be_bytes(), "x").unwrap();
        }
    }
}

/// Two databases with the same contents have the same checksum, whatever their history, pages
/// and encryption; any change of a key, a value or a tree name changes it.
#[test]
fn the_checksum_depends_on_contents_only() {
    let dir = tempfile::tempdir().unwrap();
    let plain = open(&dir.path().join("plain"));
    fill(&plain, 0..3000);
    let encrypted = Config::new()
        .path(dir.path().join("enc"))
        .use_env(false)
        .master_key(MasterKey::from_bytes([9; 32]))
        .open()
        .unwrap();
    fill(&encrypted, (0..3000).rev());
    // Written in another order, with records written and removed on the way.
    encrypted.insert("transient", "gone soon").unwrap();
    encrypted.remove("transient").unwrap();
    let sum = plain.checksum().unwrap();
    assert_eq!(encrypted.checksum().unwrap(), sum);
    encrypted.compact().unwrap();
    assert_eq!(encrypted.checksum().unwrap(), sum, "compaction moves pages, not contents");
    assert_eq!(encrypted.begin_read().unwrap().checksum().unwrap(), sum);

    encrypted.insert("key00007", vec![7u8; 6]).unwrap();
    assert_ne!(encrypted.checksum().unwrap(), sum, "a changed value");
    encrypted.insert("key00007", vec![7u8; 7]).unwrap();
    assert_eq!(encrypted.checksum().unwrap(), sum);
    encrypted.open_tree("empty").unwrap();
    assert_ne!(encrypted.checksum().unwrap(), sum, "a new tree's name counts, as in sled");
}

/// A read transaction's checksum is of its snapshot, whatever is written after it began.
#[test]
fn a_snapshots_checksum_stays() {
    let db = temp_db();
    db.insert("a", "1").unwrap();
    let snap = db.begin_read().unwrap();
    let before = db.checksum().unwrap();
    db.insert("b", "2").unwrap();
    assert_ne!(db.checksum().unwrap(), before);
    assert_eq!(snap.checksum().unwrap(), before);
}

/// An operator replaced is dropped with no lock held: what it holds may merge as it drops (a
/// handle whose `Drop` writes), which waited for the lock its own thread held.
#[test]
fn a_replaced_operator_may_merge_as_it_drops() {
    struct MergesOnDrop(foldvault::Tree);
    impl Drop for MergesOnDrop {
        fn drop(&mut self) {
            let _ = self.0.merge("dropped", "yes");
        }
    }
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    let held = MergesOnDrop(t.clone());
    t.set_merge_operator(move |k: &[u8], old: Option<&[u8]>, new: &[u8]| {
        let _ = &held;
        concatenate_merge(k, old, new)
    });
    let (done, finished) = std::sync::mpsc::channel();
    let t2 = t.clone();
    std::thread::spawn(move || {
        t2.set_merge_operator(concatenate_merge);
        let _ = done.send(());
    });
    finished.recv_timeout(std::time::Duration::from_secs(30)).expect("setting an operator waited for itself");
    // The old operator's drop merged with the new one.
    assert_eq!(t.get("dropped").unwrap().as_deref(), Some(&b"yes"[..]));
}
