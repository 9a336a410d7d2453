//! The tamper matrix (SPEC.md §12) on real files: every row damages a copy of one encrypted
//! database on disk, reopens it, reads everything (iteration both ways over every tree, `get` of
//! every key written) and runs `Db::check`. Every outcome must be a typed error naming the page
//! where the row says so, a documented recovery, or a check problem naming the page — never a
//! panic and never wrong data (every value returned equals what was written at the commit the
//! database opened at).
//!
//! How pages are chosen: the payload of an encrypted page is opaque, so the fixture builds a
//! plaintext twin with the same deterministic workload and checks that its page roles
//! (`CheckReport::roles`), page count and commit sequence numbers equal the encrypted file's;
//! the twin's payload byte 0 then tells branch / leaf / overflow / free list, and its leaves
//! tell which keys live in which page (`tests/common/tamper_util.rs`).
//!
//! The workload has four durable commits; the newest (stage 4) touches only a one-record tree,
//! the catalog and the free list. Recovery at open descends only into pages written since the
//! previous durable commit, so damage to an older page is found when it is read, while damage
//! to what the newest commit wrote (catalog, free list, the newest commit record) makes open
//! fall back to the previous durable commit (SPEC.md §5.2, §12).
//!
//! `cargo test --test tamper -- --nocapture` prints the matrix.

#[path = "common/tamper_util.rs"]
mod tamper_util;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use foldvault::format::header::{
    FILE_ID_OFFSET, GENERATION_OFFSET, MAC_OFFSET, SLOT_SALT_OFFSET, SLOT_SIZE, SLOT_WRAPPED_OFFSET, SLOTS_END,
    SLOTS_OFFSET,
};
use foldvault::format::page::{EPOCH_OFFSET, NONCE_OFFSET, TAG_OFFSET};
use foldvault::{Config, CorruptReason, Error, MasterKey, PageRole};
use tamper_util::*;

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(build_fixture)
}

type Mutate = Box<dyn Fn(&Path)>;
type MakeCfg = Box<dyn Fn(&Path) -> Config>;
type Verdict = Box<dyn Fn(&Outcome, &Path) -> Result<(), String>>;

struct Case {
    attack: String,
    expected: String,
    mutate: Mutate,
    cfg: MakeCfg,
    verdict: Verdict,
    /// Where the file comes from (default: a copy of the fixture's final image).
    source: Option<Vec<u8>>,
    /// The models to compare with (default: the fixture's).
    models: Option<std::collections::BTreeMap<u64, Model>>,
}

impl Case {
    fn new(attack: impl Into<String>, expected: impl Into<String>, mutate: Mutate, verdict: Verdict) -> Case {
        Case {
            attack: attack.into(),
            expected: expected.into(),
            mutate,
            cfg: Box::new(|p: &Path| master_cfg(p)),
            verdict,
            source: None,
            models: None,
        }
    }
    fn with_cfg(mut self, cfg: MakeCfg) -> Case {
        self.cfg = cfg;
        self
    }
    fn with_source(mut self, img: Vec<u8>, models: std::collections::BTreeMap<u64, Model>) -> Case {
        self.source = Some(img);
        self.models = Some(models);
        self
    }
}

struct Row {
    attack: String,
    expected: String,
    observed: String,
    pass: Result<(), String>,
}

/// What every row must satisfy whatever it expects: no panic, no wrong data, only typed errors,
/// check runs.
fn invariants(o: &Outcome) -> Result<(), String> {
    if let Some(p) = &o.panic {
        return Err(format!("panic: {p}"));
    }
    if !o.wrong.is_empty() {
        return Err(format!("WRONG DATA: {:?}", &o.wrong[..o.wrong.len().min(5)]));
    }
    if let Some(e) = &o.open_err {
        let typed = matches!(
            e,
            Error::Corrupt { .. }
                | Error::Truncated { .. }
                | Error::NotADatabase
                | Error::WrongKey { .. }
                | Error::UnsupportedVersion { .. }
        );
        if !typed {
            return Err(format!("untyped open error: {e:?}"));
        }
        return Ok(());
    }
    let untyped = o.untyped_read_errors();
    if !untyped.is_empty() {
        return Err(format!("untyped read errors: {untyped:?}"));
    }
    match &o.check {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(format!("check failed to run: {e:?}")),
        None => Err("check did not run".into()),
    }
}

fn run(fix_dir: &Path, idx: usize, case: &Case) -> Row {
    let f = fixture();
    let path = fix_dir.join(format!("case-{idx}.db"));
    write_file(&path, case.source.as_deref().unwrap_or(&f.image));
    (case.mutate)(&path);
    let cfg = (case.cfg)(&path);
    let o = trial(&cfg, case.models.as_ref().unwrap_or(&f.models));
    let pass = invariants(&o).and_then(|()| (case.verdict)(&o, &path));
    let _ = std::fs::remove_file(&path);
    Row { attack: case.attack.clone(), expected: case.expected.clone(), observed: o.summary(), pass }
}

fn print_matrix(title: &str, rows: &[Row]) {
    let w = rows.iter().map(|r| r.attack.len()).max().unwrap_or(10).min(70);
    let mut s = format!("\n{title}\n");
    s += &format!("{:<4} | {:<w$} | {:<40} | observed\n", "ok?", "attack", "expected (SPEC.md §12)");
    s += &format!("{}\n", "-".repeat(w + 60));
    for r in rows {
        let ok = if r.pass.is_ok() { "ok" } else { "FAIL" };
        s += &format!("{ok:<4} | {:<w$} | {:<40} | {}\n", r.attack, r.expected, r.observed);
        if let Err(e) = &r.pass {
            s += &format!("     !! {e}\n");
        }
    }
    println!("{s}");
}

// ------------------------------------------------------------------------------------------
// Verdicts.

fn is_corrupt(e: &Error, page: Option<u64>, reasons: &[CorruptReason]) -> bool {
    matches!(e, Error::Corrupt { page: p, reason } if page.is_none_or(|want| want == *p) && reasons.contains(reason))
}

/// Opens at `seq` without recovery, everything readable, check clean.
fn clean(seq: u64) -> Verdict {
    Box::new(move |o, _| {
        if o.open_err.is_some() {
            return Err("open failed".into());
        }
        if o.seq != seq || o.recovered {
            return Err(format!("expected seq {seq} without recovery"));
        }
        if !o.all_readable() {
            return Err("not everything readable".into());
        }
        if !o.check_ok() {
            return Err(format!("check problems: {:?}", o.problems()));
        }
        Ok(())
    })
}

/// Opens at `seq` (recovery noticed a rejected slot), everything readable, check clean.
fn clean_recovered(seq: u64) -> Verdict {
    Box::new(move |o, _| {
        if o.open_err.is_some() {
            return Err("open failed".into());
        }
        if o.seq != seq || !o.recovered {
            return Err(format!("expected seq {seq} with a recovery note"));
        }
        if !o.all_readable() {
            return Err("not everything readable".into());
        }
        if !o.check_ok() {
            return Err(format!("check problems: {:?}", o.problems()));
        }
        Ok(())
    })
}

fn open_error(pred: impl Fn(&Error) -> bool + 'static, what: &'static str) -> Verdict {
    Box::new(move |o, _| match &o.open_err {
        Some(e) if pred(e) => Ok(()),
        Some(e) => Err(format!("expected {what}, got {e:?}")),
        None => Err(format!("expected {what}, but it opened")),
    })
}

/// Opens at the newest commit; every read error is `Corrupt { p ∈ pages, reason ∈ reasons }`;
/// the failing `get`s are exactly `affected`; everything else reads; `check` names one of the
/// pages with one of the reasons, and its other problems are only the consequences (pages
/// below the damage unaccounted, the tree's record count).
fn damaged(
    seq: u64,
    pages: BTreeSet<u64>,
    reasons: Vec<CorruptReason>,
    affected: BTreeSet<(String, Vec<u8>)>,
) -> Verdict {
    Box::new(move |o, _| {
        if o.open_err.is_some() {
            return Err("open failed".into());
        }
        if o.seq != seq || o.recovered {
            return Err(format!("expected to open at seq {seq} without recovery"));
        }
        for r in &o.read_errors {
            if !pages.iter().any(|&p| is_corrupt(&r.err, Some(p), &reasons)) {
                return Err(format!("read error {:?} does not name a damaged page {pages:?} / {reasons:?}", r.err));
            }
        }
        let failed = o.failed_gets();
        if failed != affected {
            let extra: Vec<_> = failed.difference(&affected).map(|(t, k)| format!("{t}/{}", show_key(k))).collect();
            let missing: Vec<_> = affected.difference(&failed).map(|(t, k)| format!("{t}/{}", show_key(k))).collect();
            return Err(format!(
                "failed gets differ from the keys under the damaged pages: unexpected {extra:?}, not failing {missing:?}"
            ));
        }
        let probs = o.problems();
        if !probs.iter().any(|(p, r)| pages.contains(p) && reasons.contains(r)) {
            return Err(format!("check does not name a damaged page: {probs:?}"));
        }
        for (p, r) in &probs {
            let named = pages.contains(p) && reasons.contains(r);
            if !named && !matches!(r, CorruptReason::FreeList | CorruptReason::CountMismatch) {
                return Err(format!("unexpected check problem {{{p}, {r:?}}}"));
            }
        }
        Ok(())
    })
}

/// Opens at the previous durable commit `seq`, all of it readable and checked clean.
fn fell_back(seq: u64, recovered: Option<bool>, rejected: Option<Vec<u64>>) -> Verdict {
    Box::new(move |o, _| {
        if o.open_err.is_some() {
            return Err("open failed".into());
        }
        if o.seq != seq {
            return Err(format!("expected to open at the previous durable commit {seq}"));
        }
        if let Some(r) = recovered
            && o.recovered != r
        {
            return Err(format!("was_recovered() = {}, expected {r}", o.recovered));
        }
        if let Some(r) = &rejected
            && &o.rejected_slots != r
        {
            return Err(format!("rejected_slots {:?}, expected {r:?}", o.rejected_slots));
        }
        if !o.all_readable() || !o.check_ok() {
            return Err("previous commit not fully readable / check problems".into());
        }
        Ok(())
    })
}

fn keys_of(tree: &str, keys: impl IntoIterator<Item = Vec<u8>>) -> BTreeSet<(String, Vec<u8>)> {
    keys.into_iter().map(|k| (tree.to_string(), k)).collect()
}

fn tree_name(l: &Layout, p: u64) -> String {
    match &l.pages[p as usize].role {
        Some(PageRole::Tree(t)) => t.clone(),
        r => panic!("page {p} is not a tree page: {r:?}"),
    }
}

// ------------------------------------------------------------------------------------------
// Page selection.

struct Picks {
    small_root: u64,
    small_leaf: u64,
    small_leaf2: u64,
    wide_branch: u64,
    overflow: u64,
    overflow_owner: (String, Vec<u8>),
    catalog: u64,
    freelist: u64,
    free: u64,
    newest_slot: u64,
    older_slot: u64,
}

fn picks(f: &Fixture) -> Picks {
    let l = &f.layout;
    let s3 = f.seqs[2];
    let small_root = l.root(SMALL);
    let leaves: Vec<u64> = l
        .tree_pages(SMALL)
        .filter(|(p, i)| i.kind == KIND_LEAF && *p != small_root && i.generation <= s3)
        .map(|(p, _)| p)
        .collect();
    assert!(leaves.len() >= 4, "'small' should have several leaves");
    let wide_root = l.root(WIDE);
    let branches: Vec<u64> = l.pages[wide_root as usize]
        .children
        .iter()
        .copied()
        .filter(|&c| l.pages[c as usize].kind == KIND_BRANCH)
        .collect();
    let wide_branch = branches[branches.len() / 2];
    assert!(l.pages[wide_branch as usize].generation <= s3);
    // An overflow page in the middle of a chain, written before the newest commit.
    let overflow = l
        .tree_pages(BLOBS)
        .filter(|(_, i)| i.kind == KIND_OVERFLOW && i.generation <= s3)
        .map(|(p, _)| p)
        .find(|&p| {
            l.owner_of_overflow(p).is_some_and(|(_, k)| {
                let first = l.pages.iter().flat_map(|i| i.overflow_firsts.iter()).find(|(kk, _)| *kk == k).unwrap().1;
                l.chain(first).iter().position(|&q| q == p) == Some(2)
            })
        })
        .expect("an overflow page in the middle of a chain");
    let overflow_owner = l.owner_of_overflow(overflow).unwrap();
    Picks {
        small_root,
        small_leaf: leaves[leaves.len() / 2],
        small_leaf2: leaves[leaves.len() / 4],
        wide_branch,
        overflow,
        overflow_owner,
        catalog: l.pages_with_role(&PageRole::Catalog)[0],
        freelist: l.pages_with_role(&PageRole::FreeList)[0],
        free: l.pages_with_role(&PageRole::Free)[0],
        newest_slot: l.commits[0].slot,
        older_slot: l.commits[1].slot,
    }
}

fn flip(page: u64, offset: usize) -> Mutate {
    Box::new(move |p: &Path| xor_byte(p, page * PAGE as u64 + offset as u64, 0x01))
}

fn pages_stale_since_stage1(f: &Fixture) -> Vec<u64> {
    let (a, b) = (&f.image_stage1, &f.image);
    let n = (a.len().min(b.len()) / PAGE) as u64;
    (4..n)
        .filter(|&p| {
            matches!(f.layout.pages[p as usize].role, Some(PageRole::Tree(_) | PageRole::Catalog | PageRole::FreeList))
        })
        .filter(|&p| page_of(a, p) != page_of(b, p))
        .collect()
}

/// A leaf live in the final file, written after stage 1 into a page number that held a sealed
/// page at stage 1 — preferably a leaf of the same tree whose keys overlap (the most dangerous
/// stale page: old values for the same keys).
fn stale_leaf(f: &Fixture, picks: &Picks) -> Option<(u64, bool)> {
    let l = &f.layout;
    let (s1, s3) = (f.seqs[0], f.seqs[2]);
    let roots: BTreeSet<u64> = l.roots.values().copied().collect();
    let cands: Vec<u64> = pages_stale_since_stage1(f)
        .into_iter()
        .filter(|&p| {
            let i = &l.pages[p as usize];
            i.kind == KIND_LEAF
                && matches!(&i.role, Some(PageRole::Tree(t)) if t == SMALL || t == WIDE)
                && !roots.contains(&p)
                && i.generation > s1
                && i.generation <= s3
                && p != picks.small_leaf
                && page_of(&f.image_stage1, p).iter().any(|&b| b != 0)
        })
        .collect();
    let overlapping = cands.iter().copied().find(|&p| {
        let old = &f.layout_stage1.pages[p as usize];
        old.kind == KIND_LEAF
            && old.role == l.pages[p as usize].role
            && old.keys.iter().any(|k| l.pages[p as usize].keys.contains(k))
    });
    overlapping.map(|p| (p, true)).or_else(|| cands.first().map(|&p| (p, false)))
}

// ------------------------------------------------------------------------------------------
// A second, small database whose newest commit extends the file (for truncation).

fn growing_db(dir: &Path) -> (Vec<u8>, std::collections::BTreeMap<u64, Model>, u64, u64) {
    let path = dir.join("grow.db");
    let mut models = std::collections::BTreeMap::new();
    let mut m = Model::new();
    let db = master_cfg(&path).open().unwrap();
    let t = db.open_tree("t").unwrap();
    for i in 0..50u32 {
        t.insert(format!("k{i:03}"), format!("v{i}").into_bytes()).unwrap();
        m.entry(b"t".to_vec()).or_default().insert(format!("k{i:03}").into_bytes(), format!("v{i}").into_bytes());
    }
    db.flush().unwrap();
    let s1 = db.durable_commit_seq();
    models.insert(s1, m.clone());
    let big = vec![0x5Au8; 100 * 1024];
    t.insert("big", big.clone()).unwrap();
    m.get_mut(&b"t"[..]).unwrap().insert(b"big".to_vec(), big);
    db.flush().unwrap();
    let s2 = db.durable_commit_seq();
    models.insert(s2, m);
    drop((t, db));
    let img = read_file(&path);
    (img, models, s1, s2)
}

fn passphrase_db(dir: &Path) -> (Vec<u8>, std::collections::BTreeMap<u64, Model>) {
    let path = dir.join("pass.db");
    let db = pass_cfg(&path).open().unwrap();
    let mut m = Model::new();
    for i in 0..20u32 {
        db.insert(format!("p{i}"), format!("v{i}").into_bytes()).unwrap();
        m.entry(DEFAULT.to_vec()).or_default().insert(format!("p{i}").into_bytes(), format!("v{i}").into_bytes());
    }
    db.flush().unwrap();
    let seq = db.durable_commit_seq();
    drop(db);
    (read_file(&path), [(seq, m)].into())
}

// ------------------------------------------------------------------------------------------

#[test]
fn tamper_matrix() {
    let f = fixture();
    let pk = picks(f);
    let l = &f.layout;
    let [_s1, _s2, s3, s4] = [f.seqs[0], f.seqs[1], f.seqs[2], f.seqs[3]];
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<Case> = Vec::new();
    let c = |cases: &mut Vec<Case>, case: Case| cases.push(case);

    // --- header -------------------------------------------------------------------------
    c(
        &mut cases,
        Case::new(
            "bit flip in header copy A (file id byte)",
            "copy B used, A repaired",
            flip(0, FILE_ID_OFFSET + 3),
            Box::new(move |o, path| {
                clean(s4)(o, path)?;
                if o.header_repaired != Some(0) {
                    return Err(format!("header_repaired = {:?}, expected Some(0)", o.header_repaired));
                }
                if read_page(path, 0) != read_page(path, 1) {
                    return Err("copy A was not rewritten from copy B".into());
                }
                Ok(())
            }),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "bit flip in header copy B (key slot byte)",
            "copy A used, B repaired",
            flip(1, SLOTS_OFFSET + SLOT_WRAPPED_OFFSET),
            Box::new(move |o, path| {
                clean(s4)(o, path)?;
                if o.header_repaired != Some(1) {
                    return Err(format!("header_repaired = {:?}, expected Some(1)", o.header_repaired));
                }
                Ok(())
            }),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "header copy A zeroed",
            "copy B used, A repaired",
            Box::new(|p: &Path| write_page(p, 0, &[0u8; PAGE])),
            Box::new(move |o, path| {
                clean(s4)(o, path)?;
                if o.header_repaired != Some(0) {
                    return Err(format!("header_repaired = {:?}", o.header_repaired));
                }
                Ok(())
            }),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "bit flip in both header copies (byte 2000)",
            "Corrupt{0, HeaderChecksum}",
            Box::new(|p: &Path| {
                xor_byte(p, 2000, 1);
                xor_byte(p, PAGE as u64 + 2000, 1)
            }),
            open_error(|e| is_corrupt(e, Some(0), &[CorruptReason::HeaderChecksum]), "Corrupt{0, HeaderChecksum}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "magic byte changed in both header copies",
            "NotADatabase",
            Box::new(|p: &Path| {
                xor_byte(p, 0, 0x20);
                xor_byte(p, PAGE as u64, 0x20)
            }),
            open_error(|e| matches!(e, Error::NotADatabase), "NotADatabase"),
        ),
    );
    let both_fixed = |offset: usize, mask: u8| -> Mutate {
        Box::new(move |p: &Path| {
            for h in [0u64, 1] {
                xor_byte(p, h * PAGE as u64 + offset as u64, mask);
                fix_header_checksum(p, h);
            }
        })
    };
    // A slot whose wrap or binding was changed does not unwrap: a wrong key, never corruption
    // (SPEC §6.2), and never the header MAC (checked only after a slot opened).
    let wrongkey_or_mac = |o: &Outcome, _: &Path| match &o.open_err {
        Some(Error::WrongKey { .. }) => Ok(()),
        other => Err(format!("expected WrongKey, got {other:?}")),
    };
    c(
        &mut cases,
        Case::new(
            "slot 0 wrapped-key byte changed, both copies, checksums recomputed",
            "WrongKey",
            both_fixed(SLOTS_OFFSET + SLOT_WRAPPED_OFFSET + 5, 0x80),
            Box::new(wrongkey_or_mac),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "slot 0 salt byte changed, both copies, checksums recomputed",
            "WrongKey",
            both_fixed(SLOTS_OFFSET + SLOT_SALT_OFFSET, 0x01),
            Box::new(wrongkey_or_mac),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "slot 0 moved to slot 1, both copies, checksums recomputed",
            "WrongKey (AAD binds the slot index)",
            Box::new(|p: &Path| {
                for h in [0u64, 1] {
                    let mut page = read_page(p, h);
                    let slot: Vec<u8> = page[SLOTS_OFFSET..SLOTS_OFFSET + SLOT_SIZE].to_vec();
                    page[SLOTS_OFFSET + SLOT_SIZE..SLOTS_OFFSET + 2 * SLOT_SIZE].copy_from_slice(&slot);
                    page[SLOTS_OFFSET..SLOTS_OFFSET + SLOT_SIZE].fill(0);
                    write_page(p, h, &page);
                    fix_header_checksum(p, h);
                }
            }),
            Box::new(wrongkey_or_mac),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "file id changed, both copies, checksums recomputed",
            "WrongKey (slot AAD) or HeaderMac",
            both_fixed(FILE_ID_OFFSET, 0x01),
            Box::new(wrongkey_or_mac),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "header generation changed, both copies, checksums recomputed",
            "Corrupt{0, HeaderMac}",
            both_fixed(GENERATION_OFFSET, 0x01),
            open_error(|e| is_corrupt(e, Some(0), &[CorruptReason::HeaderMac]), "Corrupt{0, HeaderMac}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "header MAC byte changed, both copies, checksums recomputed",
            "Corrupt{0, HeaderMac}",
            both_fixed(MAC_OFFSET + 7, 0x01),
            open_error(|e| is_corrupt(e, Some(0), &[CorruptReason::HeaderMac]), "Corrupt{0, HeaderMac}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "reserved header byte (gap after the slots) changed, both copies, checksums recomputed",
            "Corrupt{0, HeaderMac} (§2: every byte before the MAC is authenticated)",
            both_fixed(SLOTS_END + 100, 0x01),
            open_error(|e| is_corrupt(e, Some(0), &[CorruptReason::HeaderMac]), "Corrupt{0, HeaderMac}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "unused header tail (byte 4040) flipped in both copies",
            "ignored (covered by nothing)",
            Box::new(|p: &Path| {
                xor_byte(p, 4040, 1);
                xor_byte(p, PAGE as u64 + 4040, 1)
            }),
            clean(s4),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "copy A only: slot byte changed, checksum recomputed",
            "WrongKey (A is chosen; B not tried)",
            Box::new(|p: &Path| {
                xor_byte(p, (SLOTS_OFFSET + SLOT_WRAPPED_OFFSET) as u64, 0x01);
                fix_header_checksum(p, 0);
            }),
            open_error(|e| matches!(e, Error::WrongKey { .. }), "WrongKey"),
        ),
    );

    // --- commit records -------------------------------------------------------------------
    let (newest, older) = (pk.newest_slot, pk.older_slot);
    c(
        &mut cases,
        Case::new(
            format!("bit flip in newest commit record (page {newest})"),
            "slot ignored; previous durable commit",
            flip(newest, 200),
            fell_back(s3, None, Some(vec![newest])),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("bit flip in older commit record (page {older})"),
            "slot ignored; newest commit",
            flip(older, 30),
            Box::new(move |o, path| {
                // Opens at the newest commit; `was_recovered()` reports the rejected slot.
                clean_recovered(s4)(o, path)?;
                if o.rejected_slots != vec![older] {
                    return Err(format!("rejected_slots {:?}", o.rejected_slots));
                }
                Ok(())
            }),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "bit flip in both commit records",
            "Corrupt{2, NoValidCommit}",
            Box::new(move |p: &Path| {
                xor_byte(p, 2 * PAGE as u64 + 64, 1);
                xor_byte(p, 3 * PAGE as u64 + 64, 1)
            }),
            open_error(|e| is_corrupt(e, Some(2), &[CorruptReason::NoValidCommit]), "Corrupt{2, NoValidCommit}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "both commit records zeroed",
            "Corrupt{2, NoValidCommit}",
            Box::new(move |p: &Path| {
                write_page(p, 2, &[0; PAGE]);
                write_page(p, 3, &[0; PAGE])
            }),
            open_error(|e| is_corrupt(e, Some(2), &[CorruptReason::NoValidCommit]), "Corrupt{2, NoValidCommit}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "commit record pages 2 and 3 swapped",
            "Corrupt{2, NoValidCommit} (AAD binds the slot)",
            Box::new(move |p: &Path| {
                let (a, b) = (read_page(p, 2), read_page(p, 3));
                write_page(p, 2, &b);
                write_page(p, 3, &a)
            }),
            open_error(|e| is_corrupt(e, Some(2), &[CorruptReason::NoValidCommit]), "Corrupt{2, NoValidCommit}"),
        ),
    );

    // --- data pages: bit flips ---------------------------------------------------------------
    c(
        &mut cases,
        Case::new(
            format!("bit flip in catalog page {} (written by the newest commit)", pk.catalog),
            "newest commit fails recovery; previous one opened",
            flip(pk.catalog, 100),
            fell_back(s3, Some(true), None),
        ),
    );
    let leaf_keys = keys_of(SMALL, l.pages[pk.small_leaf as usize].keys.clone());
    c(
        &mut cases,
        Case::new(
            format!("bit flip in leaf {} of 'small' ({} keys)", pk.small_leaf, leaf_keys.len()),
            "Corrupt{leaf, SealMismatch} on its keys only",
            flip(pk.small_leaf, 100),
            damaged(s4, [pk.small_leaf].into(), vec![CorruptReason::SealMismatch], leaf_keys.clone()),
        ),
    );
    let below = keys_of(WIDE, l.keys_below(pk.wide_branch));
    c(
        &mut cases,
        Case::new(
            format!("bit flip in inner branch {} of 'wide' ({} keys below)", pk.wide_branch, below.len()),
            "Corrupt{branch, SealMismatch} on keys below it only",
            flip(pk.wide_branch, 40),
            damaged(s4, [pk.wide_branch].into(), vec![CorruptReason::SealMismatch], below),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("bit flip in root branch {} of 'small'", pk.small_root),
            "opens (recovery reads only pages newer than the last durable commit); Corrupt{root, SealMismatch} on that tree's keys only",
            flip(pk.small_root, 100),
            damaged(
                s4,
                [pk.small_root].into(),
                vec![CorruptReason::SealMismatch],
                keys_of(SMALL, l.keys_below(pk.small_root)),
            ),
        ),
    );
    let (otree, okey) = pk.overflow_owner.clone();
    c(
        &mut cases,
        Case::new(
            format!("bit flip in overflow page {} (3rd page of a 20 KiB value)", pk.overflow),
            "Corrupt{overflow, SealMismatch} on that value only",
            flip(pk.overflow, 2000),
            damaged(s4, [pk.overflow].into(), vec![CorruptReason::SealMismatch], keys_of(&otree, [okey.clone()])),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("bit flip in free-list page {} (written by the newest commit)", pk.freelist),
            "newest commit fails recovery; previous one opened",
            flip(pk.freelist, 50),
            fell_back(s3, Some(true), None),
        ),
    );
    c(
        &mut cases,
        Case::new(format!("bit flip in free page {}", pk.free), "harmless, undetected", flip(pk.free, 100), clean(s4)),
    );
    c(
        &mut cases,
        Case::new(
            format!("bit flip in leaf {}'s tag", pk.small_leaf),
            "Corrupt{leaf, SealMismatch}",
            flip(pk.small_leaf, TAG_OFFSET + 3),
            damaged(s4, [pk.small_leaf].into(), vec![CorruptReason::SealMismatch], leaf_keys.clone()),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("bit flip in leaf {}'s nonce", pk.small_leaf),
            "Corrupt{leaf, SealMismatch}",
            flip(pk.small_leaf, NONCE_OFFSET + 3),
            damaged(s4, [pk.small_leaf].into(), vec![CorruptReason::SealMismatch], leaf_keys.clone()),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("epoch field of leaf {} raised to 1", pk.small_leaf),
            "Corrupt{leaf, UnknownEpoch | SealMismatch}",
            Box::new(move |p: &Path| {
                write_at(p, pk.small_leaf * PAGE as u64 + EPOCH_OFFSET as u64, &1u32.to_le_bytes())
            }),
            damaged(
                s4,
                [pk.small_leaf].into(),
                vec![CorruptReason::UnknownEpoch, CorruptReason::SealMismatch],
                leaf_keys.clone(),
            ),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("leaf {} zeroed", pk.small_leaf),
            "Corrupt{leaf, SealMismatch}",
            Box::new(move |p: &Path| write_page(p, pk.small_leaf, &[0; PAGE])),
            damaged(s4, [pk.small_leaf].into(), vec![CorruptReason::SealMismatch], leaf_keys.clone()),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("overflow page {} zeroed", pk.overflow),
            "Corrupt{overflow, SealMismatch}",
            Box::new(move |p: &Path| write_page(p, pk.overflow, &[0; PAGE])),
            damaged(s4, [pk.overflow].into(), vec![CorruptReason::SealMismatch], keys_of(&otree, [okey.clone()])),
        ),
    );

    // --- moved, foreign and stale pages ----------------------------------------------------
    let (a, b) = (pk.small_leaf, pk.small_leaf2);
    let mut ab_keys = leaf_keys.clone();
    ab_keys.extend(keys_of(SMALL, l.pages[b as usize].keys.clone()));
    c(
        &mut cases,
        Case::new(
            format!("leaves {a} and {b} of 'small' swapped"),
            "Corrupt{page, SealMismatch} (AAD binds the page number)",
            Box::new(move |p: &Path| {
                let (x, y) = (read_page(p, a), read_page(p, b));
                write_page(p, a, &y);
                write_page(p, b, &x)
            }),
            damaged(s4, [a, b].into(), vec![CorruptReason::SealMismatch], ab_keys),
        ),
    );
    let foreign_leaf = page_of(&f.foreign, pk.small_leaf);
    c(
        &mut cases,
        Case::new(
            format!("leaf {} replaced by page {} of another file, same master key", pk.small_leaf, pk.small_leaf),
            "Corrupt{leaf, SealMismatch} (AAD binds the file id)",
            Box::new(move |p: &Path| write_page(p, pk.small_leaf, &foreign_leaf)),
            damaged(s4, [pk.small_leaf].into(), vec![CorruptReason::SealMismatch], leaf_keys.clone()),
        ),
    );
    let foreign_rec = page_of(&f.foreign, newest);
    c(
        &mut cases,
        Case::new(
            "newest commit record replaced by another file's (same master key)",
            "slot ignored; previous durable commit",
            Box::new(move |p: &Path| write_page(p, newest, &foreign_rec)),
            fell_back(s3, None, Some(vec![newest])),
        ),
    );
    let (fh0, fh1) = (page_of(&f.foreign, 0), page_of(&f.foreign, 1));
    c(
        &mut cases,
        Case::new(
            "both header copies replaced by another file's (same master key)",
            "unlocks the other data key; no record opens: NoValidCommit",
            Box::new(move |p: &Path| {
                write_page(p, 0, &fh0);
                write_page(p, 1, &fh1)
            }),
            open_error(|e| is_corrupt(e, Some(2), &[CorruptReason::NoValidCommit]), "Corrupt{2, NoValidCommit}"),
        ),
    );
    if let Some((stale, overlapping)) = stale_leaf(f, &pk) {
        let old = page_of(&f.image_stage1, stale);
        let t = tree_name(l, stale);
        let keys = keys_of(&t, l.pages[stale as usize].keys.clone());
        let what = if overlapping { "an older version of the same leaf" } else { "an older page" };
        c(
            &mut cases,
            Case::new(
                format!("leaf {stale} of '{t}' replaced by its stage-1 bytes ({what})"),
                "Corrupt{leaf, TagMismatch} on its keys only",
                Box::new(move |p: &Path| write_page(p, stale, &old)),
                damaged(s4, [stale].into(), vec![CorruptReason::TagMismatch], keys),
            ),
        );
    } else {
        panic!("no stale-leaf candidate: the workload should reuse stage-1 page numbers");
    }
    let stale_all = pages_stale_since_stage1(f);
    let stale_set: BTreeSet<u64> = stale_all.iter().copied().collect();
    let img1 = f.image_stage1.clone();
    let n_stale = stale_all.len();
    c(
        &mut cases,
        Case::new(
            format!("all {n_stale} live pages changed since stage 1 put back to their stage-1 bytes"),
            "Corrupt{one of them, TagMismatch|SealMismatch}",
            Box::new(move |p: &Path| {
                for &q in &stale_all {
                    write_page(p, q, &page_of(&img1, q));
                }
            }),
            Box::new(move |o, _| {
                let ok = |e: &Error| {
                    stale_set
                        .iter()
                        .any(|&q| is_corrupt(e, Some(q), &[CorruptReason::TagMismatch, CorruptReason::SealMismatch]))
                };
                if let Some(e) = &o.open_err {
                    return if ok(e) { Ok(()) } else { Err(format!("open error names no replaced page: {e:?}")) };
                }
                for r in &o.read_errors {
                    if !ok(&r.err) {
                        return Err(format!("read error names no replaced page: {:?}", r.err));
                    }
                }
                Ok(())
            }),
        ),
    );

    // --- length ---------------------------------------------------------------------------
    let len = f.image.len() as u64;
    let prev_pages = l.commits[1].page_count;
    let trunc_verdict = move |cut_to: u64| -> Verdict {
        if prev_pages * PAGE as u64 <= cut_to {
            fell_back(s3, Some(true), None)
        } else {
            open_error(|e| matches!(e, Error::Truncated { .. }), "Truncated")
        }
    };
    let expect_trunc = |cut_to: u64| {
        if prev_pages * PAGE as u64 <= cut_to {
            "previous durable commit opened (only its pages cut)"
        } else {
            "Truncated (previous commit needs the cut pages too)"
        }
    };
    c(
        &mut cases,
        Case::new(
            "file truncated by one page",
            expect_trunc(len - PAGE as u64),
            Box::new(move |p: &Path| set_len(p, len - PAGE as u64)),
            trunc_verdict(len - PAGE as u64),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "file truncated by one byte",
            expect_trunc(len - 1),
            Box::new(move |p: &Path| set_len(p, len - 1)),
            trunc_verdict(len - 1),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "file truncated to 3 pages",
            "Truncated",
            Box::new(move |p: &Path| set_len(p, 3 * PAGE as u64)),
            open_error(|e| matches!(e, Error::Truncated { .. }), "Truncated"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "file truncated to 5000 bytes (inside header copy B)",
            "Truncated{8192, 5000}",
            Box::new(move |p: &Path| set_len(p, 5000)),
            open_error(|e| matches!(e, Error::Truncated { expected: 8192, found: 5000 }), "Truncated{8192, 5000}"),
        ),
    );
    let (grow_img, grow_models, g1, g2) = growing_db(dir.path());
    let grow_len = grow_img.len() as u64;
    c(
        &mut cases,
        Case::new(
            "small db whose newest commit grew the file, truncated by one page",
            "previous durable commit opened, was_recovered",
            Box::new(move |p: &Path| set_len(p, grow_len - PAGE as u64)),
            fell_back(g1, Some(true), None),
        )
        .with_source(grow_img.clone(), grow_models.clone()),
    );
    c(
        &mut cases,
        Case::new(
            "small db whose newest commit grew the file, truncated by one byte",
            "previous durable commit opened, was_recovered",
            Box::new(move |p: &Path| set_len(p, grow_len - 1)),
            fell_back(g1, Some(true), None),
        )
        .with_source(grow_img.clone(), grow_models.clone()),
    );
    c(
        &mut cases,
        Case::new("small db, untouched (control)", "opens at newest", Box::new(|_: &Path| {}), clean(g2))
            .with_source(grow_img, grow_models),
    );
    c(
        &mut cases,
        Case::new(
            "5000 random bytes appended",
            "ignored; check reports trailing_bytes",
            Box::new(|p: &Path| {
                let mut b = read_file(p);
                b.extend(Rng::new(99).bytes(5000));
                write_file(p, &b)
            }),
            Box::new(move |o, path| {
                clean(s4)(o, path)?;
                match &o.check {
                    Some(Ok(r)) if r.trailing_bytes == 5000 => Ok(()),
                    Some(Ok(r)) => Err(format!("trailing_bytes = {}", r.trailing_bytes)),
                    _ => Err("no check".into()),
                }
            }),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "a valid page of this file appended as junk",
            "ignored; check reports trailing_bytes",
            Box::new(move |p: &Path| {
                let mut b = read_file(p);
                b.extend(page_of(&b.clone(), pk.small_leaf));
                write_file(p, &b)
            }),
            Box::new(move |o, path| {
                clean(s4)(o, path)?;
                match &o.check {
                    Some(Ok(r)) if r.trailing_bytes == PAGE as u64 => Ok(()),
                    _ => Err("trailing bytes not reported".into()),
                }
            }),
        ),
    );

    // --- keys -----------------------------------------------------------------------------
    let wrong_key = || open_error(|e| matches!(e, Error::WrongKey { .. }), "WrongKey");
    c(
        &mut cases,
        Case::new("wrong master key", "WrongKey", Box::new(|_: &Path| {}), wrong_key())
            .with_cfg(Box::new(|p: &Path| base().file(p).master_key(MasterKey::from_bytes([8; 32])))),
    );
    c(
        &mut cases,
        Case::new("passphrase given for a master-key file", "WrongKey", Box::new(|_: &Path| {}), wrong_key())
            .with_cfg(Box::new(|p: &Path| base().file(p).passphrase("not it"))),
    );
    c(
        &mut cases,
        Case::new("no key given", "WrongKey", Box::new(|_: &Path| {}), wrong_key())
            .with_cfg(Box::new(|p: &Path| base().file(p))),
    );
    c(&mut cases, Case::new("correct master key (control)", "opens at newest", Box::new(|_: &Path| {}), clean(s4)));
    let (pass_img, pass_models) = passphrase_db(dir.path());
    c(
        &mut cases,
        Case::new("wrong passphrase", "WrongKey", Box::new(|_: &Path| {}), wrong_key())
            .with_cfg(Box::new(|p: &Path| base().file(p).passphrase("wrong passphrase")))
            .with_source(pass_img.clone(), pass_models.clone()),
    );
    c(
        &mut cases,
        Case::new("master key given for a passphrase file", "WrongKey", Box::new(|_: &Path| {}), wrong_key())
            .with_cfg(Box::new(|p: &Path| master_cfg(p)))
            .with_source(pass_img.clone(), pass_models.clone()),
    );
    let pass_seq = *pass_models.keys().next().unwrap();
    c(
        &mut cases,
        Case::new("correct passphrase (control)", "opens", Box::new(|_: &Path| {}), clean(pass_seq))
            .with_cfg(Box::new(|p: &Path| pass_cfg(p)))
            .with_source(pass_img, pass_models),
    );

    let rows: Vec<Row> = cases.iter().enumerate().map(|(i, case)| run(dir.path(), i, case)).collect();
    print_matrix(
        &format!(
            "TAMPER MATRIX (encrypted, AES-256-GCM; {} pages, durable commits {:?}; newest = {s4}, previous = {s3})",
            l.page_count, f.seqs
        ),
        &rows,
    );
    let failed: Vec<String> =
        rows.iter().filter_map(|r| r.pass.as_ref().err().map(|e| format!("{}: {e}", r.attack))).collect();
    assert!(failed.is_empty(), "{} rows failed:\n{}", failed.len(), failed.join("\n"));
}

/// One damaged leaf must not stop reads of other trees, nor of the rest of its own tree
/// (SQLCipher's "one bad page poisons the connection"); the handle keeps working for writes
/// that do not need the damaged page.
#[test]
fn one_damaged_leaf_does_not_poison_the_rest() {
    let f = fixture();
    let pk = picks(f);
    let l = &f.layout;
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "isolation");
    xor_byte(&path, pk.small_leaf * PAGE as u64 + 77, 0x10);
    let in_leaf: BTreeSet<Vec<u8>> = l.pages[pk.small_leaf as usize].keys.iter().cloned().collect();
    let model = f.final_model();
    let small = &model[SMALL.as_bytes()];

    let db = master_cfg(&path).open().expect("open with a damaged leaf");
    assert!(!db.was_recovered());
    let t = db.open_tree(SMALL).unwrap();
    let (mut ok, mut bad) = (0usize, 0usize);
    for (k, v) in small {
        match t.get(k) {
            Ok(Some(got)) => {
                assert_eq!(&got[..], &v[..], "wrong value for {}", show_key(k));
                assert!(!in_leaf.contains(k), "a key of the damaged leaf was readable");
                ok += 1;
            }
            Err(Error::Corrupt { page, reason: CorruptReason::SealMismatch }) if page == pk.small_leaf => {
                assert!(in_leaf.contains(k), "{} failed but is not in the damaged leaf", show_key(k));
                bad += 1;
            }
            other => panic!("{}: unexpected {other:?}", show_key(k)),
        }
    }
    assert_eq!(bad, in_leaf.len());
    assert_eq!(ok + bad, small.len());
    // Ranges on either side of the damaged leaf return every one of their records, correct.
    // (Today a forward range that ends just before the leaf then reports the leaf's error
    // instead of ending: the cursor steps into the next leaf before it checks the bound; see
    // `range_ending_before_a_damaged_leaf_does_not_read_it`.)
    let first_bad = in_leaf.iter().next().unwrap().clone();
    let last_bad = in_leaf.iter().next_back().unwrap().clone();
    let first_after = small.range::<Vec<u8>, _>((Excluded(last_bad.clone()), Unbounded)).next().unwrap().0.clone();
    let want_before = small.range::<Vec<u8>, _>(..first_bad.clone()).count();
    let want_after = small.range::<Vec<u8>, _>(first_after.clone()..).count();
    let (before, before_err) = drain(t.range(..first_bad.clone()), small);
    let (after, after_err) = drain(t.range(first_after.clone()..), small);
    assert_eq!((before, after), (want_before, want_after), "records on either side of the damaged leaf");
    for e in before_err.iter().chain(after_err.iter()) {
        assert!(matches!(e, Error::Corrupt { page, .. } if *page == pk.small_leaf), "{e:?}");
    }
    assert!(after_err.is_none(), "a range starting after the damaged leaf never needs it");
    let across: Vec<_> = t.iter().collect();
    assert!(matches!(across.last(), Some(Err(Error::Corrupt { page, .. })) if *page == pk.small_leaf));
    // Every other tree reads in full.
    let mut others = 0usize;
    for (name, kv) in model {
        if name == SMALL.as_bytes() {
            continue;
        }
        let t = if name == DEFAULT { (*db).clone() } else { db.open_tree(name).unwrap() };
        for (k, v) in kv {
            assert_eq!(&t.get(k).unwrap().unwrap()[..], &v[..]);
            others += 1;
        }
    }
    // The handle is not poisoned: writes elsewhere commit and flush; a write that needs the
    // damaged leaf fails with the typed error and changes nothing.
    let marker = db.open_tree(MARKER).unwrap();
    marker.insert("after-damage", b"ok".to_vec()).unwrap();
    // A key of the same tree after the damaged leaf (its path does not go through it).
    let old = t.insert(&first_after, b"outside the damaged leaf".to_vec()).unwrap();
    assert_eq!(old.as_deref(), Some(&small[&first_after][..]));
    let e = t.insert(&first_bad, b"x".to_vec()).unwrap_err();
    assert!(matches!(e, Error::Corrupt { page, .. } if page == pk.small_leaf), "{e:?}");
    db.flush().unwrap();
    assert_eq!(&marker.get("after-damage").unwrap().unwrap()[..], b"ok");
    drop((t, marker, db));
    let db = master_cfg(&path).open().unwrap();
    let t = db.open_tree(SMALL).unwrap();
    assert_eq!(&t.get(&first_after).unwrap().unwrap()[..], b"outside the damaged leaf");
    // The failed write changed nothing: its key still fails on the damaged leaf alone.
    assert!(matches!(t.get(&first_bad), Err(Error::Corrupt { page, .. }) if page == pk.small_leaf));
    let (before_again, _) = drain(t.range(..first_bad.clone()), small);
    assert_eq!(before_again, want_before);
    println!(
        "\nISOLATION: leaf {} of 'small' damaged: {ok}/{} keys of 'small' still readable by get ({bad} in the \
         damaged leaf fail with Corrupt{{{}, SealMismatch}}); ranges before/after it return all {before}+{after} \
         of their records (the range before then ends with {}); {others} records of other trees all readable; \
         writes and flush on the same handle still work",
        pk.small_leaf,
        small.len(),
        pk.small_leaf,
        before_err.map_or("no error".to_string(), |e| short_err(&e)),
    );
}

/// Every page of every kind, one at a time: a bit flip must give a typed error or a documented
/// fallback, never a panic or wrong data. (Sampled: every 3rd data page, to bound the time.)
#[test]
fn bit_flip_in_every_third_page_is_detected_or_harmless() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("sweep.db");
    let mut tally: std::collections::BTreeMap<String, usize> = Default::default();
    let mut failures = Vec::new();
    for p in (0..f.layout.page_count).step_by(3) {
        write_file(&path, &f.image);
        xor_byte(&path, p * PAGE as u64 + 1000, 0x04);
        let o = trial(&master_cfg(&path), &f.models);
        if let Err(e) = invariants(&o) {
            failures.push(format!("page {p} ({:?}): {e}", f.layout.pages[p as usize].role));
        }
        let role = match &f.layout.pages[p as usize].role {
            Some(PageRole::Tree(t)) => format!("tree {t} kind {}", f.layout.pages[p as usize].kind),
            r => format!("{r:?}"),
        };
        let class = if let Some(e) = &o.open_err {
            format!("open {}", short_err_kind(e))
        } else if o.recovered || o.seq != f.last_seq() {
            "fell back to the previous durable commit".into()
        } else if let Some(h) = o.header_repaired {
            format!("header copy {h} repaired, all data ok")
        } else if !o.rejected_slots.is_empty() {
            format!("older commit record {:?} rejected, newest used, all data ok", o.rejected_slots)
        } else if o.read_errors.is_empty() && o.check_ok() {
            "harmless".into()
        } else {
            let named = o.read_error_pages().iter().all(|(q, _)| *q == p) && o.problems().iter().any(|(q, _)| *q == p);
            if !named {
                failures.push(format!("page {p}: errors do not name the page: {}", o.summary()));
            }
            "read error + check problem naming the page".into()
        };
        *tally.entry(format!("{role}: {class}")).or_default() += 1;
    }
    println!("\nSWEEP (bit flip at byte 1000 of every 3rd page):");
    for (k, n) in &tally {
        println!("  {n:>4} × {k}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn short_err_kind(e: &Error) -> String {
    match e {
        Error::Corrupt { reason, .. } => format!("Corrupt({reason:?})"),
        other => short_err(other),
    }
}

/// SPEC.md §12 "known gaps", asserted as they should behave. The API documents
/// `Db::was_recovered()` as "true if the newest commit record was rejected at open and an older
/// one used"; a newest record that does not open at all leaves it false.
#[test]
fn destroyed_newest_commit_record_sets_was_recovered() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "gap-record");
    xor_byte(&path, f.layout.commits[0].slot * PAGE as u64 + 200, 1);
    let db = master_cfg(&path).open().unwrap();
    assert_eq!(db.recovery_report().seq, f.seqs[2]);
    assert!(db.was_recovered(), "opened at an older commit than the newest on disk, but was_recovered() is false");
    assert!(!db.recovery_report().rejected_slots.is_empty());
}

/// SPEC.md §12 known gap: a file truncated to zero bytes is silently initialised as a new,
/// empty database (all data gone, no error) instead of being reported as truncated.
#[test]
fn file_truncated_to_zero_is_an_error() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "gap-empty");
    set_len(&path, 0);
    match master_cfg(&path).open() {
        Err(Error::Truncated { .. } | Error::NotADatabase) => {}
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(db) => panic!("a zero-length file opened as a database with {} trees", db.tree_names().len()),
    }
}

/// Reads an iterator to its end or its first error, checking every record against `model`.
/// Returns the records read and the error, if any.
fn drain(
    it: impl Iterator<Item = foldvault::Result<(foldvault::IVec, foldvault::IVec)>>,
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> (usize, Option<Error>) {
    let mut n = 0;
    for item in it {
        match item {
            Ok((k, v)) => {
                assert_eq!(model.get(&k[..]).map(|v| &v[..]), Some(&v[..]), "wrong data for {}", show_key(&k));
                n += 1;
            }
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// A range whose records all lie outside a damaged leaf must end normally. Today, when the
/// range ends at the last key before the damaged leaf (forward) or starts at the first key after
/// it (backward), the iterator yields every record of the range and then, asked for the next
/// one, steps into the damaged neighbour leaf and returns its `Corrupt` error instead of `None`.
/// `Iter::step` (src/db/api.rs) calls `Cursor::next`/`prev` — which descends into the next
/// leaf (src/btree/read.rs `settle_forward` / `step_back_from_start`) — before checking the
/// bound, even after it has returned the key equal to an inclusive bound. Reads of undamaged
/// key ranges therefore fail when they end next to a damaged page.
#[test]
fn range_ending_before_a_damaged_leaf_does_not_read_it() {
    let f = fixture();
    let pk = picks(f);
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "overread");
    xor_byte(&path, pk.small_leaf * PAGE as u64 + 77, 0x10);
    let keys = &f.layout.pages[pk.small_leaf as usize].keys;
    let small = &f.final_model()[SMALL.as_bytes()];
    let last_before = small.range::<Vec<u8>, _>(..keys[0].clone()).next_back().unwrap().0.clone();
    let first_after =
        small.range::<Vec<u8>, _>((Excluded(keys[keys.len() - 1].clone()), Unbounded)).next().unwrap().0.clone();
    let db = master_cfg(&path).open().unwrap();
    let t = db.open_tree(SMALL).unwrap();
    let mut failures = Vec::new();
    let mut expect = |what: &str, got: (usize, Option<Error>), want: usize| {
        if got.0 != want || got.1.is_some() {
            failures.push(format!("{what}: {} of {want} records, then {:?}", got.0, got.1));
        }
    };
    let want = small.range::<Vec<u8>, _>(..=last_before.clone()).count();
    expect("forward range ..=last key before the leaf", drain(t.range(..=last_before.clone()), small), want);
    let want = small.range::<Vec<u8>, _>(first_after.clone()..).count();
    expect("backward range first key after the leaf..", drain(t.range(first_after.clone()..).rev(), small), want);
    expect("one-key range k..=k, k just before", drain(t.range(last_before.clone()..=last_before.clone()), small), 1);
    expect(
        "one-key range k..=k backward, k just after",
        drain(t.range(first_after.clone()..=first_after.clone()).rev(), small),
        1,
    );
    // Controls: these do need the damaged leaf (the neighbour of the key is in it).
    assert!(matches!(t.get_lt(&first_after), Err(Error::Corrupt { page, .. }) if page == pk.small_leaf));
    assert!(matches!(t.get_gt(&last_before), Err(Error::Corrupt { page, .. }) if page == pk.small_leaf));
    println!("\nOVER-READ next to damaged leaf {}:\n  {}", pk.small_leaf, failures.join("\n  "));
    assert!(failures.is_empty(), "{failures:#?}");
}

/// One damaged tree root makes open fail for the whole database (both commit records'
/// recovery reads every tree root — documented, SPEC.md §12). `foldvault::salvage` is the tool
/// for exactly that, but it opens its source through the same `Config::open`
/// (src/db/check.rs, `salvage`: `let src_db = src.open()?;`) and so fails with the same error:
/// none of the undamaged trees can be recovered.
#[test]
fn salvage_recovers_the_other_trees_when_a_tree_root_is_damaged() {
    let f = fixture();
    let pk = picks(f);
    let dir = tempfile::tempdir().unwrap();
    let path = f.copy(dir.path(), "salvage-src");
    xor_byte(&path, pk.small_root * PAGE as u64 + 100, 1);
    // Recovery reads only pages newer than the last durable commit, so the file still opens.
    assert!(master_cfg(&path).open().is_ok());
    let dst = dir.path().join("salvage-dst.db");
    let report = foldvault::salvage(&master_cfg(&path), &master_cfg(&dst)).expect("salvage runs");
    assert!(report.lost_anything());
    let db = master_cfg(&dst).open().unwrap();
    for (name, kv) in f.final_model() {
        if name == SMALL.as_bytes() {
            continue;
        }
        let t = if name == DEFAULT { (*db).clone() } else { db.open_tree(name).unwrap() };
        assert_eq!(t.len(), kv.len(), "tree {}", String::from_utf8_lossy(name));
        for (k, v) in kv {
            assert_eq!(&t.get(k).unwrap().unwrap()[..], &v[..]);
        }
    }
}
