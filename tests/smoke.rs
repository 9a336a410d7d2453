mod common;
use common::*;

#[test]
fn insert_get_iterate_reopen() {
    for encrypted in [false, true] {
        let (db, m) = mem_db(encrypted);
        let t = db.open_tree("metadata").unwrap();
        for i in 0..2000u32 {
            t.insert(format!("key{i:06}"), format!("value{i}").into_bytes()).unwrap();
        }
        assert_eq!(t.len(), 2000);
        assert_eq!(t.get("key000042").unwrap().unwrap(), b"value42".as_slice());
        let all: Vec<_> = t.iter().flatten().collect();
        assert_eq!(all.len(), 2000);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        let rev: Vec<_> = t.iter().rev().flatten().collect();
        assert_eq!(rev.len(), 2000);
        assert_eq!(t.scan_prefix("key001").count(), 1000);
        assert_eq!(t.scan_prefix("key0001").count(), 100);
        assert_eq!(t.scan_prefix("key0001").rev().count(), 100);
        for i in (0..2000u32).step_by(2) {
            assert!(t.remove(format!("key{i:06}")).unwrap().is_some());
        }
        assert_eq!(t.len(), 1000);
        db.flush().unwrap();
        drop(t);
        drop(db);
        let db = reopen(&m, encrypted);
        let t = db.open_tree("metadata").unwrap();
        assert_eq!(t.len(), 1000);
        assert_eq!(t.get("key000043").unwrap().unwrap(), b"value43".as_slice());
        assert!(t.get("key000042").unwrap().is_none());
        let big = vec![7u8; 10 << 20];
        t.insert("big", big.clone()).unwrap();
        assert_eq!(t.get("big").unwrap().unwrap().len(), big.len());
        db.flush().unwrap();
        drop(t);
        drop(db);
        let db = reopen(&m, encrypted);
        let t = db.open_tree("metadata").unwrap();
        assert_eq!(&*t.get("big").unwrap().unwrap(), &big[..]);
    }
}
