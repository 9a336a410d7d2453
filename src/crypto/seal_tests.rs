use super::*;
use crate::format::PAGE_SIZE;

fn sealers() -> Vec<(&'static str, PageSealer)> {
    let fid = [9u8; 16];
    #[allow(unused_mut)]
    let mut v = vec![
        ("plain", PageSealer::plaintext(fid)),
        (
            "aes-gcm",
            PageSealer::encrypted(
                fid,
                CipherId::Aes256Gcm,
                CipherBackend::RustCrypto,
                DataKeys::single(SecretKey::from_bytes([3; 32])),
                10,
            ),
        ),
    ];
    #[cfg(feature = "aws-lc")]
    v.push((
        "aws-lc",
        PageSealer::encrypted(
            fid,
            CipherId::Aes256Gcm,
            CipherBackend::AwsLc,
            DataKeys::single(SecretKey::from_bytes([3; 32])),
            10,
        ),
    ));
    #[cfg(feature = "ring")]
    v.push((
        "ring",
        PageSealer::encrypted(
            fid,
            CipherId::Aes256Gcm,
            CipherBackend::Ring,
            DataKeys::single(SecretKey::from_bytes([3; 32])),
            10,
        ),
    ));
    #[cfg(feature = "chacha")]
    v.push((
        "chacha",
        PageSealer::encrypted(
            fid,
            CipherId::ChaCha20Poly1305,
            CipherBackend::RustCrypto,
            DataKeys::single(SecretKey::from_bytes([3; 32])),
            10,
        ),
    ));
    v
}

fn sample() -> Box<PageBuf> {
    let mut b = Box::new([0u8; PAGE_SIZE]);
    for (i, x) in b[..PAYLOAD_SIZE].iter_mut().enumerate() {
        *x = (i * 7 + 3) as u8;
    }
    b
}

#[test]
fn round_trip_every_mode() {
    for (name, s) in sealers() {
        let orig = sample();
        let mut b = orig.clone();
        let tag = s.seal(KeyPurpose::Page, 42, 0, &mut b).unwrap();
        if s.is_encrypted() {
            assert_ne!(&b[..PAYLOAD_SIZE], &orig[..PAYLOAD_SIZE], "{name}");
        }
        let (t2, e) = s.open(KeyPurpose::Page, 42, &mut b).unwrap();
        assert!(tag.ct_eq(&t2));
        assert_eq!(e, 0);
        assert_eq!(&b[..PAYLOAD_SIZE], &orig[..PAYLOAD_SIZE], "{name}");
    }
}

/// Every one of the 32,768 single-bit flips of a sealed page is rejected.
#[test]
fn every_single_bit_flip_is_rejected() {
    for (name, s) in sealers() {
        let mut sealed = sample();
        s.seal(KeyPurpose::Page, 7, 1, &mut sealed).unwrap();
        let mut b = Box::new([0u8; PAGE_SIZE]);
        for bit in 0..PAGE_SIZE * 8 {
            b.copy_from_slice(&sealed[..]);
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(s.open(KeyPurpose::Page, 7, &mut b).is_err(), "{name}: flip of bit {bit} accepted");
        }
    }
}

#[test]
fn page_bound_to_position_file_and_purpose() {
    for (name, s) in sealers() {
        let mut b = sample();
        s.seal(KeyPurpose::Page, 5, 0, &mut b).unwrap();
        let mut moved = b.clone();
        assert!(
            matches!(
                s.open(KeyPurpose::Page, 6, &mut moved),
                Err(Error::Corrupt { page: 6, reason: CorruptReason::SealMismatch })
            ),
            "{name}"
        );
        if s.is_encrypted() {
            let mut c = b.clone();
            assert!(s.open(KeyPurpose::Commit, 5, &mut c).is_err(), "{name}");
        }
    }
    // Same key, different file id: a page from file A does not open in file B.
    let a = PageSealer::encrypted(
        [1; 16],
        CipherId::Aes256Gcm,
        CipherBackend::RustCrypto,
        DataKeys::single(SecretKey::from_bytes([3; 32])),
        0,
    );
    let b = PageSealer::encrypted(
        [2; 16],
        CipherId::Aes256Gcm,
        CipherBackend::RustCrypto,
        DataKeys::single(SecretKey::from_bytes([3; 32])),
        0,
    );
    let mut p = sample();
    a.seal(KeyPurpose::Page, 5, 0, &mut p).unwrap();
    assert!(b.open(KeyPurpose::Page, 5, &mut p).is_err());
}

/// A sealer whose epoch limit is 2.
fn sealer_to_epoch_2() -> PageSealer {
    PageSealer::encrypted(
        [1; 16],
        CipherId::Aes256Gcm,
        CipherBackend::RustCrypto,
        DataKeys::single(SecretKey::from_bytes([3; 32])),
        2,
    )
}

#[test]
fn hostile_epoch_is_refused_without_deriving() {
    let s = sealer_to_epoch_2();
    let mut p = sample();
    s.seal(KeyPurpose::Page, 5, 2, &mut p).unwrap();
    p[EPOCH_OFFSET..EPOCH_OFFSET + 4].copy_from_slice(&999u32.to_le_bytes());
    assert!(matches!(
        s.open(KeyPurpose::Page, 5, &mut p),
        Err(Error::Corrupt { reason: CorruptReason::UnknownEpoch, .. })
    ));
}

/// The epoch limit holds for an epoch whose AEAD is already built: once it is lowered (recovery
/// falling back from a newer commit record to an older one), pages of the newer epoch are
/// refused, not opened with the cached AEAD.
#[test]
fn a_lowered_epoch_limit_refuses_an_epoch_already_in_use() {
    let s = sealer_to_epoch_2();
    let mut p = sample();
    s.seal(KeyPurpose::Page, 5, 2, &mut p).unwrap();
    let sealed = p.clone();
    s.open(KeyPurpose::Page, 5, &mut p).unwrap();
    s.set_max_epoch(1);
    let mut p = sealed;
    assert!(matches!(
        s.open(KeyPurpose::Page, 5, &mut p),
        Err(Error::Corrupt { reason: CorruptReason::UnknownEpoch, .. })
    ));
}

/// Plaintext pages obey the epoch limit too: a page whose epoch field names an epoch above the
/// commit record's, with its CRC made to match, is refused.
#[test]
fn a_plaintext_page_above_the_epoch_limit_is_refused() {
    let s = PageSealer::plaintext([3; 16]);
    s.set_max_epoch(1);
    let mut p = sample();
    s.seal(KeyPurpose::Page, 5, 1, &mut p).unwrap();
    let mut ok = p.clone();
    assert_eq!(s.open(KeyPurpose::Page, 5, &mut ok).unwrap().1, 1);
    s.seal(KeyPurpose::Page, 5, 2, &mut p).unwrap();
    assert!(matches!(
        s.open(KeyPurpose::Page, 5, &mut p),
        Err(Error::Corrupt { page: 5, reason: CorruptReason::UnknownEpoch })
    ));
}

/// 1,000,000 seals never repeat a nonce.
#[test]
fn a_million_nonces_are_distinct() {
    let s = PageSealer::plaintext([0; 16]);
    let mut seen = std::collections::HashSet::with_capacity(1_000_000);
    let mut b = Box::new([0u8; PAGE_SIZE]);
    for _ in 0..1_000_000u32 {
        // Plaintext mode draws its nonce the same way; the CRC keeps this test fast.
        s.seal(KeyPurpose::Page, 4, 0, &mut b).unwrap();
        let (_, n, _) = trailer(&b);
        assert!(seen.insert(n), "repeated nonce");
    }
}

/// Every AES-GCM backend in this build opens every other's pages (and its own), and so does
/// every sealer that seals on one backend and opens on another.
#[test]
fn backends_open_each_others_pages() {
    let k = || DataKeys::single(SecretKey::from_bytes([3; 32]));
    let available = CipherBackend::available();
    let backends: Vec<CipherBackends> =
        available.iter().flat_map(|&seal| available.iter().map(move |&open| CipherBackends { seal, open })).collect();
    let sealers: Vec<PageSealer> =
        backends.iter().map(|b| PageSealer::encrypted([1; 16], CipherId::Aes256Gcm, *b, k(), 0)).collect();
    for (i, from) in sealers.iter().enumerate() {
        for (j, to) in sealers.iter().enumerate() {
            let orig = sample();
            let mut p = orig.clone();
            from.seal(KeyPurpose::Page, 9, 0, &mut p).unwrap();
            to.open(KeyPurpose::Page, 9, &mut p)
                .unwrap_or_else(|e| panic!("{:?} -> {:?}: {e}", backends[i], backends[j]));
            assert_eq!(&p[..PAYLOAD_SIZE], &orig[..PAYLOAD_SIZE]);
            // A flipped ciphertext bit is refused by every backend.
            let mut q = orig.clone();
            from.seal(KeyPurpose::Page, 9, 0, &mut q).unwrap();
            q[100] ^= 1;
            assert!(
                to.open(KeyPurpose::Page, 9, &mut q).is_err(),
                "{:?} -> {:?} took a flipped bit",
                backends[i],
                backends[j]
            );
        }
    }
}

/// In every build (ring, aws-lc, both, neither), the default backend is one the build has, and
/// a database sealed with it opens.
#[test]
fn the_default_backend_is_built_and_works() {
    let backend = CipherBackend::default();
    let pair = CipherBackends::default();
    for b in [backend, pair.seal, pair.open] {
        assert!(CipherBackend::available().contains(&b), "{b:?} is not in this build");
    }
    for backends in [CipherBackends::both(backend), pair] {
        let s = PageSealer::encrypted([1; 16], CipherId::Aes256Gcm, backends, DataKeys::single(SecretKey::random()), 0);
        let orig = sample();
        let mut p = orig.clone();
        s.seal(KeyPurpose::Page, 9, 0, &mut p).unwrap();
        assert_ne!(&p[..PAYLOAD_SIZE], &orig[..PAYLOAD_SIZE]);
        s.open(KeyPurpose::Page, 9, &mut p).unwrap();
        assert_eq!(&p[..PAYLOAD_SIZE], &orig[..PAYLOAD_SIZE]);
    }
}

/// A rotation's new key takes over its first epoch even when that epoch's AEAD was already
/// built from the old key: the page sealed after `add_next_key` opens under the new key only.
#[test]
fn a_new_key_replaces_an_aead_already_built_for_its_epoch() {
    let s = sealer_to_epoch_2();
    let mut p = sample();
    s.seal(KeyPurpose::Page, 5, 2, &mut p).unwrap(); // builds (Page, 2) from the old key
    s.add_next_key(2, SecretKey::from_bytes([4; 32]));
    let mut q = sample();
    s.seal(KeyPurpose::Page, 5, 2, &mut q).unwrap();
    let old_only = sealer_to_epoch_2();
    assert!(old_only.open(KeyPurpose::Page, 5, &mut q.clone()).is_err(), "sealed under the old key");
    let mut new_only = DataKeys::single(SecretKey::from_bytes([3; 32]));
    new_only.add_next(2, SecretKey::from_bytes([4; 32]));
    let fresh = PageSealer::encrypted([1; 16], CipherId::Aes256Gcm, CipherBackend::RustCrypto, new_only, 2);
    fresh.open(KeyPurpose::Page, 5, &mut q).unwrap();
    assert_eq!(&q[..PAYLOAD_SIZE], &sample()[..PAYLOAD_SIZE]);
}

/// Pages of a hundred epochs (a small seal budget over a long session, or a file read without
/// a commit record to bound its epochs): each seals and opens, and the sealer keeps at most
/// `MAX_AEADS` keyed AEADs, not one per epoch met.
#[test]
fn keyed_aeads_are_bounded_however_many_epochs_are_met() {
    for (name, s) in sealers().into_iter().filter(|(_, s)| s.is_encrypted()) {
        s.set_max_epoch(1000);
        for round in 0..2 {
            for epoch in 0..100u32 {
                let orig = sample();
                let mut b = orig.clone();
                s.seal(KeyPurpose::Page, 42, epoch, &mut b).unwrap();
                assert_eq!(s.open(KeyPurpose::Page, 42, &mut b).unwrap().1, epoch, "{name} {round}");
                assert_eq!(&b[..PAYLOAD_SIZE], &orig[..PAYLOAD_SIZE], "{name}");
                assert!(s.aeads.read().len() <= MAX_AEADS, "{name}");
            }
        }
    }
}
