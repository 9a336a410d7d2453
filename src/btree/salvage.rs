//! Salvage walk: every record of a tree that still authenticates, and the key ranges that do
//! not. Used by `foldvault::salvage`.

use super::raw::{RawNode, RawValue};
use super::{MAX_DEPTH, overflow};
use crate::error::{Error, PageNo, Result};
use crate::format::page::PageRef;
use crate::pager::Pager;

/// A key range lost to damage: the lost keys lie in `[lo, hi)` (`None` = unbounded; `lo` may
/// be a key that was copied, the last good one before the loss), or `lo == hi` for the one
/// key whose value was lost; and the page that failed. `Debug` shows the bounds' lengths, not
/// their bytes (user keys).
#[derive(Clone)]
pub struct LostRange {
    pub lo: Option<Vec<u8>>,
    pub hi: Option<Vec<u8>>,
    pub page: PageNo,
    pub error: String,
}

/// The bounds are user keys: wiped when the range goes, as the walk's own copies are.
impl Drop for LostRange {
    fn drop(&mut self) {
        for bound in [&mut self.lo, &mut self.hi].into_iter().flatten() {
            crate::crypto::wipe::wipe_vec(bound);
        }
    }
}

impl std::fmt::Debug for LostRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LostRange")
            .field("lo_len", &self.lo.as_ref().map(Vec::len))
            .field("hi_len", &self.hi.as_ref().map(Vec::len))
            .field("page", &self.page)
            .field("error", &self.error)
            .finish()
    }
}

/// Calls `record(key, value)` for every readable record in key order and `lost` for every
/// subtree or value that fails to authenticate. Only `record`'s own errors stop the walk.
pub(crate) fn walk(
    pager: &Pager,
    root: PageRef,
    record: &mut dyn FnMut(&[u8], Vec<u8>) -> Result<()>,
    lost: &mut dyn FnMut(LostRange),
) -> Result<()> {
    walk_unseen(pager, root, &mut crate::pager::pagemap::PageSet::default(), record, lost)
}

/// `walk`, with the pages walks before this one reached (`seen`, which this one adds to): a
/// page reached again (a forged catalog naming one root for many trees, or trees sharing a
/// subtree) is lost as `DoubleReference`, not copied again (once per tree, such a file of a few
/// MB made a copy of many GB).
pub(crate) fn walk_unseen(
    pager: &Pager,
    root: PageRef,
    seen: &mut crate::pager::pagemap::PageSet,
    record: &mut dyn FnMut(&[u8], Vec<u8>) -> Result<()>,
    lost: &mut dyn FnMut(LostRange),
) -> Result<()> {
    #[allow(clippy::too_many_arguments)]
    fn rec(
        pager: &Pager,
        at: PageRef,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        depth: usize,
        record: &mut dyn FnMut(&[u8], Vec<u8>) -> Result<()>,
        lost: &mut dyn FnMut(LostRange),
        seen: &mut crate::pager::pagemap::PageSet,
    ) -> Result<()> {
        let range = |e: Error| LostRange {
            lo: lo.map(|s| s.to_vec()),
            hi: hi.map(|s| s.to_vec()),
            page: at.page,
            error: e.to_string(),
        };
        if depth > MAX_DEPTH {
            lost(range(Error::corrupt(at.page, crate::error::CorruptReason::TooDeep)));
            return Ok(());
        }
        // A page reached twice (damage): its records were copied once already. Marked once it
        // reads: a forged reference to a page (its tag wrong) would otherwise make the real one,
        // met later, look like a second.
        if seen.contains(&at.page) {
            lost(range(Error::corrupt(at.page, crate::error::CorruptReason::DoubleReference)));
            return Ok(());
        }
        let page = match pager.read(at, None) {
            Ok(p) => p,
            // A read that failed (EIO) is the salvage's own error (as the check's, SPEC §12):
            // the range it would have lost may be whole on the disk.
            Err(e @ Error::Io(_)) => return Err(e),
            Err(e) => {
                lost(range(e));
                return Ok(());
            }
        };
        seen.insert(at.page);
        let raw = match RawNode::new(page.payload(), at.page) {
            Ok(r) => r,
            Err(e) => {
                lost(range(e));
                return Ok(());
            }
        };
        if raw.is_leaf() {
            return salvage_leaf(pager, &raw, at.page, (lo, hi), record, lost, seen);
        }
        let n = raw.len();
        let mut keys = Vec::with_capacity(n);
        for i in 0..n {
            match raw.branch_key(i) {
                // Separators are user keys: wiped when they go (as verify's).
                Ok(k) => keys.push(zeroize::Zeroizing::new(k.to_vec())),
                Err(e) => {
                    lost(range(e));
                    return Ok(());
                }
            }
        }
        // A child's bounds are the highest separator before it and the lowest after it, within
        // the branch's own bounds: separators are not checked, and a forged one out of order (or
        // below the branch's lower bound) gave children overlapping ranges, so a key no lookup
        // could reach was copied, once more or over the real one (SPEC §12). With running
        // bounds the children's ranges are disjoint and in order; a child whose range is empty
        // loses its keys.
        let mut below: Vec<Option<&[u8]>> = vec![hi; n + 1];
        for i in (0..n).rev() {
            below[i] = match below[i + 1] {
                Some(h) if h <= keys[i].as_slice() => Some(h),
                _ => Some(keys[i].as_slice()),
            };
        }
        let mut clo = lo;
        for (i, &chi) in below.iter().enumerate() {
            if i > 0 && clo.is_none_or(|l| l < keys[i - 1].as_slice()) {
                clo = Some(keys[i - 1].as_slice());
            }
            // A child reference that cannot be (below page 4) loses that child's range alone:
            // its siblings read (as readers and the check take them), and were lost with it,
            // the whole branch's range reported.
            let child = match raw.child(i) {
                Ok(c) => c,
                Err(e) => {
                    lost(LostRange {
                        lo: clo.map(<[u8]>::to_vec),
                        hi: chi.map(<[u8]>::to_vec),
                        page: at.page,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            rec(pager, child, clo, chi, depth + 1, record, lost, seen)?;
        }
        Ok(())
    }
    if root.is_none() {
        return Ok(());
    }
    rec(pager, root, None, None, 0, record, lost, seen)
}

/// The records of one authenticated leaf. An entry that does not decode, or whose key is not
/// above the previous one and within the leaf's bounds `[lo, hi)` (keys a lookup could never
/// reach, which a copy must not let overwrite the real ones), is lost alone: the run of such
/// entries is reported as one range from the last good key to the next, and the walk goes on
/// with the entries after it. An overflow page met before (a chain shared by two entries, or
/// joining another) loses the value: copied again, a chain shared by a forged leaf's entries
/// would be read and written once per entry.
fn salvage_leaf(
    pager: &Pager,
    raw: &RawNode<'_>,
    page: PageNo,
    (lo, hi): (Option<&[u8]>, Option<&[u8]>),
    record: &mut dyn FnMut(&[u8], Vec<u8>) -> Result<()>,
    lost: &mut dyn FnMut(LostRange),
    seen: &mut crate::pager::pagemap::PageSet,
) -> Result<()> {
    // The last key recorded, and a run of bad entries not yet reported: where its range starts
    // (the last key recorded; the leaf's lower bound once an entry of the run lies below that
    // key, which could belong anywhere before it) and the run's first error.
    let mut last: Option<&[u8]> = None;
    let mut pending: Option<(Option<&[u8]>, Error)> = None;
    let range = |from: Option<&[u8]>, to: Option<&[u8]>, e: Error| LostRange {
        lo: from.or(lo).map(<[u8]>::to_vec),
        hi: to.map(<[u8]>::to_vec),
        page,
        error: e.to_string(),
    };
    for i in 0..raw.len() {
        let (k, v) = match raw.leaf_entry(i) {
            Ok(e) => e,
            Err(e) => {
                pending.get_or_insert((last, e));
                continue;
            }
        };
        // A key longer than any write makes (a forged plaintext leaf) is lost alone, as a bad
        // entry is: copied, it failed the whole salvage (`KeyTooLarge`).
        if k.len() > super::node::MAX_KEY_LEN {
            pending.get_or_insert((last, Error::corrupt(page, crate::error::CorruptReason::BadLayout)));
            continue;
        }
        let below_last = last.is_some_and(|p| k <= p);
        if below_last || lo.is_some_and(|l| k < l) || hi.is_some_and(|h| k >= h) {
            let run =
                pending.get_or_insert_with(|| (last, Error::corrupt(page, crate::error::CorruptReason::KeyOrder)));
            if below_last {
                run.0 = lo;
            }
            continue;
        }
        if let Some((from, e)) = pending.take() {
            lost(range(from, Some(k), e));
        }
        last = Some(k);
        let value = match v {
            RawValue::Inline(b) => b.to_vec(),
            // Each chain page recorded in `seen`: one met before is `DoubleReference`.
            RawValue::Overflow { first, len } => {
                match overflow::read_visiting(pager, first, len, |pg| crate::pager::pagemap::reach_once(seen, pg)) {
                    Ok(v) => v,
                    Err(e @ Error::Io(_)) => return Err(e),
                    Err(e) => {
                        lost(LostRange {
                            lo: Some(k.to_vec()),
                            hi: Some(k.to_vec()),
                            page: first.page,
                            error: e.to_string(),
                        });
                        continue;
                    }
                }
            }
        };
        record(k, value)?;
    }
    if let Some((from, e)) = pending {
        lost(range(from, hi, e));
    }
    Ok(())
}
