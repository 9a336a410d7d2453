use super::*;

/// `parse_line`, for a line that must be a record.
fn parse_record(line: &[u8]) -> Result<Record, JsonError> {
    match parse_line(line)? {
        Line::Record(r) => Ok(r),
        Line::Tree(_) => Err(JsonError { column: 1, what: "a tree line" }),
    }
}

#[test]
fn a_tree_alone_is_a_tree_line_and_key_or_value_alone_is_refused() {
    for name in [b"empty".to_vec(), vec![0, 0xFF]] {
        let line = Line::tree_line(&name);
        assert_eq!(parse_line(line.as_bytes()).unwrap(), Line::Tree(name), "{line}");
    }
    assert_eq!(Line::tree_line(b"t"), r#"{"tree": "t"}"#);
    for bad in [&br#"{"tree": "t", "key": "k"}"#[..], br#"{"tree": "t", "value": "v"}"#, br#"{"value": "v"}"#] {
        let e = parse_line(bad).unwrap_err();
        assert!(e.what.starts_with("missing field"), "{e}");
    }
}

#[test]
fn strings_escape_quotes_backslashes_and_controls() {
    assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(quote("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
    assert_eq!(quote("\u{0}\u{1f}\u{7f}"), r#""\u0000\u001f\u007f""#);
    assert_eq!(quote("\u{2028}é✓"), "\"\\u2028é✓\"");
}

#[test]
fn every_string_round_trips() {
    let samples =
        ["", "plain", "quote\" backslash\\ slash/", "\u{0}\u{1}\u{1f} ctl", "é ✓ 𝄞 emoji 🦀", "\u{2028}\u{2029}"];
    for s in samples {
        let line =
            Record { tree: Some(s.as_bytes().to_vec()), key: s.as_bytes().to_vec(), value: b"v".to_vec() }.to_line();
        let r = parse_record(line.as_bytes()).unwrap();
        assert_eq!(r.key, s.as_bytes(), "{line}");
        assert_eq!(r.tree.as_deref(), Some(s.as_bytes()));
    }
}

#[test]
fn non_utf8_goes_to_b64_and_back() {
    let r = Record { tree: None, key: vec![0, 0xFF, 0xFE], value: vec![0x80; 7] };
    let line = r.to_line();
    assert_eq!(line, r#"{"key_b64": "AP/+", "value_b64": "gICAgICAgA=="}"#);
    assert_eq!(parse_record(line.as_bytes()).unwrap(), r);
}

#[test]
fn base64_known_vectors() {
    let cases: [(&[u8], &str); 7] = [
        (b"", ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg=="),
        (b"fooba", "Zm9vYmE="),
        (b"foobar", "Zm9vYmFy"),
    ];
    for (raw, enc) in cases {
        assert_eq!(b64_encode(raw), enc);
        assert_eq!(b64_decode(enc).unwrap(), raw);
    }
    assert_eq!(b64_decode("Zm8").unwrap(), b"fo");
    // Non-canonical final groups ("Zh==" would read as "f", as "Zg==" does) are refused too.
    for bad in ["Z", "Zm9v!", "Zm=9", "Zg=", "====", "Zm9vY", "Zh==", "Zh", "Zm9=", "Zm9vYh=="] {
        assert!(b64_decode(bad).is_err(), "{bad}");
    }
    let all: Vec<u8> = (0..=255u8).collect();
    assert_eq!(b64_decode(&b64_encode(&all)).unwrap(), all);
}

#[test]
fn unicode_escapes_and_surrogates() {
    let r = parse_record(br#"{"key": "\u00e9\ud834\udd1e\/", "value": "x"}"#).unwrap();
    assert_eq!(r.key, "é𝄞/".as_bytes());
    for bad in [
        r#"{"key": "\ud834", "value": ""}"#,
        r#"{"key": "\udd1e", "value": ""}"#,
        r#"{"key": "\ud834\u0041", "value": ""}"#,
    ] {
        assert!(parse_record(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn hostile_lines_give_errors_not_panics() {
    let bad: &[&[u8]] = &[
        b"",
        b"{",
        b"}",
        b"[]",
        b"{\"key\"",
        b"{\"key\":",
        b"{\"key\": 1, \"value\": \"\"}",
        b"{\"key\": \"a\", \"value\": \"b\"} x",
        b"{\"key\": \"a\", \"value\": \"b\",}",
        b"{\"key\": \"a\" \"value\": \"b\"}",
        b"{\"key\": \"a\", \"key\": \"b\", \"value\": \"\"}",
        b"{\"key\": \"a\", \"key_b64\": \"YQ==\", \"value\": \"\"}",
        b"{\"key\": \"a\", \"other\": \"b\", \"value\": \"\"}",
        b"{\"value\": \"b\"}",
        b"{\"key\": \"a\"}",
        b"{\"key\": \"a\nb\", \"value\": \"\"}",
        b"{\"key\": \"\\x\", \"value\": \"\"}",
        b"{\"key\": \"\\u12\", \"value\": \"\"}",
        b"{\"key\": \"\\u12zz\", \"value\": \"\"}",
        b"{\"key\": \"\xff\", \"value\": \"\"}",
        b"{\"key_b64\": \"@@@@\", \"value\": \"\"}",
        b"{\"key\": \"a\", \"value\": \"\\",
    ];
    for line in bad {
        assert!(parse_record(line).is_err(), "{}", String::from_utf8_lossy(line));
    }
    // Every prefix and every one-byte corruption of a valid line: no panic.
    let good = br#"{"tree": "t\u00e9", "key_b64": "AP8=", "value": "v\"\\"}"#;
    assert!(parse_record(good).is_ok());
    for i in 0..good.len() {
        let _ = parse_record(&good[..i]);
        for b in [0u8, b'"', b'\\', b'{', b'}', 0xC3, 0xFF, b'u'] {
            let mut m = good.to_vec();
            m[i] = b;
            let _ = parse_record(&m);
        }
    }
}

#[test]
fn whitespace_is_tolerated_and_empty_object_is_missing_fields() {
    let r = parse_record(b" \t{ \"value\" : \"1\" ,\"key\":\"k\" }\r\n").unwrap();
    assert_eq!((r.key.as_slice(), r.value.as_slice(), r.tree), (b"k".as_slice(), b"1".as_slice(), None));
    assert!(parse_record(b"{}").is_err());
}

#[test]
fn objects_and_arrays_encode() {
    let o = Obj::new()
        .str("a", "x\"")
        .num("n", 7u64)
        .bool("b", true)
        .raw("l", &array(vec!["1".into(), "2".into()]))
        .finish();
    assert_eq!(o, r#"{"a": "x\"", "n": 7, "b": true, "l": [1, 2]}"#);
    assert_eq!(Obj::new().float("f", f64::NAN).finish(), r#"{"f": null}"#);
}

/// A record's and a line's `Debug` show lengths, never the bytes (CLI review, low: both were
/// derived, and printed the plaintext of a key and a value).
#[test]
fn debug_shows_no_record_bytes() {
    let r =
        Record { tree: Some(b"tree-secret".to_vec()), key: b"key-secret".to_vec(), value: b"value-secret".to_vec() };
    let shown = format!("{r:?} {:?} {:?}", Line::Record(r.clone()), Line::Tree(b"tree-secret".to_vec()));
    assert!(!shown.contains("secret") && !shown.contains("115, 101, 99"), "{shown}");
    assert!(shown.contains("key_len: 10"), "{shown}");
}
