//! Target `db_ops`: a sequence of operations over three trees on a `FaultyStorage`, checked
//! against a model (`BTreeMap`s) of what reads must see and of what is durable.
//!
//! Input: `flags u8` (bit 0 encrypted, bit 1 `Durability::Immediate` by default, bit 2 a tiny
//! page cache, bit 3 a write-ahead log: a small one, which checkpoints and goes direct often,
//! on a second device), then operations until the input ends (at most `MAX_OPS`). A tree
//! operation (insert, remove, reads of six kinds, batch, clear or drop, pop, compare-and-swap,
//! update through a closure) runs alone as its own transaction, or several run in a
//! `WriteTransaction` committed with either durability or aborted. Others: flush, reopen, `generate_id`, `compact`; a *crash* (optionally a power
//! loss on either device during one operation, a reopen's close included, then
//! `crash_image(model)` of each reopened); an
//! *I/O error* (`FaultPlan { fail_at, persistent, spare_reads, torn_failed_writes }` on either
//! device during one operation, then the live images reopened, or, after a sync that failed,
//! what a power loss leaves: `FileStorage` refuses to write that file again in the process).
//!
//! Checked: every result equals the model's; after a crash the recovered contents are the last
//! durable state, or the in-flight one if the operation failed (an acknowledged durable commit
//! survives); under a fault plan errors are only `Io` or `Poisoned`, and the image then
//! reopens at the durable or the in-flight state (a reopen whose close a plan struck: one
//! acknowledged durable or the live one); every recovered file passes `Db::check`; ids
//! from `generate_id` only grow, across crashes too; the trees listed are the default one and
//! the three (less one left empty by a drop whose re-creation a crash cut off); the final
//! contents survive a reopen.

use std::sync::Arc;

use super::{Input, Map, Out, TreeOp};
use crate::storage::{CrashModel, DeviceImages, FaultPlan, FaultyDevices, Storage, WalStorage};
use crate::{Config, DEFAULT_TREE, Db, Durability, Error, KdfParams, MAX_KEY_LEN, Result};

const TREES: [&str; 3] = ["atoms", "schemas", "metadata"];
const MAX_OPS: usize = 64;
type State = [Map; 3];
/// The log's checkpoint length and largest group, in pages: small, so that short inputs reach
/// checkpoints and direct writes.
const LOG_CHECKPOINT_PAGES: u64 = 16;
const LOG_MAX_GROUP: usize = 8;

#[derive(Debug, Clone)]
enum Op {
    One(usize, TreeOp),
    RemoveExisting {
        tree: usize,
        index: usize,
    },
    Tx {
        ops: Vec<(usize, TreeOp)>,
        commit: bool,
        durability: Durability,
    },
    Flush,
    GenerateId,
    Compact,
    Reopen,
    /// `device`: 0 the file, 1 its log (the file when there is none).
    Crash {
        model: CrashModel,
        at: Option<u64>,
        device: usize,
        op: Box<Op>,
    },
    Fault {
        plan: FaultPlan,
        device: usize,
        op: Box<Op>,
    },
}

fn op(inp: &mut Input, nested: bool) -> Op {
    match inp.u8() % if nested { 9 } else { 11 } {
        0..=3 => Op::One(inp.below(3), inp.tree_op()),
        4 => Op::RemoveExisting { tree: inp.below(3), index: inp.below(1 << 16) },
        5 => {
            let ops = (0..inp.below(9)).map(|_| (inp.below(3), inp.tree_op())).collect();
            let (commit, immediate) = (!inp.u8().is_multiple_of(4), inp.bool());
            Op::Tx { ops, commit, durability: if immediate { Durability::Immediate } else { Durability::Eventual } }
        }
        6 => Op::Flush,
        7 if inp.u8().is_multiple_of(4) => Op::Compact,
        7 => Op::GenerateId,
        8 => Op::Reopen,
        9 => {
            let seed = u64::from(inp.u8());
            let model = match inp.u8() % 4 {
                0 => CrashModel::LoseUnsynced,
                1 => CrashModel::TearUnsynced { seed },
                2 => CrashModel::ReorderUnsynced { seed },
                _ => CrashModel::ScatterUnsynced { seed },
            };
            let at = u64::from(inp.u8());
            Op::Crash {
                model,
                at: (at != 0).then_some(at),
                device: usize::from(seed >= 128),
                op: Box::new(op(inp, true)),
            }
        }
        _ => {
            let (fail_at, flags) = (Some(u64::from(inp.u8()) + 1), inp.u8());
            let (persistent, spare_reads) = (flags & 1 != 0, flags & 2 != 0);
            // Bit 3: a failed write leaves a prefix of itself (seeded by the upper bits).
            let (torn_failed_writes, seed) = (flags & 8 != 0, u64::from(flags >> 4));
            let plan = FaultPlan { fail_at, persistent, spare_reads, torn_failed_writes, seed, ..FaultPlan::default() };
            Op::Fault { plan, device: usize::from(flags & 4 != 0), op: Box::new(op(inp, true)) }
        }
    }
}

/// Runs the operation on `db`, pushing what it returns.
fn exec(db: &Db, op: &Op, got: &mut Vec<Out>) -> Result<()> {
    match op {
        Op::One(i, o) => got.push(o.run(db, TREES[*i])?),
        Op::Tx { ops, commit, durability } => {
            let tx = db.begin_write()?;
            tx.set_durability(*durability);
            for (i, o) in ops {
                got.push(o.run_in(&tx, TREES[*i])?);
            }
            for name in TREES {
                tx.open_tree(name)?; // re-creates a dropped tree, so the catalog stays as it was
            }
            if *commit { tx.commit()? } else { tx.abort() }
        }
        Op::Flush => _ = db.flush()?,
        Op::GenerateId => got.push(Out::Id(db.generate_id()?)),
        Op::Compact => _ = db.compact()?,
        Op::RemoveExisting { .. } | Op::Reopen | Op::Crash { .. } | Op::Fault { .. } => {}
    }
    Ok(())
}

/// Every tree's contents, read through the public API from a read snapshot, which writes
/// nothing: a tree missing (dropped by a `Clear` whose re-creation a crash cut off) reads as
/// empty, as the model holds it, and is not created by the reading.
fn contents(db: &Db) -> Result<State> {
    let mut s = State::default();
    let snapshot = db.begin_read()?;
    for (i, name) in TREES.iter().enumerate() {
        let tree = match snapshot.open_tree(name) {
            Err(Error::CollectionNotFound) => continue,
            t => t?,
        };
        for r in tree.iter() {
            let (k, v) = r?;
            s[i].insert(k.to_vec(), v.to_vec());
        }
    }
    Ok(s)
}

/// `Db::check` passes, and the trees listed are the default one and the three, less any left
/// empty in `state` (dropped by a `Clear` whose re-creation a crash cut off).
fn check(db: &Db, state: &State, what: &str) {
    let r = db.check().unwrap_or_else(|e| panic!("{what}: check failed to run: {e}"));
    assert!(r.is_ok(), "{what}: check found problems: {:?}", r.problems);
    let names = db.tree_names();
    let known = |n: &[u8]| n == DEFAULT_TREE || TREES.iter().any(|t| t.as_bytes() == n);
    assert!(names.iter().all(|n| known(n)), "{what}: {} trees listed, some not made by this run", names.len());
    for (i, t) in TREES.iter().enumerate() {
        assert!(state[i].is_empty() || names.iter().any(|n| n == t.as_bytes()), "{what}: tree {i} is not listed");
    }
}

struct Harness {
    encrypted: bool,
    durability: Durability,
    cache: u64,
    /// The file's device and, with a write-ahead log, the log's.
    devs: FaultyDevices,
    db: Option<Db>,
    live: State,
    /// The states a crash now may recover (one, unless a no-op left it ambiguous).
    durable: Vec<State>,
    last_id: Option<u64>,
}

impl Harness {
    fn open(&self) -> Result<Db> {
        self.open_on(&self.devs)
    }

    /// Opens the database on `devs` with this harness's settings.
    fn open_on(&self, devs: &FaultyDevices) -> Result<Db> {
        let main: Arc<dyn Storage> = Arc::new(devs.main.clone());
        let storage: Arc<dyn Storage> = match &devs.log {
            None => main,
            // Checkpoints within the sync that fills the log: operations are numbered alike
            // in every run of an input.
            Some(l) => Arc::new(
                WalStorage::open(main, Arc::new(l.clone()), LOG_CHECKPOINT_PAGES, None)?
                    .max_group(LOG_MAX_GROUP)
                    .background_checkpoints(false),
            ),
        };
        let c = Config::new().storage(storage).use_env(false).flush_every_ms(None);
        let c = c.cache_capacity(self.cache).durability(self.durability);
        if self.encrypted { c.passphrase("fuzz").kdf(KdfParams::insecure_fast()).open() } else { c.plaintext().open() }
    }

    /// Whether `plan`, armed on `device`, has struck yet: its power loss came, or its device
    /// counted the operation it fails.
    fn struck(&self, plan: &FaultPlan, device: usize) -> bool {
        let Some(dev) = self.devs.iter().nth(device.min(usize::from(self.devs.log.is_some()))) else { return false };
        dev.crashed() || plan.fail_at.is_some_and(|at| dev.op_count() >= at)
    }

    /// Arms `plan` on device `device` (the file when there is no log) and clears the other's.
    fn arm(&self, plan: &FaultPlan, device: usize) {
        self.devs.plan_on(device.min(usize::from(self.devs.log.is_some())), plan);
    }

    /// Runs one operation, the fault plan (if any) armed just before it on its device. On success the model
    /// moves on; on failure returns the error and the state the operation would have made.
    fn attempt(&mut self, op: &Op, plan: Option<(FaultPlan, usize)>) -> std::result::Result<(), (Error, State)> {
        if let Op::Reopen = op {
            // The plan is armed before the close: its flush and the log's checkpoint at close
            // are faulted too. A close reports nothing (a drop), so one under a plan leaves
            // the live state durable or not; one without makes it durable.
            if let Some((p, device)) = &plan {
                self.arm(p, *device);
            }
            let failed_syncs = self.devs.failed_syncs();
            drop(self.db.take()); // flushes
            // A plan that struck nothing in the close leaves it a clean one.
            let struck = plan.as_ref().is_some_and(|(p, device)| self.struck(p, *device));
            if !struck {
                self.durable = vec![self.live.clone()];
                self.db = Some(self.open().map_err(|e| (e, self.live.clone()))?);
                return Ok(());
            }
            if !self.durable.contains(&self.live) {
                self.durable.push(self.live.clone());
            }
            // After a failed sync the file is not opened for writing again in the process
            // (`FileStorage`): the open is refused, and the machine restarts (`step`).
            if self.devs.failed_syncs() > failed_syncs {
                let refused = std::io::Error::other("a sync failed in the close");
                return Err((Error::Io(refused), self.live.clone()));
            }
            let db = self.open().map_err(|e| (e, self.live.clone()))?;
            // A close whose flush failed lost what it did not write (commits of `Eventual`
            // durability): the open finds a state acknowledged durable, or the live one.
            let got = contents(&db).map_err(|e| (e, self.live.clone()))?;
            assert!(self.durable.contains(&got), "a close under {plan:?} left a state never acknowledged durable");
            if got != self.live {
                self.durable.retain(|s| *s != self.live);
                self.live = got;
            }
            self.db = Some(db);
            return Ok(());
        }
        let mut next = self.live.clone();
        let want: Vec<Out> = match op {
            Op::One(i, o) => vec![o.model(&mut next[*i], false)],
            Op::Tx { ops, commit, .. } => {
                let mut shadow = next.clone();
                let outs = ops.iter().map(|(i, o)| o.model(&mut shadow[*i], true)).collect();
                if *commit {
                    next = shadow;
                }
                outs
            }
            _ => Vec::new(),
        };
        if let Some((p, device)) = plan {
            self.arm(&p, device);
        }
        let mut got = Vec::new();
        if let Err(e) = exec(self.db.as_ref().expect("open"), op, &mut got) {
            return Err((e, next));
        }
        if let Op::GenerateId = op {
            let Some(Out::Id(id)) = got.pop() else { unreachable!() };
            assert!(self.last_id.is_none_or(|last| id > last), "generate_id gave {id} after {:?}", self.last_id);
            self.last_id = Some(id);
        }
        assert_eq!(got, want, "results of {op:?}");
        let durable = match op {
            Op::Flush | Op::GenerateId | Op::Compact => true,
            Op::Tx { commit, durability, .. } => *commit && *durability == Durability::Immediate,
            Op::One(..) => self.durability == Durability::Immediate,
            _ => false,
        };
        let certain = next != self.live
            || matches!(op, Op::Flush | Op::Compact)
            || matches!(op, Op::One(_, TreeOp::Put { key, value: Some(_) }) if key.len() <= MAX_KEY_LEN);
        if durable && certain {
            self.durable = vec![next.clone()];
        } else if durable && !self.durable.contains(&next) {
            self.durable.push(next.clone()); // it may or may not have committed
        }
        self.live = next;
        Ok(())
    }

    /// Replaces the devices by `images` (the file's, the log's), opens them, and requires one
    /// of `allowed` and a clean check.
    /// A power loss now (the unsynced writes lost) recovers one of `allowed` and checks clean,
    /// on copies of the devices: an operation that returned `Ok` over an I/O error must not
    /// have acknowledged as durable what a failed sync left in the OS cache alone (reads of the
    /// live devices still see it).
    fn assert_power_loss_recovers(&self, allowed: &[State], what: &str) {
        let devs = FaultyDevices::from_images(self.devs.crash_images(&CrashModel::LoseUnsynced));
        let db = self.open_on(&devs).unwrap_or_else(|e| panic!("{what}, then a power loss: reopening failed: {e}"));
        let got = contents(&db).unwrap_or_else(|e| panic!("{what}, then a power loss: reading back failed: {e}"));
        check(&db, &got, what);
        assert!(allowed.contains(&got), "{what}, then a power loss: a state never acknowledged durable");
    }

    fn recover(&mut self, images: DeviceImages, allowed: &[State], what: &str) {
        drop(self.db.take());
        self.devs = FaultyDevices::from_images(images);
        let db = self.open().unwrap_or_else(|e| panic!("{what}: reopening failed: {e}"));
        // The image as recovered is read from a snapshot (which writes nothing) and checked
        // before anything else touches it.
        let got = contents(&db).unwrap_or_else(|e| panic!("{what}: reading back failed: {e}"));
        check(&db, &got, what);
        if !allowed.contains(&got) {
            let sizes = |s: &State| s.iter().map(Map::len).collect::<Vec<_>>();
            let want: Vec<_> = allowed.iter().map(sizes).collect();
            panic!("{what}: recovered trees of {:?} records, expected one of {want:?}", sizes(&got));
        }
        self.db = Some(db);
        self.live = got.clone();
        self.durable = vec![got];
    }

    fn step(&mut self, op: Op) {
        let op = match op {
            Op::RemoveExisting { tree, index } => {
                match self.live[tree].keys().nth(index % self.live[tree].len().max(1)) {
                    Some(k) => Op::One(tree, TreeOp::Put { key: k.clone(), value: None }),
                    None => return,
                }
            }
            Op::One(i, TreeOp::Cas { key, new, current: true, .. }) => {
                Op::One(i, TreeOp::Cas { old: self.live[i].get(&key).cloned(), key, new, current: true })
            }
            op => op,
        };
        let (plan, model) = match op {
            Op::Crash { model, at, device, ref op } => {
                (at.map(|at| ((FaultPlan { crash_at: Some(at), ..FaultPlan::default() }, device), op)), Some(model))
            }
            Op::Fault { ref plan, device, ref op } => (Some(((plan.clone(), device), op)), None),
            op => {
                if let Err((e, _)) = self.attempt(&op, None) {
                    panic!("{op:?} failed without a fault: {e}");
                }
                return;
            }
        };
        let mut allowed = self.durable.clone();
        let mut what = format!("{model:?} crash");
        let failed_syncs = self.devs.failed_syncs();
        if let Some((plan, op)) = plan {
            what = format!("{model:?} crash or I/O error, plan {plan:?}, during {op:?}");
            let r = self.attempt(op, Some(plan));
            allowed.clone_from(&self.durable);
            self.arm(&FaultPlan::default(), 0);
            match r {
                // With a log, an operation can succeed over an I/O error: a checkpoint that
                // fails after the group's sync returned leaves the commit durable and the log
                // failed, reported by the next operation. So the live images are reopened.
                Ok(()) if model.is_none() && self.devs.log.is_none() => {
                    self.assert_power_loss_recovers(&self.durable, &what);
                    return;
                }
                Ok(()) => {
                    if model.is_none() {
                        self.assert_power_loss_recovers(&self.durable, &what);
                    }
                }
                Err((e, in_flight)) => {
                    assert!(matches!(e, Error::Io(_) | Error::Poisoned), "{what}: gave {e:?}");
                    allowed.push(in_flight);
                }
            }
        }
        // After a failed sync the process may not write the file again (`FileStorage`
        // refuses): the machine restarts, and the disk holds what the failed sync left.
        let images = match model {
            Some(m) => self.devs.crash_images(&m),
            None if self.devs.failed_syncs() > failed_syncs => self.devs.crash_images(&CrashModel::LoseUnsynced),
            None => self.devs.live_images(),
        };
        self.recover(images, &allowed, &what);
    }
}

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let mut h = Harness {
        encrypted: flags & 1 != 0,
        durability: if flags & 2 != 0 { Durability::Immediate } else { Durability::Eventual },
        cache: if flags & 4 != 0 { 16 << 10 } else { 1 << 20 },
        devs: FaultyDevices::new(flags & 8 != 0),
        db: None,
        live: State::default(),
        durable: vec![State::default()],
        last_id: None,
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
    let db = h.db.as_ref().expect("open");
    assert_eq!(contents(db).expect("final read"), h.live, "final contents");
    check(db, &h.live, "final");
    h.step(Op::Reopen);
    assert_eq!(contents(h.db.as_ref().expect("open")).expect("read after reopen"), h.live, "after reopen");
}
