//! The commit record: the payload of pages 2 and 3 (slots A and B), sealed with the commit
//! key of its epoch. SPEC.md §5.
//!
//! Invariants: the record with the highest sequence number that opens *and* whose new pages
//! verify (see `pager::recovery`) is the database; a durable commit writes the slot *not*
//! holding the last durable record, so that record is never overwritten by the commit that
//! follows it.

use super::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PageKind, PageRef, check_kind, write_header};
use super::{get_u32, get_u64, put_u32, put_u64};
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
const _: () = assert!(COMMIT_END <= super::page::PAYLOAD_SIZE);

/// A decoded commit record.
#[derive(Debug, Clone, Copy, Default)]
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
    }

    pub fn decode(payload: &[u8], page: PageNo) -> Result<CommitRecord> {
        check_kind(payload, page, PageKind::Commit)?;
        let bad = || Error::corrupt(page, CorruptReason::BadLayout);
        let r = CommitRecord {
            seq: get_u64(payload, SEQ_OFFSET).ok_or_else(bad)?,
            prev_durable_seq: get_u64(payload, PREV_DURABLE_OFFSET).ok_or_else(bad)?,
            catalog: PageRef::decode(payload, CATALOG_REF_OFFSET).ok_or_else(bad)?,
            freelist: PageRef::decode(payload, FREELIST_REF_OFFSET).ok_or_else(bad)?,
            page_count: get_u64(payload, PAGE_COUNT_OFFSET).ok_or_else(bad)?,
            key_epoch: get_u32(payload, KEY_EPOCH_OFFSET).ok_or_else(bad)?,
            oldest_epoch: get_u32(payload, OLDEST_EPOCH_OFFSET).ok_or_else(bad)?,
            seals_in_epoch: get_u64(payload, SEALS_IN_EPOCH_OFFSET).ok_or_else(bad)?,
            header_generation: get_u64(payload, HEADER_GENERATION_OFFSET).ok_or_else(bad)?,
            rekey_cursor: get_u64(payload, REKEY_CURSOR_OFFSET).ok_or_else(bad)?,
        };
        if r.prev_durable_seq > r.seq
            || r.page_count < super::FIRST_DATA_PAGE
            || r.oldest_epoch > r.key_epoch
            || super::page::generation(payload) != r.seq
        {
            return Err(bad());
        }
        Ok(r)
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
        };
        let mut p = vec![0u8; PAYLOAD_SIZE];
        r.encode(&mut p);
        let d = CommitRecord::decode(&p, 2).unwrap();
        assert_eq!((d.seq, d.catalog.page, d.freelist.page, d.page_count), (9, 12, 13, 20));
        assert!(d.catalog.tag.ct_eq(&r.catalog.tag));
        p[0] = 1;
        assert!(CommitRecord::decode(&p, 2).is_err());
    }
}
