//! The fuzz targets' parsers without the fuzzer: each runs over every file
//! of its seed corpus `fuzz/corpus/<target>/`, over proptest-generated
//! garbage and over random mutations of the corpus files, and must return
//! (`Ok` or `Err`), never panic. Crash inputs found by `cargo fuzz` are kept
//! here as regression cases.

use proptest::prelude::*;
use retort::data::charset::Charset;
use retort::data::image::decode_png;
use retort::data::labels::parse_labels;
use retort::data::resize::resize_to_height;
use retort::nn::CrnnConfig;
use retort::train::TrainConfig;
use std::path::{Path, PathBuf};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus");

/// The labels target.
fn labels(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let charset = Charset::default_alnum();
    for skip_bad in [false, true] {
        if let Ok(ds) = parse_labels(
            &text,
            Path::new("/data"),
            Path::new("/data/labels.txt"),
            &charset,
            skip_bad,
        ) {
            for s in &ds.samples {
                assert!(!s.label.is_empty());
                assert_eq!(s.target.len(), s.label.chars().count());
            }
        }
    }
}

/// The config target.
fn config(data: &[u8]) {
    if let Ok(cfg) = serde_json::from_slice::<CrnnConfig>(data) {
        if cfg.validate().is_ok() {
            let _ = cfg.feature_height();
            let _ = cfg.min_width();
            let _ = cfg.time_steps(cfg.min_width());
            let _ = cfg.sequence_features();
            let _ = cfg.rnn_features();
            // The size check of checkpoint loading counts with checked arithmetic.
            let _ = retort::checkpoint::min_state_dict_values(&cfg);
        }
    }
    if let Ok(cfg) = serde_json::from_slice::<TrainConfig>(data) {
        let _ = cfg.validate();
    }
}

/// The checkpoint target (`file` is a scratch path private to the caller).
fn checkpoint(file: &Path, data: &[u8]) {
    std::fs::write(file, data).unwrap();
    let _ = retort::checkpoint::load_weights(file);
    let _ = retort::checkpoint::load_metadata(file);
}

/// The image target.
fn image(data: &[u8]) {
    if let Ok(img) = decode_png(data) {
        assert_eq!(img.pixels.len(), img.width * img.height);
        let out = resize_to_height(&img, 32, 2048);
        assert_eq!(out.height, 32);
        assert!(out.width >= 1 && out.width <= 2048);
        assert_eq!(out.pixels.len(), out.width * out.height);
    }
}

/// Whether `name` is one of the fuzzer's own additions to a corpus (a
/// SHA-1 in hex, ignored by git): left out, so that the tests see the same
/// seeds on every machine, and do not race a fuzzer running over the folder.
fn fuzzer_addition(name: &str) -> bool {
    name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The seed files of `fuzz/corpus/<target>/`, sorted, with their bytes.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(CORPUS).join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| !fuzzer_addition(p.file_name().unwrap().to_str().unwrap_or("")))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "seed corpus {} is too small",
        dir.display()
    );
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn scratch_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retort-fuzzcorpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn labels_corpus() {
    for (_, bytes) in corpus("labels") {
        labels(&bytes);
    }
}

#[test]
fn config_corpus() {
    for (_, bytes) in corpus("config") {
        config(&bytes);
    }
}

#[test]
fn checkpoint_corpus() {
    let file = scratch_file("corpus.safetensors");
    for (_, bytes) in corpus("checkpoint") {
        checkpoint(&file, &bytes);
    }
}

#[test]
fn image_corpus() {
    for (_, bytes) in corpus("image") {
        image(&bytes);
    }
}

/// The seeds mean what their names say, so that the fuzzer starts from
/// both sides of each check.
#[test]
fn seeds_are_what_they_say() {
    for (p, bytes) in corpus("image") {
        let name = p.file_name().unwrap().to_str().unwrap();
        let bad = ["truncated", "not_png", "zero_width", "regression"]
            .iter()
            .any(|b| name.contains(b));
        assert_eq!(decode_png(&bytes).is_err(), bad, "{name}");
    }
    for name in ["crnn-t.json", "crnn-s.json", "crnn_tiny.json"] {
        let bytes = std::fs::read(Path::new(CORPUS).join("config").join(name)).unwrap();
        let cfg: CrnnConfig = serde_json::from_slice(&bytes).unwrap();
        cfg.validate().unwrap();
    }
    let bytes = std::fs::read(Path::new(CORPUS).join("config/train.json")).unwrap();
    let cfg: TrainConfig = serde_json::from_slice(&bytes).unwrap();
    cfg.validate().unwrap();
    let w = Path::new(CORPUS).join("checkpoint/crnn_tiny.safetensors");
    assert!(retort::checkpoint::load_weights(&w).is_ok());
    let t = Path::new(CORPUS).join("checkpoint/truncated_data.safetensors");
    assert!(retort::checkpoint::load_weights(&t).is_err());
}

// ------------------------------------------------- regression cases found by cargo fuzz

/// Model configs whose derived sizes overflowed `usize` (found by the
/// `config` target): they must be refused by `validate`, or at least not
/// panic when their sizes are computed.
#[test]
fn config_regressions() {
    let cases: &[&str] = &[
        // pool widths whose product overflows (min_width)
        r#"{"in_channels":1,"height":32,"blocks":[{"out_channels":4,"pool":[1,4294967296]},{"out_channels":4,"pool":[1,4294967296]}],"hidden":6,"layers":1,"bidirectional":true,"num_classes":11}"#,
        // channels x feature height overflows (sequence_features)
        r#"{"in_channels":1,"height":32,"blocks":[{"out_channels":18446744073709551615,"pool":null}],"hidden":6,"layers":1,"bidirectional":true,"num_classes":11}"#,
        // 2 x hidden overflows (rnn_features)
        r#"{"in_channels":1,"height":32,"blocks":[{"out_channels":4,"pool":null}],"hidden":18446744073709551615,"layers":1,"bidirectional":true,"num_classes":11}"#,
    ];
    for c in cases {
        config(c.as_bytes());
    }
}

/// A 57-byte PNG claiming 65534 x 64260 pixels made the decoder allocate
/// 4.2 GB (found by the `image` target); now refused from the header.
#[test]
fn image_regressions() {
    let png = [
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0xff, 0xfe, 0x00, 0x00, 0xfb, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x96,
        0xa6, 0x21, 0x2c, 0x00, 0x00, 0x00, 0x2c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60,
        0x60, 0x60, 0x64, 0x62, 0x66, 0x61,
    ];
    assert!(decode_png(&png).is_err());
    image(&png);
}

/// A PNG whose PLTE chunk is not a whole number of RGB entries (268 bytes)
/// made the png crate panic expanding the palette (found by the `image`
/// target); now refused from the header. The fuzzer's input, and the
/// smallest such file: a 1x1 indexed image with a 4-byte palette.
#[test]
fn palette_regressions() {
    let found =
        std::fs::read(Path::new(CORPUS).join("image/regression_palette_268_bytes.png")).unwrap();
    let err = decode_png(&found).unwrap_err();
    assert!(err.contains("PLTE") && err.contains("268"), "{err}");
    image(&found);

    let small = indexed_png(1, 1, &[0, 0, 0, 255], &[0, 0]);
    let err = decode_png(&small).unwrap_err();
    assert!(err.contains("PLTE") && err.contains('4'), "{err}");
    image(&small);
    // The same image with a whole palette decodes.
    let good = indexed_png(1, 1, &[0, 0, 0], &[0, 0]);
    assert_eq!(decode_png(&good).unwrap().pixels, vec![0]);
}

/// An 8-bit indexed PNG of `width` x `height` with `palette` as its PLTE
/// chunk and `rows` (filter byte then indices, per row) stored uncompressed.
fn indexed_png(width: u32, height: u32, palette: &[u8], rows: &[u8]) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    let mut zlib = vec![0x78, 0x01, 0x01];
    let len = rows.len() as u16;
    zlib.extend_from_slice(&len.to_le_bytes());
    zlib.extend_from_slice(&(!len).to_le_bytes());
    zlib.extend_from_slice(rows);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in rows {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", ihdr.as_slice()),
        (b"PLTE", palette),
        (b"IDAT", zlib.as_slice()),
        (b"IEND", &[]),
    ] {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&body);
        png.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    png
}

// ------------------------------------------------------------- proptest garbage

/// One random edit of `bytes`: flip, overwrite, insert, delete or truncate.
fn mutate(mut bytes: Vec<u8>, ops: &[(u8, usize, u8)]) -> Vec<u8> {
    for &(op, pos, val) in ops {
        let n = bytes.len();
        match op % 5 {
            0 if n > 0 => bytes[pos % n] ^= 1 << (val % 8),
            1 if n > 0 => bytes[pos % n] = val,
            2 => bytes.insert(pos % (n + 1), val),
            3 if n > 0 => {
                bytes.remove(pos % n);
            }
            4 => bytes.truncate(pos % (n + 1)),
            _ => {}
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        labels(&bytes);
        config(&bytes);
        image(&bytes);
        checkpoint(&scratch_file("garbage.safetensors"), &bytes);
    }

    #[test]
    fn text_garbage_never_panics(text in "[a-z0-9./\t\r\n \u{feff}é日{}\\[\\]\":,-]{0,200}") {
        labels(text.as_bytes());
        config(text.as_bytes());
    }

    #[test]
    fn mutated_labels_never_panic(i in any::<usize>(), ops in edits()) {
        let c = corpus("labels");
        labels(&mutate(c[i % c.len()].1.clone(), &ops));
    }

    #[test]
    fn mutated_configs_never_panic(i in any::<usize>(), ops in edits()) {
        let c = corpus("config");
        config(&mutate(c[i % c.len()].1.clone(), &ops));
    }

    #[test]
    fn mutated_checkpoints_never_panic(i in any::<usize>(), ops in edits()) {
        let c = corpus("checkpoint");
        checkpoint(&scratch_file("mutated.safetensors"), &mutate(c[i % c.len()].1.clone(), &ops));
    }

    #[test]
    fn mutated_images_never_panic(i in any::<usize>(), ops in edits()) {
        let c = corpus("image");
        image(&mutate(c[i % c.len()].1.clone(), &ops));
    }

    /// Header-only PNGs of any size: refused or decoded, never a huge allocation.
    #[test]
    fn png_headers_of_any_size(w in any::<u32>(), h in any::<u32>(), ctype in prop::sample::select(vec![0u8, 2, 3, 4, 6]), depth in prop::sample::select(vec![1u8, 2, 4, 8, 16])) {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[depth, ctype, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        image(&png);
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}
