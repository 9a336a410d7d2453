//! The log when its storage panics (a caller's `Storage`): the group in flight is not lost
//! from the read path, and the log refuses what follows, as after an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::storage::MemoryStorage;

/// A memory device whose `sync` panics while armed.
struct PanicsOnSync(MemoryStorage, Arc<AtomicBool>);

impl Storage for PanicsOnSync {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        if self.1.load(Ordering::SeqCst) {
            panic!("the log's device panicked in its sync");
        }
        self.0.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

/// A group whose log sync panicked stayed in flight, and the next group took its place: its
/// pages read as the file's older bytes while the log went on acknowledging syncs.
#[test]
fn a_group_whose_sync_panicked_fails_the_log_and_stays_readable() {
    const P: u64 = PAGE as u64;
    let main = MemoryStorage::new();
    main.write_at(0, &[0xF0; 2 * PAGE]).unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let log: Arc<dyn Storage> = Arc::new(PanicsOnSync(MemoryStorage::new(), armed.clone()));
    let w = WalStorage::open(Arc::new(main), log, 1000, None).unwrap();
    w.write_at(8 * P, &[1u8; PAGE]).unwrap();
    w.sync().unwrap();
    w.write_at(9 * P, &[2u8; PAGE]).unwrap();
    armed.store(true, Ordering::SeqCst);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.sync()));
    assert!(panicked.is_err(), "the sync did not panic");
    armed.store(false, Ordering::SeqCst);
    // What follows is refused, as after a failed sync.
    assert!(w.write_at(10 * P, &[3u8; PAGE]).and_then(|()| w.sync()).is_err(), "the log went on after a panic");
    let mut b = vec![0u8; PAGE];
    w.read_at(9 * P, &mut b).unwrap();
    assert!(b.iter().all(|x| *x == 2), "the group in flight was lost from the read path");
    w.read_at(8 * P, &mut b).unwrap();
    assert!(b.iter().all(|x| *x == 1));
}
