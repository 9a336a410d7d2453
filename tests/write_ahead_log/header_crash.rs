//! Header updates (a passphrase change, a data-key rotation) cut by a power loss on a database
//! with its log: the header pages are written through to the file (SPEC §15), so no crash leaves
//! a copy of one in the log's bytes, where an old key slot or a rotation's next-key block would
//! outlive the change.

use parking_lot::Mutex;

use super::*;
use foldvault::storage::{CrashModel, DeviceImages};
use foldvault::{Credentials, Passphrase};

/// A database on fault-injecting devices, the file and its log (checkpoints at 48 pages).
fn rig_storage(rig: &FaultyDevices) -> foldvault::Result<Arc<dyn Storage>> {
    let l = rig.log.as_ref().unwrap();
    Ok(Arc::new(WalStorage::open(Arc::new(rig.main.clone()), Arc::new(l.clone()), 48, None)?))
}

fn encrypted(s: Arc<dyn Storage>, passphrase: &str) -> Config {
    Config::new()
        .storage(s)
        .passphrase(passphrase)
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .flush_every_ms(None)
        .cache_capacity(1 << 20)
}

/// Pages of a log image past its header that are copies of a database header page.
fn header_copies(log: &[u8]) -> usize {
    log.chunks(PAGE).skip(1).filter(|p| p.starts_with(&foldvault::format::MAGIC)).count()
}

const RECORDS: u32 = 60;

fn fill(db: &foldvault::Db) {
    for i in 0..RECORDS {
        db.insert(format!("k{i:03}"), vec![i as u8; 200]).unwrap();
        db.flush().unwrap();
    }
}

/// Opens `images` for writing with the first of `passphrases` that opens them, finishes a
/// rotation the crash cut short, and checks the data and the integrity check; after a resumed
/// rotation, again once reopened (the handle held both keys: a page left under the retired one
/// read through it). Returns the passphrase that opened them, marked " (resumed)" after a
/// rotation was finished.
fn recover(images: DeviceImages, passphrases: &[&str]) -> Result<String, String> {
    let rig = FaultyDevices::from_images(images);
    let open = |p: &str| rig_storage(&rig).map_err(|e| format!("log: {e}")).map(|s| encrypted(s, p).open());
    for p in passphrases {
        let db = match open(p)? {
            Ok(db) => db,
            Err(Error::WrongKey { .. }) => continue,
            Err(e) => return Err(format!("open with {p}: {e}")),
        };
        let resumed = db.encryption_status().rekey_in_progress;
        if resumed {
            db.rekey(&[Credentials::passphrase(*p)], &mut |_| {}).map_err(|e| format!("resume: {e}"))?;
        }
        holds_the_records(&db)?;
        if !resumed {
            return Ok(p.to_string());
        }
        drop(db);
        let db = open(p)?.map_err(|e| format!("reopen after the resumed rotation: {e}"))?;
        let status = db.encryption_status();
        if status.rekey_in_progress || status.data_keys_held != 1 {
            return Err(format!(
                "after the resumed rotation: in progress {}, keys {}",
                status.rekey_in_progress, status.data_keys_held
            ));
        }
        holds_the_records(&db)?;
        return Ok(format!("{p} (resumed)"));
    }
    Err("no passphrase opens".into())
}

/// Every record `fill` wrote, and a clean integrity check.
fn holds_the_records(db: &foldvault::Db) -> Result<(), String> {
    for i in 0..RECORDS {
        let v = db.get(format!("k{i:03}")).map_err(|e| format!("get: {e}"))?;
        if v.as_deref() != Some(&vec![i as u8; 200][..]) {
            return Err(format!("record {i} lost"));
        }
    }
    let report = db.check().map_err(|e| format!("check: {e}"))?;
    if !report.is_ok() {
        return Err(format!("check: {:?}", report.problems));
    }
    Ok(())
}

/// A power loss before every operation of a passphrase change and of a rotation, under four
/// crash models: no image's log holds a copy of a header page, and every image opens with the
/// passphrase kept or made, holds the data and checks clean (a rotation resumed). An erase of the
/// log after the update, as before, left both copies in it when the power failed mid-erase.
#[test]
fn a_header_update_cut_by_a_power_loss_leaves_no_header_in_the_log() {
    for change in ["passphrase", "rekey"] {
        let rig = FaultyDevices::new(true);
        let db = encrypted(rig_storage(&rig).unwrap(), "old").open().unwrap();
        fill(&db);
        let outcomes: Arc<Mutex<Vec<Result<String, String>>>> = Arc::default();
        for dev in rig.iter() {
            let (r, o) = (rig.clone(), outcomes.clone());
            dev.set_observer(Some(Arc::new(move |op| {
                for model in [
                    CrashModel::LoseUnsynced,
                    CrashModel::TearUnsynced { seed: op },
                    CrashModel::ReorderUnsynced { seed: op },
                    CrashModel::ScatterUnsynced { seed: op },
                ] {
                    let images = r.crash_images(&model);
                    let copies = header_copies(images.1.as_deref().unwrap_or(&[]));
                    let got = if copies > 0 {
                        Err(format!("{copies} header copies in the log"))
                    } else {
                        recover(images, &["old", "new"])
                    };
                    o.lock().push(got.map_err(|e| format!("power loss before op {op}, {model:?}: {e}")));
                }
            })));
        }
        match change {
            "passphrase" => db.change_passphrase(
                &Credentials::passphrase("old"),
                Passphrase::from("new"),
                KdfParams::insecure_fast(),
            ),
            _ => db.rekey(&[Credentials::passphrase("old")], &mut |_| {}),
        }
        .unwrap();
        rig.iter().for_each(|d| d.set_observer(None));
        let outcomes = outcomes.lock();
        let failed: Vec<_> = outcomes.iter().filter(|r| r.is_err()).collect();
        assert!(failed.is_empty(), "{change}: {} of {} images: {failed:#?}", failed.len(), outcomes.len());
        let new = outcomes.iter().filter(|r| r.as_deref() == Ok("new")).count();
        println!("{change}: {} crash images, {new} opened with the new passphrase", outcomes.len());
        assert!(outcomes.len() >= 16, "{change}: crash points: {}", outcomes.len());
        let resumed = outcomes.iter().filter(|r| r.as_deref().is_ok_and(|p| p.ends_with("(resumed)"))).count();
        if change == "rekey" {
            assert!(resumed > 0, "no power loss cut the rotation short");
        }
        if change == "passphrase" {
            assert!(
                new > 0 && new < outcomes.len(),
                "{change}: {new} of {} opened with the new passphrase",
                outcomes.len()
            );
        }
    }
}

/// A log an earlier build left (it logged the header pages) holding a newer copy of header page
/// B than the file's, as a crash between its two copies leaves it: the writable open replays it,
/// repairs copy A, and erases the log, which keeps no header page. The repair's write through
/// the log emptied its index first, and the open, asking after it whether the log held a header
/// page, erased nothing: the copy (a rotation's next-key block, old slots) stayed in the log's
/// bytes (diff review, medium-high).
#[test]
fn a_header_page_an_earlier_build_logged_is_erased_after_the_repair_it_needs() {
    let rig = FaultyDevices::new(true);
    let db = encrypted(rig_storage(&rig).unwrap(), "old").open().unwrap();
    fill(&db);
    drop(db);
    let closed = rig.live_images();
    // The header a passphrase change makes (its generation one higher), taken from a copy.
    let changed = FaultyDevices::from_images(closed.clone());
    let db = encrypted(rig_storage(&changed).unwrap(), "old").open().unwrap();
    db.change_passphrase(&Credentials::passphrase("old"), Passphrase::from("new"), KdfParams::insecure_fast()).unwrap();
    drop(db);
    let newer_b = changed.main.live_image()[PAGE..2 * PAGE].to_vec();
    // As an earlier build wrote it: copy B into the log, synced; then the process dies.
    let crashed = FaultyDevices::from_images(closed);
    let log =
        WalStorage::open(Arc::new(crashed.main.clone()), Arc::new(crashed.log.as_ref().unwrap().clone()), 48, None)
            .unwrap();
    log.write_at(PAGE as u64, &newer_b).unwrap();
    log.sync().unwrap();
    log.close_as_crash();
    assert_eq!(header_copies(&crashed.log.as_ref().unwrap().live_image()), 1, "the log holds copy B");
    let db = encrypted(rig_storage(&crashed).unwrap(), "new").open().unwrap();
    assert_eq!(db.recovery_report().header_repaired, Some(0));
    assert_eq!(header_copies(&crashed.log.as_ref().unwrap().live_image()), 0, "a header copy stayed in the log");
    holds_the_records(&db).unwrap();
    drop(db);
    let file = crashed.main.live_image();
    assert_eq!(file[..PAGE], file[PAGE..2 * PAGE], "the two copies differ after the repair");
}
