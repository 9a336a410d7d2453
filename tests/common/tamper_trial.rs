#![allow(dead_code)]
//! The trial of the tamper tests (split from `tamper_util.rs`): open a (possibly damaged) file,
//! read every tree both ways and `get` every key of the model of the commit it opened at, run
//! `Db::check`, and record what happened (`Outcome`), a panic included, never letting one or
//! wrong data pass.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use foldvault::{CheckReport, Config, CorruptReason, Db, Error};

use super::tamper_util::*;

// ------------------------------------------------------------------------------------------
// Trials.

/// A read that failed: the tree, the key (`None` for an iteration) and the error.
#[derive(Debug)]
pub struct ReadErr {
    pub tree: String,
    pub key: Option<Vec<u8>>,
    pub err: Error,
}

/// Everything observed when opening and reading a (possibly damaged) file.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `Err` of the open, if it failed.
    pub open_err: Option<Error>,
    /// A panic anywhere (message).
    pub panic: Option<String>,
    /// The commit the database opened at and what recovery reported.
    pub seq: u64,
    pub recovered: bool,
    pub rejected_slots: Vec<u64>,
    pub header_repaired: Option<u64>,
    /// Errors from reads.
    pub read_errors: Vec<ReadErr>,
    /// Wrong data: any value returned that differs from what was written, a key missing
    /// without an error, a key that was never written. Must always be empty.
    pub wrong: Vec<String>,
    /// Per tree: (keys readable by `get`, keys in the model).
    pub readable: BTreeMap<String, (usize, usize)>,
    pub check: Option<Result<CheckReport, Error>>,
}

impl Outcome {
    /// Distinct (page, reason) of the `Corrupt` read errors, in order of appearance.
    pub fn read_error_pages(&self) -> Vec<(u64, CorruptReason)> {
        let mut v: Vec<(u64, CorruptReason)> = Vec::new();
        for r in &self.read_errors {
            if let Error::Corrupt { page, reason } = r.err
                && !v.contains(&(page, reason))
            {
                v.push((page, reason));
            }
        }
        v
    }
    /// Read errors that are not a typed integrity error.
    pub fn untyped_read_errors(&self) -> Vec<String> {
        self.read_errors
            .iter()
            .filter(|r| !matches!(r.err, Error::Corrupt { .. } | Error::Truncated { .. }))
            .map(|r| format!("{}: {:?}", r.tree, r.err))
            .collect()
    }
    /// (tree, key) of every failed `get`.
    pub fn failed_gets(&self) -> BTreeSet<(String, Vec<u8>)> {
        self.read_errors.iter().filter_map(|r| r.key.clone().map(|k| (r.tree.clone(), k))).collect()
    }
    pub fn problems(&self) -> Vec<(u64, CorruptReason)> {
        match &self.check {
            Some(Ok(r)) => r.problems.iter().map(|p| (p.page, p.reason)).collect(),
            _ => Vec::new(),
        }
    }
    pub fn check_ok(&self) -> bool {
        matches!(&self.check, Some(Ok(r)) if r.is_ok())
    }
    pub fn all_readable(&self) -> bool {
        self.read_errors.is_empty() && self.readable.values().all(|(a, b)| a == b)
    }
    /// A one-line summary for the matrix.
    pub fn summary(&self) -> String {
        if let Some(p) = &self.panic {
            return format!("PANIC: {p}");
        }
        if let Some(e) = &self.open_err {
            return format!("open: {}", short_err(e));
        }
        let mut s = format!("opens at seq {}", self.seq);
        if self.recovered {
            s += ", was_recovered";
        }
        if !self.rejected_slots.is_empty() {
            s += &format!(", rejected_slots {:?}", self.rejected_slots);
        }
        if let Some(h) = self.header_repaired {
            s += &format!(", header {h} repaired");
        }
        let errs = self.read_error_pages();
        if errs.is_empty() && self.read_errors.is_empty() {
            s += "; all reads ok";
        } else {
            let errs: Vec<String> = errs.iter().map(|(p, r)| format!("Corrupt{{{p},{r:?}}}")).collect();
            s += &format!("; {} read errors {}", self.read_errors.len(), errs.join(" "));
            let part: Vec<String> = self
                .readable
                .iter()
                .filter(|(_, (a, b))| a != b)
                .map(|(t, (a, b))| format!("{t} {a}/{b} readable"))
                .collect();
            if !part.is_empty() {
                s += &format!(" ({})", part.join(", "));
            }
        }
        match &self.check {
            Some(Ok(r)) if r.is_ok() => {
                s += "; check ok";
                if r.trailing_bytes > 0 {
                    s += &format!(" (trailing_bytes {})", r.trailing_bytes);
                }
            }
            Some(Ok(r)) => {
                let mut by: BTreeMap<String, usize> = BTreeMap::new();
                let mut named = Vec::new();
                for p in &r.problems {
                    match p.reason {
                        CorruptReason::FreeList | CorruptReason::CountMismatch => {
                            *by.entry(format!("{:?}", p.reason)).or_default() += 1
                        }
                        _ => named.push(format!("{{{},{:?}}}", p.page, p.reason)),
                    }
                }
                s += &format!("; check: {}", named.join(" "));
                for (r, n) in by {
                    s += &format!(" +{n}×{r}");
                }
            }
            Some(Err(e)) => s += &format!("; check Err: {}", short_err(e)),
            None => {}
        }
        if !self.wrong.is_empty() {
            s += &format!("; WRONG DATA ×{}", self.wrong.len());
        }
        s
    }
}

pub fn short_err(e: &Error) -> String {
    match e {
        Error::Corrupt { page, reason } => format!("Corrupt{{page {page}, {reason:?}}}"),
        Error::Truncated { expected, found } => format!("Truncated{{expected {expected}, found {found}}}"),
        Error::WrongKey { .. } => "WrongKey".into(),
        other => format!("{other:?}"),
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".into()
    }
}

fn label(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

pub fn show_key(k: &[u8]) -> String {
    let s = String::from_utf8_lossy(k);
    s.trim_end_matches('k').to_string()
}

/// Opens `cfg`, reads every tree (iteration and `get` of every key of the model of the commit
/// it opened at), runs `check`. Never panics: a panic is recorded.
pub fn trial(cfg: &Config, models: &BTreeMap<u64, Model>) -> Outcome {
    let mut out = Outcome::default();
    let db = match catch_unwind(AssertUnwindSafe(|| cfg.open())) {
        Err(p) => {
            out.panic = Some(format!("in open: {}", panic_text(p)));
            return out;
        }
        Ok(Err(e)) => {
            out.open_err = Some(e);
            return out;
        }
        Ok(Ok(db)) => db,
    };
    let rep = db.recovery_report();
    out.seq = rep.seq;
    out.recovered = db.was_recovered();
    out.rejected_slots = rep.rejected_slots.clone();
    out.header_repaired = rep.header_repaired;
    let r = catch_unwind(AssertUnwindSafe(|| read_all(&db, models, &mut out)));
    if let Err(p) = r {
        out.panic = Some(format!("in reads: {}", panic_text(p)));
        return out;
    }
    match catch_unwind(AssertUnwindSafe(|| db.check())) {
        Ok(c) => out.check = Some(c),
        Err(p) => out.panic = Some(format!("in check: {}", panic_text(p))),
    }
    if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(db))) {
        out.panic = Some(format!("in drop: {}", panic_text(p)));
    }
    out
}

fn read_all(db: &Db, models: &BTreeMap<u64, Model>, out: &mut Outcome) {
    let Some(model) = models.get(&out.seq) else {
        out.wrong.push(format!("opened at seq {} which no durable commit had", out.seq));
        return;
    };
    let rt = db.begin_read().expect("begin_read");
    // Tree names: exactly the model's (the default tree is always listed).
    let mut want: BTreeSet<Vec<u8>> = model.keys().cloned().collect();
    want.insert(DEFAULT.to_vec());
    let have: BTreeSet<Vec<u8>> = rt.tree_names().iter().map(|n| n.to_vec()).collect();
    if want != have {
        out.wrong.push(format!("tree names {:?} != {:?}", have, want));
    }
    for (name, kv) in model {
        let tl = label(name);
        let tree = match rt.open_tree(name) {
            Ok(t) => t,
            Err(e) => {
                out.wrong.push(format!("tree {tl} missing: {e:?}"));
                continue;
            }
        };
        if tree.len() != kv.len() {
            out.wrong.push(format!("tree {tl}: len {} != {}", tree.len(), kv.len()));
        }
        // Forward iteration: every item correct and in order; an error ends it.
        let mut prev: Option<Vec<u8>> = None;
        let mut seen = 0usize;
        let mut iter_failed = false;
        for item in tree.iter() {
            match item {
                Ok((k, v)) => {
                    seen += 1;
                    if prev.as_deref().is_some_and(|p| p >= &k[..]) {
                        out.wrong.push(format!("{tl}: iteration out of order at {}", show_key(&k)));
                    }
                    match kv.get(&k[..]) {
                        Some(w) if w[..] == v[..] => {}
                        Some(_) => out.wrong.push(format!("{tl}/{}: iter returned a wrong value", show_key(&k))),
                        None => out.wrong.push(format!("{tl}/{}: iter returned a key never written", show_key(&k))),
                    }
                    prev = Some(k.to_vec());
                }
                Err(e) => {
                    out.read_errors.push(ReadErr { tree: tl.clone(), key: None, err: e });
                    iter_failed = true;
                    break;
                }
            }
        }
        // Iteration that did not fail must have seen everything.
        if !iter_failed && seen != kv.len() {
            out.wrong.push(format!("{tl}: iteration ended without error after {seen} of {} records", kv.len()));
        }
        // Reverse iteration too (the other cursor direction), held to the same: keys strictly
        // descending, and every record seen unless an error ended it (a backward step that
        // ended at a damaged neighbour leaf without an error would drop records silently).
        let (mut prev, mut seen, mut iter_failed) = (None::<Vec<u8>>, 0usize, false);
        for item in tree.iter().rev() {
            match item {
                Ok((k, v)) => {
                    seen += 1;
                    if prev.as_deref().is_some_and(|p| p <= &k[..]) {
                        out.wrong.push(format!("{tl}: reverse iteration out of order at {}", show_key(&k)));
                    }
                    if kv.get(&k[..]).is_none_or(|w| w[..] != v[..]) {
                        out.wrong.push(format!("{tl}/{}: reverse iter returned wrong data", show_key(&k)));
                    }
                    prev = Some(k.to_vec());
                }
                Err(e) => {
                    out.read_errors.push(ReadErr { tree: tl.clone(), key: None, err: e });
                    iter_failed = true;
                    break;
                }
            }
        }
        if !iter_failed && seen != kv.len() {
            out.wrong.push(format!("{tl}: reverse iteration ended without error after {seen} of {} records", kv.len()));
        }
        // Point reads of every key.
        let mut ok = 0usize;
        for (k, w) in kv {
            match tree.get(k) {
                Ok(Some(v)) if v[..] == w[..] => ok += 1,
                Ok(Some(_)) => out.wrong.push(format!("{tl}/{}: get returned a wrong value", show_key(k))),
                Ok(None) => out.wrong.push(format!("{tl}/{}: get returned None for a written key", show_key(k))),
                Err(e) => out.read_errors.push(ReadErr { tree: tl.clone(), key: Some(k.clone()), err: e }),
            }
        }
        // A key never written must not appear.
        match tree.get(b"\xffnever written") {
            Ok(None) | Err(_) => {}
            Ok(Some(_)) => out.wrong.push(format!("{tl}: a key never written was found")),
        }
        out.readable.insert(tl, (ok, kv.len()));
    }
}
