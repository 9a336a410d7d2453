//! sled 0.34's transactions as FoldDB-like code calls them (`Transactional`, `TransactionalTree`,
//! the error types and their conversions), unique ids (`generate_id`, inside transactions too),
//! and the names a database reserves. The rest of the sled surface: `tests/sled_compat.rs`.

#[path = "common/blocked.rs"]
mod blocked;
#[path = "common/sled_env.rs"]
mod sled_env;

use foldvault::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError, TransactionResult,
    TransactionalTree, UnabortableTransactionError, abort,
};
use foldvault::{Batch, Error, IVec, MAX_KEY_LEN, Transactional, Tree};
use sled_env::*;

// ---------------------------------------------------------------------------------------------
// sled-style transactions.

#[test]
fn transaction_on_one_tree_commits_and_aborts() {
    let db = temp_db();
    let t = db.open_tree("a").unwrap();
    t.insert(b"k1", b"cats").unwrap();
    t.insert(b"k2", b"dogs").unwrap();

    // sled's own doc example: swap two items.
    let r: TransactionResult<()> = t.transaction(|tx| {
        let v1 = tx.remove(b"k1")?.unwrap();
        let v2 = tx.remove(b"k2")?.unwrap();
        tx.insert(b"k1", v2)?;
        tx.insert(b"k2", v1)?;
        Ok(())
    });
    r.unwrap();
    assert_eq!(t.get(b"k1").unwrap().unwrap(), b"dogs");
    assert_eq!(t.get(b"k2").unwrap().unwrap(), b"cats");

    // Reads see the transaction's own writes; the result comes back.
    let n = t
        .transaction(|tx| {
            tx.insert("n", "1")?;
            assert_eq!(tx.get("n")?.unwrap(), "1");
            assert!(tx.contains_key("n")?);
            tx.remove("n")?;
            assert_eq!(tx.get("n")?, None);
            Ok::<_, ConflictableTransactionError>(42)
        })
        .unwrap();
    assert_eq!(n, 42);

    // An abort leaves nothing and hands back the user's error.
    let before = t.len();
    let err = t
        .transaction(|tx| {
            tx.insert(b"k1", b"changed")?;
            tx.insert(b"new", b"x")?;
            tx.remove(b"k2")?;
            abort::<(), _>("nope")
        })
        .unwrap_err();
    assert!(matches!(err, TransactionError::Abort("nope")));
    assert_eq!(err.to_string(), "nope");
    assert_eq!(t.len(), before);
    assert_eq!(t.get(b"k1").unwrap().unwrap(), b"dogs");
    assert_eq!(t.get(b"new").unwrap(), None);

    // Explicit enum form and a typed error.
    #[derive(Debug, PartialEq)]
    struct Insufficient(u64);
    let r: TransactionResult<(), Insufficient> = t.transaction(|tx| {
        tx.insert("x", "y")?;
        Err(ConflictableTransactionError::Abort(Insufficient(7)))
    });
    match r {
        Err(TransactionError::Abort(e)) => assert_eq!(e, Insufficient(7)),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.get("x").unwrap(), None);

    // The default tree, through Db's deref, before anything was ever written to it.
    let fresh = temp_db();
    assert_eq!(fresh.transaction(|tx| Ok::<_, ConflictableTransactionError>(tx.get("k")?)).unwrap(), None);
    fresh.transaction(|tx| tx.insert("k", "v").map(drop).map_err(Into::into)).map_err(|e: TransactionError| e).unwrap();
    assert_eq!(fresh.get("k").unwrap().unwrap(), "v");
}

#[test]
fn transaction_storage_errors_roll_back() {
    let db = temp_db();
    let err = db
        .transaction(|tx| {
            tx.insert("ok", "1")?;
            tx.insert(vec![0u8; MAX_KEY_LEN + 1], "too long")?;
            Ok(())
        })
        .map_err(|e: TransactionError| e)
        .unwrap_err();
    assert!(matches!(err, TransactionError::Storage(Error::KeyTooLarge { .. })), "{err:?}");
    assert!(err.to_string().contains("exceeds"));
    assert_eq!(db.get("ok").unwrap(), None);
}

#[test]
fn transaction_on_several_trees() {
    let db = temp_db();
    let unprocessed = db.open_tree(b"unprocessed items").unwrap();
    let processed = db.open_tree(b"processed items").unwrap();
    unprocessed.insert(b"k3", b"ligers").unwrap();

    // sled's doc example with a tuple.
    (&unprocessed, &processed)
        .transaction(|(unprocessed, processed)| {
            let item = unprocessed.remove(b"k3")?.unwrap();
            let mut done = b"yappin' ".to_vec();
            done.extend_from_slice(&item);
            processed.insert(b"k3", done)?;
            Ok::<_, ConflictableTransactionError>(())
        })
        .unwrap();
    assert_eq!(unprocessed.get(b"k3").unwrap(), None);
    assert_eq!(processed.get(b"k3").unwrap().unwrap(), b"yappin' ligers");

    // Abort across three trees leaves all three as they were.
    let third = db.open_tree("third").unwrap();
    let r: TransactionResult<(), String> = (&unprocessed, &processed, &third).transaction(|(a, b, c)| {
        a.insert("a", "1")?;
        b.remove(b"k3")?;
        c.insert("c", "3")?;
        abort("changed my mind".to_string())
    });
    assert!(matches!(r, Err(TransactionError::Abort(ref s)) if s == "changed my mind"));
    assert!(unprocessed.is_empty());
    assert_eq!(processed.len(), 1);
    assert!(third.is_empty());

    // Four trees, slices and vectors.
    let fourth = db.open_tree("fourth").unwrap();
    (&unprocessed, &processed, &third, &fourth)
        .transaction(|(a, b, c, d)| {
            for (i, t) in [a, b, c, d].into_iter().enumerate() {
                t.insert("tuple", vec![i as u8])?;
            }
            Ok::<_, ConflictableTransactionError>(())
        })
        .unwrap();
    // Fourteen trees in a tuple, sled's largest.
    let t: Vec<Tree> = (0..14).map(|i| db.open_tree(format!("tuple{i}")).unwrap()).collect();
    (&t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7], &t[8], &t[9], &t[10], &t[11], &t[12], &t[13])
        .transaction(|(a, _, _, _, _, _, _, _, _, _, _, _, _, n)| {
            a.insert("first", "a")?;
            n.insert("last", "n")?;
            Ok::<_, ConflictableTransactionError>(())
        })
        .unwrap();
    assert_eq!(t[13].get("last").unwrap().unwrap(), "n");
    assert_eq!(t[0].get("first").unwrap().unwrap(), "a");
    let trees: Vec<Tree> = [unprocessed.clone(), processed.clone(), third.clone()].to_vec();
    trees
        .transaction(|views: &Vec<TransactionalTree>| {
            for v in views {
                v.insert("vec", "x")?;
            }
            Ok::<_, ConflictableTransactionError>(())
        })
        .unwrap();
    let refs: [&Tree; 2] = [&third, &fourth];
    let r: TransactionResult<()> = refs[..].transaction(|views| {
        views[0].remove("vec")?;
        views[1].remove("tuple")?;
        abort(())
    });
    assert!(matches!(r, Err(TransactionError::Abort(()))));
    assert_eq!(third.get("vec").unwrap().unwrap(), "x");
    assert_eq!(fourth.get("tuple").unwrap().unwrap(), [3u8]);
    for t in [&unprocessed, &processed, &third] {
        assert_eq!(t.get("vec").unwrap().unwrap(), "x");
    }

    // A batch applied to two trees atomically.
    let mut batch = Batch::default();
    batch.insert("b1", "x");
    batch.insert("b2", "y");
    (&third, &fourth)
        .transaction(|(c, d)| {
            c.apply_batch(&batch)?;
            d.apply_batch(&batch)?;
            c.flush();
            Ok::<_, ConflictableTransactionError>(())
        })
        .unwrap();
    assert_eq!((third.get("b2").unwrap().unwrap(), fourth.get("b1").unwrap().unwrap()), ("y".into(), "x".into()));
    assert_eq!(db.durable_commit_seq(), db.commit_seq(), "flush() in a transaction makes it durable");
}

#[test]
fn transaction_trees_of_two_databases_are_refused() {
    let (db1, db2) = (temp_db(), temp_db());
    let (a, b) = (db1.open_tree("a").unwrap(), db2.open_tree("b").unwrap());
    let r: TransactionResult<()> = (&a, &b).transaction(|(a, _)| {
        a.insert("x", "y")?;
        Ok(())
    });
    assert!(matches!(r, Err(TransactionError::Storage(Error::Unsupported(_)))), "{r:?}");
    assert!(a.is_empty());
    let empty: Vec<Tree> = Vec::new();
    let r: TransactionResult<()> = empty.transaction(|_| Ok(()));
    assert!(matches!(r, Err(TransactionError::Storage(Error::Unsupported(_)))));
}

#[test]
fn transaction_error_types_convert_as_in_sled() {
    fn inner(tx: &TransactionalTree) -> ConflictableTransactionResult<u32, String> {
        let v: Option<IVec> = tx.get("k")?; // UnabortableTransactionError -> ConflictableTransactionError
        let e: foldvault::Result<()> = Ok(());
        e?; // Error -> ConflictableTransactionError
        Ok(v.map(|v| v.len() as u32).unwrap_or(0))
    }
    let db = temp_db();
    let n = db.transaction(inner).unwrap();
    assert_eq!(n, 0);

    let storage: TransactionError<String> = Error::Unsupported("x".into()).into();
    assert!(matches!(storage, TransactionError::Storage(_)));
    let c: ConflictableTransactionError<()> = UnabortableTransactionError::Storage(Error::Locked).into();
    assert!(matches!(c, ConflictableTransactionError::Storage(Error::Locked)));
    let c: ConflictableTransactionError<()> = UnabortableTransactionError::Conflict.into();
    assert!(matches!(c, ConflictableTransactionError::Conflict));
    let u: UnabortableTransactionError = Error::Locked.into();
    assert_eq!(u.to_string(), Error::Locked.to_string());
    // Boxed as std errors.
    let boxed: Box<dyn std::error::Error> = Box::new(TransactionError::<Error>::Storage(Error::Locked));
    assert!(boxed.source().is_some());
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(u);
    assert!(boxed.to_string().contains("locked"));
}

#[test]
fn transaction_generate_id_does_not_deadlock_and_stays_unique() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    {
        let db = open(dir.path());
        // A fresh handle has no id range reserved: the transaction reserves one itself.
        let ids = db
            .transaction(|tx| {
                let a = tx.generate_id()?;
                let b = tx.generate_id()?;
                tx.insert("id", a.to_be_bytes())?;
                Ok::<_, ConflictableTransactionError>((a, b))
            })
            .unwrap();
        assert!(ids.0 < ids.1);
        seen.extend([ids.0, ids.1]);
        seen.push(db.generate_id().unwrap());
        // Ids drawn in an aborted transaction are not handed out again.
        let aborted: TransactionResult<(), u64> = db.transaction(|tx| abort(tx.generate_id()?));
        let Err(TransactionError::Abort(id)) = aborted else { panic!() };
        seen.push(id);
        seen.push(db.generate_id().unwrap());
    }
    let db = open(dir.path());
    seen.push(db.generate_id().unwrap());
    seen.push(db.transaction(|tx| Ok::<_, ConflictableTransactionError>(tx.generate_id()?)).unwrap());
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

/// Ids drawn in a transaction whose closure panicked are not handed out again, after a
/// restart either: the closure may have used them. The range the transaction reserved went
/// with its rollback, and reopened, the database handed out the same ids.
#[test]
fn ids_a_panicking_transaction_drew_are_not_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let drawn = std::cell::Cell::new(None);
    {
        let db = open(dir.path());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _: TransactionResult<()> = db.transaction(|tx| {
                drawn.set(Some(tx.generate_id()?));
                panic!("the caller's closure panics after drawing an id");
            });
        }));
        assert!(panicked.is_err());
        // The handle goes on: the transaction was rolled back and the writer let go. (No id is
        // drawn here: that would reserve a range past the lost one.)
        db.insert("after", "v").unwrap();
    }
    let db = open(dir.path());
    assert!(db.generate_id().unwrap() > drawn.get().unwrap());
    assert_eq!(db.get("after").unwrap().as_deref(), Some(&b"v"[..]));
}

/// Regression: each transaction that drew an id reserved a new range of a million (and made
/// its commit durable): the range it did not use was thrown away. What it leaves goes on to the
/// next transaction and to `Db::generate_id`, still increasing.
#[test]
fn transactions_drawing_ids_share_one_reserved_range() {
    let db = temp_db();
    let draw = || db.transaction(|tx| Ok::<_, ConflictableTransactionError>(tx.generate_id()?)).unwrap();
    let first = draw();
    let durable = db.metrics().durable_commits;
    let mut ids = vec![first, draw(), draw(), db.generate_id().unwrap(), draw()];
    ids.push(db.generate_id().unwrap());
    assert_eq!(ids, (first..first + 6).collect::<Vec<_>>());
    assert_eq!(db.metrics().durable_commits, durable, "one reservation, made durable once");
    // A view kept past the transaction that reserved a range hands out nothing from it: the
    // range went to the engine, which hands it out.
    let db = temp_db();
    let kept = db
        .transaction(|tx| {
            tx.generate_id()?;
            Ok::<_, ConflictableTransactionError>(tx.clone())
        })
        .unwrap();
    assert!(kept.generate_id().is_err());
    assert_eq!(db.generate_id().unwrap(), 1);
}

#[test]
fn generate_id_is_monotonic_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = None;
    for _ in 0..3 {
        let db = open(dir.path());
        for _ in 0..100 {
            let id = db.generate_id().unwrap();
            assert!(last.is_none_or(|l| id > l), "{id} after {last:?}");
            last = Some(id);
        }
    }
}

/// `open` on the directory of a sled database (FoldDB's, before its import) refuses instead of
/// creating an empty foldvault database beside it.
#[test]
fn a_sled_directory_is_not_opened_as_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf"), b"segment_size: 524288\n").unwrap();
    std::fs::write(dir.path().join("db"), [0u8; 512]).unwrap();
    let r = foldvault::open(dir.path());
    assert!(matches!(&r, Err(Error::Unsupported(m)) if m.contains("sled") && m.contains("import")), "{:?}", r.err());
    assert!(!dir.path().join("db.foldvault").exists());
    // A directory with other files is no sled database.
    std::fs::remove_file(dir.path().join("conf")).unwrap();
    drop(open(dir.path()));
    assert!(dir.path().join("db.foldvault").exists());
}

#[test]
fn reserved_tree_names_cannot_be_opened_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = 0;
    for round in 0..2 {
        let db = open(dir.path());
        let id = db.generate_id().unwrap();
        assert!(round == 0 || id > last, "{id} after {last}");
        last = id;
        // The id counter lives in a reserved tree: dropping it would hand the same ids out again.
        for name in [&b"\0foldvault.ids"[..], b"\0foldvault.", b"\0foldvault.other"] {
            assert!(matches!(db.drop_tree(name), Err(Error::Unsupported(_))), "{name:?}");
            assert!(matches!(db.open_tree(name), Err(Error::Unsupported(_))), "{name:?}");
            let tx = db.begin_write().unwrap();
            assert!(matches!(tx.drop_tree(name), Err(Error::Unsupported(_))), "{name:?}");
            assert!(matches!(tx.open_tree(name), Err(Error::Unsupported(_))), "{name:?}");
            tx.commit().unwrap();
            assert!(matches!(db.begin_read().unwrap().open_tree(name), Err(Error::Unsupported(_))), "{name:?}");
        }
    }
    // A tree name is a catalog key: one too long is refused when the tree is opened.
    let db = open(dir.path());
    let long = vec![b'n'; MAX_KEY_LEN + 1];
    assert!(matches!(db.open_tree(&long), Err(Error::KeyTooLarge { .. })));
    assert!(db.open_tree(&long[..MAX_KEY_LEN]).is_ok());
}

/// Ids a transaction drew and then aborted with (a fresh handle has no range, so the
/// transaction reserves one, rolled back with it) are not handed out again after a restart,
/// a clean one included: the range is made durable after the abort.
#[test]
fn ids_of_an_aborted_transaction_are_not_handed_out_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for round in 0..3 {
        let db = open(dir.path());
        let aborted: TransactionResult<(), u64> = db.transaction(|tx| abort(tx.generate_id()?));
        let Err(TransactionError::Abort(id)) = aborted else { panic!("round {round}") };
        seen.push(id);
    }
    seen.push(open(dir.path()).generate_id().unwrap());
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

/// `Db::generate_id` on a thread inside a transaction, while another thread's
/// `Db::generate_id` waits for the writer to reserve a range: the second thread held the id
/// lock while it waited, and the first waited for that lock, each for the other. Now the waiter
/// holds nothing, and the transaction's thread gets its id or `Unsupported` at once.
#[test]
fn generate_id_inside_a_transaction_while_another_thread_reserves_does_not_deadlock() {
    let db = temp_db();
    let (tx_in, rx_in) = std::sync::mpsc::channel();
    let (tx_done, rx_done) = std::sync::mpsc::channel();
    let (named_tx, named_rx) = std::sync::mpsc::channel();
    let db2 = db.clone();
    let worker = std::thread::spawn(move || {
        let r = db2.transaction(|t| {
            tx_in.send(()).unwrap();
            // Until the other thread waits for the writer this transaction holds (a second
            // attempt finds no name to wait for).
            if let Ok(tid) = named_rx.recv_timeout(std::time::Duration::from_secs(20)) {
                blocked::until_blocked(Option::as_deref(&tid), std::time::Duration::from_millis(100));
            }
            let inner = db2.generate_id();
            t.insert("k", "v")?;
            Ok::<_, ConflictableTransactionError>(inner.is_ok() || matches!(inner, Err(Error::Unsupported(_))))
        });
        tx_done.send(r.map_err(|e| e.to_string())).unwrap();
    });
    rx_in.recv().unwrap();
    let waiter = std::thread::spawn({
        let db = db.clone();
        move || {
            named_tx.send(blocked::this_thread()).unwrap();
            db.generate_id().unwrap()
        }
    });
    let r = rx_done.recv_timeout(std::time::Duration::from_secs(20)).expect("the transaction finished");
    assert_eq!(r, Ok(true));
    worker.join().unwrap();
    assert!(waiter.join().unwrap() < u64::MAX);
}

/// A view the closure kept past its panic (in a cell outside it) does not hold the writer:
/// the attempt is rolled back when the transaction call unwinds, not when the last view goes.
/// It held the writer, so this thread's writes were refused (`Unsupported`, a transaction
/// still open here) and every other thread's waited for as long as the view lived.
#[test]
fn a_view_kept_past_a_panicking_closure_does_not_hold_the_writer() {
    let db = temp_db();
    let t = db.open_tree("t").unwrap();
    let kept: std::cell::RefCell<Option<TransactionalTree>> = std::cell::RefCell::new(None);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: TransactionResult<()> = t.transaction(|tx| {
            tx.insert("rolled", "back")?;
            *kept.borrow_mut() = Some(tx.clone());
            panic!("the caller's closure");
        });
    }));
    assert!(unwound.is_err());
    t.insert("k", "v").unwrap();
    let other = t.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(other.insert("k2", "v").map(drop)));
    let r = done_rx.recv_timeout(std::time::Duration::from_secs(60)).expect("another thread's write waited");
    r.unwrap();
    let view = kept.borrow_mut().take().unwrap();
    assert!(matches!(view.insert("x", "y"), Err(UnabortableTransactionError::Storage(Error::Unsupported(_)))));
    assert!(t.get("rolled").unwrap().is_none() && t.get("x").unwrap().is_none());
}

/// The hidden `Transactional` methods called with an overlay made for fewer trees give a view
/// that serves nothing, not a panic (indexing past the overlay's trees).
#[test]
fn a_view_of_a_mismatched_overlay_serves_nothing() {
    let db = temp_db();
    let (a, b) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
    let overlay = Transactional::<()>::make_overlay(&&a).unwrap();
    let (va, vb) = <(&Tree, &Tree) as Transactional<()>>::view_overlay(&overlay);
    va.insert("k", "v").unwrap();
    assert!(matches!(vb.insert("k", "v"), Err(UnabortableTransactionError::Storage(Error::Unsupported(_)))));
    drop((va, vb, overlay));
    assert!(b.get("k").unwrap().is_none());
}
