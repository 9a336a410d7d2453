//! Key order and binary search over key prefixes, shared by decoded nodes (`node`) and raw
//! pages (`raw`).
//!
//! A key's prefix is its first 8 bytes read as a big-endian integer, zero-padded: prefixes
//! order as the keys do, so a search compares integers kept side by side and reads a key only
//! when two prefixes tie. Prefixes are plaintext: whoever keeps an array of them wipes it.

/// Byte-wise key order (as `<[u8]>::cmp`), compared eight bytes at a time as big-endian
/// integers: the search paths compare short keys millions of times, and a `memcmp` call per
/// comparison was a quarter of a cached lookup (and, for the tie a found key always ends in,
/// 9% of a cached `get`). Keys longer than `WORDWISE` bytes past the first word fall back to
/// `memcmp` for the rest.
#[inline]
pub(crate) fn compare_keys(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    const WORDWISE: usize = 32;
    let (mut a, mut b) = (a, b);
    for _ in 0..=WORDWISE / 8 {
        match key_prefix(a).cmp(&key_prefix(b)) {
            std::cmp::Ordering::Equal => {}
            o => return o,
        }
        // Equal words: if either key ended within it, the shorter key is a prefix of the other
        // (the missing bytes compared as zeros, and the other's were zeros).
        if a.len() <= 8 || b.len() <= 8 {
            return a.len().cmp(&b.len());
        }
        (a, b) = (&a[8..], &b[8..]);
    }
    a.cmp(b)
}

/// Binary search for `key` among sorted keys whose `key_prefix`es are `prefixes`: compares
/// prefixes and reads a key (`key_at`) only when they tie. `Ok(index)` of an equal key, or
/// `Err(index)` where `key` would go.
pub(crate) fn search_prefixed<'k>(
    prefixes: &[u64],
    key_at: impl Fn(usize) -> Option<&'k [u8]>,
    key: &[u8],
) -> std::result::Result<usize, usize> {
    let p = key_prefix(key);
    let (mut lo, mut hi) = (0, prefixes.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let ord = match prefixes.get(mid).map(|q| q.cmp(&p)) {
            Some(std::cmp::Ordering::Equal) | None => {
                key_at(mid).map_or(std::cmp::Ordering::Greater, |k| compare_keys(k, key))
            }
            Some(o) => o,
        };
        match ord {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

/// The shortest separator between two neighbouring leaves: the shortest prefix of
/// `right_first` that sorts above `left_last` (`left_last < right_first`). Any key `s` with
/// `left_last < s <= right_first` routes every key of both leaves as the full key would, and a
/// branch holds more children the shorter its separators are: for FoldDB's `atom:{uuid}` keys
/// about 9 bytes of 37-41 (suffix truncation, as in prefix B-trees). The copy is the caller's to
/// wipe (`Branch::insert_key` does). Keys out of order give `right_first` whole.
pub(crate) fn shortest_separator(left_last: &[u8], right_first: &[u8]) -> Vec<u8> {
    let common = left_last.iter().zip(right_first).take_while(|(a, b)| a == b).count();
    let cut = (common + 1).min(right_first.len());
    let sep = &right_first[..cut];
    if sep > left_last { sep.to_vec() } else { right_first.to_vec() }
}

/// The first 8 bytes of a key as a big-endian number, zero-padded on the right when shorter:
/// prefixes order as the keys do, and equal prefixes fall through to the full comparison.
#[inline]
pub(crate) fn key_prefix(k: &[u8]) -> u64 {
    if let Some(head) = k.first_chunk::<8>() {
        return u64::from_be_bytes(*head);
    }
    k.iter().enumerate().fold(0u64, |p, (i, b)| p | (u64::from(*b) << (56 - 8 * i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_keys_is_byte_order() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"\0",
            b"\0\0",
            b"a",
            b"a\0",
            b"ab",
            b"abcdefg",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            b"abcdefgi",
            b"\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\0",
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(compare_keys(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn separators_are_short_and_between() {
        assert_eq!(shortest_separator(b"atom:3fa2", b"atom:3fb0"), b"atom:3fb");
        assert_eq!(shortest_separator(b"ab", b"abc"), b"abc");
        assert_eq!(shortest_separator(b"", b"x"), b"x");
        assert_eq!(shortest_separator(b"a", b"b\xff\xff"), b"b");
        // Out of order (never asked for): the right key whole.
        assert_eq!(shortest_separator(b"b", b"a"), b"a");
    }

    proptest::proptest! {
        /// Keys over a three-letter alphabet (zero, one, 0xff) and lengths around the word and
        /// `WORDWISE` boundaries, where ties and zero padding decide.
        #[test]
        fn compare_keys_agrees_with_slice_order(
            a in proptest::collection::vec(proptest::sample::select(vec![0u8, 1, 0xff]), 0..50),
            b in proptest::collection::vec(proptest::sample::select(vec![0u8, 1, 0xff]), 0..50),
            shared in 0usize..48,
        ) {
            proptest::prop_assert_eq!(compare_keys(&a, &b), a.cmp(&b));
            // The same, after a common head (the tie every found key ends in).
            let head: Vec<u8> = a.iter().chain(b.iter()).copied().cycle().take(shared).collect();
            let (x, y) = ([&head[..], &a[..]].concat(), [&head[..], &b[..]].concat());
            proptest::prop_assert_eq!(compare_keys(&x, &y), x.cmp(&y));
        }

        /// A separator lies above the left key and at or below the right one, and is a prefix
        /// of the right one.
        #[test]
        fn separator_lies_between(
            a in proptest::collection::vec(proptest::sample::select(vec![0u8, 1, 0xff]), 0..12),
            b in proptest::collection::vec(proptest::sample::select(vec![0u8, 1, 0xff]), 0..12),
        ) {
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            proptest::prop_assume!(lo < hi);
            let s = shortest_separator(&lo, &hi);
            proptest::prop_assert!(lo < s && s <= hi && hi.starts_with(&s), "{:?} {:?} {:?}", lo, s, hi);
        }
    }
}
