//! A plaintext file forged so that one branch's two children are one page, with every seal and
//! parent-held tag recomputed (a CRC32 anyone can redo, SPEC §3): such a file passes each
//! page's check, and only a walk that remembers the pages it reached can see it. Every whole-tree
//! operation names the shared page (`DoubleReference`) and walks it once; nested, such sharing
//! made exponentially many paths, which backup writing (and, over empty leaves, a cursor, and
//! compaction's walks: `src/btree/damage_tests.rs`) went down one by one.

#[path = "common/plain_forge.rs"]
mod plain_forge;

use foldvault::format::page::{PAGE_HEADER_SIZE, PAGE_REF_SIZE, PageKind, generation, write_header};
use foldvault::{Config, CorruptReason, Error, PageRole};

fn cfg(path: &std::path::Path) -> Config {
    Config::new().file(path).plaintext().use_env(false).flush_every_ms(None).write_ahead_log(false)
}

#[test]
fn a_branch_whose_children_are_one_page_is_named_and_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forged.fv");
    let db = cfg(&path).open().unwrap();
    let t = db.open_tree("t").unwrap();
    for i in 0..2000u32 {
        t.insert(i.to_be_bytes(), vec![7u8; 40]).unwrap();
    }
    db.flush().unwrap();
    let report = db.check().unwrap();
    drop((t, db));
    let catalog: Vec<u64> = report.roles.pages(|r| *r == PageRole::Catalog).collect();
    let tree: Vec<u64> = report.roles.pages(|r| *r == PageRole::Tree("t".into())).collect();
    let branches: Vec<u64> = tree.iter().copied().filter(|&p| plain_forge::read_page(&path, p)[0] == 1).collect();
    assert_eq!((catalog.len(), branches.len()), (1, 1), "a one-page catalog and a two-level tree");
    let root = branches[0];
    // The first leaf is emptied, and child 1 becomes child 0: the empty leaf is reached twice
    // (no key out of its range gives the sharing away), the second leaf not at all.
    let first = PAGE_HEADER_SIZE;
    let leaf = u64::from_le_bytes(plain_forge::read_page(&path, root)[first..first + 8].try_into().unwrap());
    plain_forge::edit_page(&path, leaf, &[root, catalog[0]], |b| {
        let g = generation(b);
        write_header(b, PageKind::Leaf, 0, g);
    });
    plain_forge::edit_page(&path, root, &catalog, |b| {
        b.copy_within(first..first + PAGE_REF_SIZE, first + PAGE_REF_SIZE);
    });

    let db = cfg(&path).open().unwrap();
    let report = db.check().unwrap();
    let shared: Vec<_> = report.problems.iter().filter(|p| p.reason == CorruptReason::DoubleReference).collect();
    assert!(shared.len() == 1 && shared[0].page == leaf, "{:?}", report.problems);
    let e = db.backup_to(Vec::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, Error::Corrupt { page, reason: CorruptReason::DoubleReference } if page == leaf), "{e:?}");
    // Iteration passes over the empty leaf, meets it again, and stops there.
    let t = db.open_tree("t").unwrap();
    let e = t.iter().next().unwrap().unwrap_err();
    assert!(matches!(e, Error::Corrupt { page, reason: CorruptReason::DoubleReference } if page == leaf), "{e:?}");
    drop((t, db));

    let dst = dir.path().join("salvaged.fv");
    let report = foldvault::salvage(&cfg(&path), &cfg(&dst)).unwrap();
    assert!(report.lost_anything(), "{report:?}");
    let copy = cfg(&dst).open().unwrap().open_tree("t").unwrap();
    let keys: Vec<Vec<u8>> = copy.iter().map(|r| r.unwrap().0.to_vec()).collect();
    let mut unique = keys.clone();
    unique.dedup();
    assert!(keys.len() == unique.len() && keys.len() < 2000, "each surviving record once: {}", keys.len());
}
