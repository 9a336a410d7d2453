//! The default AES-GCM backends of a build with both ring and aws-lc (`--features aws-lc`; the
//! default build has ring alone), chosen at run time by timing the two on the work the page
//! path does: sealing one 4 KiB page, and opening one. Each direction gets the faster at it
//! (`CipherBackends::default()`, which the page path uses): on the Zen 5 VM aws-lc sealed a
//! page in 0.43 us to ring's 0.60, and ring opened one in 0.69 to aws-lc's 0.88 (BENCHMARKS.md,
//! twenty-fourth session), so one library for both lost a quarter of the other direction. The
//! faster at both together is `CipherBackend::default()`, public API for a caller that wants
//! one backend; the engine itself uses the pair.
//!
//! Every backend produces the same bytes for the same key, nonce, AAD and plaintext (SPEC §3),
//! so which one runs is a matter of speed alone, and speed depends on the CPU: on a Zen 3 CPU
//! (VAES on 256-bit vectors, no AVX-512) ring opens a page in about half aws-lc's time; on an
//! Intel CPU with AVX-512, aws-lc opens one in about three quarters of ring's (BENCHMARKS.md,
//! twenty-second session). A choice fixed at build time is wrong on one of the two. (On the
//! peer workloads of the Intel VM the two ran within 4% of each other, so the default build
//! does not carry aws-lc for it.)
//!
//! Invariants:
//! - the choice is made once per process (the first `CipherBackend::default()` or
//!   `CipherBackends::default()`), and never changes afterwards;
//! - with one of ring and aws-lc built there is nothing to time, and with neither the default
//!   is RustCrypto;
//! - the timing uses a fixed, public key and a page of zeros: no secret is involved, and the
//!   ciphers it builds are dropped (and wiped, as every cipher is) before the choice returns;
//! - aws-lc replaces ring (the default before this module), for each use, only when at least
//!   `MARGIN_PERCENT` faster at it, so that timing noise between near-equal backends does not
//!   flip the choice from run to run; the two are timed in alternation, so that a slow stretch
//!   of the machine falls on both. On the Intel VM, 45 to 57 of 60 new processes chose aws-lc (1.18 times ring's
//!   speed); the others timed the two within 5% of each other, in stretches where the machine
//!   ran both slower and aws-lc's lead shrank (the choice then costs little either way);
//! - a backend whose cipher cannot be built or fails its round trip is not chosen;
//! - `Config` resolves the default only at an encrypted open (`Config::backends`), so opening
//!   and using a plaintext database never pays for the timing (only `Db::encryption_status`
//!   on one asks, to say which backend an encrypted open would use).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::cipher::{Aead, CipherBackend, CipherBackends, CipherId, new_aead};
use super::keys::SecretKey;

/// Rounds of timing; in each, every backend in turn (starting one further each round), and
/// each backend's best round counts (the least disturbed by other work).
const ROUNDS: usize = 9;
/// Pages sealed, then opened, per backend in a round (each direction timed as one batch).
const PAGES_PER_ROUND: usize = 8;
/// Pages sealed and opened per backend, untimed, before the rounds: they take the first calls'
/// costs (code faulted in, CPU features detected, the vector units' power-up). On the Intel
/// VM, in a new process, aws-lc's AVX-512 code timed 1.08 times ring's speed with two such
/// pages and 1.18 with sixteen (criterion's warm loop: 1.32); 64 changed nothing more.
const WARM_UP: usize = 16;
/// How much faster (in percent) a later backend must be to be chosen over an earlier one.
const MARGIN_PERCENT: u128 = 5;
/// The bytes sealed: a page's payload, as the page path seals it.
const SEALED_BYTES: usize = crate::format::page::PAYLOAD_SIZE;

/// The backends timed, in the order a backend must beat its predecessors in (by
/// `MARGIN_PERCENT`). RustCrypto, always built, is not timed: it took three times ring's
/// time on the Zen 3 VMs and four on the Intel one (BENCHMARKS.md, "Primitives"), and is the
/// default only when neither of these is built.
const TIMED: [CipherBackend; 2] = [CipherBackend::Ring, CipherBackend::AwsLc];

/// What the timing chose: the fastest at sealing and opening together (`CipherBackend::default()`,
/// the one backend for the uses that name one), and the fastest at each alone (the page path's
/// default, `CipherBackends::default()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chosen {
    both: CipherBackend,
    seal: CipherBackend,
    open: CipherBackend,
}

impl Chosen {
    fn all(b: CipherBackend) -> Chosen {
        Chosen { both: b, seal: b, open: b }
    }
}

/// A backend's best times, over the rounds, for sealing and for opening `PAGES_PER_ROUND` pages.
#[derive(Clone, Copy, Debug)]
struct Times {
    seal: Duration,
    open: Duration,
}

static CHOSEN: OnceLock<Chosen> = OnceLock::new();

/// The backend `CipherBackend::default()` returns: the fastest of those built at sealing and
/// opening a page together, timed once.
pub(crate) fn fastest_backend() -> CipherBackend {
    chosen().both
}

/// The backends `CipherBackends::default()` returns: the fastest sealer and the fastest opener.
pub(crate) fn fastest_backends() -> CipherBackends {
    let c = chosen();
    CipherBackends { seal: c.seal, open: c.open }
}

fn chosen() -> Chosen {
    *CHOSEN.get_or_init(|| {
        let started = Instant::now();
        let built = CipherBackend::available();
        let candidates: Vec<CipherBackend> = TIMED.into_iter().filter(|b| built.contains(b)).collect();
        let chosen = match candidates.as_slice() {
            [] => Chosen::all(CipherBackend::RustCrypto),
            [one] => Chosen::all(*one),
            _ => choose_all(&candidates, &time_backends(&candidates)),
        };
        tracing::debug!(
            target: "foldvault::crypto",
            backend = ?chosen.both,
            seal = ?chosen.seal,
            open = ?chosen.open,
            micros = started.elapsed().as_micros() as u64,
            "AES-GCM backends chosen by timing"
        );
        chosen
    })
}

/// The choice for each use, from the backends' times.
fn choose_all(candidates: &[CipherBackend], times: &[Option<Times>]) -> Chosen {
    let pick = |f: fn(&Times) -> Duration| {
        let t: Vec<Option<Duration>> = times.iter().map(|t| t.as_ref().map(f)).collect();
        choose(candidates, &t)
    };
    Chosen { both: pick(|t| t.seal + t.open), seal: pick(|t| t.seal), open: pick(|t| t.open) }
}

/// The first candidate, replaced by each later one whose time is at least `MARGIN_PERCENT`
/// below the best so far. A candidate without a time (it failed) is skipped; if all failed,
/// RustCrypto (always built, and no library's C code to fail).
fn choose(candidates: &[CipherBackend], times: &[Option<Duration>]) -> CipherBackend {
    let mut best: Option<(CipherBackend, Duration)> = None;
    for (&b, t) in candidates.iter().zip(times) {
        let Some(t) = *t else { continue };
        best = match best {
            // A zero time (a coarse clock) is no evidence of speed, the later one's as the
            // earlier's: the earlier backend stays (a later zero won over a real time).
            Some((_, bt))
                if !bt.is_zero() && !t.is_zero() && t.as_nanos() * 100 <= bt.as_nanos() * (100 - MARGIN_PERCENT) =>
            {
                Some((b, t))
            }
            None => Some((b, t)),
            keep => keep,
        };
    }
    best.map_or(CipherBackend::RustCrypto, |(b, _)| b)
}

/// For each backend, its best of `ROUNDS` times of sealing `PAGES_PER_ROUND` pages and of
/// opening them, or `None` if its cipher cannot be built or a page fails to open.
fn time_backends(backends: &[CipherBackend]) -> Vec<Option<Times>> {
    // A public key: the timing handles no secret.
    let key = SecretKey::from_bytes([0x5a; 32]);
    let mut pages = vec![[0u8; SEALED_BYTES + 16]; PAGES_PER_ROUND];
    let mut ciphers: Vec<Option<Arc<dyn Aead>>> = backends
        .iter()
        .map(|&b| {
            let aead = new_aead(CipherId::Aes256Gcm, b, &key).ok()?;
            (0..WARM_UP.div_ceil(PAGES_PER_ROUND))
                .try_for_each(|_| round(aead.as_ref(), &mut pages).map(drop))
                .map(|()| aead)
        })
        .collect();
    let mut best = vec![Times { seal: Duration::MAX, open: Duration::MAX }; backends.len()];
    for r in 0..ROUNDS {
        for k in 0..backends.len() {
            let i = (r + k) % backends.len();
            let Some(aead) = &ciphers[i] else { continue };
            match round(aead.as_ref(), &mut pages) {
                Some(t) => best[i] = Times { seal: best[i].seal.min(t.seal), open: best[i].open.min(t.open) },
                None => ciphers[i] = None,
            }
        }
    }
    ciphers.iter().zip(best).map(|(c, t)| c.as_ref().map(|_| t)).collect()
}

/// Seals every page (payload, then its tag after it, as on disk), then opens every one in
/// place, each direction timed as a batch; `None` if a page fails to open.
fn round(aead: &dyn Aead, pages: &mut [[u8; SEALED_BYTES + 16]]) -> Option<Times> {
    let ad = b"foldvault backend timing";
    let nonce = |i: usize| {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&(i as u64).to_le_bytes());
        n
    };
    let t = Instant::now();
    for (i, p) in pages.iter_mut().enumerate() {
        let (payload, tag) = p.split_at_mut(SEALED_BYTES);
        tag.copy_from_slice(&aead.seal(&nonce(i), ad, payload).ok()?);
    }
    let seal = t.elapsed();
    let t = Instant::now();
    for (i, p) in pages.iter_mut().enumerate() {
        aead.open_tagged(&nonce(i), ad, p).then_some(())?;
    }
    Some(Times { seal, open: t.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn a_later_backend_must_be_clearly_faster() {
        let all = [CipherBackend::Ring, CipherBackend::AwsLc, CipherBackend::RustCrypto];
        let pick = |ring, aws, rc| choose(&all, &[ring, aws, rc]);
        // Within the margin: the earlier one stays.
        assert_eq!(pick(ms(100), ms(96), ms(300)), CipherBackend::Ring);
        // At the margin and beyond: the later one wins.
        assert_eq!(pick(ms(100), ms(95), ms(300)), CipherBackend::AwsLc);
        assert_eq!(pick(ms(100), ms(60), ms(300)), CipherBackend::AwsLc);
        // Compared with the best so far, not with the first.
        assert_eq!(pick(ms(100), ms(60), ms(57)), CipherBackend::RustCrypto);
        assert_eq!(pick(ms(100), ms(60), ms(58)), CipherBackend::AwsLc);
        // A backend that fails is skipped, even when it comes first.
        assert_eq!(pick(None, ms(200), ms(300)), CipherBackend::AwsLc);
        // All fail: RustCrypto, not a backend that just failed.
        assert_eq!(choose(&all[..2], &[None, None]), CipherBackend::RustCrypto);
        // Zero times (a coarse clock) prove nothing: the earlier one stays.
        assert_eq!(pick(ms(0), ms(0), ms(0)), CipherBackend::Ring);
        // Nor a later zero against an earlier real time.
        assert_eq!(pick(ms(1), ms(0), ms(2)), CipherBackend::Ring);
        assert_eq!(choose(&[], &[]), CipherBackend::RustCrypto);
    }

    #[test]
    fn each_direction_is_chosen_on_its_own_time() {
        let both = [CipherBackend::Ring, CipherBackend::AwsLc];
        let t = |seal, open| Some(Times { seal: Duration::from_millis(seal), open: Duration::from_millis(open) });
        // aws-lc seals faster, ring opens faster, and together they are within the margin:
        // the page path seals on aws-lc and opens on ring; the single backend stays ring.
        let c = choose_all(&both, &[t(60, 70), t(43, 88)]);
        assert_eq!(c, Chosen { both: CipherBackend::Ring, seal: CipherBackend::AwsLc, open: CipherBackend::Ring });
        // One faster at both: it is chosen for every use.
        let c = choose_all(&both, &[t(60, 70), t(40, 50)]);
        assert_eq!(c, Chosen::all(CipherBackend::AwsLc));
        // A backend that failed is chosen for nothing.
        let c = choose_all(&both, &[t(60, 70), None]);
        assert_eq!(c, Chosen::all(CipherBackend::Ring));
    }

    #[test]
    fn the_choice_is_built_and_stays() {
        let first = fastest_backend();
        assert!(CipherBackend::available().contains(&first));
        assert_eq!(fastest_backend(), first);
        let timed: Vec<CipherBackend> = TIMED.into_iter().filter(|b| CipherBackend::available().contains(b)).collect();
        if timed.is_empty() {
            assert_eq!(first, CipherBackend::RustCrypto);
        } else {
            assert!(timed.contains(&first), "{first:?} chosen over {timed:?}");
        }
        let pair = fastest_backends();
        assert_eq!(fastest_backends(), pair);
        assert!(timed.is_empty() || (timed.contains(&pair.seal) && timed.contains(&pair.open)), "{pair:?}");
        let times = time_backends(&CipherBackend::available());
        assert!(times.iter().all(Option::is_some), "a backend fails the timing's round trip: {times:?}");
    }
}
