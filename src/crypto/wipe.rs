//! Wiping plaintext out of heap buffers before they are freed.
//!
//! Layer: crypto (used by every layer above that holds decrypted bytes). Invariant: a buffer
//! that held user plaintext (a decoded key or value, an opened page, a value handed to the
//! caller) is overwritten with zeros before its memory goes back to the allocator, so the next
//! allocation (in this process, or a core dump of it) cannot find it.
//!
//! Key material is not wiped here: keys use `zeroize` (volatile byte stores) inside locked
//! memory (`crypto::locked`). Plaintext buffers are larger and far more numerous, so this wipe
//! is a plain `memset` kept alive by an optimisation barrier: `std::hint::black_box` receives
//! the buffer after the fill, so the compiler must assume the zeros are read and cannot drop
//! them as dead stores. It runs at memset speed (about 10× faster than byte-wise volatile
//! stores on a 4 KiB page, see `examples/cache_wipe_cost.rs`).

/// Overwrites `buf` with zeros in a way the optimiser cannot remove.
#[inline]
pub fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(buf);
}

/// Overwrites the whole allocation of `v` (spare capacity included) with zeros, then empties it.
#[inline]
pub fn wipe_vec(v: &mut Vec<u8>) {
    v.fill(0);
    v.spare_capacity_mut().fill(std::mem::MaybeUninit::new(0));
    v.clear();
    std::hint::black_box(v);
}

/// Appends `data` to `v`; when `v` must grow, its old allocation is wiped before it is freed
/// (a plain `extend` would hand the old bytes back to the allocator as they are). Growth
/// doubles, but never past `total`, the length the caller will end with (when it is known).
pub fn extend_wiping(v: &mut Vec<u8>, data: &[u8], total: usize) {
    grow_wiping(v, data.len(), total);
    v.extend_from_slice(data);
}

/// Overwrites the spare capacity of `v` with zeros: the bitwise copies that `Vec::remove`,
/// `split_off` or `drain` leave behind past the length (for a vector of key prefixes).
#[inline]
pub fn wipe_spare<T>(v: &mut Vec<T>) {
    v.spare_capacity_mut().iter_mut().for_each(|s| *s = std::mem::MaybeUninit::zeroed());
    std::hint::black_box(v);
}

/// Makes room for `additional` more elements; when `v` must grow, its old allocation (which
/// would still hold a bitwise copy of every element) is wiped before it is freed.
pub fn reserve_wiping<T>(v: &mut Vec<T>, additional: usize) {
    grow_wiping(v, additional, usize::MAX);
}

/// Room for `additional` more elements in a new allocation (at least double, at most `cap`
/// unless more is needed), the old one wiped whole before it is freed.
fn grow_wiping<T>(v: &mut Vec<T>, additional: usize, cap: usize) {
    if v.capacity() - v.len() >= additional {
        return;
    }
    let need = v.len().saturating_add(additional);
    let mut bigger = Vec::with_capacity(v.capacity().saturating_mul(2).max(4).min(cap).max(need));
    bigger.append(v);
    wipe_spare(v);
    *v = bigger;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_wiping_grows_to_the_total_at_most() {
        let mut v = Vec::with_capacity(4);
        for chunk in [&b"abcd"[..], b"efgh", b"ij"] {
            extend_wiping(&mut v, chunk, 10);
        }
        assert_eq!(v, b"abcdefghij");
        assert!((10..16).contains(&v.capacity()), "grew past the total: {}", v.capacity());
    }

    #[test]
    fn reserve_wiping_keeps_elements_in_order() {
        let mut v: Vec<Vec<u8>> = Vec::with_capacity(1);
        for i in 0..40u8 {
            reserve_wiping(&mut v, 1);
            v.insert(0, vec![i]);
        }
        assert_eq!(v.len(), 40);
        assert!(v.iter().rev().enumerate().all(|(i, e)| e == &[i as u8]));
        v.truncate(3);
        wipe_spare(&mut v);
        assert_eq!(v, vec![vec![39], vec![38], vec![37]]);
    }

    #[test]
    fn wipe_vec_empties_and_keeps_the_allocation() {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&[0xEE; 48]);
        v.truncate(16);
        wipe_vec(&mut v);
        assert!(v.is_empty());
        assert_eq!(v.capacity(), 64);
        let mut w = vec![0xEEu8; 32];
        wipe(&mut w);
        assert!(w.iter().all(|b| *b == 0));
    }
}
