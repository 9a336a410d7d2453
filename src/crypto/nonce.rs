//! Nonces for AES-GCM seals (pages, commit records, backup chunks): 96 random bits each.
//!
//! Layer: crypto. Calls only `rand`. Invariant: no two processes, and no two copies of one
//! process, ever draw from the same generator state.
//! - A seal alone (`fresh` outside a run) takes its nonce straight from the OS (`getrandom`):
//!   one system call, as the process id the generator was checked against cost before, and
//!   no state in this process that a copy of it could repeat.
//! - A run of seals on one thread (`checked_run`: a commit's pages) draws from a ChaCha12
//!   generator per thread, seeded from the OS at the start of every run, and again whenever the
//!   process id differs from the one it was seeded under (a `fork` inside the run's caller is
//!   not allowed, but checked) or after `RESEED_AFTER` draws.
//!
//! Why: `rand::thread_rng` repeated nonces after a `fork`: the child's copy of the forking
//! thread's generator handed out the parent's next nonces until its buffer of up to 63 words
//! ran out, so the first twenty-odd seals of parent and child repeated each other's (key,
//! nonce) pairs under a shared epoch key. A check of the process id alone (what this module did
//! until the forty-first session) misses a process copied with its id: a virtual machine or a
//! CRIU snapshot restored twice, a child in a new PID namespace (crypto review, low). Seeding
//! every run from the OS leaves such a copy at most the rest of one run to repeat.

use std::cell::{Cell, RefCell};

use rand::rngs::{OsRng, StdRng};
use rand::{RngCore, SeedableRng};

use crate::error::{Error, Result};

/// Draws after which a thread's generator is seeded again from the OS (as `thread_rng`
/// reseeds after 64 KiB of output).
const RESEED_AFTER: u32 = 1 << 16;

/// A generator and the process it was seeded in.
pub(crate) struct NonceSource {
    pid: u32,
    draws: u32,
    rng: StdRng,
}

impl NonceSource {
    fn seeded(pid: u32) -> Result<NonceSource> {
        let rng = StdRng::from_rng(OsRng).map_err(|e| Error::Io(std::io::Error::other(e)))?;
        Ok(NonceSource { pid, draws: 0, rng })
    }

    /// Fills `out` from `source`, seeding it first if there is none, if it was seeded in
    /// another process than `pid`, or after `RESEED_AFTER` draws.
    pub(crate) fn fill(source: &mut Option<NonceSource>, pid: u32, out: &mut [u8]) -> Result<()> {
        let stale = source.as_ref().is_none_or(|s| s.pid != pid || s.draws >= RESEED_AFTER);
        if stale {
            *source = Some(NonceSource::seeded(pid)?);
        }
        let s = source.as_mut().ok_or_else(|| Error::ReportableBug("no nonce source".into()))?;
        s.draws += 1;
        s.rng.fill_bytes(out);
        Ok(())
    }

    /// A copy of this generator's state: what a `fork` gives the child (tests only).
    #[cfg(test)]
    pub(crate) fn forked(&self) -> NonceSource {
        NonceSource { pid: self.pid, draws: self.draws, rng: self.rng.clone() }
    }
}

thread_local! {
    static SOURCE: RefCell<Option<NonceSource>> = const { RefCell::new(None) };
    /// The process id a `checked_run` on this thread looked up, while it runs.
    static RUN_PID: Cell<Option<u32>> = const { Cell::new(None) };
}

/// A fresh random nonce (`N` bytes) for one seal: from the thread's generator inside a
/// `checked_run`, else from the OS.
pub(crate) fn fresh<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    match RUN_PID.get() {
        Some(pid) => SOURCE.with(|s| NonceSource::fill(&mut s.borrow_mut(), pid, &mut out))?,
        None => OsRng.try_fill_bytes(&mut out).map_err(|e| Error::Io(std::io::Error::other(e)))?,
    }
    Ok(out)
}

/// Runs `f`, whose draws on this thread come from the thread's generator, seeded from the OS at
/// its first draw here, under the process id looked up once, here. `f` must not fork (the
/// engine's sealing loops do not; a fork by another thread leaves this thread out of the
/// child).
pub(crate) fn checked_run<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(Option<u32>);
    impl Drop for Reset {
        fn drop(&mut self) {
            RUN_PID.set(self.0);
        }
    }
    SOURCE.with(|s| *s.borrow_mut() = None);
    let _reset = Reset(RUN_PID.replace(Some(std::process::id())));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (fork): a child's copy of the generator, seeded in the parent, draws fresh
    /// nonces once it sees its own process id; without the check it repeats the parent's.
    #[test]
    fn a_forked_copy_does_not_repeat_the_parents_nonces() {
        let mut parent = None;
        let mut first = [0u8; 12];
        NonceSource::fill(&mut parent, 100, &mut first).unwrap();
        let mut child = parent.as_ref().map(NonceSource::forked);
        let mut unchecked = parent.as_ref().map(NonceSource::forked);
        for _ in 0..32 {
            let (mut p, mut c, mut u) = ([0u8; 12], [0u8; 12], [0u8; 12]);
            NonceSource::fill(&mut parent, 100, &mut p).unwrap();
            NonceSource::fill(&mut child, 101, &mut c).unwrap();
            // The same copy under the parent's id (no fork seen) repeats the parent: the check
            // is what keeps them apart.
            NonceSource::fill(&mut unchecked, 100, &mut u).unwrap();
            assert_ne!(p, c);
            assert_eq!(p, u);
        }
    }

    /// Every run seeds the generator afresh: a copy of the process made between two runs (with
    /// its process id: a restored snapshot) does not repeat the nonces of the next run.
    #[test]
    fn every_run_seeds_afresh() {
        let (first, copy) = checked_run(|| {
            let first: [u8; 12] = fresh().unwrap();
            (first, SOURCE.with(|s| s.borrow().as_ref().map(NonceSource::forked)))
        });
        let mut copy = copy;
        let mut repeated = [0u8; 12];
        NonceSource::fill(&mut copy, std::process::id(), &mut repeated).unwrap();
        let next: [u8; 12] = checked_run(|| fresh().unwrap());
        assert_ne!(next, repeated, "the next run went on from the old state");
        assert_ne!(next, first);
        // Outside a run, no generator is used at all.
        SOURCE.with(|s| *s.borrow_mut() = None);
        let alone: [u8; 12] = fresh().unwrap();
        assert!(alone != next && SOURCE.with(|s| s.borrow().is_none()));
    }

    #[test]
    fn nonces_differ_and_the_source_reseeds() {
        let a: [u8; 12] = fresh().unwrap();
        let b: [u8; 12] = fresh().unwrap();
        assert_ne!(a, b);
        let (c, d): ([u8; 12], [u8; 12]) = checked_run(|| (fresh().unwrap(), fresh().unwrap()));
        assert!(c != d && c != b && RUN_PID.get().is_none());
        let mut s = None;
        NonceSource::fill(&mut s, 7, &mut [0u8; 12]).unwrap();
        if let Some(src) = s.as_mut() {
            src.draws = RESEED_AFTER;
        }
        let before = s.as_ref().map(NonceSource::forked);
        let (mut x, mut y) = ([0u8; 12], [0u8; 12]);
        NonceSource::fill(&mut s, 7, &mut x).unwrap();
        let mut before = before;
        if let Some(b) = before.as_mut() {
            b.draws = 0;
        }
        NonceSource::fill(&mut before, 7, &mut y).unwrap();
        assert_ne!(x, y, "no reseed after RESEED_AFTER draws");
        assert_eq!(s.as_ref().map(|s| s.draws), Some(1));
    }
}
