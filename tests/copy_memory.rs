//! How much memory whole-file copies take for a large value: this test binary installs a global
//! allocator that counts the bytes live and their peak. Compaction and a data-key rotation copy
//! an overflow chain page by page (`overflow::copy`), so the peak while they run stays far
//! below the value's size, which once was read whole into memory (up to `MAX_VALUE_LEN`).
//!
//! One test in this binary, so no other thread allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use foldvault::{Config, Credentials, KdfParams};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to `System` unchanged; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const BIG: usize = 24 << 20;

/// Runs `f` and returns the most memory that was live during it beyond what was live before.
fn peak_above_start(f: impl FnOnce()) -> usize {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(start)
}

#[test]
fn compaction_and_rotation_copy_a_large_value_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new()
        .path(dir.path().join("db"))
        .passphrase("copy memory")
        .kdf(KdfParams::insecure_fast())
        .use_env(false)
        .flush_every_ms(None)
        .cache_capacity(1 << 20);
    let db = cfg.open().unwrap();
    let value = |b: u8| vec![b; BIG];
    // `first` below `second` in the file; removing it leaves free space that compaction moves
    // `second`'s chain down into.
    db.insert("first", value(1)).unwrap();
    db.insert("second", value(2)).unwrap();
    db.remove("first").unwrap();
    db.flush().unwrap();

    let compaction = peak_above_start(|| {
        let report = db.compact().unwrap();
        assert!(report.pages_moved > 0, "{report:?}");
    });
    let rotation = peak_above_start(|| {
        let creds = [Credentials::passphrase("copy memory")];
        db.rekey(&creds, &mut |_| {}).unwrap();
    });
    eprintln!("peak above start: compaction {compaction} bytes, rotation {rotation} bytes, value {BIG}");
    assert!(compaction < BIG / 4, "compaction's peak was {compaction} bytes above its start, value {BIG}");
    assert!(rotation < BIG / 4, "rotation's peak was {rotation} bytes above its start, value {BIG}");

    assert_eq!(db.get("second").unwrap().as_deref(), Some(&value(2)[..]));
    assert_eq!(db.get("first").unwrap(), None);
    drop(db);
    let db = cfg.open().unwrap();
    assert_eq!(db.get("second").unwrap().as_deref(), Some(&value(2)[..]));
    assert!(db.check().unwrap().is_ok());
}
