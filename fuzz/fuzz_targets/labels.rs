//! The labels-file parser on arbitrary text (bytes read as lossy UTF-8),
//! refusing and skipping bad lines.
#![no_main]
use libfuzzer_sys::fuzz_target;
use retort::data::charset::Charset;
use retort::data::labels::parse_labels;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let charset = Charset::default_alnum();
    let dir = Path::new("/data");
    let file = Path::new("/data/labels.txt");
    for skip_bad in [false, true] {
        if let Ok(ds) = parse_labels(&text, dir, file, &charset, skip_bad) {
            for s in &ds.samples {
                assert!(!s.label.is_empty());
                assert_eq!(s.target.len(), s.label.chars().count());
            }
        }
    }
});
