//! Key types. None derives `Debug`, `Display` or `Clone`; each zeroizes its bytes on drop.
//! SPEC.md §6 gives the hierarchy: passphrase / master key → key-encryption key → data key →
//! subkeys (page key per epoch, commit-record key per epoch, header MAC key, backup key).

use std::fmt;
use zeroize::{Zeroize, Zeroizing};

use super::locked::LockedBytes;

use crate::error::{Error, Result};

/// Context strings for BLAKE3 `derive_key`. Versioned: changing one is a format change.
pub(crate) mod context {
    pub const KEK_PASSPHRASE: &str = "foldvault 2026-11-28 v1 key-encryption key from passphrase";
    pub const KEK_MASTER: &str = "foldvault 2026-11-28 v1 key-encryption key from master key";
    pub const KEK_MASTER_PASSPHRASE: &str = "foldvault 2026-11-28 v1 key-encryption key from master key and passphrase";
    pub const KEK_RECOVERY: &str = "foldvault 2026-11-28 v1 key-encryption key from recovery key";
    pub const PAGE_KEY: &str = "foldvault 2026-11-28 v1 page key";
    pub const COMMIT_KEY: &str = "foldvault 2026-11-28 v1 commit record key";
    pub const HEADER_MAC_KEY: &str = "foldvault 2026-11-28 v1 header mac key";
    /// Backup version 1's chunk key, one per data key (§13).
    pub const BACKUP_KEY: &str = "foldvault 2026-11-28 v1 backup key";
    /// Backup version 2's chunk key, one per backup: derived with the backup id.
    pub const BACKUP_CHUNK_KEY: &str = "foldvault 2026-12-04 v2 backup chunk key";
    pub const BACKUP_MAC_KEY: &str = "foldvault 2026-11-28 v1 backup header mac key";
    pub const REKEY_WRAP: &str = "foldvault 2026-11-28 v1 rekey next-key wrap";
}

/// A 256-bit secret held by the crate: key-encryption keys, the data key and its subkeys.
/// Crate-private constructor; zeroized on drop; no `Clone`, no `Debug` of the bytes.
pub(crate) struct SecretKey(LockedBytes);

impl SecretKey {
    pub(crate) fn from_bytes(b: [u8; 32]) -> SecretKey {
        let mut b = b;
        let k = SecretKey(LockedBytes::from_slice(&b));
        b.zeroize();
        k
    }
    pub(crate) fn random() -> SecretKey {
        let mut b = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b[..]);
        SecretKey::from_bytes(*b)
    }
    pub(crate) fn expose(&self) -> &[u8; 32] {
        // LockedBytes of length 32 by construction.
        self.0.as_ref().try_into().unwrap_or(&[0u8; 32])
    }
    /// BLAKE3 `derive_key(context, self ‖ extra)` (`derive_from`).
    pub(crate) fn derive(&self, context: &str, extra: &[u8]) -> SecretKey {
        SecretKey::derive_from(context, &[self.0.as_ref(), extra])
    }
    /// BLAKE3 `derive_key(context, parts[0] ‖ parts[1] ‖ ...)`. The hasher's state (which held
    /// the secret input) is wiped, and the output goes straight into locked memory.
    pub(crate) fn derive_from(context: &str, parts: &[&[u8]]) -> SecretKey {
        let mut h = blake3::Hasher::new_derive_key(context);
        for p in parts {
            h.update(p);
        }
        let mut out = SecretKey(LockedBytes::new(32));
        // The output reader's last block holds the input too: wiped as well.
        let mut reader = h.finalize_xof();
        reader.fill(out.0.as_mut());
        reader.zeroize();
        h.zeroize();
        out
    }
    /// Keyed BLAKE3 of `data` under this key (a MAC: the output is public). The hasher, which
    /// held the key, is wiped.
    pub(crate) fn keyed_hash(&self, data: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(self.expose());
        h.update(data);
        let out = *h.finalize().as_bytes();
        h.zeroize();
        out
    }
    /// An explicit duplicate (for handing a key to a second owner); never implicit.
    pub(crate) fn duplicate(&self) -> SecretKey {
        SecretKey(LockedBytes::from_slice(self.0.as_ref()))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// A 32-byte master key supplied by the application (FoldDB: its Ed25519 seed). Zeroized on
/// drop, printed as `[redacted]`.
pub struct MasterKey(pub(crate) SecretKey);

impl MasterKey {
    /// Takes ownership of 32 key bytes (the caller's copy should be zeroized by the caller).
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(SecretKey::from_bytes(bytes))
    }
    /// Parses a key file's contents: 32 raw bytes, or 64 hexadecimal characters (surrounding
    /// whitespace ignored).
    pub fn from_key_file_bytes(data: &[u8]) -> Result<MasterKey> {
        if data.len() == 32 {
            let mut b = Zeroizing::new([0u8; 32]);
            b.copy_from_slice(data);
            return Ok(MasterKey::from_bytes(*b));
        }
        let text = trim_ascii(data);
        if text.len() != 64 {
            return Err(Error::InvalidConfig("key file must hold 32 raw bytes or 64 hexadecimal characters"));
        }
        let mut b = Zeroizing::new([0u8; 32]);
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]);
            let lo = hex_val(pair[1]);
            match (hi, lo) {
                (Some(h), Some(l)) => b[i] = (h << 4) | l,
                _ => return Err(Error::InvalidConfig("key file holds a non-hexadecimal character")),
            }
        }
        Ok(MasterKey::from_bytes(*b))
    }
    /// Generates a random master key (for recovery keys and tests).
    pub fn generate() -> MasterKey {
        MasterKey(SecretKey::random())
    }
    /// The key as 64 hex characters, for printing a recovery key once. The returned string
    /// zeroizes on drop.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(64));
        for &x in self.0.expose().iter() {
            s.push(char::from_digit((x >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((x & 15) as u32, 16).unwrap_or('0'));
        }
        s
    }
    /// An explicit copy (the master key is often kept by the application as well).
    pub fn duplicate(&self) -> MasterKey {
        MasterKey(self.0.duplicate())
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}
impl fmt::Display for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A passphrase, held in locked memory. Zeroized on drop, printed as `[redacted]`.
pub struct Passphrase(pub(crate) LockedBytes);

impl Passphrase {
    /// Takes the bytes; the vector given is wiped.
    pub fn new(p: impl Into<Vec<u8>>) -> Passphrase {
        let mut v: Vec<u8> = p.into();
        let out = Passphrase(LockedBytes::from_slice(&v));
        v.zeroize();
        out
    }
    /// Reads a passphrase file's contents, dropping one trailing newline.
    pub fn from_file_bytes(mut data: Vec<u8>) -> Passphrase {
        let mut end = data.len();
        if end > 0 && data[end - 1] == b'\n' {
            end -= 1;
            if end > 0 && data[end - 1] == b'\r' {
                end -= 1;
            }
        }
        let out = Passphrase(LockedBytes::from_slice(&data[..end]));
        data.zeroize();
        out
    }
    pub fn duplicate(&self) -> Passphrase {
        Passphrase(LockedBytes::from_slice(self.0.as_ref()))
    }
    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_ref()
    }
    pub fn len(&self) -> usize {
        self.0.as_ref().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<&str> for Passphrase {
    fn from(s: &str) -> Passphrase {
        Passphrase(LockedBytes::from_slice(s.as_bytes()))
    }
}
impl From<String> for Passphrase {
    fn from(s: String) -> Passphrase {
        Passphrase::new(s.into_bytes())
    }
}

impl From<&String> for Passphrase {
    fn from(s: &String) -> Passphrase {
        Passphrase(LockedBytes::from_slice(s.as_bytes()))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase([redacted])")
    }
}
impl fmt::Display for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_bytes() {
        let mk = MasterKey::from_bytes([0xAB; 32]);
        let p = Passphrase::from("hunter2-secret");
        for s in [format!("{mk:?}"), format!("{mk}"), format!("{p:?}"), format!("{p}")] {
            assert!(!s.contains("ab") && !s.contains("AB") && !s.contains("171"), "{s}");
            assert!(!s.contains("hunter2"));
            assert!(s.contains("redacted"));
        }
        let sk = SecretKey::from_bytes([7; 32]);
        assert_eq!(format!("{sk:?}"), "SecretKey([redacted])");
    }

    #[test]
    fn key_file_forms() {
        let raw = [5u8; 32];
        let a = MasterKey::from_key_file_bytes(&raw).unwrap();
        let hex = "05".repeat(32) + "\n";
        let b = MasterKey::from_key_file_bytes(hex.as_bytes()).unwrap();
        assert_eq!(a.0.expose(), b.0.expose());
        assert!(MasterKey::from_key_file_bytes(b"zz").is_err());
        assert!(MasterKey::from_key_file_bytes("g".repeat(64).as_bytes()).is_err());
        assert_eq!(&*a.to_hex(), &"05".repeat(32));
    }

    #[test]
    fn derive_separates_contexts() {
        let k = SecretKey::from_bytes([1; 32]);
        let a = k.derive(context::PAGE_KEY, &0u32.to_le_bytes());
        let b = k.derive(context::PAGE_KEY, &1u32.to_le_bytes());
        let c = k.derive(context::COMMIT_KEY, &0u32.to_le_bytes());
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
    }
}
