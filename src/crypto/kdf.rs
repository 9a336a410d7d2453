//! Passphrase stretching with Argon2id (RFC 9106), parameters stored per key slot.
//! Defaults are sized for this class of machine: 32 MiB and 3 passes, about 0.1–0.2 s, well
//! under the user's 50 MB and 1 s budget. Bounds below refuse parameters read from a damaged or
//! hostile header that would allocate without limit or run for hours.

use zeroize::Zeroizing;

use super::keys::{Passphrase, SecretKey};
use crate::error::{Error, Result};

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

/// The largest memory cost accepted from a header: 4 GiB.
pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// The largest pass count accepted from a header.
pub const MAX_ITERATIONS: u32 = 1024;
/// The largest lane count accepted from a header.
pub const MAX_PARALLELISM: u32 = 64;
/// The largest memory × passes accepted (8 GiB·passes, about 85 times the default's
/// 32 MiB × 3): a forged header cannot make an open derive for hours.
pub const MAX_COST_KIB_PASSES: u64 = 8 * 1024 * 1024;

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams { memory_kib: 32 * 1024, iterations: 3, parallelism: 1 }
    }
}

impl KdfParams {
    /// Cheap parameters for tests and throw-away databases. Never use for real data.
    pub fn insecure_fast() -> Self {
        KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        // In u64: a hostile slot's lane count must not overflow the product (SPEC §6.1).
        let ok = u64::from(self.memory_kib) >= 8 * u64::from(self.parallelism.max(1))
            && self.memory_kib <= MAX_MEMORY_KIB
            && (1..=MAX_ITERATIONS).contains(&self.iterations)
            && (1..=MAX_PARALLELISM).contains(&self.parallelism)
            && u64::from(self.memory_kib) * u64::from(self.iterations) <= MAX_COST_KIB_PASSES;
        if ok { Ok(()) } else { Err(Error::InvalidConfig("Argon2id parameters out of range")) }
    }

    /// Stretches a passphrase with this slot's salt into 32 bytes.
    pub(crate) fn stretch(&self, passphrase: &Passphrase, salt: &[u8; 16]) -> Result<SecretKey> {
        self.validate()?;
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|_| Error::InvalidConfig("Argon2id parameters rejected"))?;
        // The working memory is ours, wiped when dropped: its last blocks give the stretched
        // key (the crate's own allocation is freed unwiped). Reserved fallibly: a cost within
        // the bounds that this host cannot allocate is an error, not an abort. Under Linux's
        // overcommit a reservation succeeds whatever is free, and touching memory that is not
        // there gets the process killed: a cost above what the host says it has available is
        // that error too, before any is touched (crypto review, low).
        fits_in_available(u64::from(self.memory_kib), std::fs::read_to_string("/proc/meminfo").ok().as_deref())?;
        let mut blocks: Zeroizing<Vec<argon2::Block>> = Zeroizing::new(Vec::new());
        blocks.try_reserve_exact(params.block_count()).map_err(|_| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("Argon2id needs {} KiB of memory, which could not be allocated", self.memory_kib),
            ))
        })?;
        blocks.resize(params.block_count(), argon2::Block::default());
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into_with_memory(passphrase.expose(), salt, &mut out[..], &mut blocks[..])
            .map_err(|_| Error::InvalidConfig("Argon2id failed"))?;
        Ok(SecretKey::from_bytes(*out))
    }
}

/// `Error::Io(OutOfMemory)` if `kib` is above the `MemAvailable` of `meminfo` (Linux's
/// `/proc/meminfo`: free memory and what the kernel can reclaim without swapping); `Ok` when
/// there is no such figure.
fn fits_in_available(kib: u64, meminfo: Option<&str>) -> Result<()> {
    let available = meminfo.and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    match available {
        Some(avail) if kib > avail => Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("Argon2id needs {kib} KiB of memory, and this host has {avail} KiB available"),
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cost above the host's available memory is refused before any is allocated (under
    /// overcommit the allocation would succeed, and touching it get the process killed).
    #[test]
    fn a_cost_above_the_available_memory_is_out_of_memory() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:    2097152 kB\n";
        assert!(fits_in_available(2 * 1024 * 1024, Some(meminfo)).is_ok());
        let e = fits_in_available(2 * 1024 * 1024 + 1, Some(meminfo)).unwrap_err();
        assert!(matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::OutOfMemory), "{e:?}");
        assert!(fits_in_available(u64::MAX, None).is_ok(), "no figure: left to the allocation");
        assert!(fits_in_available(u64::MAX, Some("MemTotal: 1 kB\n")).is_ok());
    }

    #[test]
    fn stretch_depends_on_everything() {
        let p = KdfParams::insecure_fast();
        let a = p.stretch(&Passphrase::from("a"), &[0; 16]).unwrap();
        let b = p.stretch(&Passphrase::from("b"), &[0; 16]).unwrap();
        let c = p.stretch(&Passphrase::from("a"), &[1; 16]).unwrap();
        let d = KdfParams { iterations: 2, ..p }.stretch(&Passphrase::from("a"), &[0; 16]).unwrap();
        let a2 = p.stretch(&Passphrase::from("a"), &[0; 16]).unwrap();
        assert_eq!(a.expose(), a2.expose());
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
        assert_ne!(a.expose(), d.expose());
    }

    /// The stretch on memory of our own (wiped when dropped) is Argon2id as the crate computes
    /// it on its own allocation, lanes and passes included.
    #[test]
    fn stretch_is_argon2id() {
        let p = KdfParams { memory_kib: 256, iterations: 2, parallelism: 2 };
        let salt = [7u8; 16];
        let ours = p.stretch(&Passphrase::from("correct horse"), &salt).unwrap();
        let params = argon2::Params::new(256, 2, 2, Some(32)).unwrap();
        let mut theirs = [0u8; 32];
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(b"correct horse", &salt, &mut theirs)
            .unwrap();
        assert_eq!(ours.expose(), &theirs);
    }

    #[test]
    fn hostile_parameters_refused() {
        let p = KdfParams { memory_kib: u32::MAX, iterations: 1, parallelism: 1 };
        assert!(p.stretch(&Passphrase::from("a"), &[0; 16]).is_err());
        let p = KdfParams { memory_kib: 64, iterations: 0, parallelism: 1 };
        assert!(p.validate().is_err());
        // Lane counts whose product with 8 overflows a u32 (a slot's bytes 140..144): refused,
        // not a panic (debug builds check overflow) nor a wrapped product that passes.
        for parallelism in [0x2000_0000, u32::MAX, 1 << 31] {
            let p = KdfParams { memory_kib: 64, iterations: 1, parallelism };
            assert!(matches!(p.validate(), Err(Error::InvalidConfig(_))), "{parallelism:#x}");
        }
    }
}
