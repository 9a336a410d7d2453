//! Target `backup_stream`: mutated backup streams through `verify` (without and with the key)
//! and `restore` (SPEC.md §13).
//!
//! Two databases with the same contents, one encrypted and one plaintext (`Config::plaintext`),
//! and a backup of each are built once per process. The first input byte holds flags:
//! - bit 7 (`RAW`): the rest of the input is taken as the stream itself, else it is read as a
//!   list of mutations of the chosen backup, six bytes each (bit flips, byte writes,
//!   truncation, appended bytes, a range duplicated or moved; with bit 0 also an entry's page
//!   number changed, alone or with every reference to it, and two entries swapped);
//! - bit 1 (`PLAINTEXT`): the plaintext backup (mutated, and compared with), else the encrypted;
//! - bit 0 (`RECOMPUTE`): after the mutations every integrity value computable without a key is
//!   made to fit the edited stream (`recompute`): in a plaintext backup the page seals, the
//!   references to them and the root digest, then the checksums and hashes; in an encrypted one
//!   only the checksums and hashes, so an edit passes verify without the key and is refused by
//!   the keyed MAC and chunk tags. So an edit reaches the checks behind the hashes: page numbers
//!   (range, order, the free pages restore lists), counts, page and tree structure.
//!
//! Properties:
//! - never a panic; every error is typed (`BackupCorrupt`, `Truncated`, `NotADatabase`,
//!   `UnsupportedVersion`, `Corrupt`, `WrongKey`; with bit 0 or 1 also `Unsupported`, a plaintext
//!   page beyond the free pages restore lists, SPEC §13.3 step 2), and `WrongKey` only for the
//!   wrong passphrase;
//! - the unmodified stream (of either database) verifies with and without the key and restores
//!   to the source's records;
//! - unless *forged* (bit 0 on a stream whose header says plaintext: nothing authenticates it),
//!   a modified stream that still verifies restores to exactly the source's records, or fails
//!   with a typed error (a hash over the whole stream cannot be forged by chance, nor a MAC
//!   without the key, so in practice every modification is caught);
//! - a forged stream that restores gives a database that opens, whose `check` ends (its
//!   problems, if any, reported) and whose every record reads, or fails with a typed error.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use super::replace_all;
use crate::backup::format::{
    B_CATALOG_OFFSET, B_CHECKSUM_OFFSET, B_CHUNK_PAGES_OFFSET, B_FLAGS_OFFSET, B_LIVE_PAGES_OFFSET,
    B_PAGE_COUNT_OFFSET, B_ROOT_DIGEST_OFFSET, B_SEQ_OFFSET, CHUNK_ENTRY_SIZE, CHUNK_HASH_SIZE, CHUNK_HEADER_SIZE,
    CHUNK_TAG_SIZE, FLAG_ENCRYPTED, TRAILER_SIZE,
};
use crate::backup::{self, RestoreOptions};
use crate::crypto::slots::Credentials;
use crate::error::Error;
use crate::format::header::{CHECKSUM_OFFSET, CHECKSUM_SIZE, FILE_ID_OFFSET, VERSION_OFFSET};
use crate::format::page::{
    EPOCH_OFFSET, NONCE_OFFSET, NONCE_SIZE, PAGE_REF_TAG_OFFSET, PAYLOAD_SIZE, PageRef, TAG_OFFSET, TAG_SIZE, aad,
};
use crate::format::{PAGE_SIZE, get_array, get_u16, get_u32, get_u64, put_u64};
use crate::storage::{MemoryStorage, Storage};
use crate::{Config, KdfParams};

const PASS: &str = "fuzz backup passphrase";

/// Flag bits of the first input byte.
const RECOMPUTE: u8 = 0x01;
const PLAINTEXT: u8 = 0x02;
const RAW: u8 = 0x80;
/// Rounds of re-sealing up the trees (a tree is a few levels deep; a page that references
/// itself would change forever).
const MAX_RESEAL_ROUNDS: usize = 16;
/// Records read from a database restored from a forged stream.
const MAX_FORGED_RECORDS: usize = 100_000;

// A `PageRef` starts `page u64 ‖ tag`: references are found and rewritten by those 24 bytes.
const _: () = assert!(PAGE_REF_TAG_OFFSET == 8 && TAG_SIZE == 16);
const REF_PREFIX: usize = 8 + TAG_SIZE;

type Records = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

struct Fixture {
    stream: Vec<u8>,
    records: Records,
}

/// The backup of the encrypted database, or (`plaintext`) of the plaintext one.
fn fixture(plaintext: bool) -> &'static Fixture {
    static F: [OnceLock<Fixture>; 2] = [OnceLock::new(), OnceLock::new()];
    F[usize::from(plaintext)].get_or_init(|| build(plaintext))
}

fn build(plaintext: bool) -> Fixture {
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let cfg = Config::new().storage(s).use_env(false).flush_every_ms(None);
    let cfg = if plaintext { cfg.plaintext() } else { cfg.passphrase(PASS).kdf(KdfParams::insecure_fast()) };
    let db = cfg.open().expect("fixture database");
    for (t, n) in [("atoms", 120u32), ("schemas", 30)] {
        let tree = db.open_tree(t).expect("tree");
        for i in 0..n {
            tree.insert(format!("{t}:{i:04}"), super::filler(i as u64, 20 + (i as usize * 37) % 900)).expect("insert");
        }
    }
    db.insert("big", super::filler(7, 9000)).expect("insert");
    db.open_tree("atoms").expect("tree").remove("atoms:0003").expect("remove");
    let mut stream = Vec::new();
    db.backup_to(&mut stream, &mut |_| {}).expect("backup");
    let records = contents(&db);
    Fixture { stream, records }
}

fn contents(db: &crate::Db) -> Records {
    let mut out = Records::new();
    for name in db.tree_names() {
        let Ok(t) = db.open_tree(&name) else { continue };
        out.insert(name.to_vec(), t.iter().flatten().map(|(k, v)| (k.to_vec(), v.to_vec())).collect());
    }
    out.retain(|_, t| !t.is_empty());
    out
}

fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::BackupCorrupt { .. }
            | Error::Truncated { .. }
            | Error::NotADatabase
            | Error::UnsupportedVersion { .. }
            | Error::Corrupt { .. }
            | Error::WrongKey { .. }
    )
}

/// Where the chunks of `s` are, as a reader following its (possibly edited) backup header
/// finds them (SPEC §13.2): each chunk's start and the offset of its hash, every entry's
/// offset, and the trailer's offset if every chunk the header announces is whole.
#[derive(Default)]
struct Layout {
    chunks: Vec<(usize, usize)>,
    entries: Vec<usize>,
    trailer: Option<usize>,
}

fn layout(s: &[u8]) -> Layout {
    let mut l = Layout::default();
    let live = get_u64(s, B_LIVE_PAGES_OFFSET).unwrap_or(0);
    let per = u64::from(get_u32(s, B_CHUNK_PAGES_OFFSET).unwrap_or(0));
    let expected = if per == 0 { 0 } else { live.div_ceil(per) };
    let mut pos = 2 * PAGE_SIZE;
    // Each chunk takes at least 72 bytes of `s`: the loop ends with the stream.
    for _ in 0..expected {
        let Some(n) = get_u32(s, pos + 8) else { return l };
        let hash_at = (n as usize)
            .checked_mul(CHUNK_ENTRY_SIZE)
            .and_then(|b| b.checked_add(pos + CHUNK_HEADER_SIZE + CHUNK_TAG_SIZE))
            .filter(|&h| h + CHUNK_HASH_SIZE <= s.len());
        let Some(hash_at) = hash_at else { return l };
        l.entries.extend((0..n as usize).map(|i| pos + CHUNK_HEADER_SIZE + i * CHUNK_ENTRY_SIZE));
        l.chunks.push((pos, hash_at));
        pos = hash_at + CHUNK_HASH_SIZE;
    }
    l.trailer = Some(pos);
    l
}

/// The seal tag of a plaintext page (SPEC §3, §3.1): CRC32 of AAD ‖ nonce ‖ payload in bytes
/// 0..4, zeros after, the AAD under the source header's file id and format version and the
/// page's own epoch. As `crypto::seal` computes it; `super::plain_tag` fixes the version to
/// the build's, and a stream's source header may name another.
fn crc_tag(file_id: &[u8; 16], page: u64, version: u16, buf: &[u8]) -> [u8; TAG_SIZE] {
    let epoch = get_u32(buf, EPOCH_OFFSET).unwrap_or(0);
    let mut h = crc32fast::Hasher::new();
    h.update(&aad(file_id, page, epoch, version));
    h.update(&buf[NONCE_OFFSET..NONCE_OFFSET + NONCE_SIZE]);
    h.update(&buf[..PAYLOAD_SIZE]);
    let mut t = [0u8; TAG_SIZE];
    t[..4].copy_from_slice(&h.finalize().to_le_bytes());
    t
}

/// Rewrites, in `hay`, every `page ‖ old tag` of `moved` to `page ‖ new tag`.
fn carry(hay: &mut [u8], moved: &HashMap<u64, Vec<([u8; TAG_SIZE], [u8; TAG_SIZE])>>) {
    let mut i = 0;
    while i + REF_PREFIX <= hay.len() {
        let page = get_u64(hay, i).unwrap_or(0);
        let tags = moved.get(&page).and_then(|v| v.iter().find(|(old, _)| hay[i + 8..i + REF_PREFIX] == old[..]));
        match tags {
            Some(&(_, new)) => {
                hay[i + 8..i + REF_PREFIX].copy_from_slice(&new);
                i += REF_PREFIX;
            }
            None => i += 1,
        }
    }
}

/// Re-seals every entry of a plaintext stream under the page number it is stored with, and
/// carries each changed tag into the references to it (SPEC §4.4: a parent holds its child's
/// tag) in every entry's payload and in the backup header's catalog reference, round by round
/// up the trees. Done as anyone can without a key (SPEC §12, §13.4).
fn reseal(s: &mut [u8], l: &Layout) {
    let fh = &s[PAGE_SIZE..2 * PAGE_SIZE];
    let (Some(file_id), Some(version)) = (get_array::<16>(fh, FILE_ID_OFFSET), get_u16(fh, VERSION_OFFSET)) else {
        return;
    };
    for _ in 0..MAX_RESEAL_ROUNDS {
        let mut moved: HashMap<u64, Vec<([u8; TAG_SIZE], [u8; TAG_SIZE])>> = HashMap::new();
        for &e in &l.entries {
            let page = get_u64(s, e).unwrap_or(0);
            let buf = &mut s[e + 8..e + CHUNK_ENTRY_SIZE];
            let Some(old) = get_array::<TAG_SIZE>(buf, TAG_OFFSET) else { continue };
            let new = crc_tag(&file_id, page, version, buf);
            if old != new {
                buf[TAG_OFFSET..TAG_OFFSET + TAG_SIZE].copy_from_slice(&new);
                moved.entry(page).or_default().push((old, new));
            }
        }
        if moved.is_empty() {
            return;
        }
        for &e in &l.entries {
            carry(&mut s[e + 8..e + 8 + PAYLOAD_SIZE], &moved);
        }
        carry(&mut s[B_CATALOG_OFFSET..B_CATALOG_OFFSET + REF_PREFIX], &moved);
    }
}

/// Makes every integrity value that needs no key fit the edited stream `s`, each before the
/// values that cover it:
/// 1. in a stream whose backup header says plaintext (flag bit 0 clear): every entry's page
///    seal and the references to it (`reseal`);
/// 2. the root digest (SPEC §13.1, §6.1: an unkeyed derive-key BLAKE3 of the source's file id,
///    the seq and the catalog reference; `db::engine::root_digest`);
/// 3. the source header page's checksum (SPEC §2: BLAKE3 of bytes `0..4000`, at 4000);
/// 4. the backup header's checksum (SPEC §13.1: BLAKE3 of bytes `0..4064`, at 4064);
/// 5. each chunk's hash (SPEC §13.2: BLAKE3 of chunk header ‖ entries ‖ tag, after the tag);
/// 6. the stream hash (SPEC §13.2: BLAKE3 of every byte before it, the trailer's last 32).
///
/// Not the keyed values, which need the data key: the backup header MAC (§13.1, which in
/// version 2 also covers the source header page), each chunk's AES-GCM tag (§13.2), the pages'
/// seals and the source header's MAC. An encrypted stream edited and so recomputed still
/// verifies without the key, and is refused (`BackupCorrupt`: "backup header MAC", "source
/// header MAC", "chunk does not authenticate") by verify with the key and by restore. Trailer
/// counts and offset, chunk indexes and page counts are fields, not integrity values: left.
fn recompute(s: &mut [u8]) {
    let l = layout(s);
    let plain = get_u16(s, B_FLAGS_OFFSET).is_some_and(|f| f & FLAG_ENCRYPTED == 0);
    if plain && s.len() >= 2 * PAGE_SIZE {
        reseal(s, &l);
    }
    let id = get_array::<16>(s, PAGE_SIZE + FILE_ID_OFFSET);
    if let (Some(id), Some(seq), Some(catalog)) = (id, get_u64(s, B_SEQ_OFFSET), PageRef::decode(s, B_CATALOG_OFFSET)) {
        let digest = crate::db::engine::root_digest(&id, seq, catalog);
        s[B_ROOT_DIGEST_OFFSET..B_ROOT_DIGEST_OFFSET + 32].copy_from_slice(&digest);
    }
    if s.len() >= 2 * PAGE_SIZE {
        let sum = blake3::hash(&s[PAGE_SIZE..PAGE_SIZE + CHECKSUM_OFFSET]);
        s[PAGE_SIZE + CHECKSUM_OFFSET..PAGE_SIZE + CHECKSUM_OFFSET + CHECKSUM_SIZE].copy_from_slice(sum.as_bytes());
    }
    if s.len() >= PAGE_SIZE {
        let sum = blake3::hash(&s[..B_CHECKSUM_OFFSET]);
        s[B_CHECKSUM_OFFSET..PAGE_SIZE].copy_from_slice(sum.as_bytes());
    }
    for &(start, hash_at) in &l.chunks {
        let h = blake3::hash(&s[start..hash_at]);
        s[hash_at..hash_at + CHUNK_HASH_SIZE].copy_from_slice(h.as_bytes());
    }
    if let Some(t) = l.trailer.filter(|&t| t + TRAILER_SIZE <= s.len()) {
        let h = blake3::hash(&s[..t + 32]);
        s[t + 32..t + TRAILER_SIZE].copy_from_slice(h.as_bytes());
    }
}

/// A mutation of one entry (recompute mode only), `at` choosing it among the entries as the
/// stream is laid out now: 6 its page number changed (XOR'd with a small value: order,
/// duplicates, pages below 4; or raised by a power of two: past the page count, past the free
/// pages restore lists); 7 the same, moved as a forger would, every reference following it and
/// the header's page count raised to cover it; 8 two entries swapped, page numbers and all.
fn entry_op(s: &mut [u8], kind: u8, at: usize, v: u8) {
    let l = layout(s);
    let n = l.entries.len();
    if n == 0 {
        return;
    }
    let e = l.entries[at % n];
    if kind == 8 {
        let other = l.entries[(at + 1 + usize::from(v)) % n];
        if other != e {
            let piece = s[e..e + CHUNK_ENTRY_SIZE].to_vec();
            s.copy_within(other..other + CHUNK_ENTRY_SIZE, e);
            s[other..other + CHUNK_ENTRY_SIZE].copy_from_slice(&piece);
        }
        return;
    }
    let (Some(old), Some(tag)) = (get_u64(s, e), get_array::<TAG_SIZE>(s, e + 8 + TAG_OFFSET)) else { return };
    let new = if v < 128 { old ^ u64::from(v) } else { old.wrapping_add(1 << (v % 34)) };
    put_u64(s, e, new);
    if kind == 7 {
        let mut from = [0u8; REF_PREFIX];
        from[..8].copy_from_slice(&old.to_le_bytes());
        from[8..].copy_from_slice(&tag);
        let mut to = from;
        to[..8].copy_from_slice(&new.to_le_bytes());
        for &x in &l.entries {
            replace_all(&mut s[x + 8..x + 8 + PAYLOAD_SIZE], &from, &to);
        }
        replace_all(&mut s[B_CATALOG_OFFSET..B_CATALOG_OFFSET + REF_PREFIX], &from, &to);
        if get_u64(s, B_PAGE_COUNT_OFFSET).is_some_and(|c| new >= c) {
            put_u64(s, B_PAGE_COUNT_OFFSET, new.saturating_add(1));
        }
    }
}

/// The stream `base` mutated by `data`, six bytes a mutation; `entry_ops` adds `entry_op`'s.
fn mutate(base: &[u8], data: &[u8], entry_ops: bool) -> Vec<u8> {
    let mut s = base.to_vec();
    let kinds = if entry_ops { 9 } else { 6 };
    for op in data.chunks(6) {
        if op.len() < 6 || s.is_empty() {
            break;
        }
        let at = u32::from_le_bytes([op[1], op[2], op[3], op[4]]) as usize % s.len();
        match op[0] % kinds {
            0 => s[at] ^= 1 << (op[5] % 8),
            1 => s[at] = op[5],
            2 => s.truncate(at),
            3 => s.extend(std::iter::repeat_n(op[5], (op[5] as usize % 64) + 1)),
            4 => {
                let len = (op[5] as usize * 64).min(s.len() - at);
                let piece = s[at..at + len].to_vec();
                s.extend(piece);
            }
            5 => {
                let len = (op[5] as usize * 16).min(s.len() - at);
                let piece: Vec<u8> = s.drain(at..at + len).collect();
                let to = (at / 2).min(s.len());
                s.splice(to..to, piece);
            }
            k => entry_op(&mut s, k, at, op[5]),
        }
    }
    s
}

/// A database restored from a forged stream: `check` and a read of every record (at most
/// `MAX_FORGED_RECORDS`) end with a result or an error `ok` accepts.
fn read_forged(db: &crate::Db, ok: &dyn Fn(&Error) -> bool) {
    if let Err(e) = db.check() {
        assert!(ok(&e), "check of a restored forgery: untyped error {e:?}");
    }
    let mut left = MAX_FORGED_RECORDS;
    for name in db.tree_names() {
        let t = match db.open_tree(&name) {
            Ok(t) => t,
            // A name no tree may have (longer than a key) is refused by its length alone.
            Err(Error::KeyTooLarge { .. }) if name.len() > crate::MAX_KEY_LEN => continue,
            Err(e) => {
                assert!(ok(&e), "open_tree of a restored forgery: untyped error {e:?}");
                continue;
            }
        };
        for r in t.iter() {
            if let Err(e) = r {
                assert!(ok(&e), "read of a restored forgery: untyped error {e:?}");
                break;
            }
            left -= 1;
            if left == 0 {
                return;
            }
        }
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let flags = data.first().copied().unwrap_or(0);
    let (recomputed, plaintext) = (flags & RECOMPUTE != 0, flags & PLAINTEXT != 0);
    let f = fixture(plaintext);
    let mut stream = match data.first() {
        Some(_) if flags & RAW != 0 => data[1..].to_vec(),
        Some(_) => mutate(&f.stream, &data[1..], recomputed),
        None => f.stream.clone(),
    };
    if recomputed {
        recompute(&mut stream);
    }
    let unmodified = stream == f.stream;
    // Nothing authenticates a plaintext stream: recomputed, it may restore to other records.
    let forged = recomputed && get_u16(&stream, B_FLAGS_OFFSET).is_some_and(|b| b & FLAG_ENCRYPTED == 0);
    // `Unsupported` in the new modes: a plaintext page beyond the free pages restore lists.
    let new_mode = recomputed || plaintext;
    let ok = |e: &Error| typed(e) || (new_mode && matches!(e, Error::Unsupported(_)));
    let creds = Credentials::passphrase(PASS);
    let shallow = backup::verify(Cursor::new(&stream), None, &mut |_| {});
    if let Err(e) = &shallow {
        assert!(ok(e), "verify without key: untyped error {e:?}");
        assert!(!matches!(e, Error::WrongKey { .. }), "verify without a key said WrongKey");
    }
    let deep = backup::verify(Cursor::new(&stream), Some(&creds), &mut |_| {});
    if let Err(e) = &deep {
        assert!(ok(e), "verify with key: untyped error {e:?}");
    }
    if unmodified {
        assert!(shallow.is_ok() && deep.is_ok(), "the unmodified stream does not verify");
    }
    let dir = std::env::temp_dir().join(format!("fv-fuzz-backup-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let dst = dir.join("restored.foldvault");
    let _ = std::fs::remove_file(&dst);
    match backup::restore(Cursor::new(&stream), &dst, &creds, RestoreOptions::default()) {
        Ok(_) => {
            // A plaintext database opens with a key given too (unused).
            let db = Config::new().file(&dst).passphrase(PASS).use_env(false).flush_every_ms(None).open();
            match db {
                // A forged stream may restore to a file whose structure does not open.
                Err(e) if forged && !unmodified => assert!(ok(&e), "open of a forged restore: untyped error {e:?}"),
                Err(e) => panic!("a restored database does not open: {e:?}"),
                Ok(db) if forged && !unmodified => read_forged(&db, &ok),
                Ok(db) => assert_eq!(contents(&db), f.records, "a restore that succeeds gives the source's records"),
            }
        }
        Err(e) => {
            assert!(ok(&e), "restore: untyped error {e:?}");
            assert!(!unmodified, "the unmodified stream does not restore: {e:?}");
            assert!(forged || shallow.is_err() || deep.is_err(), "verify passed but restore failed: {e:?}");
        }
    }
    let _ = std::fs::remove_file(&dst);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `recompute` leaves a sound stream as it is, and makes an edited plaintext page pass the
    /// unkeyed checks, so that the fuzzer's edits reach what lies behind them.
    #[test]
    fn recompute_keeps_a_sound_stream_and_lets_an_edit_through() {
        for plaintext in [false, true] {
            let mut s = fixture(plaintext).stream.clone();
            recompute(&mut s);
            assert!(s == fixture(plaintext).stream, "recompute changed a sound stream (plaintext {plaintext})");
        }
        let mut s = fixture(true).stream.clone();
        // A byte of the first entry's page, past its page header.
        s[4096 + CHUNK_HEADER_SIZE + 8 + 200] ^= 1;
        assert!(backup::verify(Cursor::new(&s), None, &mut |_| {}).is_err(), "the edit is caught unrecomputed");
        recompute(&mut s);
        assert!(backup::verify(Cursor::new(&s), None, &mut |_| {}).is_ok(), "the recomputed edit passes");
    }
}
