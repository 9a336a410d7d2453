//! Target `backup_stream`: mutated backup streams through `verify` (without and with the key)
//! and `restore` (SPEC.md §13).
//!
//! A small encrypted database and its backup are built once per process. The input is read as
//! a list of mutations of that stream (bit flips, byte writes, truncation, appended bytes, a
//! range duplicated or moved), or — behind a flag — taken as the stream itself. Properties:
//! - never a panic; every error is typed (`BackupCorrupt`, `Truncated`, `NotADatabase`,
//!   `UnsupportedVersion`, `Corrupt`, `WrongKey`), and `WrongKey` only for the wrong passphrase;
//! - the unmodified stream verifies with and without the key and restores to the source's
//!   records;
//! - a modified stream that still verifies without the key restores to exactly the source's
//!   records, or fails with a typed error (a hash over the whole stream cannot be forged by
//!   chance, so in practice every modification is caught).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use crate::backup::{self, RestoreOptions};
use crate::crypto::slots::Credentials;
use crate::error::Error;
use crate::storage::{MemoryStorage, Storage};
use crate::{Config, KdfParams};

const PASS: &str = "fuzz backup passphrase";

type Records = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

struct Fixture {
    stream: Vec<u8>,
    records: Records,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let db = Config::new()
            .storage(s)
            .passphrase(PASS)
            .kdf(KdfParams::insecure_fast())
            .use_env(false)
            .flush_every_ms(None)
            .open()
            .expect("fixture database");
        for (t, n) in [("atoms", 120u32), ("schemas", 30)] {
            let tree = db.open_tree(t).expect("tree");
            for i in 0..n {
                tree.insert(format!("{t}:{i:04}"), super::filler(i as u64, 20 + (i as usize * 37) % 900))
                    .expect("insert");
            }
        }
        db.insert("big", super::filler(7, 9000)).expect("insert");
        db.open_tree("atoms").expect("tree").remove("atoms:0003").expect("remove");
        let mut stream = Vec::new();
        db.backup_to(&mut stream, &mut |_| {}).expect("backup");
        let records = contents(&db);
        Fixture { stream, records }
    })
}

fn contents(db: &crate::Db) -> Records {
    let mut out = Records::new();
    for name in db.tree_names() {
        let Ok(t) = db.open_tree(&name) else { continue };
        out.insert(name.to_vec(), t.iter().flatten().map(|(k, v)| (k.to_vec(), v.to_vec())).collect());
    }
    out.retain(|_, t| !t.is_empty());
    out
}

fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::BackupCorrupt { .. }
            | Error::Truncated { .. }
            | Error::NotADatabase
            | Error::UnsupportedVersion { .. }
            | Error::Corrupt { .. }
            | Error::WrongKey { .. }
    )
}

fn mutate(base: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s = base.to_vec();
    for op in data.chunks(6) {
        if op.len() < 6 || s.is_empty() {
            break;
        }
        let at = u32::from_le_bytes([op[1], op[2], op[3], op[4]]) as usize % s.len();
        match op[0] % 6 {
            0 => s[at] ^= 1 << (op[5] % 8),
            1 => s[at] = op[5],
            2 => s.truncate(at),
            3 => s.extend(std::iter::repeat_n(op[5], (op[5] as usize % 64) + 1)),
            4 => {
                let len = (op[5] as usize * 64).min(s.len() - at);
                let piece = s[at..at + len].to_vec();
                s.extend(piece);
            }
            _ => {
                let len = (op[5] as usize * 16).min(s.len() - at);
                let piece: Vec<u8> = s.drain(at..at + len).collect();
                let to = (at / 2).min(s.len());
                s.splice(to..to, piece);
            }
        }
    }
    s
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let f = fixture();
    let stream = match data.first() {
        Some(b) if b & 0x80 != 0 => data[1..].to_vec(),
        Some(_) => mutate(&f.stream, &data[1..]),
        None => f.stream.clone(),
    };
    let unmodified = stream == f.stream;
    let creds = Credentials::passphrase(PASS);
    let shallow = backup::verify(Cursor::new(&stream), None, &mut |_| {});
    if let Err(e) = &shallow {
        assert!(typed(e), "verify without key: untyped error {e:?}");
        assert!(!matches!(e, Error::WrongKey { .. }), "verify without a key said WrongKey");
    }
    let deep = backup::verify(Cursor::new(&stream), Some(&creds), &mut |_| {});
    if let Err(e) = &deep {
        assert!(typed(e), "verify with key: untyped error {e:?}");
    }
    if unmodified {
        assert!(shallow.is_ok() && deep.is_ok(), "the unmodified stream does not verify");
    }
    let dir = std::env::temp_dir().join(format!("fv-fuzz-backup-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let dst = dir.join("restored.foldvault");
    let _ = std::fs::remove_file(&dst);
    match backup::restore(Cursor::new(&stream), &dst, &creds, RestoreOptions::default()) {
        Ok(_) => {
            let db = Config::new().file(&dst).passphrase(PASS).use_env(false).flush_every_ms(None).open();
            let db = db.expect("a restored database opens");
            assert_eq!(contents(&db), f.records, "a restore that succeeds gives the source's records");
            drop(db);
        }
        Err(e) => {
            assert!(typed(e_ref(&e)), "restore: untyped error {e:?}");
            assert!(!unmodified, "the unmodified stream does not restore: {e:?}");
            assert!(shallow.is_err() || deep.is_err(), "verify passed but restore failed: {e:?}");
        }
    }
    let _ = std::fs::remove_file(&dst);
}

fn e_ref(e: &Error) -> &Error {
    e
}
