//! The write-ahead log edited by someone who recomputes its CRC32s (SPEC.md §15: the log adds
//! no integrity of its own; it carries pages sealed by the engine, each bound to its page
//! number and its file): an older copy of a page put in a later group in place of the newer,
//! two page numbers swapped in a group's index, and a group spliced in from another file's
//! log under the same master key, its salt made this log's.
//!
//! Each open either fails with a typed error, or opens at a commit that was made, where every
//! read gives that commit's value or `Corrupt`: never an old value beside newer ones, never
//! another file's data. (Test review: only a flipped byte, which the CRC32 catches, was tried
//! on a whole database.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use foldvault::storage::wal::sidecar_path;
use foldvault::{Config, Durability, Error, MasterKey};

const P: usize = 4096;
const INDEX_CRC_AT: usize = 28;
const INDEX_ENTRIES_AT: usize = 48;

type Model = BTreeMap<String, Vec<u8>>;

fn config(path: &Path) -> Config {
    Config::new()
        .file(path)
        .use_env(false)
        .flush_every_ms(None)
        .master_key(MasterKey::from_bytes([0x42; 32]))
        .write_ahead_log(true)
}

/// A database that crashed after `commits` durable commits (its file and log copied while it
/// was open), each changing `hot` and adding one record; the state after each commit, by
/// commit sequence number.
fn crashed(dir: &Path, name: &str, tag: &str, commits: u32) -> (PathBuf, BTreeMap<u64, Model>) {
    let path = dir.join(name);
    let db = config(&path).open().unwrap();
    let mut m = Model::new();
    let mut models = BTreeMap::from([(db.encryption_status().commit_seq, m.clone())]);
    for i in 0..commits {
        let tx = db.begin_write().unwrap();
        {
            let t = tx.open_tree("t").unwrap();
            for (k, v) in
                [("hot".to_string(), format!("hot {tag} {i}")), (format!("k{i:03}"), format!("{tag} {i} ").repeat(9))]
            {
                t.insert(k.as_str(), v.as_bytes()).unwrap();
                m.insert(k, v.into_bytes());
            }
        }
        tx.set_durability(Durability::Immediate);
        tx.commit().unwrap();
        models.insert(db.encryption_status().commit_seq, m.clone());
    }
    let copy = dir.join(format!("{name}-crashed"));
    std::fs::copy(&path, &copy).unwrap();
    std::fs::copy(sidecar_path(&path), sidecar_path(&copy)).unwrap();
    drop(db);
    (copy, models)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A group of the log: its index page and the pages it writes, in order.
struct Group {
    at: usize,
    targets: Vec<u64>,
}

fn groups(log: &[u8]) -> Vec<Group> {
    let salt = u64_at(log, 8);
    let mut out = Vec::new();
    let mut at = 1;
    while (at + 1) * P <= log.len() {
        let b = &log[at * P..(at + 1) * P];
        if &b[..8] != b"FVWALGRP" || u64_at(b, 8) != salt || u64_at(b, 16) != out.len() as u64 {
            break;
        }
        let n = u32::from_le_bytes(b[24..28].try_into().unwrap()) as usize;
        let targets = (0..n).map(|i| u64_at(b, INDEX_ENTRIES_AT + 8 * i)).collect();
        out.push(Group { at, targets });
        at += 1 + n;
    }
    out
}

/// Makes the group at log page `at` (of `n` pages) check out again.
fn fix_crc(log: &mut [u8], at: usize, n: usize) {
    log[at * P + INDEX_CRC_AT..at * P + INDEX_CRC_AT + 4].fill(0);
    let crc = crc32fast::hash(&log[at * P..(at + 1 + n) * P]);
    log[at * P + INDEX_CRC_AT..at * P + INDEX_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A copy of the crashed database `src` whose log `edit` changed; opened and read whole. The
/// outcome in a word, for the printed table.
fn outcome(src: &Path, to: &Path, models: &BTreeMap<u64, Model>, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    std::fs::copy(src, to).unwrap();
    let mut log = std::fs::read(sidecar_path(src)).unwrap();
    edit(&mut log);
    std::fs::write(sidecar_path(to), &log).unwrap();
    let db = match config(to).open() {
        Err(e @ (Error::Corrupt { .. } | Error::Truncated { .. })) => return format!("open refused: {e}"),
        Err(e) => panic!("{}: an open error of another kind: {e:?}", to.display()),
        Ok(db) => db,
    };
    let seq = db.encryption_status().commit_seq;
    let want = models.get(&seq).unwrap_or_else(|| panic!("{}: opened at {seq}, a commit never made", to.display()));
    let keys: BTreeSet<&String> = models.values().flat_map(|m| m.keys()).collect();
    let t = db.open_tree("t").unwrap();
    let mut refused = 0;
    for k in keys {
        match t.get(k.as_str()) {
            Ok(v) => assert_eq!(v.as_deref(), want.get(k).map(|v| &v[..]), "{}: {k} at commit {seq}", to.display()),
            Err(Error::Corrupt { .. }) => refused += 1,
            Err(e) => panic!("{}: read of {k}: {e:?}", to.display()),
        }
    }
    for entry in t.iter() {
        match entry {
            Ok((k, v)) => {
                let k = String::from_utf8(k.to_vec()).unwrap();
                assert_eq!(want.get(&k).map(|v| &v[..]), Some(&v[..]), "{}: iterated {k} at {seq}", to.display());
            }
            Err(Error::Corrupt { .. }) => break,
            Err(e) => panic!("{}: iteration: {e:?}", to.display()),
        }
    }
    format!("opened at commit {seq} of {}, {refused} reads refused", models.keys().last().unwrap())
}

#[test]
fn an_edited_log_yields_a_made_commit_or_corrupt_never_old_or_foreign_data() {
    let dir = tempfile::tempdir().unwrap();
    let (db, models) = crashed(dir.path(), "db", "ours", 12);
    let log = std::fs::read(sidecar_path(&db)).unwrap();
    let gs = groups(&log);
    assert!(gs.len() >= 10, "a group per durable commit: {}", gs.len());
    let mut seen = Vec::new();

    // An older copy of a page in a later group, for every page the last group writes that an
    // earlier one wrote too (the commit record's slot among them).
    let last = gs.last().unwrap();
    let mut older_copies = 0;
    for (i, &page) in last.targets.iter().enumerate() {
        let Some((gi, g, j)) = gs[..gs.len() - 1]
            .iter()
            .enumerate()
            .rev()
            .find_map(|(gi, g)| g.targets.iter().position(|&t| t == page).map(|j| (gi, g, j)))
        else {
            continue;
        };
        let (from, into) = ((g.at + 1 + j) * P, (last.at + 1 + i) * P);
        if log[from..from + P] == log[into..into + P] {
            continue;
        }
        older_copies += 1;
        let to = dir.path().join(format!("older-{page}"));
        let (at, n) = (last.at, last.targets.len());
        seen.push((
            format!("page {page}: the last group's copy replaced by group {gi}'s"),
            outcome(&db, &to, &models, |l| {
                l.copy_within(from..from + P, into);
                fix_crc(l, at, n);
            }),
        ));
    }
    assert!(older_copies >= 2, "the last group should rewrite pages earlier groups wrote");

    // Two page numbers swapped in a group's index: each page is read as the other.
    for g in gs.iter().filter(|g| g.targets.len() >= 2).rev().take(3) {
        let (at, n) = (g.at, g.targets.len());
        let to = dir.path().join(format!("swapped-{at}"));
        seen.push((
            format!("group at log page {at}: its first two page numbers swapped"),
            outcome(&db, &to, &models, |l| {
                let (a, b) = (at * P + INDEX_ENTRIES_AT, at * P + INDEX_ENTRIES_AT + 8);
                let first: [u8; 8] = l[a..a + 8].try_into().unwrap();
                l.copy_within(b..b + 8, a);
                l[b..b + 8].copy_from_slice(&first);
                fix_crc(l, at, n);
            }),
        ));
    }

    // Another file's group (same master key, same workload) in place of this log's last one,
    // under this log's salt.
    let (other, _) = crashed(dir.path(), "other", "theirs", 12);
    let other_log = std::fs::read(sidecar_path(&other)).unwrap();
    let other_gs = groups(&other_log);
    let theirs = other_gs.last().unwrap();
    assert_eq!((theirs.at, theirs.targets.len()), (last.at, last.targets.len()), "the same workload's shape");
    let (at, n) = (last.at, last.targets.len());
    let salt: [u8; 8] = log[8..16].try_into().unwrap();
    seen.push((
        "the last group replaced by another file's".into(),
        outcome(&db, &dir.path().join("spliced"), &models, |l| {
            l[at * P..(at + 1 + n) * P].copy_from_slice(&other_log[at * P..(at + 1 + n) * P]);
            l[at * P + 8..at * P + 16].copy_from_slice(&salt);
            fix_crc(l, at, n);
        }),
    ));
    for (what, got) in &seen {
        println!("{what}: {got}");
    }
}

/// A log whose one group says the file is empty (length 0, no pages; its checksum made right),
/// beside a database file: the open is refused as `Truncated`, and leaves the file as it was.
/// It took the file for a new database and created one, whose header and key slots the first
/// checkpoint wrote over the database's.
#[test]
fn a_log_that_says_the_file_is_empty_does_not_make_a_new_database_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, models) = crashed(dir.path(), "db", "ours", 3);
    let file = std::fs::read(&db).unwrap();
    let mut log = std::fs::read(sidecar_path(&db)).unwrap();
    let first = groups(&log)[0].at;
    log.truncate((first + 1) * P);
    log[first * P..].fill(0);
    let salt: [u8; 8] = log[8..16].try_into().unwrap();
    let index = &mut log[first * P..];
    index[..8].copy_from_slice(b"FVWALGRP");
    index[8..16].copy_from_slice(&salt);
    fix_crc(&mut log, first, 0);
    std::fs::write(sidecar_path(&db), &log).unwrap();
    for read_only in [false, true] {
        let r = config(&db).read_only(read_only).open();
        assert!(matches!(r, Err(Error::Truncated { .. })), "read-only {read_only}: {:?}", r.map(|_| ()));
        assert!(std::fs::read(&db).unwrap() == file, "read-only {read_only}: the file changed");
    }
    // The database is whole: without the forged log it opens at a commit that was made.
    std::fs::remove_file(sidecar_path(&db)).unwrap();
    let opened = config(&db).open().unwrap();
    assert!(models.contains_key(&opened.encryption_status().commit_seq));
}
