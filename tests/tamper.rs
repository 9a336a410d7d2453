//! The tamper matrix (SPEC.md §12) on real files: every row damages a copy of one encrypted
//! database on disk, reopens it, reads everything (iteration both ways over every tree, `get` of
//! every key written) and runs `Db::check`. Every outcome must be a typed error naming the page
//! where the row says so, a documented recovery, or a check problem naming the page — never a
//! panic and never wrong data (every value returned equals what was written at the commit the
//! database opened at).
//!
//! How pages are chosen: the payload of an encrypted page is opaque, so the fixture builds a
//! plaintext twin with the same deterministic workload and checks that its page roles
//! (`CheckReport::roles`), page count and commit sequence numbers equal the encrypted file's;
//! the twin's payload byte 0 then tells branch / leaf / overflow / free list, and its leaves
//! tell which keys live in which page (`tests/common/tamper_util.rs`).
//!
//! The workload has four durable commits; the newest (stage 4) touches only a one-record tree,
//! the catalog and the free list. Recovery at open descends only into pages written since the
//! previous durable commit, so damage to an older page is found when it is read, while damage
//! to what the newest commit wrote (catalog, free list, the newest commit record) makes open
//! fall back to the previous durable commit (SPEC.md §5.2, §12).
//!
//! `cargo test --test tamper -- --nocapture` prints the matrix.

#[path = "common/tamper_cases.rs"]
mod tamper_cases;
#[path = "common/tamper_trial.rs"]
mod tamper_trial;
#[path = "common/tamper_util.rs"]
mod tamper_util;

use std::collections::BTreeSet;
use std::path::Path;

use foldvault::format::header::{
    FILE_ID_OFFSET, GENERATION_OFFSET, MAC_OFFSET, SLOT_SALT_OFFSET, SLOT_SIZE, SLOT_WRAPPED_OFFSET, SLOTS_END,
    SLOTS_OFFSET,
};
use foldvault::format::page::{EPOCH_OFFSET, NONCE_OFFSET, TAG_OFFSET};
use foldvault::{CorruptReason, Error, MasterKey};
use tamper_cases::*;
use tamper_trial::*;
use tamper_util::*;

#[test]
fn tamper_matrix() {
    let f = fixture();
    let pk = picks(f);
    let l = &f.layout;
    let [_s1, _s2, s3, s4] = [f.seqs[0], f.seqs[1], f.seqs[2], f.seqs[3]];
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<Case> = Vec::new();
    let c = |cases: &mut Vec<Case>, case: Case| cases.push(case);

    // --- header -------------------------------------------------------------------------
    c(
        &mut cases,
        Case::new(
            "bit flip in header copy A (file id byte)",
            "copy B used, A repaired",
            flip(0, FILE_ID_OFFSET + 3),
            Box::new(move |o, path| {
                clean(s4)(o, path)?;
                if o.header_repaired != Some(0) {
                    return Err(format!("header_repaired = {:?}, expected Some(0)", o.header_repaired));
                }
                if read_page(path, 0) != read_page(path, 1) {
                    return Err("copy A was not rewritten from copy B".into());
                }
                Ok(())
            }),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "bit flip in header copy B (key slot byte)",
            "copy A used, B repaired",
            flip(1, SLOTS_OFFSET + SLOT_WRAPPED_OFFSET),
            Box::new(move |o, path| {
                clean(s4)(o, path)?;
                if o.header_repaired != Some(1) {
                    return Err(format!("header_repaired = {:?}, expected Some(1)", o.header_repaired));
                }
                // Said repaired and rewritten: copy B is copy A again, byte for byte.
                if read_page(path, 1) != read_page(path, 0) {
                    return Err("copy B was not rewritten from copy A".into());
                }
                Ok(())
            }),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "header copy A zeroed",
            "copy B used, A repaired",
            Box::new(|p: &Path| write_page(p, 0, &[0u8; PAGE])),
            Box::new(move |o, path| {
                clean(s4)(o, path)?;
                if o.header_repaired != Some(0) {
                    return Err(format!("header_repaired = {:?}", o.header_repaired));
                }
                Ok(())
            }),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "bit flip in both header copies (byte 2000)",
            "Corrupt{0, HeaderChecksum}",
            Box::new(|p: &Path| {
                xor_byte(p, 2000, 1);
                xor_byte(p, PAGE as u64 + 2000, 1)
            }),
            open_error(|e| is_corrupt(e, Some(0), &[CorruptReason::HeaderChecksum]), "Corrupt{0, HeaderChecksum}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "magic byte changed in both header copies",
            "NotADatabase",
            Box::new(|p: &Path| {
                xor_byte(p, 0, 0x20);
                xor_byte(p, PAGE as u64, 0x20)
            }),
            open_error(|e| matches!(e, Error::NotADatabase), "NotADatabase"),
        ),
    );
    let both_fixed = |offset: usize, mask: u8| -> Mutate {
        Box::new(move |p: &Path| {
            for h in [0u64, 1] {
                xor_byte(p, h * PAGE as u64 + offset as u64, mask);
                fix_header_checksum(p, h);
            }
        })
    };
    // A slot whose wrap or binding was changed does not unwrap: a wrong key, never corruption
    // (SPEC §6.2), and never the header MAC (checked only after a slot opened).
    let wrongkey_or_mac = |o: &Outcome, _: &Path| match &o.open_err {
        Some(Error::WrongKey { .. }) => Ok(()),
        other => Err(format!("expected WrongKey, got {other:?}")),
    };
    c(
        &mut cases,
        Case::new(
            "slot 0 wrapped-key byte changed, both copies, checksums recomputed",
            "WrongKey",
            both_fixed(SLOTS_OFFSET + SLOT_WRAPPED_OFFSET + 5, 0x80),
            Box::new(wrongkey_or_mac),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "slot 0 salt byte changed, both copies, checksums recomputed",
            "WrongKey",
            both_fixed(SLOTS_OFFSET + SLOT_SALT_OFFSET, 0x01),
            Box::new(wrongkey_or_mac),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "slot 0 moved to slot 1, both copies, checksums recomputed",
            "WrongKey (AAD binds the slot index)",
            Box::new(|p: &Path| {
                for h in [0u64, 1] {
                    let mut page = read_page(p, h);
                    let slot: Vec<u8> = page[SLOTS_OFFSET..SLOTS_OFFSET + SLOT_SIZE].to_vec();
                    page[SLOTS_OFFSET + SLOT_SIZE..SLOTS_OFFSET + 2 * SLOT_SIZE].copy_from_slice(&slot);
                    page[SLOTS_OFFSET..SLOTS_OFFSET + SLOT_SIZE].fill(0);
                    write_page(p, h, &page);
                    fix_header_checksum(p, h);
                }
            }),
            Box::new(wrongkey_or_mac),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "file id changed, both copies, checksums recomputed",
            "WrongKey (slot AAD) or HeaderMac",
            both_fixed(FILE_ID_OFFSET, 0x01),
            Box::new(wrongkey_or_mac),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "header generation changed, both copies, checksums recomputed",
            "Corrupt{0, HeaderMac}",
            both_fixed(GENERATION_OFFSET, 0x01),
            open_error(|e| is_corrupt(e, Some(0), &[CorruptReason::HeaderMac]), "Corrupt{0, HeaderMac}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "header MAC byte changed, both copies, checksums recomputed",
            "Corrupt{0, HeaderMac}",
            both_fixed(MAC_OFFSET + 7, 0x01),
            open_error(|e| is_corrupt(e, Some(0), &[CorruptReason::HeaderMac]), "Corrupt{0, HeaderMac}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "reserved header byte (gap after the slots) changed, both copies, checksums recomputed",
            "Corrupt{0, HeaderMac} (§2: every byte before the MAC is authenticated)",
            both_fixed(SLOTS_END + 100, 0x01),
            open_error(|e| is_corrupt(e, Some(0), &[CorruptReason::HeaderMac]), "Corrupt{0, HeaderMac}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "unused header tail (byte 4040) flipped in both copies",
            "ignored (covered by nothing)",
            Box::new(|p: &Path| {
                xor_byte(p, 4040, 1);
                xor_byte(p, PAGE as u64 + 4040, 1)
            }),
            clean(s4),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "copy A only: slot byte changed, checksum recomputed",
            "WrongKey (A is chosen; B not tried)",
            Box::new(|p: &Path| {
                xor_byte(p, (SLOTS_OFFSET + SLOT_WRAPPED_OFFSET) as u64, 0x01);
                fix_header_checksum(p, 0);
            }),
            open_error(|e| matches!(e, Error::WrongKey { .. }), "WrongKey"),
        ),
    );

    // --- commit records -------------------------------------------------------------------
    let (newest, older) = (pk.newest_slot, pk.older_slot);
    c(
        &mut cases,
        Case::new(
            format!("bit flip in newest commit record (page {newest})"),
            "slot ignored; previous durable commit",
            flip(newest, 200),
            fell_back(s3, None, Some(vec![newest])),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("bit flip in older commit record (page {older})"),
            "slot ignored; newest commit",
            flip(older, 30),
            Box::new(move |o, path| {
                // Opens at the newest commit; `was_recovered()` reports the rejected slot.
                clean_recovered(s4)(o, path)?;
                if o.rejected_slots != vec![older] {
                    return Err(format!("rejected_slots {:?}", o.rejected_slots));
                }
                Ok(())
            }),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "bit flip in both commit records",
            "Corrupt{2, NoValidCommit}",
            Box::new(move |p: &Path| {
                xor_byte(p, 2 * PAGE as u64 + 64, 1);
                xor_byte(p, 3 * PAGE as u64 + 64, 1)
            }),
            open_error(|e| is_corrupt(e, Some(2), &[CorruptReason::NoValidCommit]), "Corrupt{2, NoValidCommit}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "both commit records zeroed",
            "Corrupt{2, NoValidCommit}",
            Box::new(move |p: &Path| {
                write_page(p, 2, &[0; PAGE]);
                write_page(p, 3, &[0; PAGE])
            }),
            open_error(|e| is_corrupt(e, Some(2), &[CorruptReason::NoValidCommit]), "Corrupt{2, NoValidCommit}"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "commit record pages 2 and 3 swapped",
            "Corrupt{2, NoValidCommit} (AAD binds the slot)",
            Box::new(move |p: &Path| {
                let (a, b) = (read_page(p, 2), read_page(p, 3));
                write_page(p, 2, &b);
                write_page(p, 3, &a)
            }),
            open_error(|e| is_corrupt(e, Some(2), &[CorruptReason::NoValidCommit]), "Corrupt{2, NoValidCommit}"),
        ),
    );

    // --- data pages: bit flips ---------------------------------------------------------------
    c(
        &mut cases,
        Case::new(
            format!("bit flip in catalog page {} (written by the newest commit)", pk.catalog),
            "newest commit fails recovery; previous one opened",
            flip(pk.catalog, 100),
            fell_back(s3, Some(true), None),
        ),
    );
    let leaf_keys = keys_of(SMALL, l.pages[pk.small_leaf as usize].keys.clone());
    c(
        &mut cases,
        Case::new(
            format!("bit flip in leaf {} of 'small' ({} keys)", pk.small_leaf, leaf_keys.len()),
            "Corrupt{leaf, SealMismatch} on its keys only",
            flip(pk.small_leaf, 100),
            damaged(s4, [pk.small_leaf].into(), vec![CorruptReason::SealMismatch], leaf_keys.clone()),
        ),
    );
    let below = keys_of(WIDE, l.keys_below(pk.wide_branch));
    c(
        &mut cases,
        Case::new(
            format!("bit flip in inner branch {} of 'wide' ({} keys below)", pk.wide_branch, below.len()),
            "Corrupt{branch, SealMismatch} on keys below it only",
            flip(pk.wide_branch, 40),
            damaged(s4, [pk.wide_branch].into(), vec![CorruptReason::SealMismatch], below),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("bit flip in root branch {} of 'small'", pk.small_root),
            "opens (recovery reads only pages newer than the last durable commit); Corrupt{root, SealMismatch} on that tree's keys only",
            flip(pk.small_root, 100),
            damaged(
                s4,
                [pk.small_root].into(),
                vec![CorruptReason::SealMismatch],
                keys_of(SMALL, l.keys_below(pk.small_root)),
            ),
        ),
    );
    let (otree, okey) = pk.overflow_owner.clone();
    c(
        &mut cases,
        Case::new(
            format!("bit flip in overflow page {} (3rd page of a 20 KiB value)", pk.overflow),
            "Corrupt{overflow, SealMismatch} on that value only",
            flip(pk.overflow, 2000),
            damaged(s4, [pk.overflow].into(), vec![CorruptReason::SealMismatch], keys_of(&otree, [okey.clone()])),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("bit flip in free-list page {} (written by the newest commit)", pk.freelist),
            "newest commit fails recovery; previous one opened",
            flip(pk.freelist, 50),
            fell_back(s3, Some(true), None),
        ),
    );
    c(
        &mut cases,
        Case::new(format!("bit flip in free page {}", pk.free), "harmless, undetected", flip(pk.free, 100), clean(s4)),
    );
    c(
        &mut cases,
        Case::new(
            format!("bit flip in leaf {}'s tag", pk.small_leaf),
            "Corrupt{leaf, SealMismatch}",
            flip(pk.small_leaf, TAG_OFFSET + 3),
            damaged(s4, [pk.small_leaf].into(), vec![CorruptReason::SealMismatch], leaf_keys.clone()),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("bit flip in leaf {}'s nonce", pk.small_leaf),
            "Corrupt{leaf, SealMismatch}",
            flip(pk.small_leaf, NONCE_OFFSET + 3),
            damaged(s4, [pk.small_leaf].into(), vec![CorruptReason::SealMismatch], leaf_keys.clone()),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("epoch field of leaf {} raised to 1", pk.small_leaf),
            "Corrupt{leaf, UnknownEpoch | SealMismatch}",
            Box::new(move |p: &Path| {
                write_at(p, pk.small_leaf * PAGE as u64 + EPOCH_OFFSET as u64, &1u32.to_le_bytes())
            }),
            damaged(
                s4,
                [pk.small_leaf].into(),
                vec![CorruptReason::UnknownEpoch, CorruptReason::SealMismatch],
                leaf_keys.clone(),
            ),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("leaf {} zeroed", pk.small_leaf),
            "Corrupt{leaf, SealMismatch}",
            Box::new(move |p: &Path| write_page(p, pk.small_leaf, &[0; PAGE])),
            damaged(s4, [pk.small_leaf].into(), vec![CorruptReason::SealMismatch], leaf_keys.clone()),
        ),
    );
    c(
        &mut cases,
        Case::new(
            format!("overflow page {} zeroed", pk.overflow),
            "Corrupt{overflow, SealMismatch}",
            Box::new(move |p: &Path| write_page(p, pk.overflow, &[0; PAGE])),
            damaged(s4, [pk.overflow].into(), vec![CorruptReason::SealMismatch], keys_of(&otree, [okey.clone()])),
        ),
    );

    // --- moved, foreign and stale pages ----------------------------------------------------
    let (a, b) = (pk.small_leaf, pk.small_leaf2);
    let mut ab_keys = leaf_keys.clone();
    ab_keys.extend(keys_of(SMALL, l.pages[b as usize].keys.clone()));
    c(
        &mut cases,
        Case::new(
            format!("leaves {a} and {b} of 'small' swapped"),
            "Corrupt{page, SealMismatch} (AAD binds the page number)",
            Box::new(move |p: &Path| {
                let (x, y) = (read_page(p, a), read_page(p, b));
                write_page(p, a, &y);
                write_page(p, b, &x)
            }),
            damaged(s4, [a, b].into(), vec![CorruptReason::SealMismatch], ab_keys),
        ),
    );
    let foreign_leaf = page_of(&f.foreign, pk.small_leaf);
    c(
        &mut cases,
        Case::new(
            format!("leaf {} replaced by page {} of another file, same master key", pk.small_leaf, pk.small_leaf),
            "Corrupt{leaf, SealMismatch} (AAD binds the file id)",
            Box::new(move |p: &Path| write_page(p, pk.small_leaf, &foreign_leaf)),
            damaged(s4, [pk.small_leaf].into(), vec![CorruptReason::SealMismatch], leaf_keys.clone()),
        ),
    );
    let foreign_rec = page_of(&f.foreign, newest);
    c(
        &mut cases,
        Case::new(
            "newest commit record replaced by another file's (same master key)",
            "slot ignored; previous durable commit",
            Box::new(move |p: &Path| write_page(p, newest, &foreign_rec)),
            fell_back(s3, None, Some(vec![newest])),
        ),
    );
    let (fh0, fh1) = (page_of(&f.foreign, 0), page_of(&f.foreign, 1));
    c(
        &mut cases,
        Case::new(
            "both header copies replaced by another file's (same master key)",
            "unlocks the other data key; no record opens: NoValidCommit",
            Box::new(move |p: &Path| {
                write_page(p, 0, &fh0);
                write_page(p, 1, &fh1)
            }),
            open_error(|e| is_corrupt(e, Some(2), &[CorruptReason::NoValidCommit]), "Corrupt{2, NoValidCommit}"),
        ),
    );
    if let Some((stale, overlapping)) = stale_leaf(f, &pk) {
        let old = page_of(&f.image_stage1, stale);
        let t = tree_name(l, stale);
        let keys = keys_of(&t, l.pages[stale as usize].keys.clone());
        let what = if overlapping { "an older version of the same leaf" } else { "an older page" };
        c(
            &mut cases,
            Case::new(
                format!("leaf {stale} of '{t}' replaced by its stage-1 bytes ({what})"),
                "Corrupt{leaf, TagMismatch} on its keys only",
                Box::new(move |p: &Path| write_page(p, stale, &old)),
                damaged(s4, [stale].into(), vec![CorruptReason::TagMismatch], keys),
            ),
        );
    } else {
        panic!("no stale-leaf candidate: the workload should reuse stage-1 page numbers");
    }
    // An old copy of a page of every other kind (test review: only leaves were put back one
    // at a time).
    let kinds = stale_of_each_kind(f);
    let found: Vec<&str> = kinds.iter().map(|(what, _)| *what).collect();
    assert!(found.len() >= 3, "the workload should rewrite pages of most kinds since stage 1: {found:?}");
    for (what, q) in kinds {
        let old = page_of(&f.image_stage1, q);
        c(
            &mut cases,
            Case::new(
                format!("{what} {q} replaced by its stage-1 bytes"),
                "Corrupt{page, TagMismatch}, or the previous commit, whole",
                Box::new(move |p: &Path| write_page(p, q, &old)),
                stale_pages([q].into(), s4),
            ),
        );
    }
    let stale_all = pages_stale_since_stage1(f);
    let stale_set: BTreeSet<u64> = stale_all.iter().copied().collect();
    let img1 = f.image_stage1.clone();
    let n_stale = stale_all.len();
    c(
        &mut cases,
        Case::new(
            format!("all {n_stale} live pages changed since stage 1 put back to their stage-1 bytes"),
            "Corrupt{one of them, TagMismatch|SealMismatch}",
            Box::new(move |p: &Path| {
                for &q in &stale_all {
                    write_page(p, q, &page_of(&img1, q));
                }
            }),
            stale_pages(stale_set, s4),
        ),
    );

    // --- length ---------------------------------------------------------------------------
    let len = f.image.len() as u64;
    let prev_pages = l.commits[1].page_count;
    let trunc_verdict = move |cut_to: u64| -> Verdict {
        if prev_pages * PAGE as u64 <= cut_to {
            fell_back(s3, Some(true), None)
        } else {
            open_error(|e| matches!(e, Error::Truncated { .. }), "Truncated")
        }
    };
    let expect_trunc = |cut_to: u64| {
        if prev_pages * PAGE as u64 <= cut_to {
            "previous durable commit opened (only its pages cut)"
        } else {
            "Truncated (previous commit needs the cut pages too)"
        }
    };
    c(
        &mut cases,
        Case::new(
            "file truncated by one page",
            expect_trunc(len - PAGE as u64),
            Box::new(move |p: &Path| set_len(p, len - PAGE as u64)),
            trunc_verdict(len - PAGE as u64),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "file truncated by one byte",
            expect_trunc(len - 1),
            Box::new(move |p: &Path| set_len(p, len - 1)),
            trunc_verdict(len - 1),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "file truncated to 3 pages",
            "Truncated",
            Box::new(move |p: &Path| set_len(p, 3 * PAGE as u64)),
            open_error(|e| matches!(e, Error::Truncated { .. }), "Truncated"),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "file truncated to 5000 bytes (inside header copy B)",
            "Truncated{8192, 5000}",
            Box::new(move |p: &Path| set_len(p, 5000)),
            open_error(|e| matches!(e, Error::Truncated { expected: 8192, found: 5000 }), "Truncated{8192, 5000}"),
        ),
    );
    let (grow_img, grow_models, g1, g2) = growing_db(dir.path());
    let grow_len = grow_img.len() as u64;
    c(
        &mut cases,
        Case::new(
            "small db whose newest commit grew the file, truncated by one page",
            "previous durable commit opened, was_recovered",
            Box::new(move |p: &Path| set_len(p, grow_len - PAGE as u64)),
            fell_back(g1, Some(true), None),
        )
        .with_source(grow_img.clone(), grow_models.clone()),
    );
    c(
        &mut cases,
        Case::new(
            "small db whose newest commit grew the file, truncated by one byte",
            "previous durable commit opened, was_recovered",
            Box::new(move |p: &Path| set_len(p, grow_len - 1)),
            fell_back(g1, Some(true), None),
        )
        .with_source(grow_img.clone(), grow_models.clone()),
    );
    c(
        &mut cases,
        Case::new("small db, untouched (control)", "opens at newest", Box::new(|_: &Path| {}), clean(g2))
            .with_source(grow_img, grow_models),
    );
    c(
        &mut cases,
        Case::new(
            "5000 random bytes appended",
            "ignored; check reports trailing_bytes",
            Box::new(|p: &Path| {
                let mut b = read_file(p);
                b.extend(Rng::new(99).bytes(5000));
                write_file(p, &b)
            }),
            Box::new(move |o, path| {
                clean(s4)(o, path)?;
                match &o.check {
                    Some(Ok(r)) if r.trailing_bytes == 5000 => Ok(()),
                    Some(Ok(r)) => Err(format!("trailing_bytes = {}", r.trailing_bytes)),
                    _ => Err("no check".into()),
                }
            }),
        ),
    );
    c(
        &mut cases,
        Case::new(
            "a valid page of this file appended as junk",
            "ignored; check reports trailing_bytes",
            Box::new(move |p: &Path| {
                let mut b = read_file(p);
                b.extend(page_of(&b.clone(), pk.small_leaf));
                write_file(p, &b)
            }),
            Box::new(move |o, path| {
                clean(s4)(o, path)?;
                match &o.check {
                    Some(Ok(r)) if r.trailing_bytes == PAGE as u64 => Ok(()),
                    _ => Err("trailing bytes not reported".into()),
                }
            }),
        ),
    );

    // --- keys -----------------------------------------------------------------------------
    let wrong_key = || open_error(|e| matches!(e, Error::WrongKey { .. }), "WrongKey");
    c(
        &mut cases,
        Case::new("wrong master key", "WrongKey", Box::new(|_: &Path| {}), wrong_key())
            .with_cfg(Box::new(|p: &Path| base().file(p).master_key(MasterKey::from_bytes([8; 32])))),
    );
    c(
        &mut cases,
        Case::new("passphrase given for a master-key file", "WrongKey", Box::new(|_: &Path| {}), wrong_key())
            .with_cfg(Box::new(|p: &Path| base().file(p).passphrase("not it"))),
    );
    c(
        &mut cases,
        Case::new("no key given", "WrongKey", Box::new(|_: &Path| {}), wrong_key())
            .with_cfg(Box::new(|p: &Path| base().file(p))),
    );
    c(&mut cases, Case::new("correct master key (control)", "opens at newest", Box::new(|_: &Path| {}), clean(s4)));
    let (pass_img, pass_models) = passphrase_db(dir.path());
    c(
        &mut cases,
        Case::new("wrong passphrase", "WrongKey", Box::new(|_: &Path| {}), wrong_key())
            .with_cfg(Box::new(|p: &Path| base().file(p).passphrase("wrong passphrase")))
            .with_source(pass_img.clone(), pass_models.clone()),
    );
    c(
        &mut cases,
        Case::new("master key given for a passphrase file", "WrongKey", Box::new(|_: &Path| {}), wrong_key())
            .with_cfg(Box::new(|p: &Path| master_cfg(p)))
            .with_source(pass_img.clone(), pass_models.clone()),
    );
    let pass_seq = *pass_models.keys().next().unwrap();
    c(
        &mut cases,
        Case::new("correct passphrase (control)", "opens", Box::new(|_: &Path| {}), clean(pass_seq))
            .with_cfg(Box::new(|p: &Path| pass_cfg(p)))
            .with_source(pass_img, pass_models),
    );

    let rows: Vec<Row> = cases.iter().enumerate().map(|(i, case)| run(dir.path(), i, case)).collect();
    print_matrix(
        &format!(
            "TAMPER MATRIX (encrypted, AES-256-GCM; {} pages, durable commits {:?}; newest = {s4}, previous = {s3})",
            l.page_count, f.seqs
        ),
        &rows,
    );
    let failed: Vec<String> =
        rows.iter().filter_map(|r| r.pass.as_ref().err().map(|e| format!("{}: {e}", r.attack))).collect();
    assert!(failed.is_empty(), "{} rows failed:\n{}", failed.len(), failed.join("\n"));
}
