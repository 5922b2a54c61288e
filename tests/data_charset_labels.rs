//! Charsets and PaddleOCR label files: encoding, parsing, error messages.

use proptest::prelude::*;
use retort::data::charset::Charset;
use retort::data::image::{write_png, GrayImage};
use retort::data::labels::{load_dataset, load_datasets, parse_labels, write_labels};
use std::path::{Path, PathBuf};

/// A fresh, empty folder under the system temp dir, unique to this test run.
fn temp_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "retort-test-labels-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        name
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn png(dir: &Path, name: &str) {
    let path = dir.join(name);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    write_png(&path, &GrayImage::filled(20, 10, 200)).unwrap();
}

fn parse(text: &str, skip: bool) -> retort::Result<retort::data::labels::Dataset> {
    parse_labels(
        text,
        Path::new("/data/set"),
        Path::new("/data/set/labels.txt"),
        &Charset::default_alnum(),
        skip,
    )
}

#[test]
fn default_charset_has_37_classes() {
    let cs = Charset::default_alnum();
    assert_eq!(cs.symbols().len(), 36);
    assert_eq!(cs.num_classes(), 37);
    assert_eq!(cs.symbols()[0], "0");
    assert_eq!(cs.symbols()[35], "z");
    assert_eq!(cs.encode("0").unwrap(), vec![1]);
    assert_eq!(cs.encode("z").unwrap(), vec![36]);
}

#[test]
fn encode_decode_round_trip() {
    let cs = Charset::default_alnum();
    let text = "hello2world0z9";
    let classes = cs.encode(text).unwrap();
    assert!(classes.iter().all(|&c| (1..37).contains(&c)));
    assert_eq!(cs.decode(&classes), text);
    // Blank and out-of-range classes are skipped.
    assert_eq!(cs.decode(&[0, 18, 0, 15, 99, 22, 22, 25]), "hello");
    assert_eq!(cs.encode("").unwrap(), Vec::<usize>::new());
}

#[test]
fn longest_match_over_multi_char_symbols() {
    let cs = Charset::from_symbols(vec!["c".into(), "h".into(), "ch".into(), "a".into()]).unwrap();
    assert_eq!(cs.encode("chac").unwrap(), vec![3, 4, 1]);
    assert_eq!(cs.encode("hc").unwrap(), vec![2, 1]);
}

#[test]
fn from_symbols_refuses_bad_lists() {
    assert!(Charset::from_symbols(vec![]).is_err());
    let dup = Charset::from_symbols(vec!["a".into(), "b".into(), "a".into()]).unwrap_err();
    assert!(dup.to_string().contains("\"a\""), "{dup}");
    assert!(Charset::from_symbols(vec!["a".into(), String::new()]).is_err());
}

#[test]
fn unknown_symbol_error_names_it_and_its_position() {
    let cs = Charset::default_alnum();
    let err = cs.encode("abC1").unwrap_err();
    assert!(err.contains("\"C\""), "{err}");
    assert!(err.contains("character 3"), "{err}");
    let err = cs.encode("ab中").unwrap_err();
    assert!(err.contains("中") && err.contains("U+4E2D"), "{err}");
}

#[test]
fn cjk_charset_file_round_trip() {
    let dir = temp_dir("cjk");
    let file = dir.join("chars.txt");
    // BOM, CRLF, a blank line, the space symbol and multi-byte symbols.
    std::fs::write(&file, "\u{feff}中\r\n文\r\n\r\n \r\n字\r\né\nab\n").unwrap();
    let cs = Charset::from_file(&file).unwrap();
    assert_eq!(cs.symbols(), &["中", "文", " ", "字", "é", "ab"]);
    assert_eq!(cs.num_classes(), 7);
    let text = "中文 字éab";
    let classes = cs.encode(text).unwrap();
    assert_eq!(classes, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(cs.decode(&classes), text);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn charset_file_errors_name_file_and_line() {
    let dir = temp_dir("charset-bad");
    let file = dir.join("chars.txt");
    std::fs::write(&file, "a\nb\na\n").unwrap();
    let err = Charset::from_file(&file).unwrap_err().to_string();
    assert!(err.contains("chars.txt:3"), "{err}");
    assert!(err.contains("line 1"), "{err}");
    std::fs::write(&file, "\n\r\n").unwrap();
    assert!(Charset::from_file(&file).is_err());
    std::fs::write(&file, b"a\n\xff\n").unwrap();
    let err = Charset::from_file(&file).unwrap_err().to_string();
    assert!(
        err.contains("chars.txt:2") && err.contains("UTF-8"),
        "{err}"
    );
    let missing = dir.join("nope.txt");
    let err = Charset::from_file(&missing).unwrap_err().to_string();
    assert!(err.contains("nope.txt"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn parses_a_good_file() {
    let ds = parse("img/a.png\tabc\n/abs/b.png\t0z\n", false).unwrap();
    assert_eq!(ds.samples.len(), 2);
    assert!(ds.skipped.is_empty());
    assert_eq!(ds.samples[0].path, Path::new("/data/set/img/a.png"));
    assert_eq!(ds.samples[0].label, "abc");
    assert_eq!(ds.samples[0].target, vec![11, 12, 13]);
    assert_eq!(ds.samples[1].path, Path::new("/abs/b.png"));
    assert_eq!(ds.samples[1].target, vec![1, 36]);
}

#[test]
fn crlf_bom_and_empty_lines_are_accepted() {
    let ds = parse("\u{feff}a.png\tab\r\n\r\n\nb.png\tcd\r\n   \n", false).unwrap();
    let labels: Vec<&str> = ds.samples.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["ab", "cd"]);
    assert_eq!(ds.samples[0].path, Path::new("/data/set/a.png"));
}

#[test]
fn each_error_names_file_and_line() {
    let cases = [
        ("a.png\tab\nb.png ab\n", ":2", "TAB"),
        ("a.png\tab\n\nb.png\t\n", ":3", "empty label"),
        ("\tab\n", ":1", "empty image path"),
        ("a.png\tab\r\nb.png\taB\r\n", ":2", "\"B\""),
    ];
    for (text, line, what) in cases {
        let err = parse(text, false).unwrap_err().to_string();
        assert!(
            err.contains(&format!("/data/set/labels.txt{line}:")),
            "{text:?}: {err}"
        );
        assert!(err.contains(what), "{text:?}: {err}");
    }
}

#[test]
fn skip_bad_counts_the_skipped_lines() {
    let text = "a.png\tab\nno tab here\nc.png\t\nd.png\tx#y\ne.png\tok\n";
    let ds = parse(text, true).unwrap();
    assert_eq!(ds.samples.len(), 2);
    assert_eq!(ds.skipped.len(), 3);
    assert!(
        ds.skipped[0].starts_with("/data/set/labels.txt:2: "),
        "{:?}",
        ds.skipped
    );
    assert!(ds.skipped[1].starts_with("/data/set/labels.txt:3: "));
    assert!(ds.skipped[2].starts_with("/data/set/labels.txt:4: ") && ds.skipped[2].contains("#"));
}

#[test]
fn missing_labels_file_names_the_path() {
    let dir = temp_dir("missing");
    let err = load_dataset(&dir, &Charset::default_alnum(), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&dir.join("labels.txt").display().to_string()),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn labels_not_utf8_is_a_clear_error() {
    let dir = temp_dir("latin1");
    png(&dir, "a.png");
    std::fs::write(dir.join("labels.txt"), b"a.png\tab\na.png\tcaf\xe9\n").unwrap();
    let err = load_dataset(&dir, &Charset::default_alnum(), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("labels.txt:2"), "{err}");
    assert!(err.contains("UTF-8"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_image_is_an_error_naming_it() {
    let dir = temp_dir("noimage");
    png(&dir, "a.png");
    std::fs::write(dir.join("labels.txt"), "a.png\tab\nsub/gone.png\tcd\n").unwrap();
    let cs = Charset::default_alnum();
    let err = load_dataset(&dir, &cs, false).unwrap_err().to_string();
    assert!(err.contains("labels.txt:2"), "{err}");
    assert!(err.contains("gone.png"), "{err}");
    let ds = load_dataset(&dir, &cs, true).unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_eq!(ds.skipped.len(), 1);
    assert!(ds.skipped[0].contains("gone.png"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn several_folders_mixed_and_write_labels_round_trip() {
    let a = temp_dir("mix-a");
    let b = temp_dir("mix-b");
    png(&a, "x/1.png");
    png(&a, "x/2.png");
    png(&b, "3.png");
    write_labels(
        &a,
        &[
            ("x/1.png".into(), "one".into()),
            ("x/2.png".into(), "two".into()),
        ],
    )
    .unwrap();
    write_labels(&b, &[("3.png".into(), "three".into())]).unwrap();
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let ds = load_datasets(&[a.clone(), b.clone()], &Charset::default_alnum(), false).unwrap();
    let labels: Vec<&str> = ds.samples.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["one", "two", "three"]);
    assert_eq!(ds.samples[0].path, a.join("x/1.png"));
    assert_eq!(ds.samples[2].path, b.join("3.png"));
    assert!(load_datasets(&[], &Charset::default_alnum(), false).is_err());
    // Entries that could not be read back are refused.
    assert!(write_labels(&a, &[("a\tb.png".into(), "x".into())]).is_err());
    assert!(write_labels(&a, &[("a.png".into(), "x\ny".into())]).is_err());
    assert!(write_labels(&a, &[("a.png".into(), String::new())]).is_err());
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

proptest! {
    #[test]
    fn parse_labels_never_panics(text in "(?s).{0,200}", skip in any::<bool>()) {
        let _ = parse(&text, skip);
    }

    #[test]
    fn parse_labels_never_panics_on_tabbed_lines(
        lines in proptest::collection::vec(("[a-z/ .\\t]{0,8}", "[a-z0-9 #\\t\\r中]{0,8}"), 0..8),
        skip in any::<bool>(),
    ) {
        let text: String = lines.iter().map(|(p, l)| format!("{p}\t{l}\n")).collect();
        let _ = parse(&text, skip);
    }

    #[test]
    fn encode_decode_round_trips(text in "[0-9a-z]{0,40}") {
        let cs = Charset::default_alnum();
        prop_assert_eq!(cs.decode(&cs.encode(&text).unwrap()), text);
    }
}
