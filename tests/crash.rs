//! Crash simulation with the fault-injecting storage (issue: tamper evidence & crash safety).
//!
//! One run of a workload of 1,000+ transactions over several trees (inserts, overwrites,
//! removes, large values, tree drops, immediate and eventual commits with flushes, compactions).
//! Before every mutating storage operation an observer takes the image a power loss at that
//! point would leave, under three models (unsynced writes lost; torn at 512-byte boundaries;
//! reordered then cut), opens it, runs the integrity check, and hashes the contents. Afterwards each recovered
//! state must be one of the states between the last commit acknowledged as durable and the
//! commit in flight: every acknowledged commit survives, nothing of an unacknowledged one is
//! partly visible. Then I/O errors (one-shot and persistent) at sampled operations; one-shot
//! errors the device gets over, after which the same handle must refuse to commit (`Poisoned`)
//! or, after a failed read, commit durably on top of an acknowledged state; and a second crash
//! during recovery from the first, or in the work after it, from first images that had
//! different repairs to make (its second session may fail only once the power is cut).
//!
//! Default run: every second mutating operation is a crash point (over 4,000, three models
//! each); `FOLDVAULT_EXHAUSTIVE=1` takes every one.
//! `FOLDVAULT_EXHAUSTIVE=1` also makes every operation an I/O-error point.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldvault::fuzzing::Rng;
use foldvault::storage::{CrashModel, DeviceImages, FaultPlan, FaultyDevices, FaultyStorage, Storage, WalStorage};
use foldvault::{Config, Db, Durability, Error, KdfParams};
use parking_lot::Mutex;

#[path = "crash/recovery.rs"]
mod recovery;

type Model = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;
const TREES: [&str; 3] = ["atoms", "schemas", "metadata"];

fn config(s: Arc<dyn Storage>, encrypted: bool) -> Config {
    // A low spill bound: the larger transactions below write leaves before they commit.
    let c = Config::new().storage(s).use_env(false).flush_every_ms(None).cache_capacity(1 << 20).tx_spill_after(16);
    if encrypted { c.passphrase("crash-test").kdf(KdfParams::insecure_fast()) } else { c.plaintext() }
}

fn hash_model(m: &Model) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for (name, t) in m {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(t.len() as u64).to_le_bytes());
        for (k, v) in t {
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k);
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
        }
    }
    *h.finalize().as_bytes()
}

fn read_all(db: &Db) -> foldvault::Result<Model> {
    let mut m = Model::new();
    for name in db.tree_names() {
        if &*name == foldvault::DEFAULT_TREE {
            continue;
        }
        let t = db.open_tree(&name)?;
        let mut tm = BTreeMap::new();
        for kv in t.iter() {
            let (k, v) = kv?;
            tm.insert(k.to_vec(), v.to_vec());
        }
        m.insert(String::from_utf8_lossy(&name).into_owned(), tm);
    }
    Ok(m)
}

const WAL_CHECKPOINT_PAGES: u64 = 48;
const WAL_MAX_GROUP: usize = 24;
/// A log path in a directory that exists (synced before the session's first log header) naming
/// no file (so removing it at close does nothing).
fn no_file() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("foldvault-crash-test-{}-absent.fvwal", std::process::id()))
}

/// The storage a database sees on `rig`: the file alone, or the file and its write-ahead log (a
/// small log and small groups, so that the workload checkpoints and goes direct often).
fn storage_of(rig: &FaultyDevices) -> foldvault::Result<Arc<dyn Storage>> {
    Ok(match &rig.log {
        None => Arc::new(rig.main.clone()),
        Some(l) => Arc::new(
            // A path to remove at close takes the clean close's way (the pages copied home, the
            // log left as it is); nothing is there, so the next open replays the same log again.
            WalStorage::open(Arc::new(rig.main.clone()), Arc::new(l.clone()), WAL_CHECKPOINT_PAGES, Some(no_file()))?
                .max_group(WAL_MAX_GROUP),
        ),
    })
}

/// `storage_of` a rig whose log, if any, was just made (and so cannot fail to be read).
fn storage(rig: &FaultyDevices) -> Arc<dyn Storage> {
    storage_of(rig).unwrap()
}

/// Opens an image anchored at `min_seq` (the newest commit acknowledged durable: an open that
/// falls back past it is `RolledBack`, as it would be for an application that keeps the
/// anchor, SPEC §11), checks it, returns the hash of its contents.
fn recover(images: DeviceImages, encrypted: bool, min_seq: u64) -> Result<[u8; 32], String> {
    recover_model(images, encrypted, min_seq).map(|m| hash_model(&m))
}

/// `recover`, returning the contents themselves.
fn recover_model(images: DeviceImages, encrypted: bool, min_seq: u64) -> Result<Model, String> {
    let (main, log) = images;
    let s = storage_of(&FaultyDevices::from_images((main, log))).map_err(|e| format!("log: {e}"))?;
    let db = config(s, encrypted).min_commit_seq(min_seq).open().map_err(|e| format!("open: {e}"))?;
    let report = db.check().map_err(|e| format!("check: {e}"))?;
    if !report.is_ok() {
        return Err(format!(
            "check problems: {:?} roles {:?} free {} seq {}",
            report.problems, report.roles, report.free_pages, report.commit_seq
        ));
    }
    read_all(&db).map_err(|e| format!("read: {e}"))
}

/// Progress shared with the observer: (index of the last state acknowledged durable, index of
/// the newest state that may be on disk, and the commit sequence number acknowledged durable).
/// A compaction changes no data, so only the sequence number tells its commits lost.
#[derive(Clone, Copy, Default)]
struct Progress {
    acked: usize,
    upper: usize,
    acked_seq: u64,
    /// Pages compaction moved, and pages it cut off the file's end, over the run (apart: the
    /// crash points fall in both steps only if each happens).
    moved: u64,
    cut: u64,
}

impl Progress {
    /// The state last pushed is acknowledged durable, at `db`'s durable sequence number.
    fn ack(progress: &Mutex<Progress>, states: &[[u8; 32]], db: &Db) {
        let seq = db.durable_commit_seq();
        let mut p = progress.lock();
        p.acked = states.len() - 1;
        p.acked_seq = seq;
    }
}

/// Runs the workload on `db`. `states` receives the hash after every commit. Returns the first
/// error (the workload stops there).
fn workload(
    db: &Db,
    txns: usize,
    seed: u64,
    states: &mut Vec<[u8; 32]>,
    progress: &Mutex<Progress>,
    model: &mut Model,
) -> foldvault::Result<()> {
    let mut rng = Rng(seed | 1);
    for _ in 0..txns {
        let mut next = model.clone();
        let immediate = rng.below(10) < 8;
        let tx = db.begin_write()?;
        tx.set_durability(if immediate { Durability::Immediate } else { Durability::Eventual });
        let mut dropped = false;
        if rng.below(50) == 0 {
            if next.contains_key("dropme") {
                tx.drop_tree("dropme")?;
                next.remove("dropme");
                dropped = true;
            } else {
                let t = tx.open_tree("dropme")?;
                let e = next.entry("dropme".into()).or_default();
                for i in 0..rng.below(1200) {
                    let k = format!("d{i}").into_bytes();
                    // One value in forty spills into an overflow chain, which the drop frees.
                    let len = if i % 40 == 39 { 3000 + (i as usize * 37) % 17_000 } else { 50 };
                    let v = vec![i as u8; len];
                    t.insert(&k, &v)?;
                    e.insert(k, v);
                }
            }
        }
        for _ in 0..1 + rng.below(6) {
            let tree = TREES[rng.below(3) as usize];
            let t = tx.open_tree(tree)?;
            let e = next.entry(tree.into()).or_default();
            let key = format!("key{:04}", rng.below(400)).into_bytes();
            if rng.below(4) == 0 {
                t.remove(&key)?;
                e.remove(&key);
            } else {
                let len = match rng.below(100) {
                    0..=4 => 3000 + rng.below(6000),
                    5 => 20_000,
                    _ => 10 + rng.below(200),
                } as usize;
                let v: Vec<u8> = (0..len).map(|i| (i as u64 ^ rng.0) as u8).collect();
                t.insert(&key, &v)?;
                e.insert(key, v);
            }
        }
        // The state this commit produces may reach the disk from here on.
        states.push(hash_model(&next));
        progress.lock().upper = states.len() - 1;
        tx.commit()?;
        *model = next;
        if immediate {
            Progress::ack(progress, states, db);
        } else if rng.below(3) == 0 {
            progress.lock().upper = states.len() - 1;
            db.flush()?;
            Progress::ack(progress, states, db);
        }
        // After a drop the file has free pages below live ones, so compaction has pages to move
        // and an end to cut.
        if rng.below(100) == 0 || dropped {
            // Compaction: moves, trims and cuts the file; it flushes first and changes no data.
            let r = db.compact()?;
            Progress::ack(progress, states, db);
            let mut p = progress.lock();
            p.moved += r.pages_moved;
            p.cut += r.pages_before.saturating_sub(r.pages_after);
        }
    }
    Ok(())
}

struct Point {
    op: u64,
    model: CrashModel,
    progress: Progress,
    outcome: Result<[u8; 32], String>,
}

fn crash_points(encrypted: bool, txns: usize, wal: bool) {
    let rig = FaultyDevices::new(wal);
    let db = config(storage(&rig), encrypted).open().unwrap();
    let mut states = vec![hash_model(&Model::new())];
    let progress = Arc::new(Mutex::new(Progress::default()));
    let points: Arc<Mutex<Vec<Point>>> = Arc::default();
    // Every mutating operation with FOLDVAULT_EXHAUSTIVE=1, every second one by default (on
    // each device; with a log, the power loss takes both devices at that moment).
    let stride = if std::env::var_os("FOLDVAULT_EXHAUSTIVE").is_some() { 1 } else { 2 };
    for dev in rig.iter() {
        let (r, p, pts) = (rig.clone(), progress.clone(), points.clone());
        dev.set_observer(Some(Arc::new(move |op| {
            if op % stride != 0 {
                return;
            }
            let prog = *p.lock();
            for model in [
                CrashModel::LoseUnsynced,
                CrashModel::TearUnsynced { seed: op },
                CrashModel::ReorderUnsynced { seed: op.wrapping_mul(31) },
                CrashModel::ScatterUnsynced { seed: op.wrapping_mul(17) },
            ] {
                let outcome = recover(r.crash_images(&model), encrypted, prog.acked_seq);
                pts.lock().push(Point { op, model, progress: prog, outcome });
            }
        })));
    }
    let mut model = Model::new();
    workload(&db, txns, 0x5eed, &mut states, &progress, &mut model).unwrap();
    rig.iter().for_each(|d| d.set_observer(None));
    // The crash points fall inside compaction's moves and cut only if it makes some.
    let p = *progress.lock();
    assert!(p.moved > 0 && p.cut > 0, "the workload's compactions moved {} pages and cut {}", p.moved, p.cut);
    drop(db);
    let points = std::mem::take(&mut *points.lock());
    let mut failures = Vec::new();
    let mut by_model = [0usize; 4];
    for p in &points {
        by_model[match p.model {
            CrashModel::LoseUnsynced => 0,
            CrashModel::TearUnsynced { .. } => 1,
            CrashModel::ReorderUnsynced { .. } => 2,
            CrashModel::ScatterUnsynced { .. } => 3,
        }] += 1;
        match &p.outcome {
            Ok(h) => {
                if !states[p.progress.acked..=p.progress.upper].contains(h) {
                    failures.push(format!(
                        "op {} {:?}: recovered state (number {:?}) is not between acked {} and {}",
                        p.op,
                        p.model,
                        states.iter().position(|s| s == h),
                        p.progress.acked,
                        p.progress.upper
                    ));
                }
            }
            Err(e) => failures.push(format!("op {} {:?}: {e}", p.op, p.model)),
        }
    }
    println!(
        "crash points ({}{}): {} operations x 4 models = {} recoveries (lost {}, torn {}, reordered {}, \
         scattered {}), {} commits",
        if encrypted { "encrypted" } else { "plaintext" },
        if wal { ", write-ahead log" } else { "" },
        points.len() / 4,
        points.len(),
        by_model[0],
        by_model[1],
        by_model[2],
        by_model[3],
        states.len() - 1
    );
    // A log writes each group once: fewer operations, each covering a whole commit.
    let least = if wal { 1000 } else { 2000 };
    assert!(points.len() / 4 >= least, "too few crash points: {}", points.len() / 4);
    assert!(failures.is_empty(), "{} failures, first: {:#?}", failures.len(), &failures[..failures.len().min(10)]);
}

#[test]
fn crash_at_every_write_encrypted() {
    crash_points(true, 1000, false);
}

#[test]
fn crash_at_every_write_plaintext() {
    crash_points(false, 1000, false);
}

#[test]
fn crash_at_every_write_with_write_ahead_log() {
    crash_points(true, 1000, true);
}

#[test]
fn crash_at_every_write_plaintext_with_write_ahead_log() {
    crash_points(false, 1000, true);
}

/// I/O errors, one-shot and persistent, at sampled operations (of each device): the
/// operation fails with an error (never a panic), and the file then opens at an acceptable state:
/// after a persistent error, as it is; after a one-shot one, as a power loss at the next
/// operation leaves it, under each crash model (so a commit acknowledged after its sync failed
/// would be found lost, and one whose unsynced writes were torn or reordered found damaged).
fn io_errors(wal: bool) {
    let exhaustive = std::env::var_os("FOLDVAULT_EXHAUSTIVE").is_some();
    let txns = 150;
    let totals = clean_op_counts(wal, txns, 1 << 20);
    let mut runs = 0;
    // Runs whose workload met its fault, per device and kind: none would mean the fault points
    // missed every operation, and the test showed nothing (test review).
    let mut met = std::collections::BTreeMap::new();
    for (device, &total) in totals.iter().enumerate() {
        let step = if exhaustive { 1 } else { (total / 150).max(1) };
        for persistent in [false, true] {
            for at in (1..=total).step_by(step as usize) {
                let rig = FaultyDevices::new(wal);
                let db = config(storage(&rig), true).open().unwrap();
                // A one-shot failure is followed by a power loss at the next operation: a
                // commit acknowledged although its sync failed would be lost in that image.
                let crash_at = (!persistent).then_some(at + 1);
                // A failed write leaves a part of itself in the file, as a short one does.
                let plan = FaultPlan {
                    fail_at: Some(at),
                    persistent,
                    crash_at,
                    seed: at,
                    torn_failed_writes: true,
                    ..FaultPlan::default()
                };
                rig.plan_on(device, &plan);
                let mut states = vec![hash_model(&Model::new())];
                let progress = Mutex::new(Progress::default());
                let mut model = Model::new();
                let r = workload(&db, txns, 7, &mut states, &progress, &mut model);
                drop(db);
                let prog = *progress.lock();
                runs += 1;
                // The device's error reaches the caller as an I/O error or, after one, as the
                // handle's refusal: never as damage, a rollback or a bug (test review).
                assert!(
                    matches!(r, Ok(()) | Err(Error::Io(_) | Error::Poisoned)),
                    "device {device} fail_at {at} persistent {persistent}: {r:?}"
                );
                *met.entry((device, persistent)).or_insert(0) += u64::from(r.is_err());
                // After a one-shot failure, the power loss under each model: unsynced writes
                // lost, torn at 512-byte boundaries, or reordered then cut.
                let images: Vec<(String, DeviceImages)> = if persistent {
                    vec![("live".into(), rig.live_images())]
                } else {
                    [
                        CrashModel::LoseUnsynced,
                        CrashModel::TearUnsynced { seed: at },
                        CrashModel::ReorderUnsynced { seed: at },
                        CrashModel::ScatterUnsynced { seed: at },
                    ]
                    .iter()
                    .map(|m| (format!("{m:?}"), rig.crash_images(m)))
                    .collect()
                };
                for (image, images) in images {
                    let what = format!("device {device} fail_at {at} persistent {persistent}, {image} image");
                    let got = recover(images, true, prog.acked_seq).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert!(
                        states[prog.acked..=prog.upper].contains(&got),
                        "{what}: state {:?} not between acked {} and {} ({r:?})",
                        states.iter().position(|s| *s == got),
                        prog.acked,
                        prog.upper
                    );
                }
            }
        }
    }
    println!("I/O-error points: {runs} runs over {totals:?} operations (one-shot and persistent); met: {met:?}");
    for device in 0..totals.len() {
        for persistent in [false, true] {
            assert!(
                met.get(&(device, persistent)).is_some_and(|&n| n > 0),
                "device {device} persistent {persistent}: no run met its fault"
            );
        }
    }
}

/// The operations a clean run of `txns` workload transactions makes on each device of a rig
/// (with a cache of `cache` bytes).
fn clean_op_counts(wal: bool, txns: usize, cache: u64) -> Vec<u64> {
    let rig = FaultyDevices::new(wal);
    let db = config(storage(&rig), true).cache_capacity(cache).open().unwrap();
    rig.iter().for_each(|d| d.set_plan(FaultPlan::default()));
    let mut states = vec![hash_model(&Model::new())];
    workload(&db, txns, 7, &mut states, &Mutex::new(Progress::default()), &mut Model::new()).unwrap();
    rig.iter().map(|d| d.op_count()).collect()
}

/// One I/O error that the device gets over (no power loss after it), then more work on the
/// same handle: a failed write or sync poisons the handle, so the next commit fails with
/// `Poisoned` and the file holds an acceptable state; a failed read does not, so the next
/// commit may succeed, and then it must be in the file, on top of an acceptable state. (A
/// commit acknowledged on top of a failed write would be found here, its predecessor missing.)
fn io_error_then_another_commit(wal: bool) {
    // The smallest cache (64 pages), so that some of the workload's reads reach the device and
    // a failed read is met now and then (with the 1 MiB one of the other tests, none was).
    const CACHE: u64 = 16 * 4096;
    let exhaustive = std::env::var_os("FOLDVAULT_EXHAUSTIVE").is_some();
    let txns = 150;
    let (mut poisoned, mut continued, mut unreported) = (0, 0, 0);
    for (device, &total) in clean_op_counts(wal, txns, CACHE).iter().enumerate() {
        let step = if exhaustive { 1 } else { (total / 60).max(1) };
        for at in (1..=total).step_by(step as usize) {
            let rig = FaultyDevices::new(wal);
            let db = config(storage(&rig), true).cache_capacity(CACHE).open().unwrap();
            let plan = FaultPlan { fail_at: Some(at), seed: at, torn_failed_writes: true, ..FaultPlan::default() };
            rig.plan_on(device, &plan);
            let mut states = vec![hash_model(&Model::new())];
            let progress = Mutex::new(Progress::default());
            let first = match workload(&db, txns, 7, &mut states, &progress, &mut Model::new()) {
                Err(e) => e,
                Ok(()) => {
                    // The failed operation's error reached no caller (a read the engine got over,
                    // or an error it dropped): then every commit it acknowledged must be on the
                    // disk, as a power loss after the close finds it. A write error ignored, or a
                    // failed sync's writes taken as synced, would be found here.
                    drop(db);
                    let prog = *progress.lock();
                    let what = format!("device {device} fail_at {at}, no error reported");
                    let got = recover_model(rig.crash_images(&CrashModel::LoseUnsynced), true, prog.acked_seq)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert!(states[prog.acked..=prog.upper].contains(&hash_model(&got)), "{what}: not acknowledged");
                    unreported += 1;
                    continue;
                }
            };
            let what = format!("device {device} fail_at {at} ({first})");
            assert!(matches!(first, Error::Io(_) | Error::Poisoned), "{what}: not an I/O error");
            let after = db.open_tree("atoms").and_then(|t| {
                t.insert("after-error", b"x".to_vec())?;
                t.flush()
            });
            drop(db);
            let prog = *progress.lock();
            let mut got =
                recover_model(rig.live_images(), true, prog.acked_seq).unwrap_or_else(|e| panic!("{what}: {e}"));
            match after {
                Err(Error::Poisoned) => poisoned += 1,
                Err(e) => panic!("{what}: the next commit failed with {e}, not Poisoned"),
                Ok(_) => {
                    continued += 1;
                    let atoms = got.get_mut("atoms").unwrap_or_else(|| panic!("{what}: no atoms tree"));
                    assert_eq!(atoms.remove(&b"after-error"[..]).as_deref(), Some(&b"x"[..]), "{what}: commit lost");
                    // The tree that commit made, if none of the workload's had.
                    if atoms.is_empty() && !states[prog.acked..=prog.upper].contains(&hash_model(&got)) {
                        got.remove("atoms");
                    }
                }
            }
            assert!(
                states[prog.acked..=prog.upper].contains(&hash_model(&got)),
                "{what}: not an acknowledged state under the last commit"
            );
        }
    }
    println!(
        "one-shot I/O errors: {poisoned} poisoned the handle, {continued} were reads it went on after, \
         {unreported} reached no caller"
    );
    // Failed reads are seldom met here: the cache holds most of the workload's pages (the test
    // below fails one on purpose).
    assert!(poisoned > 0, "no failed write or sync was met");
}

/// A failed read is not a failed write: the handle goes on, and the next commit is durable on
/// top of what was there (test review: `io_error_then_another_commit` seldom meets one, its
/// reads nearly all served by the cache).
#[test]
fn a_failed_read_leaves_the_handle_writable() {
    for wal in [false, true] {
        let rig = FaultyDevices::new(wal);
        // The smallest cache (64 pages) under about 200 pages of leaves.
        let db = config(storage(&rig), true).cache_capacity(16 * 4096).open().unwrap();
        let t = db.open_tree("atoms").unwrap();
        for i in 0..3000u32 {
            t.insert(format!("k{i:05}"), vec![i as u8; 200]).unwrap();
        }
        db.flush().unwrap();
        db.checkpoint_log().unwrap();
        // The main device's next operation fails (a plan counts from zero): a read, below.
        rig.plan_on(0, &FaultPlan { fail_at: Some(1), ..FaultPlan::default() });
        let failed = (0..3000u32).find_map(|i| t.get(format!("k{i:05}")).err());
        match failed {
            Some(Error::Poisoned) | None => panic!("wal {wal}: no read failed, or it poisoned: {failed:?}"),
            Some(_) => {}
        }
        t.insert("after-error", b"x".to_vec()).unwrap();
        t.flush().unwrap();
        drop(t);
        drop(db);
        let got = recover_model(rig.crash_images(&CrashModel::LoseUnsynced), true, 0).unwrap();
        assert_eq!(got["atoms"].len(), 3001, "wal {wal}");
        assert_eq!(got["atoms"][&b"after-error"[..]], b"x");
    }
}

#[test]
fn io_error_then_another_commit_file() {
    io_error_then_another_commit(false);
}

#[test]
fn io_error_then_another_commit_with_write_ahead_log() {
    io_error_then_another_commit(true);
}

#[test]
fn io_errors_at_operations() {
    io_errors(false);
}

#[test]
fn io_errors_at_operations_with_write_ahead_log() {
    io_errors(true);
}

/// A commit whose process died before its sync leaves its writes in the OS cache, and the
/// next open reads that commit and builds on it, reusing the pages it freed. Open makes it
/// durable first (over a log: before the session's first group, or its first
/// writes to the file, as here, where every commit is too large for a group and goes to the
/// file directly): a power loss during the next session's first commit, at each of its
/// operations, then never finds the last commit acknowledged durable with its pages
/// overwritten and the commit built on missing.
#[test]
fn a_commit_read_from_the_os_cache_is_made_durable_before_it_is_built_on() {
    let fill = |b: u8| -> Model {
        let mut m = Model::new();
        m.insert("atoms".into(), (0..300u32).map(|i| (format!("k{i:04}").into_bytes(), vec![b; 600])).collect());
        m
    };
    let write = |db: &Db, m: &Model| -> foldvault::Result<()> {
        let mut batch = foldvault::Batch::default();
        for (k, v) in &m["atoms"] {
            batch.insert(k.clone(), v.clone());
        }
        db.open_tree("atoms")?.apply_batch(batch)
    };
    // The first session: a durable commit, then one that rewrites every leaf (freeing the old
    // ones) whose process stops at the commit's last operation on the file, its sync, leaving
    // the writes in the OS cache. (A failed sync would not do: Linux forgets what a failed
    // writeback did not write, and so does the fault model; SPEC §8.)
    let first_session = |wal: bool, stop_at: Option<u64>| -> (FaultyDevices, u64, u64) {
        let rig = FaultyDevices::new(wal);
        let db = config(storage(&rig), false).durability(Durability::Immediate).open().unwrap();
        write(&db, &fill(1)).unwrap();
        let acked = db.durable_commit_seq();
        rig.plan_on(0, &FaultPlan { stop_at, ..FaultPlan::default() });
        assert_eq!(write(&db, &fill(2)).is_err(), stop_at.is_some());
        let ops = rig.main.op_count();
        std::mem::forget(db);
        rig.plan_on(0, &FaultPlan::default());
        (rig, acked, ops)
    };
    let states = [hash_model(&fill(1)), hash_model(&fill(2)), hash_model(&fill(3))];
    for wal in [false, true] {
        // The failing operation: the last one of the commit that leaves it unsynced in the
        // file (over a log, reads of the file's header follow the file's sync).
        let (_, _, last) = first_session(wal, None);
        let ops = (1..=last)
            .rev()
            .find(|&op| {
                let (rig, _, _) = first_session(wal, Some(op));
                rig.main.live_image() != rig.main.durable_image()
            })
            .expect("a commit written to the file");
        let mut points = 0;
        for at in 1..10_000 {
            let (rig, acked, _) = first_session(wal, Some(ops));
            let db = config(storage(&rig), false).open().unwrap();
            assert!(read_all(&db).unwrap() == fill(2), "log {wal}: the commit the OS cache holds is read");
            // The reopened handle's anchor: the commit it read, which the open made durable.
            let anchor = db.durable_commit_seq();
            assert!(anchor > acked, "log {wal}: the open names the commit it read durable");
            rig.plan_on(0, &FaultPlan { crash_at: Some(at), ..FaultPlan::default() });
            let done = write(&db, &fill(3)).is_ok();
            for model in [
                CrashModel::LoseUnsynced,
                CrashModel::TearUnsynced { seed: at },
                CrashModel::ReorderUnsynced { seed: at },
            ] {
                let got = recover(rig.crash_images(&model), false, anchor)
                    .unwrap_or_else(|e| panic!("log {wal}, op {at} {model:?}: {e}"));
                assert!(states[1..].contains(&got), "log {wal}, op {at} {model:?}: not the commit read or a later one");
                points += 1;
            }
            std::mem::forget(db);
            if done {
                break;
            }
        }
        assert!(points > 6, "log {wal}: {points}");
    }
}

/// The durable anchors right after an open name a commit that is on the disk: an open that
/// finds a commit a process that died before its sync left in the OS cache (a log group
/// written, not synced) makes it durable before `durable_root_digest` names it. Over a log the
/// open's sync synced nothing, so an anchor taken then was refused (`RootDigestMismatch`)
/// after a power loss that took the group back.
#[test]
fn the_durable_anchors_after_an_open_survive_a_power_loss() {
    let rig = FaultyDevices::new(true);
    let db = config(storage(&rig), true).open().unwrap();
    db.insert("a", &b"1"[..]).unwrap();
    db.flush().unwrap();
    db.insert("b", &b"2"[..]).unwrap();
    // The flush writes the group (the log device's next operation) and then syncs it: the
    // process stops at the sync.
    let log = rig.log.clone().unwrap();
    rig.plan_on(1, &FaultPlan { stop_at: Some(2), ..FaultPlan::default() });
    assert!(db.flush().is_err());
    assert_ne!(log.live_image(), log.durable_image(), "the group is in the OS cache only");
    std::mem::forget(db);
    rig.plan_on(1, &FaultPlan::default());
    let db = config(storage(&rig), true).open().unwrap();
    assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"2"[..]), "the open read the group");
    db.flush().unwrap();
    let (digest, seq) = (db.durable_root_digest(), db.durable_commit_seq());
    std::mem::forget(db);
    let images = rig.crash_images(&CrashModel::LoseUnsynced);
    let s = storage_of(&FaultyDevices::from_images(images)).unwrap();
    let db = config(s, true).expected_root_digest(digest).min_commit_seq(seq).open();
    let db = db.unwrap_or_else(|e| panic!("the anchors taken after the open: {e}"));
    assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"2"[..]));
}
