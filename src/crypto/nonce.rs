//! Nonces for AES-GCM seals (pages, commit records, backup chunks): 96 random bits each, from
//! a ChaCha12 generator per thread seeded from the OS, reseeded when the process changed.
//!
//! Layer: crypto. Calls only `rand`. Invariant: no two processes ever draw from the same
//! generator state. `rand::thread_rng` did not keep this: after a `fork`, the child's copy of
//! the forking thread's generator handed out the parent's next nonces until its buffer of up to
//! 63 words ran out (rand 0.8 checks for a fork only when it refills), so the first twenty-odd
//! seals of parent and child repeated each other's (key, nonce) pairs under a shared epoch key.
//! Here a draw compares the process id with the one the generator was seeded under, or a run
//! of draws (`checked_run`: a commit's pages on one thread) compares it once: asking for it is
//! a system call, about 0.2 µs on the VMs measured, a third of a page's seal.

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

/// A fresh random nonce (`N` bytes) for one seal.
pub(crate) fn fresh<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    let pid = RUN_PID.get().unwrap_or_else(std::process::id);
    SOURCE.with(|s| NonceSource::fill(&mut s.borrow_mut(), pid, &mut out))?;
    Ok(out)
}

/// Runs `f`, whose draws on this thread use the process id looked up once, here. `f` must not
/// fork (the engine's sealing loops do not; a fork by another thread leaves this thread out of
/// the child).
pub(crate) fn checked_run<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(Option<u32>);
    impl Drop for Reset {
        fn drop(&mut self) {
            RUN_PID.set(self.0);
        }
    }
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
