//! The write-ahead log edited by someone who recomputes its CRC32s (SPEC.md §15: the log adds
//! no integrity of its own; it carries pages sealed by the engine, each bound to its page
//! number and its file): an older copy of a page put in a later group in place of the newer,
//! two page numbers swapped in a group's index, and a group spliced in from another file's
//! log under the same master key, its salt made this log's.
//!
//! Each open either fails with a typed error, or opens at a commit that was made, where every
//! read gives that commit's value or `Corrupt`: never an old value beside newer ones, never
//! another file's data. (Test review: only a flipped byte, which the CRC32 catches, was tried
//! on a whole database.) A control row (the last group's CRC rewritten, nothing edited) shows
//! that a group so made replays; each edited row must then show the edit was seen (`outcome`
//! says what each result means), not come out as a torn last group. (Second review: any made
//! commit passed, so a forged group dropped before its pages were opened passed too.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use foldvault::format::{COMMIT_PAGE_A, COMMIT_PAGE_B};
use foldvault::storage::wal::sidecar_path;
use foldvault::{Config, Durability, Error, MasterKey, PageRole};

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

/// The database pages a replay of `log` puts in place (groups as `groups` reads them, with
/// their CRCs taken as right): each page's copy in the last group that writes it.
fn replayed(log: &[u8]) -> BTreeMap<u64, &[u8]> {
    let mut pages = BTreeMap::new();
    for g in groups(log) {
        for (i, &page) in g.targets.iter().enumerate() {
            let at = (g.at + 1 + i) * P;
            pages.insert(page, &log[at..at + P]);
        }
    }
    pages
}

/// The pages an edit of the log changed: those whose replayed bytes differ.
fn edited_pages(original: &[u8], edited: &[u8]) -> BTreeSet<u64> {
    let (a, b) = (replayed(original), replayed(edited));
    a.keys().chain(b.keys()).filter(|p| a.get(p) != b.get(p)).copied().collect()
}

/// The control row: the last group's CRC rewritten by `fix_crc` over its bytes as written. The
/// log must come out byte for byte as it was, and the copy open at the last commit, whole (no
/// fall-back, no slot rejected, no group dropped, every record the model's, `Db::check` clean):
/// otherwise `fix_crc` does not make a group replay, every edited row would come out as a torn
/// last group opened at the commit before, and no page binding would have been tested. Returns
/// the pages the last commit uses (`Db::check`'s roles: commit records, catalog, trees, free list).
fn control(src: &Path, to: &Path, models: &BTreeMap<u64, Model>) -> BTreeSet<u64> {
    std::fs::copy(src, to).unwrap();
    let log = std::fs::read(sidecar_path(src)).unwrap();
    let last = groups(&log).pop().unwrap();
    let mut fixed = log.clone();
    fix_crc(&mut fixed, last.at, last.targets.len());
    assert!(fixed == log, "fix_crc gave an unedited group another CRC than the log's own");
    std::fs::write(sidecar_path(to), &fixed).unwrap();
    let db = config(to).open().unwrap();
    let (&seq, want) = models.last_key_value().unwrap();
    let report = db.recovery_report();
    assert_eq!(db.encryption_status().commit_seq, seq, "control: not opened at the last commit: {report:?}");
    assert!(!report.fell_back && report.rejected_slots.is_empty() && !report.log_group_dropped, "control: {report:?}");
    let t = db.open_tree("t").unwrap();
    let got: Model = t
        .iter()
        .map(|e| e.map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), v.to_vec())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(&got == want, "control: the records are not the last commit's");
    let check = db.check().unwrap();
    assert!(check.is_ok(), "control: {:?}", check.problems);
    check.roles.pages(|r| !matches!(r, PageRole::Header | PageRole::Free | PageRole::Unaccounted)).collect()
}

/// A copy of the crashed database `src` whose log `edit` changed; opened and read whole. The
/// outcome in a word, for the printed table, and whether recovery fell back (`fell_back`).
///
/// Every row's edit keeps the log's groups (magic, salt and sequence numbers: `groups` reads
/// as many as before) and makes their CRCs right (`fix_crc`, which the control row proves), so
/// that replay applies the edited group; `log_group_dropped` must stay false. `edited` is the
/// set of pages whose replayed bytes the edit changed. The outcomes accepted, and what each
/// means:
///
/// - the open refused with `Corrupt` naming an edited page: no commit record that opens
///   verifies (never `Truncated`: the edits change which bytes are logged, not which pages);
/// - an open at the last commit: every edited page the last commit uses (`live`, from the
///   control) is seen, as a read refused, a problem `Db::check` names or an edited commit slot
///   that does not open (`rejected_slots`: the record of the commit before, which the last
///   built on); edited pages it does not use (pages of an earlier group that later ones
///   superseded) are never read, and then the commit reads whole and checks clean;
/// - an open at the commit before the last, never further back (each edit is to one group):
///   the last commit's record did not verify (`fell_back`), its slot was edited so that it does
///   not open (`rejected_slots`), or its slot alone was edited and holds an earlier commit's
///   record put back whole, which opens (then the newest record that opens is the commit
///   before: a rollback by one commit, as removing the last group gives, which nothing in the
///   file can tell apart; SPEC §11 and §15: an edited log rolls back at worst, and
///   `Config::min_commit_seq` is the defence). The commit fallen back to uses no page the last
///   group wrote, so it reads whole and checks clean.
fn outcome(
    src: &Path,
    to: &Path,
    models: &BTreeMap<u64, Model>,
    live: &BTreeSet<u64>,
    edit: impl FnOnce(&mut Vec<u8>),
) -> (String, bool) {
    std::fs::copy(src, to).unwrap();
    let original = std::fs::read(sidecar_path(src)).unwrap();
    let mut log = original.clone();
    edit(&mut log);
    std::fs::write(sidecar_path(to), &log).unwrap();
    let name = to.display();
    assert_eq!(groups(&log).len(), groups(&original).len(), "{name}: the edit ends the log's groups early");
    let edited = edited_pages(&original, &log);
    let last_group = groups(&original).pop().unwrap();
    let last_slot = *last_group.targets.iter().find(|&&p| p == COMMIT_PAGE_A || p == COMMIT_PAGE_B).unwrap();
    let last = *models.keys().last().unwrap();
    let db = match config(to).open() {
        Err(Error::Corrupt { page, reason }) => {
            assert!(edited.contains(&page), "{name}: open refused at page {page}, which the edit left ({edited:?})");
            return (format!("open refused: page {page}: {reason}"), false);
        }
        Err(e) => panic!("{name}: an open error of another kind: {e:?}"),
        Ok(db) => db,
    };
    let report = db.recovery_report();
    assert!(!report.log_group_dropped, "{name}: replay dropped a group whose CRC was made right: {report:?}");
    let seq = db.encryption_status().commit_seq;
    let want = models.get(&seq).unwrap_or_else(|| panic!("{name}: opened at {seq}, a commit never made"));
    let keys: BTreeSet<&String> = models.values().flat_map(|m| m.keys()).collect();
    let t = db.open_tree("t").unwrap();
    let mut refused = 0;
    for k in keys {
        match t.get(k.as_str()) {
            Ok(v) => assert_eq!(v.as_deref(), want.get(k).map(|v| &v[..]), "{name}: {k} at commit {seq}"),
            Err(Error::Corrupt { .. }) => refused += 1,
            Err(e) => panic!("{name}: read of {k}: {e:?}"),
        }
    }
    for entry in t.iter() {
        match entry {
            Ok((k, v)) => {
                let k = String::from_utf8(k.to_vec()).unwrap();
                assert_eq!(want.get(&k).map(|v| &v[..]), Some(&v[..]), "{name}: iterated {k} at {seq}");
            }
            Err(Error::Corrupt { .. }) => break,
            Err(e) => panic!("{name}: iteration: {e:?}"),
        }
    }
    let problems = db.check().unwrap().problems;
    let slot_rejected = report.rejected_slots.iter().any(|p| edited.contains(p));
    let whole = refused == 0 && problems.is_empty();
    if seq == last {
        if edited.is_disjoint(live) {
            assert!(whole, "{name}: no page the last commit uses was edited: {refused} refused, {problems:?}");
        } else {
            assert!(
                refused > 0 || !problems.is_empty() || slot_rejected,
                "{name}: opened at the last commit with edited pages {edited:?} it uses unseen: {report:?}"
            );
        }
    } else {
        assert_eq!(seq + 1, last, "{name}: an edit of one group lost more than its commit: {report:?}");
        let put_back = edited == BTreeSet::from([last_slot]) && report.rejected_slots.is_empty();
        assert!(
            report.fell_back || slot_rejected || put_back,
            "{name}: opened at commit {seq}, the last commit neither failed nor lost its record: {report:?} (edited \
             {edited:?})"
        );
        assert!(whole, "{name}: the commit fallen back to is not whole: {refused} refused, {problems:?}");
    }
    let said = format!(
        "opened at commit {seq} of {last}, {refused} reads refused, {} check problems, fell back: {}, slots rejected: \
         {:?}",
        problems.len(),
        report.fell_back,
        report.rejected_slots
    );
    (said, report.fell_back)
}

#[test]
fn an_edited_log_yields_a_made_commit_or_corrupt_never_old_or_foreign_data() {
    let dir = tempfile::tempdir().unwrap();
    let (db, models) = crashed(dir.path(), "db", "ours", 12);
    let log = std::fs::read(sidecar_path(&db)).unwrap();
    let gs = groups(&log);
    assert!(gs.len() >= 10, "a group per durable commit: {}", gs.len());
    // The control: the last group unedited, its CRC rewritten, opens at the last commit.
    let live = control(&db, &dir.path().join("control"), &models);
    let mut seen = vec![(
        "control: the last group's CRC rewritten, nothing edited".to_string(),
        "opened at the last commit, whole".to_string(),
    )];

    // An older copy of a page in a later group, for every page the last group writes that an
    // earlier one wrote too (the commit record's slot among them).
    let last = gs.last().unwrap();
    let (mut older_copies, mut older_fell_back) = (0, 0);
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
        let (said, fell_back) = outcome(&db, &to, &models, &live, |l| {
            l.copy_within(from..from + P, into);
            fix_crc(l, at, n);
        });
        older_fell_back += usize::from(fell_back);
        seen.push((format!("page {page}: the last group's copy replaced by group {gi}'s"), said));
    }
    assert!(older_copies >= 2, "the last group should rewrite pages earlier groups wrote");
    // The last group writes one commit slot: at least one older copy is of a page its commit
    // reaches, which must fail that commit's verification. (An older copy of the slot alone
    // opens at the commit before as a group never replayed would: this shows the edited group
    // is replayed.)
    assert!(older_fell_back >= 1, "no older copy made the last commit fail to verify: {seen:#?}");

    // Two page numbers swapped in a group's index: each page is read as the other.
    for g in gs.iter().filter(|g| g.targets.len() >= 2).rev().take(3) {
        let (at, n) = (g.at, g.targets.len());
        let to = dir.path().join(format!("swapped-{at}"));
        seen.push((
            format!("group at log page {at}: its first two page numbers swapped"),
            outcome(&db, &to, &models, &live, |l| {
                let (a, b) = (at * P + INDEX_ENTRIES_AT, at * P + INDEX_ENTRIES_AT + 8);
                let first: [u8; 8] = l[a..a + 8].try_into().unwrap();
                l.copy_within(b..b + 8, a);
                l[b..b + 8].copy_from_slice(&first);
                fix_crc(l, at, n);
            })
            .0,
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
        outcome(&db, &dir.path().join("spliced"), &models, &live, |l| {
            l[at * P..(at + 1 + n) * P].copy_from_slice(&other_log[at * P..(at + 1 + n) * P]);
            l[at * P + 8..at * P + 16].copy_from_slice(&salt);
            fix_crc(l, at, n);
        })
        .0,
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
