//! Target `db_ops`: a sequence of operations over three trees on a `FaultyStorage`, checked
//! against a model (`BTreeMap`s) of what reads must see and of what is durable.
//!
//! Input: `flags u8` (bit 0 encrypted, bit 1 `Durability::Immediate` by default, bit 2 a tiny
//! page cache), then operations until the input ends (at most `MAX_OPS`). Operations: insert,
//! remove, ranges and lookups, batches, transactions (committed with either durability, or
//! aborted; with lookups, ranges and batches inside), clear, pop, flush, reopen; a *crash*
//! (optionally with a power loss during one operation, then `crash_image(model)` reopened);
//! an *I/O error* (`FaultPlan { fail_at, persistent, spare_reads }` during one operation).
//!
//! Checked: every result equals the model's; after a crash the recovered contents are the last
//! durable state, or the state of the operation in flight if it failed (an acknowledged durable
//! commit survives); an operation under a fault plan fails only with `Io` or `Poisoned`, and
//! then the live image reopens at the durable or the in-flight state; every recovered file
//! passes `Db::check`; at the end, the contents survive a reopen.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Input, filler};
use crate::storage::{CrashModel, FaultPlan, FaultyStorage};
use crate::{Batch, Config, Db, Durability, Error, IVec, KdfParams, MAX_KEY_LEN, Result};

const TREES: [&str; 3] = ["atoms", "schemas", "metadata"];
const MAX_OPS: usize = 64;
/// See the `TxOp::Batch` arm of `exec`.
const SKIP_TX_BATCH_BUG: bool = true;
type Map = BTreeMap<Vec<u8>, Vec<u8>>;
type State = [Map; 3];
type Puts = Vec<(Vec<u8>, Option<Vec<u8>>)>;

#[derive(Debug, Clone)]
enum Op {
    Insert { tree: usize, key: Vec<u8>, value: Vec<u8> },
    Remove { tree: usize, key: Vec<u8> },
    RemoveExisting { tree: usize, index: usize },
    Read { tree: usize, lo: Vec<u8>, hi: Vec<u8>, mode: u8 },
    Batch { tree: usize, puts: Puts },
    Tx { ops: Vec<TxOp>, commit: bool, durability: Durability },
    Clear { tree: usize },
    Pop { tree: usize, max: bool },
    Flush,
    Reopen,
    Crash { model: CrashModel, at: Option<u64>, op: Box<Op> },
    Fault { plan: FaultPlan, op: Box<Op> },
}

#[derive(Debug, Clone)]
enum TxOp {
    Put { tree: usize, key: Vec<u8>, value: Option<Vec<u8>> },
    Get { tree: usize, key: Vec<u8> },
    Range { tree: usize, lo: Vec<u8>, hi: Vec<u8> },
    Batch { tree: usize, puts: Puts },
}

/// One result of an operation, as the model predicts it and as the database returns it.
#[derive(Debug, PartialEq)]
enum Out {
    Value(Option<Vec<u8>>),
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    TooLarge,
    Done,
}

fn key(inp: &mut Input) -> Vec<u8> {
    match inp.u8() % 16 {
        0..=9 => (0..inp.below(4)).map(|_| inp.u8() % 4).collect(),
        10..=14 => inp.short_bytes(24).to_vec(),
        s => filler(u64::from(s), 1000 + inp.below(60)), // over MAX_KEY_LEN past 1024
    }
}

fn value(inp: &mut Input) -> Vec<u8> {
    let c = inp.u8();
    match c % 8 {
        0..=4 => filler(u64::from(c), inp.below(120)),
        5 | 6 => filler(u64::from(c), 1000 + inp.below(1500)),
        _ => filler(u64::from(c), 4000 + inp.below(6000)),
    }
}

fn puts(inp: &mut Input, max: usize) -> Puts {
    (0..inp.below(max + 1))
        .map(|_| (key(inp), if inp.u8().is_multiple_of(4) { None } else { Some(value(inp)) }))
        .collect()
}

fn op(inp: &mut Input, nested: bool) -> Op {
    let tree = |inp: &mut Input| inp.below(3);
    let kind = inp.u8() % if nested { 10 } else { 13 };
    match kind {
        0 | 1 => Op::Insert { tree: tree(inp), key: key(inp), value: value(inp) },
        2 => Op::Remove { tree: tree(inp), key: key(inp) },
        3 => Op::RemoveExisting { tree: tree(inp), index: inp.below(1 << 16) },
        4 => Op::Read { tree: tree(inp), lo: key(inp), hi: key(inp), mode: inp.u8() },
        5 => Op::Batch { tree: tree(inp), puts: puts(inp, 8) },
        6 => {
            let ops = (0..inp.below(9))
                .map(|_| match inp.u8() % 6 {
                    0..=2 => TxOp::Put { tree: tree(inp), key: key(inp), value: inp.bool().then(|| value(inp)) },
                    3 => TxOp::Get { tree: tree(inp), key: key(inp) },
                    4 => TxOp::Range { tree: tree(inp), lo: key(inp), hi: key(inp) },
                    _ => TxOp::Batch { tree: tree(inp), puts: puts(inp, 4) },
                })
                .collect();
            let (commit, immediate) = (!inp.u8().is_multiple_of(4), inp.bool());
            Op::Tx { ops, commit, durability: if immediate { Durability::Immediate } else { Durability::Eventual } }
        }
        7 => Op::Clear { tree: tree(inp) },
        8 => Op::Pop { tree: tree(inp), max: inp.bool() },
        9 => Op::Flush,
        10 => Op::Reopen,
        11 => {
            let seed = u64::from(inp.u8());
            let model = match inp.u8() % 3 {
                0 => CrashModel::LoseUnsynced,
                1 => CrashModel::TearUnsynced { seed },
                _ => CrashModel::ReorderUnsynced { seed },
            };
            let at = inp.u8();
            let nested = if inp.bool() { Op::Reopen } else { op(inp, true) };
            Op::Crash { model, at: (at != 0).then_some(u64::from(at)), op: Box::new(nested) }
        }
        _ => {
            let (fail_at, flags) = (inp.u8(), inp.u8());
            let plan = FaultPlan {
                fail_at: Some(u64::from(fail_at) + 1),
                persistent: flags & 1 != 0,
                spare_reads: flags & 2 != 0,
                crash_at: None,
            };
            let nested = if flags & 4 != 0 { Op::Reopen } else { op(inp, true) };
            Op::Fault { plan, op: Box::new(nested) }
        }
    }
}

/// Whether a batch fails: an insert with an oversized key (removing one is a no-op).
fn too_large(puts: &Puts) -> bool {
    puts.iter().any(|(k, v)| v.is_some() && k.len() > MAX_KEY_LEN)
}

fn apply(m: &mut Map, puts: &Puts) {
    for (k, v) in puts {
        match v {
            Some(v) => m.insert(k.clone(), v.clone()),
            None => m.remove(k),
        };
    }
}

fn between(m: &Map, lo: &[u8], hi: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.iter().filter(|(k, _)| k.as_slice() >= lo && k.as_slice() < hi).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// What the operation does to `s`, and the results it must return.
fn model(s: &mut State, op: &Op, out: &mut Vec<Out>) {
    match op {
        Op::Insert { key, .. } if key.len() > MAX_KEY_LEN => out.push(Out::TooLarge),
        Op::Insert { tree, key, value } => out.push(Out::Value(s[*tree].insert(key.clone(), value.clone()))),
        Op::Remove { tree, key } => out.push(Out::Value(s[*tree].remove(key))),
        Op::Read { tree, lo, hi, mode } => {
            let m = &s[*tree];
            out.push(match mode % 6 {
                0..=2 => Out::Pairs(between(m, lo, hi)),
                3 => Out::Pairs(
                    m.iter().filter(|(k, _)| k.starts_with(lo)).map(|(k, v)| (k.clone(), v.clone())).collect(),
                ),
                4 => Out::Pairs(
                    m.range(..lo.clone()).next_back().map(|(k, v)| (k.clone(), v.clone())).into_iter().collect(),
                ),
                _ => Out::Value(m.get(lo).cloned()),
            });
        }
        Op::Batch { puts, .. } if too_large(puts) => out.push(Out::TooLarge),
        Op::Batch { tree, puts } => apply(&mut s[*tree], puts),
        Op::Tx { ops, commit, .. } => {
            let mut shadow = s.clone();
            for o in ops {
                out.push(match o {
                    TxOp::Put { key, value: Some(_), .. } if key.len() > MAX_KEY_LEN => Out::TooLarge,
                    TxOp::Put { tree, key, value: Some(v) } => Out::Value(shadow[*tree].insert(key.clone(), v.clone())),
                    TxOp::Put { tree, key, value: None } => Out::Value(shadow[*tree].remove(key)),
                    TxOp::Get { tree, key } => Out::Value(shadow[*tree].get(key).cloned()),
                    TxOp::Range { tree, lo, hi } => Out::Pairs(between(&shadow[*tree], lo, hi)),
                    TxOp::Batch { puts, .. } if too_large(puts) => Out::TooLarge,
                    TxOp::Batch { tree, puts } => {
                        apply(&mut shadow[*tree], puts);
                        Out::Done
                    }
                });
            }
            if *commit {
                *s = shadow;
            }
        }
        Op::Clear { tree } => s[*tree].clear(),
        Op::Pop { tree, max } => {
            let p = if *max { s[*tree].pop_last() } else { s[*tree].pop_first() };
            out.push(Out::Pairs(p.into_iter().collect()));
        }
        Op::RemoveExisting { .. } | Op::Flush | Op::Reopen | Op::Crash { .. } | Op::Fault { .. } => {}
    }
}

fn pairs(it: impl Iterator<Item = Result<(IVec, IVec)>>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    it.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect()
}

fn value_out(r: Result<Option<IVec>>) -> Result<Out> {
    match r {
        Err(Error::KeyTooLarge { .. }) => Ok(Out::TooLarge),
        r => Ok(Out::Value(r?.map(|v| v.to_vec()))),
    }
}

fn batch_of(puts: &Puts) -> Batch {
    let mut b = Batch::default();
    for (k, v) in puts {
        match v {
            Some(v) => b.insert(k, v),
            None => b.remove(k),
        }
    }
    b
}

/// Runs the operation on `db`, pushing what it returns.
fn exec(db: &Db, op: &Op, out: &mut Vec<Out>) -> Result<()> {
    let tree = |t: usize| db.open_tree(TREES[t]);
    match op {
        Op::Insert { tree: t, key, value } => out.push(value_out(tree(*t)?.insert(key, value.clone()))?),
        Op::Remove { tree: t, key } => out.push(value_out(tree(*t)?.remove(key))?),
        Op::Read { tree: t, lo, hi, mode } => {
            let t = tree(*t)?;
            out.push(match mode % 6 {
                0 => Out::Pairs(pairs(t.range(lo.clone()..hi.clone()))?),
                1 => Out::Pairs(pairs(t.range(lo.clone()..hi.clone()).rev())?.into_iter().rev().collect()),
                2 => {
                    // Both ends at once: front and back must meet without overlap.
                    let mut it = t.range(lo.clone()..hi.clone());
                    let (mut front, mut back) = (Vec::new(), Vec::new());
                    while let Some(r) = if (front.len() + back.len()) % 2 == 0 { it.next() } else { it.next_back() } {
                        let (k, v) = r?;
                        let side = if (front.len() + back.len()) % 2 == 0 { &mut front } else { &mut back };
                        side.push((k.to_vec(), v.to_vec()));
                    }
                    front.extend(back.into_iter().rev());
                    Out::Pairs(front)
                }
                3 => Out::Pairs(pairs(t.scan_prefix(lo))?),
                4 => Out::Pairs(t.get_lt(lo)?.map(|(k, v)| (k.to_vec(), v.to_vec())).into_iter().collect()),
                _ => value_out(t.get(lo))?,
            });
        }
        Op::Batch { tree: t, puts } => match tree(*t)?.apply_batch(batch_of(puts)) {
            Err(Error::KeyTooLarge { .. }) => out.push(Out::TooLarge),
            r => r?,
        },
        Op::Tx { ops, commit, durability } => {
            let tx = db.begin_write()?;
            tx.set_durability(*durability);
            for o in ops {
                out.push(match o {
                    TxOp::Put { tree, key, value: Some(v) } => value_out(tx.open_tree(TREES[*tree])?.insert(key, v))?,
                    TxOp::Put { tree, key, value: None } => value_out(tx.open_tree(TREES[*tree])?.remove(key))?,
                    TxOp::Get { tree, key } => value_out(tx.open_tree(TREES[*tree])?.get(key))?,
                    TxOp::Range { tree, lo, hi } => {
                        let v = tx.open_tree(TREES[*tree])?.range(lo.clone()..hi.clone())?;
                        Out::Pairs(v.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
                    }
                    // Skipped, bug "TxTree::apply_batch failing part way" (fuzz/corpus/db_ops/
                    // seed-crash-1): the inserts before the failing one stay in the transaction's
                    // page bookkeeping (old pages queued as freed, new pages allocated) though the
                    // tree's root is not updated, so a commit frees pages still in use. Remove
                    // this arm when it is fixed.
                    TxOp::Batch { puts, .. } if SKIP_TX_BATCH_BUG && too_large(puts) => Out::TooLarge,
                    TxOp::Batch { tree, puts } => match tx.open_tree(TREES[*tree])?.apply_batch(&batch_of(puts)) {
                        Err(Error::KeyTooLarge { .. }) => Out::TooLarge,
                        r => r.map(|()| Out::Done)?,
                    },
                });
            }
            if *commit { tx.commit()? } else { tx.abort() }
        }
        Op::Clear { tree: t } => tree(*t)?.clear()?,
        Op::Pop { tree: t, max } => {
            let t = tree(*t)?;
            let p = if *max { t.pop_max()? } else { t.pop_min()? };
            out.push(Out::Pairs(p.map(|(k, v)| (k.to_vec(), v.to_vec())).into_iter().collect()));
        }
        Op::Flush => {
            db.flush()?;
        }
        Op::RemoveExisting { .. } | Op::Reopen | Op::Crash { .. } | Op::Fault { .. } => {}
    }
    Ok(())
}

/// Every tree's contents, read through the public API.
fn contents(db: &Db) -> Result<State> {
    let mut s = State::default();
    for (i, name) in TREES.iter().enumerate() {
        for (k, v) in pairs(db.open_tree(name)?.iter())? {
            s[i].insert(k, v);
        }
    }
    Ok(s)
}

fn summary(s: &State) -> String {
    s.iter()
        .map(|m| format!("{} keys {:x}", m.len(), m.keys().flatten().map(|&b| u64::from(b)).sum::<u64>()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check(db: &Db, what: &str) {
    let r = db.check().unwrap_or_else(|e| panic!("{what}: check failed to run: {e}"));
    assert!(r.is_ok(), "{what}: check found problems: {:?}", r.problems);
}

struct Harness {
    encrypted: bool,
    durability: Durability,
    cache: u64,
    dev: FaultyStorage,
    db: Option<Db>,
    live: State,
    /// The states a crash now may recover (one, unless an earlier no-op left it ambiguous).
    durable: Vec<State>,
}

impl Harness {
    fn open(&self) -> Result<Db> {
        let c = Config::new()
            .storage(Arc::new(self.dev.clone()))
            .use_env(false)
            .flush_every_ms(None)
            .cache_capacity(self.cache)
            .durability(self.durability);
        if self.encrypted { c.passphrase("fuzz").kdf(KdfParams::insecure_fast()).open() } else { c.plaintext().open() }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("database open")
    }

    /// Runs one operation, the fault plan (if any) armed just before it. On success the model
    /// moves on; on failure returns the error and the state the operation would have made.
    fn attempt(&mut self, op: &Op, plan: Option<FaultPlan>) -> std::result::Result<(), (Error, State)> {
        if let Op::Reopen = op {
            drop(self.db.take()); // flushes
            self.durable = vec![self.live.clone()];
            if let Some(p) = plan {
                self.dev.set_plan(p);
            }
            let db = self.open().map_err(|e| (e, self.live.clone()))?;
            self.db = Some(db);
            return Ok(());
        }
        let mut next = self.live.clone();
        let mut want = Vec::new();
        model(&mut next, op, &mut want);
        if let Some(p) = plan {
            self.dev.set_plan(p);
        }
        let mut got = Vec::new();
        if let Err(e) = exec(self.db(), op, &mut got) {
            return Err((e, next));
        }
        assert_eq!(got, want, "results of {op:?}");
        let durable = match op {
            Op::Flush => true,
            Op::Tx { commit, durability, .. } => *commit && *durability == Durability::Immediate,
            Op::Insert { .. } | Op::Remove { .. } | Op::Batch { .. } | Op::Clear { .. } | Op::Pop { .. } => {
                self.durability == Durability::Immediate
            }
            _ => false,
        };
        let certain = next != self.live
            || matches!(op, Op::Flush)
            || matches!(op, Op::Insert { key, .. } if key.len() <= MAX_KEY_LEN);
        if durable && certain {
            self.durable = vec![next.clone()];
        } else if durable && !self.durable.contains(&next) {
            self.durable.push(next.clone()); // a no-op may or may not have committed
        }
        self.live = next;
        Ok(())
    }

    /// Replaces the device by `image`, opens it, and requires one of `allowed` and a clean check.
    fn recover(&mut self, image: Vec<u8>, allowed: &[State], what: &str) {
        drop(self.db.take());
        self.dev = FaultyStorage::from_bytes(image);
        let db = self.open().unwrap_or_else(|e| panic!("{what}: reopening failed: {e}"));
        let got = contents(&db).unwrap_or_else(|e| panic!("{what}: reading back failed: {e}"));
        if !allowed.contains(&got) {
            let want: Vec<String> = allowed.iter().map(summary).collect();
            panic!("{what}: recovered [{}], expected one of {want:?}", summary(&got));
        }
        check(&db, what);
        self.db = Some(db);
        self.live = got.clone();
        self.durable = vec![got];
    }

    fn step(&mut self, op: Op) {
        let op = match op {
            Op::RemoveExisting { tree, index } => {
                match self.live[tree].keys().nth(index % self.live[tree].len().max(1)) {
                    Some(k) => Op::Remove { tree, key: k.clone() },
                    None => return,
                }
            }
            op => op,
        };
        match op {
            Op::Crash { model, at, op } => {
                let mut allowed = self.durable.clone();
                if let Some(at) = at {
                    let plan = FaultPlan { crash_at: Some(at), ..FaultPlan::default() };
                    let r = self.attempt(&op, Some(plan));
                    allowed.clone_from(&self.durable);
                    if let Err((e, in_flight)) = r {
                        assert!(matches!(e, Error::Io(_) | Error::Poisoned), "power loss gave {e:?} in {op:?}");
                        allowed.push(in_flight);
                    }
                }
                let image = self.dev.crash_image(&model);
                self.recover(image, &allowed, &format!("crash ({model:?}, at {at:?}, during {op:?})"));
            }
            Op::Fault { plan, op } => {
                let r = self.attempt(&op, Some(plan.clone()));
                self.dev.set_plan(FaultPlan::default());
                if let Err((e, in_flight)) = r {
                    assert!(matches!(e, Error::Io(_) | Error::Poisoned), "I/O fault gave {e:?} in {op:?}");
                    let mut allowed = self.durable.clone();
                    allowed.push(in_flight);
                    let image = self.dev.live_image();
                    self.recover(image, &allowed, &format!("I/O error ({plan:?}, during {op:?})"));
                }
            }
            op => {
                if let Err((e, _)) = self.attempt(&op, None) {
                    panic!("{op:?} failed without a fault: {e}");
                }
            }
        }
    }
}

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let mut h = Harness {
        encrypted: flags & 1 != 0,
        durability: if flags & 2 != 0 { Durability::Immediate } else { Durability::Eventual },
        cache: if flags & 4 != 0 { 16 << 10 } else { 1 << 20 },
        dev: FaultyStorage::new(),
        db: None,
        live: State::default(),
        durable: vec![State::default()],
    };
    let db = h.open().expect("create");
    let tx = db.begin_write().expect("begin");
    tx.set_durability(Durability::Immediate);
    for name in TREES {
        tx.open_tree(name).expect("open tree");
    }
    tx.commit().expect("create trees");
    h.db = Some(db);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let o = op(&mut inp, false);
        h.step(o);
    }
    assert_eq!(contents(h.db()).expect("final read"), h.live, "final contents");
    check(h.db(), "final");
    h.step(Op::Reopen);
    assert_eq!(contents(h.db()).expect("read after reopen"), h.live, "contents after reopen");
}
