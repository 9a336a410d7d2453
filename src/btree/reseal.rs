//! Re-sealing for a data-key rotation: copy-on-write every page of a tree still sealed under an
//! epoch older than the rotation's first epoch, so the commit seals it anew under the new key.

use super::node::{Node, Value};
use super::tx::TxPages;
use super::{MAX_DEPTH, overflow};
use crate::crypto::seal::trailer;
use crate::error::{CorruptReason, Error, PageNo, Result};
use crate::format::page::PageRef;

impl TxPages {
    fn epoch_of(&self, page: PageNo) -> Result<u32> {
        Ok(trailer(&*self.pager.read_raw(page)?).2)
    }

    /// Copies (at most `budget` more) pages of the tree at `root` that are sealed under an epoch
    /// below `below`. Returns whether anything was copied; `budget` is decremented per page.
    pub(crate) fn reseal_older(&mut self, root: &mut PageRef, below: u32, budget: &mut usize) -> Result<bool> {
        if root.is_none() || *budget == 0 {
            return Ok(false);
        }
        match self.reseal_rec(*root, below, budget, 0)? {
            Some(p) => {
                *root = PageRef::dirty(p);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Returns the node's new page if it (or anything below it) was copied.
    fn reseal_rec(&mut self, r: PageRef, below: u32, budget: &mut usize, depth: usize) -> Result<Option<PageNo>> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(r.page, CorruptReason::TooDeep));
        }
        let dirty = self.dirty.contains_key(&r.page);
        let node = match self.dirty.get(&r.page) {
            Some(n) => n.clone(),
            None => Node::decode(self.pager.read(r, None)?.payload(), r.page)?,
        };
        let mut me = if dirty { Some(r.page) } else { None };
        if me.is_none() && *budget > 0 && self.epoch_of(r.page)? < below {
            me = Some(self.make_dirty(r)?);
            *budget -= 1;
        }
        match node {
            Node::Branch(b) => {
                for (i, c) in b.children.iter().enumerate() {
                    if *budget == 0 {
                        break;
                    }
                    if let Some(np) = self.reseal_rec(*c, below, budget, depth + 1)? {
                        let p = match me {
                            Some(p) => p,
                            None => {
                                let p = self.make_dirty(r)?;
                                me = Some(p);
                                p
                            }
                        };
                        if let Some(Node::Branch(b)) = self.dirty.get_mut(&p) {
                            b.children[i] = PageRef::dirty(np);
                        }
                    }
                }
            }
            Node::Leaf(l) => {
                for (i, e) in l.entries.iter().enumerate() {
                    let Value::Overflow { first, len } = e.value else { continue };
                    if *budget == 0 {
                        break;
                    }
                    if self.new_pages.contains(&first.page) || self.epoch_of(first.page)? >= below {
                        continue;
                    }
                    let bytes = overflow::read(&self.pager, first, len)?;
                    let old = overflow::pages(&self.pager, first, len)?;
                    *budget = budget.saturating_sub(old.len());
                    let nf = overflow::write(self, &bytes)?;
                    for p in old {
                        self.discard(p);
                    }
                    let p = match me {
                        Some(p) => p,
                        None => {
                            let p = self.make_dirty(r)?;
                            me = Some(p);
                            p
                        }
                    };
                    if let Some(Node::Leaf(l)) = self.dirty.get_mut(&p) {
                        l.entries[i].value = Value::Overflow { first: nf, len };
                    }
                }
            }
        }
        // A node already dirty has a dirty parent holding its number; a copied one is new.
        Ok(if dirty { None } else { me })
    }
}
