//! `IVec`: a cheap, cloneable, immutable byte buffer (sled's value type).
//!
//! Difference from sled: `Debug` prints only the length, never the bytes, because foldvault keeps user plaintext out of every `Debug` output (logs end up in
//! places the database file does not).
//!
//! Also unlike sled: the bytes are wiped when the last clone is dropped (by the shared
//! allocation's own drop, whichever thread drops last), and a `Vec` converted into an `IVec`
//! is taken as it is (no spare capacity) or wiped after its bytes are copied, so values read
//! from an encrypted file do not linger in freed heap memory (`crypto::wipe`, SPEC.md §14).

use std::borrow::Borrow;
use std::ops::Deref;
use std::sync::Arc;

use crate::crypto::wipe::{wipe, wipe_vec};

#[derive(Clone, Default)]
pub struct IVec(Arc<Wiped>);

/// The bytes all clones of an `IVec` share, wiped when the last clone goes: the wipe is the
/// shared allocation's own drop, which runs once, after every clone's. (It was each clone's
/// drop, wiping when `Arc::get_mut` saw no other clone: two last clones dropped at once on two
/// threads, a subscriber's event and the committer's, each saw the other, and neither wiped:
/// secrets audit, medium.)
#[derive(Default)]
struct Wiped(Box<[u8]>);

impl Drop for Wiped {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl IVec {
    pub fn from_slice(b: &[u8]) -> IVec {
        IVec(Arc::new(Wiped(Box::from(b))))
    }
}

impl Eq for IVec {}
impl PartialOrd for IVec {
    fn partial_cmp(&self, o: &IVec) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for IVec {
    fn cmp(&self, o: &IVec) -> std::cmp::Ordering {
        self[..].cmp(&o[..])
    }
}
/// As the bytes hash (`Borrow<[u8]>`).
impl std::hash::Hash for IVec {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self[..].hash(h)
    }
}

impl Deref for IVec {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0.0
    }
}
impl AsRef<[u8]> for IVec {
    fn as_ref(&self) -> &[u8] {
        &self.0.0
    }
}
impl Borrow<[u8]> for IVec {
    fn borrow(&self) -> &[u8] {
        &self.0.0
    }
}
/// The vector's own buffer when it has no spare capacity (nothing is copied, nothing freed);
/// else a copy, and the vector wiped.
impl From<Vec<u8>> for IVec {
    fn from(mut v: Vec<u8>) -> IVec {
        if v.len() == v.capacity() {
            return IVec::from(v.into_boxed_slice());
        }
        let out = IVec::from_slice(&v);
        wipe_vec(&mut v);
        out
    }
}
/// The box's own buffer.
impl From<Box<[u8]>> for IVec {
    fn from(v: Box<[u8]>) -> IVec {
        IVec(Arc::new(Wiped(v)))
    }
}
impl From<&[u8]> for IVec {
    fn from(v: &[u8]) -> IVec {
        IVec::from_slice(v)
    }
}
impl<const N: usize> From<&[u8; N]> for IVec {
    fn from(v: &[u8; N]) -> IVec {
        IVec::from_slice(v)
    }
}
impl<const N: usize> From<[u8; N]> for IVec {
    fn from(v: [u8; N]) -> IVec {
        IVec::from_slice(&v)
    }
}
impl From<&str> for IVec {
    fn from(v: &str) -> IVec {
        IVec::from_slice(v.as_bytes())
    }
}
impl From<String> for IVec {
    fn from(v: String) -> IVec {
        IVec::from(v.into_bytes())
    }
}
impl From<&String> for IVec {
    fn from(v: &String) -> IVec {
        IVec::from_slice(v.as_bytes())
    }
}
impl From<&IVec> for IVec {
    fn from(v: &IVec) -> IVec {
        v.clone()
    }
}
/// `(0u8..3).collect::<IVec>()`, as in sled; the collected vector is wiped once copied.
impl FromIterator<u8> for IVec {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> IVec {
        IVec::from(iter.into_iter().collect::<Vec<u8>>())
    }
}
/// A copy: the `IVec`'s own buffer stays its own, wiped with its last clone.
impl From<IVec> for Arc<[u8]> {
    fn from(v: IVec) -> Arc<[u8]> {
        Arc::from(&v[..])
    }
}
/// So that maps keyed by `&IVec` are looked up by bytes, as sled's are.
impl Borrow<[u8]> for &IVec {
    fn borrow(&self) -> &[u8] {
        &self.0.0
    }
}
impl From<IVec> for Vec<u8> {
    fn from(v: IVec) -> Vec<u8> {
        v.to_vec()
    }
}
/// Byte equality with anything that is bytes (as sled's `IVec`): another `IVec` (or a
/// reference to one), `[u8]`, arrays, vectors, `str`, `String`, and references to them.
impl<T: AsRef<[u8]> + ?Sized> PartialEq<T> for IVec {
    fn eq(&self, o: &T) -> bool {
        self[..] == *o.as_ref()
    }
}

impl std::fmt::Debug for IVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IVec(len={})", self.len())
    }
}
