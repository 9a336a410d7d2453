//! The named trees of one committed state, by name: what a snapshot holds and a transaction
//! edits. Layer: transactions and the public API (above the B-tree).
//!
//! Every commit makes a new map from its base's, and every write transaction starts from a
//! copy: a plain `BTreeMap` copied every name each time, so a one-record insert into a
//! database of 10,000 trees copied 10,000 names (limits review). Here a map is a shared,
//! immutable `base` and a small `recent` part holding what changed since (a `None` is a tree
//! removed): a copy clones `recent` alone. Once `recent` passes `FOLD_AT` plus the square
//! root of the base's size, an insert or a removal folds it into the base (a new one if a
//! copy shares it), so a commit costs O(√n) names amortised, not O(n).
//!
//! Invariants: a `None` in `recent` is only for a name `base` holds; `len` is the number of
//! names visible.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::btree::TreeRoot;

/// `recent` entries allowed before a fold, beyond the square root of the base's length.
const FOLD_AT: usize = 32;

/// A sorted map from tree name to root, cheap to copy (see the module's comment).
#[derive(Clone, Default)]
pub(crate) struct TreeMap {
    base: Arc<BTreeMap<Vec<u8>, TreeRoot>>,
    recent: BTreeMap<Vec<u8>, Option<TreeRoot>>,
    len: usize,
}

impl From<BTreeMap<Vec<u8>, TreeRoot>> for TreeMap {
    fn from(m: BTreeMap<Vec<u8>, TreeRoot>) -> TreeMap {
        TreeMap { len: m.len(), base: Arc::new(m), recent: BTreeMap::new() }
    }
}

impl TreeMap {
    pub(crate) fn get(&self, name: &[u8]) -> Option<&TreeRoot> {
        match self.recent.get(name) {
            Some(r) => r.as_ref(),
            None => self.base.get(name),
        }
    }

    pub(crate) fn contains_key(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sets `name`'s root; returns the one it replaced.
    pub(crate) fn insert(&mut self, name: Vec<u8>, root: TreeRoot) -> Option<TreeRoot> {
        let old = self.get(&name).copied();
        if old.is_none() {
            self.len += 1;
        }
        self.recent.insert(name, Some(root));
        self.fold_if_due();
        old
    }

    /// Removes `name`; returns its root.
    pub(crate) fn remove(&mut self, name: &[u8]) -> Option<TreeRoot> {
        let old = self.get(name).copied()?;
        self.len -= 1;
        if self.base.contains_key(name) {
            self.recent.insert(name.to_vec(), None);
            // Removals grow `recent` too: a run of drops made every later copy O(drops).
            self.fold_if_due();
        } else {
            self.recent.remove(name);
        }
        Some(old)
    }

    /// The roots of `names` that the map holds, mutable, in name order.
    pub(crate) fn roots_mut<'a>(
        &'a mut self,
        names: &'a BTreeSet<Vec<u8>>,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a mut TreeRoot)> + 'a {
        // Each held in `recent` first, where it can be changed.
        for n in names {
            if !self.recent.contains_key(n)
                && let Some(r) = self.base.get(n)
            {
                self.recent.insert(n.clone(), Some(*r));
            }
        }
        self.recent.iter_mut().filter(|(n, _)| names.contains(*n)).filter_map(|(n, r)| r.as_mut().map(|r| (n, r)))
    }

    /// Every name and root, in name order.
    pub(crate) fn iter(&self) -> Merged<'_> {
        Merged { base: self.base.iter().peekable(), recent: self.recent.iter().peekable() }
    }

    /// Every name and root, copied out in name order: for walks that change roots as they go
    /// (`insert` each changed one back).
    pub(crate) fn owned(&self) -> Vec<(Vec<u8>, TreeRoot)> {
        self.iter().map(|(n, r)| (n.clone(), *r)).collect()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.iter().map(|(n, _)| n)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &TreeRoot> {
        self.iter().map(|(_, r)| r)
    }

    fn fold_if_due(&mut self) {
        if self.recent.len() <= FOLD_AT + self.base.len().isqrt() {
            return;
        }
        // Copied only if another map (a snapshot, a transaction's copy) shares it.
        let base = Arc::make_mut(&mut self.base);
        for (n, r) in std::mem::take(&mut self.recent) {
            match r {
                Some(r) => base.insert(n, r),
                None => base.remove(&n),
            };
        }
    }
}

impl<'a> IntoIterator for &'a TreeMap {
    type Item = (&'a Vec<u8>, &'a TreeRoot);
    type IntoIter = Merged<'a>;
    fn into_iter(self) -> Merged<'a> {
        self.iter()
    }
}

/// `TreeMap::iter`: the base and the recent part merged by name, the recent one winning and
/// its removals left out.
pub(crate) struct Merged<'a> {
    base: std::iter::Peekable<std::collections::btree_map::Iter<'a, Vec<u8>, TreeRoot>>,
    recent: std::iter::Peekable<std::collections::btree_map::Iter<'a, Vec<u8>, Option<TreeRoot>>>,
}

impl<'a> Iterator for Merged<'a> {
    type Item = (&'a Vec<u8>, &'a TreeRoot);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.recent.peek()) {
                (None, None) => return None,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((b, _)), Some((r, _))) => b.cmp(r),
            };
            match order {
                std::cmp::Ordering::Less => return self.base.next(),
                // Replaced or removed by the recent entry.
                std::cmp::Ordering::Equal => _ = self.base.next(),
                std::cmp::Ordering::Greater => {}
            }
            if let Some((n, Some(r))) = self.recent.next() {
                return Some((n, r));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::Rng;

    fn root(n: u64) -> TreeRoot {
        TreeRoot { count: n, ..TreeRoot::default() }
    }

    /// Random inserts and removals, with copies taken and edited on their own, agree with a
    /// `BTreeMap` at every step, across folds.
    #[test]
    fn agrees_with_a_btreemap_across_folds_and_copies() {
        let mut rng = Rng(7);
        let mut model: BTreeMap<Vec<u8>, TreeRoot> = (0..300u32).map(|i| (i.to_be_bytes().to_vec(), root(1))).collect();
        let mut map = TreeMap::from(model.clone());
        let mut copies: Vec<(TreeMap, BTreeMap<Vec<u8>, TreeRoot>)> = Vec::new();
        for step in 0..5000u64 {
            let name = (rng.below(400) as u32).to_be_bytes().to_vec();
            match rng.below(3) {
                0 => assert_eq!(map.remove(&name).map(|r| r.count), model.remove(&name).map(|r| r.count)),
                _ => assert_eq!(
                    map.insert(name.clone(), root(step)).map(|r| r.count),
                    model.insert(name, root(step)).map(|r| r.count)
                ),
            }
            if step % 97 == 0 {
                copies.push((map.clone(), model.clone()));
            }
            assert_eq!(map.len(), model.len());
        }
        let same = |m: &TreeMap, b: &BTreeMap<Vec<u8>, TreeRoot>| {
            let got: Vec<(Vec<u8>, u64)> = m.iter().map(|(n, r)| (n.clone(), r.count)).collect();
            let want: Vec<(Vec<u8>, u64)> = b.iter().map(|(n, r)| (n.clone(), r.count)).collect();
            assert_eq!(got, want);
            for n in 0..400u32 {
                let n = n.to_be_bytes();
                assert_eq!(m.get(&n).map(|r| r.count), b.get(&n[..]).map(|r| r.count));
            }
        };
        same(&map, &model);
        for (m, b) in &copies {
            same(m, b);
        }
        let names: BTreeSet<Vec<u8>> = (0..400u32).step_by(7).map(|i| i.to_be_bytes().to_vec()).collect();
        for (n, r) in map.roots_mut(&names) {
            r.count = u64::MAX;
            model.get_mut(n).expect("held").count = u64::MAX;
        }
        same(&map, &model);
        assert!(map.recent.len() <= FOLD_AT + map.base.len().isqrt() + names.len());
    }

    /// A run of removals folds as a run of inserts does.
    #[test]
    fn removals_fold_too() {
        let mut map =
            TreeMap::from((0..10_000u32).map(|i| (i.to_be_bytes().to_vec(), root(1))).collect::<BTreeMap<_, _>>());
        for i in 0..5_000u32 {
            map.remove(&i.to_be_bytes());
            assert!(map.recent.len() <= FOLD_AT + map.base.len().isqrt() + 1, "{} recent after {i}", map.recent.len());
        }
        assert_eq!(map.len(), 5_000);
        assert_eq!(map.keys().next(), Some(&5_000u32.to_be_bytes().to_vec()));
    }
}
