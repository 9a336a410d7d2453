//! `IVec`: a cheap, cloneable, immutable byte buffer (sled's value type).
//!
//! Difference from sled: `Debug` prints only the length, never the bytes, because foldvault keeps user plaintext out of every `Debug` output (logs end up in
//! places the database file does not).

use std::borrow::Borrow;
use std::ops::Deref;
use std::sync::Arc;

#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IVec(Arc<[u8]>);

impl IVec {
    pub fn from_slice(b: &[u8]) -> IVec {
        IVec(Arc::from(b))
    }
}

impl Deref for IVec {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}
impl AsRef<[u8]> for IVec {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
impl Borrow<[u8]> for IVec {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}
impl From<Vec<u8>> for IVec {
    fn from(v: Vec<u8>) -> IVec {
        IVec(Arc::from(v))
    }
}
impl From<Box<[u8]>> for IVec {
    fn from(v: Box<[u8]>) -> IVec {
        IVec(Arc::from(v))
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
impl From<IVec> for Vec<u8> {
    fn from(v: IVec) -> Vec<u8> {
        v.0.to_vec()
    }
}
impl PartialEq<[u8]> for IVec {
    fn eq(&self, o: &[u8]) -> bool {
        &*self.0 == o
    }
}
impl PartialEq<&[u8]> for IVec {
    fn eq(&self, o: &&[u8]) -> bool {
        &*self.0 == *o
    }
}
impl<const N: usize> PartialEq<[u8; N]> for IVec {
    fn eq(&self, o: &[u8; N]) -> bool {
        &*self.0 == o.as_slice()
    }
}
impl<const N: usize> PartialEq<&[u8; N]> for IVec {
    fn eq(&self, o: &&[u8; N]) -> bool {
        &*self.0 == o.as_slice()
    }
}
impl PartialEq<Vec<u8>> for IVec {
    fn eq(&self, o: &Vec<u8>) -> bool {
        &*self.0 == o.as_slice()
    }
}
impl PartialEq<str> for IVec {
    fn eq(&self, o: &str) -> bool {
        &*self.0 == o.as_bytes()
    }
}
impl PartialEq<&str> for IVec {
    fn eq(&self, o: &&str) -> bool {
        &*self.0 == o.as_bytes()
    }
}

impl std::fmt::Debug for IVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IVec(len={})", self.0.len())
    }
}
