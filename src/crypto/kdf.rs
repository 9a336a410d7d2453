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
        fits_in_available(u64::from(self.memory_kib), available_kib())?;
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

/// `Error::Io(OutOfMemory)` if `kib` is above `available` (KiB); `Ok` when that is unknown.
fn fits_in_available(kib: u64, available: Option<u64>) -> Result<()> {
    match available {
        Some(avail) if kib > avail => Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("Argon2id needs {kib} KiB of memory, and this host has {avail} KiB available"),
        ))),
        _ => Ok(()),
    }
}

/// What this process can have, as far as Linux says, in KiB: `MemAvailable` and `SwapFree`
/// of `/proc/meminfo` (free memory, what the kernel can reclaim, and swap), and no more than
/// its cgroup's limit less its use (v1 `memory.limit_in_bytes` and `memory.usage_in_bytes`,
/// v2 `memory.max` and `memory.current`, its inactive file pages not counted as use), where it
/// has one (a container's limit, which
/// `/proc/meminfo` does not show). `None` where neither is known. A best effort:
/// it keeps a forged cost from getting the process killed where it can see the limit.
fn available_kib() -> Option<u64> {
    let host = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| meminfo_kib(&m));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|c| {
        let read = |dir: &std::path::Path, max: &str, current: &str| {
            let max = std::fs::read_to_string(dir.join(max)).ok()?;
            let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
            cgroup_room_kib(&max, &std::fs::read_to_string(dir.join(current)).ok()?, &stat)
        };
        // v1: the memory controller's own hierarchy; v2: the one unified hierarchy.
        let v1 = c.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p)).and_then(|p| {
            let dir = std::path::Path::new("/sys/fs/cgroup/memory").join(p.trim_start_matches('/'));
            read(&dir, "memory.limit_in_bytes", "memory.usage_in_bytes")
        });
        v1.or_else(|| {
            let p = c.lines().find_map(|l| l.strip_prefix("0::"))?;
            read(
                &std::path::Path::new("/sys/fs/cgroup").join(p.trim_start_matches('/')),
                "memory.max",
                "memory.current",
            )
        })
    });
    match (host, cgroup) {
        (Some(h), Some(c)) => Some(h.min(c)),
        (h, c) => h.or(c),
    }
}

/// `MemAvailable` plus `SwapFree` of a `/proc/meminfo` text, in KiB.
fn meminfo_kib(meminfo: &str) -> Option<u64> {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    field("MemAvailable:").map(|a| a.saturating_add(field("SwapFree:").unwrap_or(0)))
}

/// A cgroup's room in KiB from its limit (bytes, or v2's `max`: no limit), its use (bytes) and
/// its `memory.stat`: the use counts the page cache, which the kernel reclaims before it fails
/// an allocation, so inactive file pages (v2 `inactive_file`, v1 `total_inactive_file`) count
/// as room, as `MemAvailable` counts them for the host. Taken as used, a container whose cache
/// filled its limit refused a passphrase's default cost as out of memory (crypto review).
fn cgroup_room_kib(max: &str, current: &str, stat: &str) -> Option<u64> {
    let max: u64 = max.trim().parse().ok()?;
    let current: u64 = current.trim().parse().ok()?;
    let field =
        |name: &str| stat.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok());
    let reclaimable = field("total_inactive_file").or_else(|| field("inactive_file")).unwrap_or(0);
    Some(max.saturating_sub(current.saturating_sub(reclaimable)) / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cost above the memory available is refused before any is allocated (under overcommit
    /// the allocation would succeed, and touching it get the process killed); swap counts, and
    /// a cgroup's limit bounds it.
    #[test]
    fn a_cost_above_the_available_memory_is_out_of_memory() {
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:    2097152 kB\nSwapFree:   1024 kB\n";
        assert_eq!(meminfo_kib(meminfo), Some(2 * 1024 * 1024 + 1024));
        assert_eq!(meminfo_kib("MemTotal: 1 kB\nMemAvailable: 7 kB\n"), Some(7), "no swap line");
        assert_eq!(meminfo_kib("MemTotal: 1 kB\n"), None);
        assert_eq!(cgroup_room_kib("max\n", "1024\n", ""), None, "no limit");
        assert_eq!(cgroup_room_kib("1048576\n", "524288\n", ""), Some(512));
        assert_eq!(cgroup_room_kib("1024\n", "4096\n", ""), Some(0));
        // The cache the kernel would reclaim is room: a 512 MiB limit, 500 MiB used of which
        // 480 MiB inactive file pages (v2), or the same under v1's name.
        let (max, used) = ((512u64 << 20).to_string(), (500u64 << 20).to_string());
        let v2 = "anon 20971520\nfile 503316480\ninactive_file 503316480\nactive_file 0\n";
        assert_eq!(cgroup_room_kib(&max, &used, v2), Some(492 << 10));
        let v1 = "cache 503316480\ninactive_file 1\ntotal_inactive_file 503316480\n";
        assert_eq!(cgroup_room_kib(&max, &used, v1), Some(492 << 10));
        assert_eq!(cgroup_room_kib(&max, &used, "inactive_file_x 9\n"), Some(12 << 10), "no such field");
        assert!(fits_in_available(2048, Some(2048)).is_ok());
        let e = fits_in_available(2049, Some(2048)).unwrap_err();
        assert!(matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::OutOfMemory), "{e:?}");
        assert!(fits_in_available(u64::MAX, None).is_ok(), "unknown: left to the allocation");
        // This host: the default cost fits.
        assert!(fits_in_available(u64::from(KdfParams::default().memory_kib), available_kib()).is_ok());
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
