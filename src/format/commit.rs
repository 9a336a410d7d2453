//! The commit record: the payload of pages 2 and 3 (slots A and B), sealed with the commit
//! key of its epoch. SPEC.md §5.
//!
//! Invariants: the record with the highest sequence number that opens *and* whose new pages
//! verify (see `pager::recovery`) is the database; a durable commit writes the slot *not*
//! holding the last durable record, so that record is never overwritten by the commit that
//! follows it.
//!
//! Format version 2 adds the free-list delta (`FreeDelta`, from `FREE_DELTA_OFFSET`): the pages
//! that became free, and the pages recorded by the chain that came into use, since the chain
//! was written. Version-1 records have zeros there and are read without it.

use super::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PageKind, PageRef, check_kind, write_header};
use super::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use crate::error::{CorruptReason, Error, PageNo, Result};

pub const SEQ_OFFSET: usize = PAGE_HEADER_SIZE;
pub const PREV_DURABLE_OFFSET: usize = SEQ_OFFSET + 8;
pub const CATALOG_REF_OFFSET: usize = PREV_DURABLE_OFFSET + 8;
pub const FREELIST_REF_OFFSET: usize = CATALOG_REF_OFFSET + PAGE_REF_SIZE;
pub const PAGE_COUNT_OFFSET: usize = FREELIST_REF_OFFSET + PAGE_REF_SIZE;
pub const KEY_EPOCH_OFFSET: usize = PAGE_COUNT_OFFSET + 8;
pub const OLDEST_EPOCH_OFFSET: usize = KEY_EPOCH_OFFSET + 4;
pub const SEALS_IN_EPOCH_OFFSET: usize = OLDEST_EPOCH_OFFSET + 4;
pub const HEADER_GENERATION_OFFSET: usize = SEALS_IN_EPOCH_OFFSET + 8;
pub const REKEY_CURSOR_OFFSET: usize = HEADER_GENERATION_OFFSET + 8;
pub const COMMIT_END: usize = REKEY_CURSOR_OFFSET + 8;
/// Format version 2: the free-list delta (`FreeDelta`) starts here.
pub const FREE_DELTA_OFFSET: usize = COMMIT_END;
/// `u16` count of freed pages, then `u16` count of used pages, then four zero bytes.
pub const FREED_COUNT_OFFSET: usize = FREE_DELTA_OFFSET;
pub const USED_COUNT_OFFSET: usize = FREED_COUNT_OFFSET + 2;
/// The freed pages (`u64` each, ascending), then the used pages (`u64` each, ascending).
pub const DELTA_PAGES_OFFSET: usize = USED_COUNT_OFFSET + 6;
/// The most pages a delta holds, freed and used together.
pub const MAX_DELTA_PAGES: usize = (super::page::PAYLOAD_SIZE - DELTA_PAGES_OFFSET) / 8;
const _: () = assert!(COMMIT_END <= super::page::PAYLOAD_SIZE);
const _: () = assert!(DELTA_PAGES_OFFSET + 8 * MAX_DELTA_PAGES <= super::page::PAYLOAD_SIZE);

/// The first format version whose commit records carry a free-list delta.
pub const FREE_DELTA_VERSION: u16 = 2;

/// The free list of a commit beyond its chain (format version 2, SPEC.md §7): the free pages are
/// those the chain records, less `used`, plus `freed`. Both ascending, without repeats; `used`
/// only pages the chain records, `freed` none of them (checked against the chain by
/// `freelist::apply_delta`). Page numbers, no user data: `Debug` may show them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreeDelta {
    /// Pages free now that the chain does not record.
    pub freed: Vec<PageNo>,
    /// Pages the chain records that are in use now.
    pub used: Vec<PageNo>,
}

impl FreeDelta {
    pub fn is_empty(&self) -> bool {
        self.freed.is_empty() && self.used.is_empty()
    }

    pub fn len(&self) -> usize {
        self.freed.len() + self.used.len()
    }

    /// Writes the delta (the free-list writer keeps it within `MAX_DELTA_PAGES`).
    fn encode(&self, payload: &mut [u8]) {
        debug_assert!(self.len() <= MAX_DELTA_PAGES, "a delta of {} pages", self.len());
        put_u16(payload, FREED_COUNT_OFFSET, self.freed.len() as u16);
        put_u16(payload, USED_COUNT_OFFSET, self.used.len() as u16);
        for (i, p) in self.freed.iter().chain(&self.used).enumerate().take(MAX_DELTA_PAGES) {
            put_u64(payload, DELTA_PAGES_OFFSET + 8 * i, *p);
        }
    }

    /// Decodes and checks the delta of a record of `page_count` pages: counts within
    /// `MAX_DELTA_PAGES`, each list strictly ascending, every page a data page below
    /// `page_count`, no page in both lists.
    fn decode(payload: &[u8], page_count: u64, bad: impl Fn() -> Error) -> Result<FreeDelta> {
        let freed_n = get_u16(payload, FREED_COUNT_OFFSET).ok_or_else(&bad)? as usize;
        let used_n = get_u16(payload, USED_COUNT_OFFSET).ok_or_else(&bad)? as usize;
        if freed_n + used_n > MAX_DELTA_PAGES || get_u32(payload, USED_COUNT_OFFSET + 2) != Some(0) {
            return Err(bad());
        }
        let list = |from: usize, n: usize| -> Result<Vec<PageNo>> {
            let mut v: Vec<PageNo> = Vec::with_capacity(n);
            for i in from..from + n {
                let p = get_u64(payload, DELTA_PAGES_OFFSET + 8 * i).ok_or_else(&bad)?;
                if p < super::FIRST_DATA_PAGE || p >= page_count || v.last().is_some_and(|&l| l >= p) {
                    return Err(bad());
                }
                v.push(p);
            }
            Ok(v)
        };
        let d = FreeDelta { freed: list(0, freed_n)?, used: list(freed_n, used_n)? };
        if d.used.iter().any(|p| d.freed.binary_search(p).is_ok()) {
            return Err(bad());
        }
        Ok(d)
    }
}

/// A decoded commit record.
#[derive(Debug, Clone, Default)]
pub struct CommitRecord {
    /// Commit sequence number (every commit, durable or not, takes the next one).
    pub seq: u64,
    /// Sequence number of the durable commit before this one: pages with a generation above it
    /// were written since, and are the ones recovery verifies.
    pub prev_durable_seq: u64,
    /// Root of the catalog tree (tree name → tree root).
    pub catalog: PageRef,
    /// Head of the free-list chain.
    pub freelist: PageRef,
    /// Pages `0..page_count` belong to the database; the file may be longer.
    pub page_count: u64,
    /// The epoch new pages are sealed under.
    pub key_epoch: u32,
    /// The oldest epoch any live page may still be sealed under.
    pub oldest_epoch: u32,
    /// Seals made under `key_epoch` so far (nonce budget, SPEC.md §6).
    pub seals_in_epoch: u64,
    /// The header generation this commit was made under.
    pub header_generation: u64,
    /// Rekey progress: pages below this number are already re-sealed (0 = no rekey running).
    pub rekey_cursor: u64,
    /// The free list beyond its chain (format version 2; always empty in a version-1 file).
    pub free_delta: FreeDelta,
}

impl CommitRecord {
    pub fn encode(&self, payload: &mut [u8]) {
        payload.fill(0);
        write_header(payload, PageKind::Commit, 0, self.seq);
        put_u64(payload, SEQ_OFFSET, self.seq);
        put_u64(payload, PREV_DURABLE_OFFSET, self.prev_durable_seq);
        self.catalog.encode(&mut payload[CATALOG_REF_OFFSET..]);
        self.freelist.encode(&mut payload[FREELIST_REF_OFFSET..]);
        put_u64(payload, PAGE_COUNT_OFFSET, self.page_count);
        put_u32(payload, KEY_EPOCH_OFFSET, self.key_epoch);
        put_u32(payload, OLDEST_EPOCH_OFFSET, self.oldest_epoch);
        put_u64(payload, SEALS_IN_EPOCH_OFFSET, self.seals_in_epoch);
        put_u64(payload, HEADER_GENERATION_OFFSET, self.header_generation);
        put_u64(payload, REKEY_CURSOR_OFFSET, self.rekey_cursor);
        self.free_delta.encode(payload);
    }

    /// Decodes the record in slot `page` of a file of format `version` (a version-1 record has
    /// no delta: its bytes there are not read).
    pub fn decode(payload: &[u8], page: PageNo, version: u16) -> Result<CommitRecord> {
        check_kind(payload, page, PageKind::Commit)?;
        let bad = || Error::corrupt(page, CorruptReason::BadLayout);
        let r = CommitRecord {
            seq: get_u64(payload, SEQ_OFFSET).ok_or_else(bad)?,
            prev_durable_seq: get_u64(payload, PREV_DURABLE_OFFSET).ok_or_else(bad)?,
            catalog: PageRef::decode_committed(payload, CATALOG_REF_OFFSET).ok_or_else(bad)?,
            // (Not `decode_committed`: a free-list page a compaction wrote at commit 0 has
            // generation 0, and in plaintext a tag of zeros once in 2^32; no transaction edits one.)
            freelist: PageRef::decode(payload, FREELIST_REF_OFFSET).ok_or_else(bad)?,
            page_count: get_u64(payload, PAGE_COUNT_OFFSET).ok_or_else(bad)?,
            key_epoch: get_u32(payload, KEY_EPOCH_OFFSET).ok_or_else(bad)?,
            oldest_epoch: get_u32(payload, OLDEST_EPOCH_OFFSET).ok_or_else(bad)?,
            seals_in_epoch: get_u64(payload, SEALS_IN_EPOCH_OFFSET).ok_or_else(bad)?,
            header_generation: get_u64(payload, HEADER_GENERATION_OFFSET).ok_or_else(bad)?,
            rekey_cursor: get_u64(payload, REKEY_CURSOR_OFFSET).ok_or_else(bad)?,
            free_delta: FreeDelta::default(),
        };
        // A sequence number of u64::MAX could have no successor.
        if r.prev_durable_seq > r.seq
            || r.seq == u64::MAX
            || r.page_count < super::FIRST_DATA_PAGE
            || r.oldest_epoch > r.key_epoch
            || super::page::generation(payload) != r.seq
        {
            return Err(bad());
        }
        let free_delta = if version >= FREE_DELTA_VERSION {
            FreeDelta::decode(payload, r.page_count, bad)?
        } else {
            FreeDelta::default()
        };
        Ok(CommitRecord { free_delta, ..r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::page::{PAYLOAD_SIZE, SealTag};

    #[test]
    fn round_trip() {
        let r = CommitRecord {
            seq: 9,
            prev_durable_seq: 7,
            catalog: PageRef { page: 12, tag: SealTag([3; 16]), generation: 9 },
            freelist: PageRef { page: 13, tag: SealTag([4; 16]), generation: 9 },
            page_count: 20,
            key_epoch: 2,
            oldest_epoch: 1,
            seals_in_epoch: 77,
            header_generation: 5,
            rekey_cursor: 0,
            free_delta: FreeDelta { freed: vec![5, 9], used: vec![14] },
        };
        let mut p = vec![0u8; PAYLOAD_SIZE];
        r.encode(&mut p);
        let d = CommitRecord::decode(&p, 2, 2).unwrap();
        assert_eq!((d.seq, d.catalog.page, d.freelist.page, d.page_count), (9, 12, 13, 20));
        assert!(d.catalog.tag.ct_eq(&r.catalog.tag));
        assert_eq!(d.free_delta, r.free_delta);
        // A version-1 file's record is read without a delta.
        assert!(CommitRecord::decode(&p, 2, 1).unwrap().free_delta.is_empty());
        p[0] = 1;
        assert!(CommitRecord::decode(&p, 2, 2).is_err());
        // A record no commit could follow (its seq + 1 would wrap) is refused.
        let last = CommitRecord { seq: u64::MAX, prev_durable_seq: 1, page_count: 20, ..CommitRecord::default() };
        let mut p = vec![0u8; PAYLOAD_SIZE];
        last.encode(&mut p);
        assert!(CommitRecord::decode(&p, 2, 2).is_err());
    }

    /// Every rule of the delta is checked: a page out of range or a data page below 4, repeats
    /// or disorder, a page in both lists, counts past the room, non-zero reserved bytes.
    #[test]
    fn bad_deltas_are_refused() {
        let base = CommitRecord { seq: 3, page_count: 20, ..CommitRecord::default() };
        let ok = |freed: Vec<u64>, used: Vec<u64>| {
            let mut p = vec![0u8; PAYLOAD_SIZE];
            CommitRecord { free_delta: FreeDelta { freed, used }, ..base.clone() }.encode(&mut p);
            p
        };
        for (freed, used) in
            [(vec![20], vec![]), (vec![3], vec![]), (vec![6, 6], vec![]), (vec![7, 6], vec![]), (vec![6], vec![6])]
        {
            let p = ok(freed.clone(), used.clone());
            assert!(CommitRecord::decode(&p, 2, 2).is_err(), "{freed:?} {used:?}");
        }
        let mut p = ok(vec![5], vec![]);
        put_u16(&mut p, FREED_COUNT_OFFSET, MAX_DELTA_PAGES as u16 + 1);
        assert!(CommitRecord::decode(&p, 2, 2).is_err());
        let mut p = ok(vec![5], vec![]);
        p[USED_COUNT_OFFSET + 2] = 1;
        assert!(CommitRecord::decode(&p, 2, 2).is_err());
        assert!(CommitRecord::decode(&ok(vec![4, 19], vec![5]), 2, 2).is_ok());
    }
}
