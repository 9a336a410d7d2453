//! Fault-injecting storage: an in-memory file that fails, loses power, and tears or reorders
//! unsynced writes on demand, for crash tests and fuzzers.
//!
//! Layer: storage (bottom). May call only `std`, `parking_lot`, `crate::error` and the byte
//! helpers of its sibling `memory`; nothing in the crate sits below it.
//!
//! Invariants:
//! - the *live* image is what reads see: every successful write and `set_len` is applied to it;
//! - the *durable* image is what the disk holds: a successful `sync` applies to it the
//!   operations since the last sync, kept in order in a pending list that it clears (so it is
//!   the live image as of that sync, except for writes a failed sync settled, below);
//! - an operation that fails by injection (fault, process stop or power loss) changes nothing
//!   but the operation counter, except a `sync` failed by a fault, which does what Linux does
//!   to a failed writeback: each unsynced write reaches the durable image whole, in part or not
//!   at all, and is then forgotten (no later `sync` writes it; reads still see it); and, with
//!   `FaultPlan::torn_failed_writes`, a `write_at` failed by a fault, which leaves a prefix of
//!   itself, unsynced, as a short `pwrite` does. Operations are numbered from 1 after each
//!   [`FaultyStorage::set_plan`];
//! - power loss is sticky: once crashed, every later operation fails until the test builds a
//!   new device with [`FaultyStorage::reboot`];
//! - [`FaultyStorage::crash_image`] is a pure function of (durable image, pending list, model):
//!   the same seed always gives the same bytes;
//! - clones share one state, so a clone held by a test observes the database's device;
//! - a mutating operation holds its device's *cut lock* from its observer's call to its end;
//!   devices built to share one (`share_cuts`) so never change while an observer of any of
//!   them runs, however many threads write (a write-ahead log's background checkpoint): the
//!   observer sees all of them at one instant, as a power loss would;
//! - as in `MemoryStorage`, no end offset above 2^40 bytes is ever allocated.

use std::fmt;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Storage;
use super::memory::{read_vec, set_len_vec, write_vec};

const FAULT_MSG: &str = "injected I/O fault";
const POWER_LOSS_MSG: &str = "injected power loss";
const STOP_MSG: &str = "injected process stop";

/// The granularity at which unsynced writes may be torn (a disk sector).
const SECTOR: usize = 512;

/// What a power loss does to the operations that were not yet synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashModel {
    /// Every unsynced write and length change is lost: the durable image survives as is.
    LoseUnsynced,
    /// Every unsynced write, in order, survives only as a prefix cut at a 512-byte boundary
    /// (anything from nothing to all of it), chosen independently per write from `seed`.
    /// Each unsynced length change is applied in order or lost, on its own. The operation a
    /// `crash_at` power loss interrupted counts as unsynced.
    TearUnsynced {
        /// Seeds the choice of cut points.
        seed: u64,
    },
    /// Every unsynced write keeps each of its 512-byte sectors or loses it, independently
    /// (a later sector may reach the disk while an earlier one does not, as a device that
    /// reorders within a request writes them), chosen from `seed`; each unsynced length change
    /// is applied in order or lost, on its own.
    ScatterUnsynced {
        /// Seeds the choice of sectors.
        seed: u64,
    },
    /// The unsynced writes are shuffled, a prefix of the shuffled list (possibly empty or
    /// complete) is applied in that order, and the last applied write may be torn at a
    /// 512-byte boundary; all choices come from `seed`. Unsynced length changes are applied in
    /// order first (bytes a later length change cut off are never brought back).
    ReorderUnsynced {
        /// Seeds the shuffle, the prefix length and the tear.
        seed: u64,
    },
}

/// Which operations fail. Operations (`read_at`, `write_at`, `sync`, `len`, `set_len`) are
/// numbered from 1, counting every call, failed or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Operation number `N` fails with an `io::Error` of kind `Other` and message
    /// "injected I/O fault" (and is not applied, but see `torn_failed_writes`).
    pub fail_at: Option<u64>,
    /// If true, every operation numbered `fail_at` or later fails, not only that one.
    pub persistent: bool,
    /// When operation number `N` is reached the device loses power: that operation (not
    /// applied) and every later one fail with "injected power loss", and
    /// [`FaultyStorage::crashed`] turns true.
    pub crash_at: Option<u64>,
    /// If true, `read_at` and `len` are never failed by `fail_at` (they are still counted, so a
    /// `fail_at` that lands on a read injects nothing unless `persistent`). Power loss still
    /// fails them.
    pub spare_reads: bool,
    /// The process stops at operation number `N`: it and every later operation fail with
    /// "injected process stop", and the device keeps what it holds, unsynced writes included
    /// (the kernel still has them: a later open's `sync` writes them). A test then forgets the
    /// database and opens the device again, as the next process would.
    pub stop_at: Option<u64>,
    /// Seeds what a `sync` failed by `fail_at` leaves on the disk, and what a write it fails
    /// leaves (`torn_failed_writes`).
    pub seed: u64,
    /// If true, a `write_at` failed by `fail_at` is not all-or-nothing: a 512-byte-aligned prefix
    /// of it (none to all, chosen from `seed`) reaches the file, unsynced, as a `pwrite` cut
    /// short by a full disk or an I/O error leaves one (`write_all` writes a prefix, then fails).
    pub torn_failed_writes: bool,
}

/// One unsynced operation. A write holds only what the live image still has of it.
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Default)]
struct State {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
    plan: FaultPlan,
    ops: u64,
    syncs: u64,
    /// `sync` calls that failed (each settled as `settle_failed_sync` says).
    failed_syncs: u64,
    crashed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Read,
    Mutate,
}

impl State {
    /// True for the operation `crash_at` names, which the power failed during (a later one
    /// never started).
    fn in_flight_at_power_loss(&self) -> bool {
        self.crashed && self.plan.crash_at == Some(self.ops)
    }

    /// Counts one operation and decides whether the plan fails it.
    fn begin(&mut self, kind: OpKind) -> io::Result<()> {
        self.ops += 1;
        let n = self.ops;
        if let Some(at) = self.plan.crash_at
            && n >= at
        {
            self.crashed = true;
        }
        if self.crashed {
            return Err(io::Error::other(POWER_LOSS_MSG));
        }
        if self.plan.stop_at.is_some_and(|at| n >= at) {
            return Err(io::Error::other(STOP_MSG));
        }
        if let Some(at) = self.plan.fail_at {
            let hit = n == at || (self.plan.persistent && n > at);
            let spared = kind == OpKind::Read && self.plan.spare_reads;
            if hit && !spared {
                return Err(io::Error::other(FAULT_MSG));
            }
        }
        Ok(())
    }
}

/// An in-memory device with injected faults and power loss. Clones share the same device.
#[derive(Clone, Default)]
pub struct FaultyStorage {
    state: Arc<Mutex<State>>,
    observer: Arc<Mutex<Option<Observer>>>,
    cut: Arc<Mutex<()>>,
}

/// Called before every mutating operation (`write_at`, `sync`, `set_len`) with the number that
/// operation will get. Crash tests use it to take `crash_image`s at every point of one run.
pub type Observer = Arc<dyn Fn(u64) + Send + Sync>;

impl FaultyStorage {
    /// An empty device with no faults planned.
    pub fn new() -> FaultyStorage {
        FaultyStorage::default()
    }

    /// A device whose live and durable images are both `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> FaultyStorage {
        let state = State { durable: bytes.clone(), live: bytes, ..State::default() };
        FaultyStorage { state: Arc::new(Mutex::new(state)), observer: Arc::default(), cut: Arc::default() }
    }

    /// This device with `other`'s cut lock: a mutating operation on either waits while an
    /// observer of the other runs, so observers see both devices at one instant.
    pub fn share_cuts(mut self, other: &FaultyStorage) -> FaultyStorage {
        self.cut = Arc::clone(&other.cut);
        self
    }

    /// Replaces the fault plan and restarts operation numbering at 1. Does not undo a power
    /// loss that already happened.
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut st = self.state.lock();
        st.plan = plan;
        st.ops = 0;
    }

    /// How many operations were attempted since creation or the last `set_plan`.
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// True once a planned power loss has happened.
    pub fn crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// How many `sync` calls succeeded since creation.
    pub fn sync_count(&self) -> u64 {
        self.state.lock().syncs
    }

    /// How many `sync` calls failed since creation. After one, `FileStorage` refuses to open
    /// the file for writing again in the process: the system may hold writes the disk does not.
    pub fn failed_sync_count(&self) -> u64 {
        self.state.lock().failed_syncs
    }

    /// A copy of what reads see now.
    pub fn live_image(&self) -> Vec<u8> {
        self.state.lock().live.clone()
    }

    /// A copy of the image as of the last successful `sync`.
    pub fn durable_image(&self) -> Vec<u8> {
        self.state.lock().durable.clone()
    }

    /// The bytes a reboot after a power loss now would find under `model`. Changes nothing.
    pub fn crash_image(&self, model: &CrashModel) -> Vec<u8> {
        let st = self.state.lock();
        let mut img = st.durable.clone();
        match *model {
            CrashModel::LoseUnsynced => {}
            CrashModel::TearUnsynced { seed } => apply_torn(&mut img, &st.pending, &mut SplitMix64(seed)),
            CrashModel::ScatterUnsynced { seed } => apply_scattered(&mut img, &st.pending, &mut SplitMix64(seed)),
            CrashModel::ReorderUnsynced { seed } => {
                let mut rng = SplitMix64(seed);
                let mut writes: Vec<(u64, &[u8])> = Vec::new();
                for op in &st.pending {
                    match op {
                        Pending::Write { offset, data } => writes.push((*offset, data)),
                        Pending::SetLen(len) => apply_set_len(&mut img, *len),
                    }
                }
                // Fisher-Yates shuffle.
                for i in (1..writes.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    writes.swap(i, j);
                }
                let applied = rng.below(writes.len() as u64 + 1) as usize;
                for (i, (offset, data)) in writes[..applied].iter().enumerate() {
                    let cut = if i + 1 == applied { rng.cut(*offset, data.len()) } else { data.len() };
                    apply_write(&mut img, *offset, &data[..cut]);
                }
            }
        }
        img
    }

    /// A new, independent device holding [`FaultyStorage::crash_image`] as both its live and
    /// durable image, with no plan, no pending operations and counters at 0.
    pub fn reboot(&self, model: &CrashModel) -> FaultyStorage {
        FaultyStorage::from_bytes(self.crash_image(model))
    }
}

impl fmt::Debug for FaultyStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock();
        f.debug_struct("FaultyStorage")
            .field("live_len", &st.live.len())
            .field("pending_ops", &st.pending.len())
            .field("plan", &st.plan)
            .field("ops", &st.ops)
            .field("crashed", &st.crashed)
            .finish_non_exhaustive()
    }
}

impl FaultyStorage {
    /// Installs (or removes) the observer of mutating operations.
    pub fn set_observer(&self, f: Option<Observer>) {
        *self.observer.lock() = f;
    }

    fn observe(&self) {
        let f = self.observer.lock().clone();
        if let Some(f) = f {
            let next = self.state.lock().ops + 1;
            f(next);
        }
    }
}

/// What a power loss (or a clean stop) leaves on a [`FaultyDevices`]: the database file's image
/// and, with a log, the log's.
pub type DeviceImages = (Vec<u8>, Option<Vec<u8>>);

/// The devices under one database: its file and, with a write-ahead log, the log's device,
/// built to share one cut lock, so that an observer of either (a crash test taking
/// `crash_images` at every operation) sees both at one instant. Each device keeps its own
/// plan and its own power state: a planned power loss stops the device it is planned on, and
/// `crash_images` then takes both as they are. Devices are numbered 0 (the file) and 1 (the
/// log). Clones share the devices.
#[derive(Clone, Debug, Default)]
pub struct FaultyDevices {
    /// The database file's device.
    pub main: FaultyStorage,
    /// The write-ahead log's device, if the database has a log.
    pub log: Option<FaultyStorage>,
}

impl FaultyDevices {
    /// Empty devices: a file, and a log if `log`.
    pub fn new(log: bool) -> FaultyDevices {
        FaultyDevices::from_images((Vec::new(), log.then(Vec::new)))
    }

    /// Devices holding `images` as both their live and durable images.
    pub fn from_images(images: DeviceImages) -> FaultyDevices {
        let main = FaultyStorage::from_bytes(images.0);
        let log = images.1.map(|l| FaultyStorage::from_bytes(l).share_cuts(&main));
        FaultyDevices { main, log }
    }

    /// Each device's [`FaultyStorage::crash_image`] under `model`.
    pub fn crash_images(&self, model: &CrashModel) -> DeviceImages {
        (self.main.crash_image(model), self.log.as_ref().map(|l| l.crash_image(model)))
    }

    /// Failed syncs on every device ([`FaultyStorage::failed_sync_count`]).
    pub fn failed_syncs(&self) -> u64 {
        self.iter().map(FaultyStorage::failed_sync_count).sum()
    }

    /// Each device's [`FaultyStorage::live_image`].
    pub fn live_images(&self) -> DeviceImages {
        (self.main.live_image(), self.log.as_ref().map(FaultyStorage::live_image))
    }

    /// Each device's [`FaultyStorage::durable_image`].
    pub fn durable_images(&self) -> DeviceImages {
        (self.main.durable_image(), self.log.as_ref().map(FaultyStorage::durable_image))
    }

    /// New, independent devices holding what a power loss under `model` leaves.
    pub fn reboot(&self, model: &CrashModel) -> FaultyDevices {
        FaultyDevices::from_images(self.crash_images(model))
    }

    /// The devices in order: the file, then the log if there is one.
    pub fn iter(&self) -> impl Iterator<Item = &FaultyStorage> {
        std::iter::once(&self.main).chain(self.log.as_ref())
    }

    /// Arms `plan` on device `device` (none, if there is no such device) and clears every
    /// other device's plan.
    pub fn plan_on(&self, device: usize, plan: &FaultPlan) {
        for (i, d) in self.iter().enumerate() {
            d.set_plan(if i == device { plan.clone() } else { FaultPlan::default() });
        }
    }
}

impl Storage for FaultyStorage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        st.begin(OpKind::Read)?;
        read_vec(&st.live, offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let _cut = self.cut.lock();
        self.observe();
        let mut st = self.state.lock();
        if let Err(e) = st.begin(OpKind::Mutate) {
            let valid = !buf.is_empty() && super::memory::checked_end(offset, buf.len()).is_ok();
            // The write the power failed during may have reached the disk in part.
            if st.in_flight_at_power_loss() && valid {
                st.pending.push(Pending::Write { offset, data: buf.to_vec() });
            } else if st.plan.torn_failed_writes && valid && e.to_string() == FAULT_MSG {
                let mut rng = SplitMix64(st.plan.seed ^ st.ops.wrapping_mul(0xA076_1D64_78BD_642F));
                let part = &buf[..rng.cut(offset, buf.len())];
                if !part.is_empty() {
                    write_vec(&mut st.live, offset, part)?;
                    st.pending.push(Pending::Write { offset, data: part.to_vec() });
                }
            }
            return Err(e);
        }
        write_vec(&mut st.live, offset, buf)?;
        if !buf.is_empty() {
            st.pending.push(Pending::Write { offset, data: buf.to_vec() });
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let _cut = self.cut.lock();
        self.observe();
        let mut st = self.state.lock();
        if let Err(e) = st.begin(OpKind::Mutate) {
            if e.to_string() == FAULT_MSG {
                st.settle_failed_sync();
                st.failed_syncs += 1;
            }
            return Err(e);
        }
        // The unsynced operations, not the live image: a write a failed sync settled is in the
        // live image but is no longer the disk's to write.
        let State { durable, pending, .. } = &mut *st;
        for op in pending.drain(..) {
            match op {
                Pending::Write { offset, data } => apply_write(durable, offset, &data),
                Pending::SetLen(len) => apply_set_len(durable, len),
            }
        }
        st.syncs += 1;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut st = self.state.lock();
        st.begin(OpKind::Read)?;
        Ok(st.live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let _cut = self.cut.lock();
        self.observe();
        let mut st = self.state.lock();
        if let Err(e) = st.begin(OpKind::Mutate) {
            if st.in_flight_at_power_loss() && len <= super::memory::MAX_STORAGE_LEN {
                st.push_set_len(len);
            }
            return Err(e);
        }
        set_len_vec(&mut st.live, len)?;
        st.push_set_len(len);
        Ok(())
    }
}

impl State {
    /// A failed `fdatasync` on Linux: the writeback that failed may have written any of the
    /// dirty pages, in any order (a later page of a write without an earlier one), and the
    /// kernel marks them all clean, so no later sync writes the others, though reads of the
    /// page cache still return them. Each sector of each unsynced write reaches the durable
    /// image or not, and each length change is applied or not, as `ScatterUnsynced` has it,
    /// chosen from the plan's seed and this operation's number; the pending list is cleared.
    fn settle_failed_sync(&mut self) {
        let mut rng = SplitMix64(self.plan.seed ^ self.ops.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let pending = std::mem::take(&mut self.pending);
        apply_scattered(&mut self.durable, &pending, &mut rng);
    }

    /// Records an unsynced length change. Pending writes are clipped to the new length first,
    /// so that no crash model can bring back bytes this length change cut off.
    fn push_set_len(&mut self, len: u64) {
        self.pending.retain_mut(|op| match op {
            Pending::Write { offset, data } => {
                let room = usize::try_from(len.saturating_sub(*offset)).unwrap_or(usize::MAX);
                data.truncate(room);
                !data.is_empty()
            }
            Pending::SetLen(_) => true,
        });
        self.pending.push(Pending::SetLen(len));
    }
}

/// Applies `pending` to `img` as a tear leaves them: each write as a prefix cut at a 512-byte
/// boundary (nothing to all of it), each length change kept or lost on its own (an extension
/// or a truncation can be lost while later writes survive), chosen from `rng`.
fn apply_torn(img: &mut Vec<u8>, pending: &[Pending], rng: &mut SplitMix64) {
    for op in pending {
        match op {
            Pending::Write { offset, data } => {
                let cut = rng.cut(*offset, data.len());
                apply_write(img, *offset, &data[..cut]);
            }
            Pending::SetLen(len) => {
                if rng.below(2) == 0 {
                    apply_set_len(img, *len)
                }
            }
        }
    }
}

/// Applies `pending` to `img` sector by sector: each of a write's sectors (whole 512-byte
/// sectors of the device, the first and last maybe in part) reaches it or not, on its own, and
/// each length change is kept or lost on its own, chosen from `rng`.
fn apply_scattered(img: &mut Vec<u8>, pending: &[Pending], rng: &mut SplitMix64) {
    for op in pending {
        match op {
            Pending::Write { offset, data } => {
                for (from, to) in sectors(*offset, data.len()) {
                    if rng.below(2) == 0 {
                        apply_write(img, offset + from as u64, &data[from..to]);
                    }
                }
            }
            Pending::SetLen(len) => {
                if rng.below(2) == 0 {
                    apply_set_len(img, *len)
                }
            }
        }
    }
}

/// The pieces (from, to) of a write of `len` bytes at `offset` that fall in one device sector
/// each: cut at the device's 512-byte boundaries, not at multiples of 512 from the write's
/// start (a write at 400 may keep 400..512 and lose 512..600).
fn sectors(offset: u64, len: usize) -> impl Iterator<Item = (usize, usize)> {
    let first = (SECTOR - (offset % SECTOR as u64) as usize) % SECTOR;
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= len {
            return None;
        }
        let end = if at == 0 && first > 0 { first.min(len) } else { (at + SECTOR).min(len) };
        let piece = (at, end);
        at = end;
        Some(piece)
    })
}

/// Applies a write that already succeeded on the live image (so its bounds are valid).
fn apply_write(img: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let r = write_vec(img, offset, data);
    debug_assert!(r.is_ok(), "replayed write was valid when recorded");
}

/// Applies a length change that already succeeded on the live image.
fn apply_set_len(img: &mut Vec<u8>, len: u64) {
    let r = set_len_vec(img, len);
    debug_assert!(r.is_ok(), "replayed set_len was valid when recorded");
}

/// A small deterministic PRNG (SplitMix64): enough for reproducible crash choices.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A cut point for a write of `len` bytes at `offset`: 0, a device sector boundary inside
    /// the write, or `len` (the ends of [`sectors`]' pieces).
    fn cut(&mut self, offset: u64, len: usize) -> usize {
        let ends: Vec<usize> = std::iter::once(0).chain(sectors(offset, len).map(|(_, to)| to)).collect();
        ends[self.below(ends.len() as u64) as usize]
    }
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod tests;
