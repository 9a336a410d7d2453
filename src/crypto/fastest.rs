//! The default AES-GCM backend, chosen at run time by timing each backend this build includes
//! on the work the page path does: sealing and opening one 4 KiB page.
//!
//! Every backend produces the same bytes for the same key, nonce, AAD and plaintext (SPEC §3),
//! so which one runs is a matter of speed alone, and speed depends on the CPU: on a Zen 3 CPU
//! (VAES on 256-bit vectors, no AVX-512) ring opens a page in about half aws-lc's time; on an
//! Intel CPU with AVX-512, aws-lc opens one in about three quarters of ring's (BENCHMARKS.md,
//! twenty-second session). A choice fixed at build time is wrong on one of the two.
//!
//! Invariants:
//! - the choice is made once per process (the first `CipherBackend::default()`), and never
//!   changes afterwards;
//! - with one backend built there is nothing to time;
//! - the timing uses a fixed, public key and a page of zeros: no secret is involved, and the
//!   ciphers it builds are dropped (and wiped, as every cipher is) before the choice returns;
//! - a backend later in the preference order (ring, aws-lc, RustCrypto: the order fixed by the
//!   measurements before this module) replaces an earlier one only when at least
//!   `MARGIN_PERCENT` faster, so that timing noise between near-equal backends does not flip
//!   the choice from run to run;
//! - a backend whose cipher cannot be built or fails its round trip is not chosen.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::cipher::{Aead, CipherBackend, CipherId, new_aead};
use super::keys::SecretKey;

/// Rounds of timing; each backend's best round counts (the least disturbed by other work).
const ROUNDS: usize = 5;
/// Pages sealed and opened per backend in a round.
const PAGES_PER_ROUND: usize = 8;
/// How much faster (in percent) a later backend must be to be chosen over an earlier one.
const MARGIN_PERCENT: u128 = 5;
/// The bytes sealed: a page's payload, as the page path seals it.
const SEALED_BYTES: usize = crate::format::page::PAYLOAD_SIZE;

/// The order a backend must beat its predecessors in (by `MARGIN_PERCENT`).
const PREFERENCE: [CipherBackend; 3] = [CipherBackend::Ring, CipherBackend::AwsLc, CipherBackend::RustCrypto];

static CHOSEN: OnceLock<CipherBackend> = OnceLock::new();

/// The backend `CipherBackend::default()` returns: the fastest of those built, timed once.
pub(crate) fn fastest_backend() -> CipherBackend {
    *CHOSEN.get_or_init(|| {
        let started = Instant::now();
        let built = CipherBackend::available();
        let candidates: Vec<CipherBackend> = PREFERENCE.into_iter().filter(|b| built.contains(b)).collect();
        let chosen = choose(&candidates, time_backend);
        tracing::debug!(
            target: "foldvault::crypto",
            backend = ?chosen,
            micros = started.elapsed().as_micros() as u64,
            "AES-GCM backend chosen by timing"
        );
        chosen
    })
}

/// The first candidate, replaced by each later one that `time` finds at least
/// `MARGIN_PERCENT` faster than the best so far. A candidate `time` fails on is skipped.
fn choose(candidates: &[CipherBackend], mut time: impl FnMut(CipherBackend) -> Option<Duration>) -> CipherBackend {
    let fallback = candidates.first().copied().unwrap_or(CipherBackend::RustCrypto);
    if candidates.len() < 2 {
        return fallback;
    }
    let mut best: Option<(CipherBackend, Duration)> = None;
    for &b in candidates {
        let Some(t) = time(b) else { continue };
        best = match best {
            Some((_, bt)) if t.as_nanos() * 100 <= bt.as_nanos() * (100 - MARGIN_PERCENT) => Some((b, t)),
            None => Some((b, t)),
            keep => keep,
        };
    }
    best.map_or(fallback, |(b, _)| b)
}

/// The best of `ROUNDS` times of sealing and opening `PAGES_PER_ROUND` pages on `backend`, or
/// `None` if its cipher cannot be built or a page fails to open.
fn time_backend(backend: CipherBackend) -> Option<Duration> {
    // A public key: the timing handles no secret.
    let key = SecretKey::from_bytes([0x5a; 32]);
    let aead = new_aead(CipherId::Aes256Gcm, backend, &key).ok()?;
    let mut page = vec![0u8; SEALED_BYTES];
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for i in 0..PAGES_PER_ROUND {
            round_trip(aead.as_ref(), i, &mut page)?;
        }
        best = best.min(t.elapsed());
    }
    Some(best)
}

/// Seals and opens `page` once under nonce `i`.
fn round_trip(aead: &dyn Aead, i: usize, page: &mut [u8]) -> Option<()> {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let tag = aead.seal(&nonce, b"foldvault backend timing", page).ok()?;
    aead.open(&nonce, b"foldvault backend timing", page, &tag).then_some(())
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
        let times = |ring, aws, rc| {
            move |b| match b {
                CipherBackend::Ring => ring,
                CipherBackend::AwsLc => aws,
                _ => rc,
            }
        };
        // Within the margin: the earlier one stays.
        assert_eq!(choose(&all, times(ms(100), ms(96), ms(300))), CipherBackend::Ring);
        // At the margin and beyond: the later one wins.
        assert_eq!(choose(&all, times(ms(100), ms(95), ms(300))), CipherBackend::AwsLc);
        assert_eq!(choose(&all, times(ms(100), ms(60), ms(300))), CipherBackend::AwsLc);
        // Compared with the best so far, not with the first.
        assert_eq!(choose(&all, times(ms(100), ms(60), ms(57))), CipherBackend::RustCrypto);
        assert_eq!(choose(&all, times(ms(100), ms(60), ms(58))), CipherBackend::AwsLc);
        // A backend that fails is skipped, even when it comes first.
        assert_eq!(choose(&all, times(None, ms(200), ms(300))), CipherBackend::AwsLc);
        // All fail: the first, as a build with one backend would have it.
        assert_eq!(choose(&all, times(None, None, None)), CipherBackend::Ring);
    }

    #[test]
    fn one_backend_is_not_timed() {
        let chosen = choose(&[CipherBackend::AwsLc], |_| panic!("timed a lone backend"));
        assert_eq!(chosen, CipherBackend::AwsLc);
        assert_eq!(choose(&[], |_| None), CipherBackend::RustCrypto);
    }

    #[test]
    fn the_choice_is_built_and_stays() {
        let first = fastest_backend();
        assert!(CipherBackend::available().contains(&first));
        assert_eq!(fastest_backend(), first);
        for b in CipherBackend::available() {
            assert!(time_backend(b).is_some(), "{b:?} fails the timing's round trip");
        }
    }
}
