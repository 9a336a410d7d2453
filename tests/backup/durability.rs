//! A backup names only a durable commit: the snapshot it copies is made durable first.

use super::*;

/// A snapshot of commits made with `Durability::Eventual` is made durable before its backup,
/// through a read transaction and through the database (which flushed before it took its
/// snapshot, so another thread's commit in between went into the backup undurable, and a crash
/// of the source could then give its sequence number to other contents); from inside a write
/// transaction of the same thread, whose writer the sync would wait for, such a snapshot is
/// refused, and so is a durable one (the backup's header and keys are copied under that lock).
#[test]
fn a_backup_makes_its_snapshot_durable_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = cfg(&dir.path().join("src.fv")).open().unwrap();
    populate(&db);
    db.insert("late", &b"eventual"[..]).unwrap();
    assert!(db.durable_commit_seq() < db.commit_seq(), "the insert is not durable yet");

    let rt = db.begin_read().unwrap();
    let w = db.begin_write().unwrap();
    assert!(matches!(rt.backup_to(&mut Vec::new(), &mut |_| {}), Err(Error::Unsupported(_))));
    drop(w);
    let mut out = Vec::new();
    let stats = rt.backup_to(&mut out, &mut |_| {}).unwrap();
    assert_eq!(stats.seq, db.commit_seq());
    assert!(db.durable_commit_seq() >= stats.seq, "the backed-up commit is durable");
    // A durable snapshot too: its header and keys are copied under the writer lock the
    // transaction holds (refused now before the walk of its pages, then after it).
    let w = db.begin_write().unwrap();
    let r = rt.backup_to(&mut Vec::new(), &mut |_| {});
    assert!(matches!(&r, Err(Error::Unsupported(m)) if m.contains("inside a write transaction")), "{:?}", r.err());
    drop(w);
    drop(rt);

    db.insert("later", &b"eventual"[..]).unwrap();
    assert!(db.durable_commit_seq() < db.commit_seq());
    let mut out2 = Vec::new();
    let stats2 = db.backup_to(&mut out2, &mut |_| {}).unwrap();
    assert_eq!(db.durable_commit_seq(), stats2.seq);

    let dst = dir.path().join("restored.fv");
    backup::restore(Cursor::new(&out2), &dst, &creds(), RestoreOptions::default()).unwrap();
    let restored = cfg(&dst).open().unwrap();
    assert_eq!(contents(&restored), contents(&db));
}
