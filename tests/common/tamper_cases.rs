#![allow(dead_code)]
//! The machinery of the tamper tests (`tests/tamper.rs`, the SPEC.md §12 matrix, and
//! `tests/tamper_damage.rs`, damage to single pages): the shared fixture, a row of the matrix
//! (`Case`: an attack, the outcome SPEC.md names, a verdict), the invariants every outcome
//! must satisfy, the verdicts, and the pages the rows pick.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use foldvault::{Config, CorruptReason, Error, PageRole};

use super::tamper_trial::*;
use super::tamper_util::*;

pub static FIXTURE: OnceLock<Fixture> = OnceLock::new();

pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(build_fixture)
}

pub type Mutate = Box<dyn Fn(&Path)>;
pub type MakeCfg = Box<dyn Fn(&Path) -> Config>;
pub type Verdict = Box<dyn Fn(&Outcome, &Path) -> Result<(), String>>;

pub struct Case {
    pub attack: String,
    pub expected: String,
    pub mutate: Mutate,
    pub cfg: MakeCfg,
    pub verdict: Verdict,
    /// Where the file comes from (default: a copy of the fixture's final image).
    pub source: Option<Vec<u8>>,
    /// The models to compare with (default: the fixture's).
    pub models: Option<std::collections::BTreeMap<u64, Model>>,
}

impl Case {
    pub fn new(attack: impl Into<String>, expected: impl Into<String>, mutate: Mutate, verdict: Verdict) -> Case {
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
    pub fn with_cfg(mut self, cfg: MakeCfg) -> Case {
        self.cfg = cfg;
        self
    }
    pub fn with_source(mut self, img: Vec<u8>, models: std::collections::BTreeMap<u64, Model>) -> Case {
        self.source = Some(img);
        self.models = Some(models);
        self
    }
}

pub struct Row {
    pub attack: String,
    pub expected: String,
    pub observed: String,
    pub pass: Result<(), String>,
}

/// What every row must satisfy whatever it expects: no panic, no wrong data, only typed errors,
/// check runs.
pub fn invariants(o: &Outcome) -> Result<(), String> {
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

pub fn run(fix_dir: &Path, idx: usize, case: &Case) -> Row {
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

pub fn print_matrix(title: &str, rows: &[Row]) {
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

pub fn is_corrupt(e: &Error, page: Option<u64>, reasons: &[CorruptReason]) -> bool {
    matches!(e, Error::Corrupt { page: p, reason } if page.is_none_or(|want| want == *p) && reasons.contains(reason))
}

/// Opens at `seq` without recovery, everything readable, check clean.
pub fn clean(seq: u64) -> Verdict {
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
pub fn clean_recovered(seq: u64) -> Verdict {
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

pub fn open_error(pred: impl Fn(&Error) -> bool + 'static, what: &'static str) -> Verdict {
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
pub fn damaged(
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
pub fn fell_back(seq: u64, recovered: Option<bool>, rejected: Option<Vec<u64>>) -> Verdict {
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

pub fn keys_of(tree: &str, keys: impl IntoIterator<Item = Vec<u8>>) -> BTreeSet<(String, Vec<u8>)> {
    keys.into_iter().map(|k| (tree.to_string(), k)).collect()
}

pub fn tree_name(l: &Layout, p: u64) -> String {
    match &l.pages[p as usize].role {
        Some(PageRole::Tree(t)) => t.clone(),
        r => panic!("page {p} is not a tree page: {r:?}"),
    }
}

// ------------------------------------------------------------------------------------------
// Page selection.

pub struct Picks {
    pub small_root: u64,
    pub small_leaf: u64,
    pub small_leaf2: u64,
    pub wide_branch: u64,
    pub overflow: u64,
    pub overflow_owner: (String, Vec<u8>),
    pub catalog: u64,
    pub freelist: u64,
    pub free: u64,
    pub newest_slot: u64,
    pub older_slot: u64,
}

pub fn picks(f: &Fixture) -> Picks {
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

pub fn flip(page: u64, offset: usize) -> Mutate {
    Box::new(move |p: &Path| xor_byte(p, page * PAGE as u64 + offset as u64, 0x01))
}

pub fn pages_stale_since_stage1(f: &Fixture) -> Vec<u64> {
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
pub fn stale_leaf(f: &Fixture, picks: &Picks) -> Option<(u64, bool)> {
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

pub fn growing_db(dir: &Path) -> (Vec<u8>, std::collections::BTreeMap<u64, Model>, u64, u64) {
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

pub fn passphrase_db(dir: &Path) -> (Vec<u8>, std::collections::BTreeMap<u64, Model>) {
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

/// A page put back to an older copy of itself (`pages`: the pages replaced). Whatever page it
/// is, the old copy is never taken as current: the open fails naming one of them, or it opens
/// and every read error names one of them, and then either the newest commit was opened and
/// its damage is found (by a read or the check, naming a replaced page), or an earlier commit
/// was opened and reads whole and checks clean.
pub fn stale_pages(pages: BTreeSet<u64>, newest: u64) -> Verdict {
    const STALE: [CorruptReason; 2] = [CorruptReason::TagMismatch, CorruptReason::SealMismatch];
    Box::new(move |o, _| {
        let named = |e: &Error| pages.iter().any(|&q| is_corrupt(e, Some(q), &STALE));
        if let Some(e) = &o.open_err {
            return if named(e) { Ok(()) } else { Err(format!("open error names no replaced page: {e:?}")) };
        }
        if let Some(r) = o.read_errors.iter().find(|r| !named(&r.err)) {
            return Err(format!("read error names no replaced page: {:?}", r.err));
        }
        if o.seq == newest {
            let found =
                !o.read_errors.is_empty() || o.problems().iter().any(|(q, r)| pages.contains(q) && STALE.contains(r));
            if !found {
                return Err("opened at the newest commit with the old copy taken: nothing named it".into());
            }
        } else if !o.all_readable() || !o.check_ok() {
            return Err(format!("fell back to commit {} and it does not read whole and check clean", o.seq));
        }
        Ok(())
    })
}

/// For each kind of page (branch, overflow, catalog, free list), one live page changed since
/// stage 1 whose stage-1 bytes were a sealed page: (what it is, the page).
pub fn stale_of_each_kind(f: &Fixture) -> Vec<(&'static str, u64)> {
    let l = &f.layout;
    let cands = pages_stale_since_stage1(f);
    let sealed_then = |p: u64| page_of(&f.image_stage1, p).iter().any(|&b| b != 0);
    let pick = |what: &'static str, ok: &dyn Fn(u64) -> bool| {
        cands.iter().copied().find(|&p| ok(p) && sealed_then(p)).map(|p| (what, p))
    };
    let kind = |p: u64| l.pages[p as usize].kind;
    let role = |p: u64| l.pages[p as usize].role.clone();
    [
        pick("branch", &|p| kind(p) == KIND_BRANCH && matches!(role(p), Some(PageRole::Tree(_)))),
        pick("overflow page", &|p| kind(p) == KIND_OVERFLOW),
        pick("catalog page", &|p| role(p) == Some(PageRole::Catalog)),
        pick("free-list page", &|p| role(p) == Some(PageRole::FreeList)),
    ]
    .into_iter()
    .flatten()
    .collect()
}
