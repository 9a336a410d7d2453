//! A storage with something run before each write (given its offset) and before each sync: a
//! delay, a gate, a panic, for tests that need a device to misbehave at one moment.
#![allow(dead_code)]

use foldvault::storage::Storage;

type Hook<A> = Box<dyn Fn(A) + Send + Sync>;

pub struct Hooked<S> {
    inner: S,
    before_write: Hook<u64>,
    before_sync: Hook<()>,
}

impl<S: Storage> Hooked<S> {
    /// `inner` with `f` run before each sync.
    pub fn before_sync(inner: S, f: impl Fn() + Send + Sync + 'static) -> Hooked<S> {
        Hooked { inner, before_write: Box::new(|_| ()), before_sync: Box::new(move |()| f()) }
    }

    /// `inner` with `f` run before each write, given its offset.
    pub fn before_write(inner: S, f: impl Fn(u64) + Send + Sync + 'static) -> Hooked<S> {
        Hooked { inner, before_write: Box::new(f), before_sync: Box::new(|()| ()) }
    }
}

impl<S: Storage> Storage for Hooked<S> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        (self.before_write)(offset);
        self.inner.write_at(offset, buf)
    }
    fn sync(&self) -> std::io::Result<()> {
        (self.before_sync)(());
        self.inner.sync()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    // Forwarded, so that a log under the hook keeps its own (the header pages written through,
    // its checkpoints), each with the hooks its write and sync would run.
    fn write_through(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        (self.before_write)(offset);
        (self.before_sync)(());
        self.inner.write_through(offset, buf)
    }
    fn checkpoint_log(&self) -> std::io::Result<()> {
        self.inner.checkpoint_log()
    }
    fn checkpoint_and_erase_log(&self) -> std::io::Result<()> {
        self.inner.checkpoint_and_erase_log()
    }
}
