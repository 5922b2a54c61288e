//! Bad input met from the command line: every case gives a non-zero exit
//! and a message that names the file and says what is wrong with it, never
//! a panic. Datasets are checked through `retort eval` (and `retort train`
//! for the label file), checkpoints through `retort eval` and `retort infer`.
//!
//! The checkpoint used is the small golden model `tests/golden/crnn_tiny`
//! (charset `0`-`9`), copied into a scratch folder and then damaged.

use retort::data::image::{write_png, GrayImage};
use std::path::{Path, PathBuf};
use std::process::Output;

#[path = "common/cli.rs"]
mod cli;
use cli::{fails_with, retort, s, scratch, succeeds};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/crnn_tiny");

/// A copy of the golden checkpoint in `dir/model`.
fn checkpoint(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(Path::new(GOLDEN).join(f), model.join(f)).unwrap();
    }
    model
}

/// A grey text-line-like image.
fn line_image(width: usize, height: usize) -> GrayImage {
    let mut img = GrayImage::filled(width, height, 255);
    for x in (2..width.saturating_sub(2)).step_by(3) {
        for y in height / 4..3 * height / 4 {
            img.set(x, y, 0);
        }
    }
    img
}

/// A dataset folder `dir/data` with images `a.png`, `b.png` (digit labels)
/// and the given labels text (or the default one).
fn dataset(dir: &Path, labels: Option<&[u8]>) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_png(&data.join("a.png"), &line_image(64, 32)).unwrap();
    write_png(&data.join("b.png"), &line_image(48, 32)).unwrap();
    let labels = labels.unwrap_or(b"a.png\t123\nb.png\t45\n");
    std::fs::write(data.join("labels.txt"), labels).unwrap();
    data
}

fn eval(model: &Path, data: &Path) -> Output {
    retort(&["eval", "--model", s(model), "--data", s(data)])
}

/// PNG chunk with its CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
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

/// A hand-made grey PNG header of `width` x `height` with an (empty,
/// stored) image data stream.
fn png_with_size(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    out.extend(chunk(b"IHDR", &ihdr));
    // zlib stream of a single empty stored block.
    out.extend(chunk(
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0, 0, 0, 1],
    ));
    out.extend(chunk(b"IEND", &[]));
    out
}

// ---------------------------------------------------------------- datasets

#[test]
fn good_dataset_evaluates() {
    let dir = scratch("good");
    let model = checkpoint(&dir);
    let data = dataset(&dir, None);
    let out = succeeds(&eval(&model, &data));
    assert!(out.contains("lines        2"), "{out}");
}

#[test]
fn windows_line_endings_are_accepted() {
    let dir = scratch("crlf");
    let model = checkpoint(&dir);
    let data = dataset(&dir, Some(b"\xEF\xBB\xBFa.png\t123\r\nb.png\t45\r\n\r\n"));
    let out = succeeds(&eval(&model, &data));
    assert!(out.contains("lines        2"), "{out}");
}

#[test]
fn missing_labels_file() {
    let dir = scratch("nolabels");
    let model = checkpoint(&dir);
    let data = dataset(&dir, None);
    std::fs::remove_file(data.join("labels.txt")).unwrap();
    let labels = data.join("labels.txt");
    fails_with(&eval(&model, &data), &[s(&labels), "No such file"]);
}

#[test]
fn missing_labels_file_in_train() {
    let dir = scratch("nolabels-train");
    let data = dataset(&dir, None);
    std::fs::remove_file(data.join("labels.txt")).unwrap();
    let labels = data.join("labels.txt");
    let out = retort(&[
        "train",
        "--model",
        "crnn-s",
        "--train",
        s(&data),
        "--val",
        s(&data),
        "--out",
        s(&dir.join("run")),
        "--steps",
        "1",
        "--quiet",
    ]);
    fails_with(&out, &[s(&labels), "No such file"]);
}

#[test]
fn missing_image() {
    let dir = scratch("noimage");
    let model = checkpoint(&dir);
    let data = dataset(&dir, Some(b"a.png\t123\nmissing.png\t45\n"));
    let labels = data.join("labels.txt");
    let err = fails_with(
        &eval(&model, &data),
        &[s(&labels), "missing.png", "not found"],
    );
    assert!(err.contains(":2"), "names the line: {err}");
}

#[test]
fn truncated_png() {
    let dir = scratch("truncated");
    let model = checkpoint(&dir);
    let data = dataset(&dir, None);
    let bytes = std::fs::read(data.join("b.png")).unwrap();
    std::fs::write(data.join("b.png"), &bytes[..bytes.len() / 2]).unwrap();
    let png = data.join("b.png");
    fails_with(
        &eval(&model, &data),
        &[s(&png), "not a readable PNG", "unexpected end of file"],
    );
}

#[test]
fn non_png_image() {
    let dir = scratch("notpng");
    let model = checkpoint(&dir);
    let data = dataset(&dir, None);
    std::fs::write(data.join("b.png"), b"GIF89a\x01\x00\x01\x00\x00\x00\x00").unwrap();
    let png = data.join("b.png");
    fails_with(
        &eval(&model, &data),
        &[s(&png), "not a readable PNG", "Invalid PNG signature"],
    );
}

#[test]
fn zero_width_and_zero_height_png() {
    for (w, h) in [(0, 32), (32, 0)] {
        let dir = scratch(&format!("zero-{w}x{h}"));
        let model = checkpoint(&dir);
        let data = dataset(&dir, None);
        std::fs::write(data.join("b.png"), png_with_size(w, h)).unwrap();
        let png = data.join("b.png");
        fails_with(
            &eval(&model, &data),
            &[s(&png), "not a readable PNG", "Invalid image dimensions"],
        );
    }
}

#[test]
fn huge_png_header_is_refused_without_allocating() {
    // Claims 60000 x 60000 (3.6 GB decoded) but holds no data.
    let dir = scratch("hugeheader");
    let model = checkpoint(&dir);
    let data = dataset(&dir, None);
    std::fs::write(data.join("b.png"), png_with_size(60_000, 60_000)).unwrap();
    let png = data.join("b.png");
    fails_with(
        &eval(&model, &data),
        &[
            s(&png),
            "not a readable PNG",
            "60000x60000",
            "pixels in all",
        ],
    );
}

/// An 8-bit indexed 1x1 PNG with `palette` as its PLTE chunk.
fn indexed_png(palette: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 3, 0, 0, 0]));
    out.extend(chunk(b"PLTE", palette));
    // zlib: one stored block holding the row (filter 0, index 0), Adler-32.
    out.extend(chunk(
        b"IDAT",
        &[0x78, 0x01, 0x01, 2, 0, 0xFD, 0xFF, 0, 0, 0, 2, 0, 1],
    ));
    out.extend(chunk(b"IEND", &[]));
    out
}

#[test]
fn palette_of_a_partial_entry_is_refused() {
    // The png crate panicked on a PLTE chunk that is not a multiple of 3
    // bytes (found by the `image` fuzz target).
    let dir = scratch("palette");
    let model = checkpoint(&dir);
    let data = dataset(&dir, None);
    std::fs::write(data.join("b.png"), indexed_png(&[0, 0, 0, 255])).unwrap();
    fails_with(
        &eval(&model, &data),
        &["b.png", "not a readable PNG", "PLTE chunk holds 4 bytes"],
    );
    // A whole palette is fine.
    std::fs::write(data.join("b.png"), indexed_png(&[0, 0, 0])).unwrap();
    succeeds(&eval(&model, &data));
}

#[test]
fn image_100000_pixels_wide_is_refused() {
    let dir = scratch("wide");
    let model = checkpoint(&dir);
    let data = dataset(&dir, None);
    write_png(&data.join("b.png"), &line_image(100_000, 32)).unwrap();
    // Refused (wider than MAX_SIDE) with a message naming the file and its size.
    let png = data.join("b.png");
    fails_with(
        &eval(&model, &data),
        &[s(&png), "100000x32", "larger than 65536 on a side"],
    );
}

#[test]
fn label_outside_the_charset() {
    let dir = scratch("charset");
    let model = checkpoint(&dir);
    let data = dataset(&dir, Some(b"a.png\t123\nb.png\t4x5\n"));
    let labels = data.join("labels.txt");
    fails_with(
        &eval(&model, &data),
        &[
            &format!("{}:2", labels.display()),
            "\"4x5\"",
            "symbol \"x\"",
            "not in the charset",
        ],
    );
}

#[test]
fn empty_label() {
    let dir = scratch("emptylabel");
    let model = checkpoint(&dir);
    let data = dataset(&dir, Some(b"a.png\t123\nb.png\t\n"));
    let labels = data.join("labels.txt");
    fails_with(
        &eval(&model, &data),
        &[&format!("{}:2", labels.display()), "empty label"],
    );
}

#[test]
fn bad_lines_are_skipped_with_skip_bad() {
    let dir = scratch("skipbad");
    let model = checkpoint(&dir);
    let data = dataset(&dir, Some(b"a.png\t123\nb.png\t\nc.png\t7\nb.png\t4x\n"));
    let out = succeeds(&retort(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--skip-bad",
    ]));
    assert!(out.contains("lines        1"), "{out}");
    assert!(out.contains("skipped      3"), "{out}");
}

#[test]
fn labels_not_utf8() {
    let dir = scratch("notutf8");
    let model = checkpoint(&dir);
    let data = dataset(&dir, Some(b"a.png\t123\nb.png\t4\xff5\n"));
    let labels = data.join("labels.txt");
    fails_with(
        &eval(&model, &data),
        &[&format!("{}:2", labels.display()), "UTF-8"],
    );
}

#[test]
fn labels_not_utf8_in_train() {
    let dir = scratch("notutf8-train");
    let data = dataset(&dir, Some(b"a.png\t123\nb.png\t4\xe95\n"));
    let labels = data.join("labels.txt");
    let out = retort(&[
        "train",
        "--model",
        "crnn-s",
        "--train",
        s(&data),
        "--val",
        s(&data),
        "--out",
        s(&dir.join("run")),
        "--steps",
        "1",
        "--quiet",
    ]);
    fails_with(&out, &[&format!("{}:2", labels.display()), "UTF-8"]);
}

// ------------------------------------------------------------- checkpoints

/// The golden weights as named tensors.
fn golden_tensors() -> Vec<(String, retort::Tensor)> {
    retort::checkpoint::load_weights(&Path::new(GOLDEN).join("model.safetensors")).unwrap()
}

/// Runs both `eval` and `infer` on the (damaged) checkpoint and checks both
/// fail with `needles`.
#[track_caller]
fn both_fail(dir: &Path, model: &Path, needles: &[&str]) {
    let data = dataset(dir, None);
    fails_with(&eval(model, &data), needles);
    let out = retort(&["infer", "--model", s(model), s(&data.join("a.png"))]);
    fails_with(&out, needles);
}

#[test]
fn good_checkpoint_infers() {
    let dir = scratch("ck-good");
    let model = checkpoint(&dir);
    let data = dataset(&dir, None);
    succeeds(&retort(&[
        "infer",
        "--model",
        s(&model),
        s(&data.join("a.png")),
    ]));
}

#[test]
fn missing_checkpoint_folder() {
    let dir = scratch("ck-nodir");
    let model = dir.join("nowhere");
    let data = dataset(&dir, None);
    fails_with(
        &eval(&model, &data),
        &[s(&model), "not a checkpoint folder"],
    );
}

#[test]
fn missing_config_json() {
    let dir = scratch("ck-noconfig");
    let model = checkpoint(&dir);
    std::fs::remove_file(model.join("config.json")).unwrap();
    let config = model.join("config.json");
    both_fail(&dir, &model, &[s(&config), "not found"]);
}

#[test]
fn missing_weights_file() {
    let dir = scratch("ck-noweights");
    let model = checkpoint(&dir);
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    let weights = model.join("model.safetensors");
    both_fail(&dir, &model, &[s(&weights), "not found"]);
}

#[test]
fn truncated_safetensors() {
    let weights_name = "model.safetensors";
    for keep in [4usize, 100, 5000] {
        let dir = scratch(&format!("ck-trunc-{keep}"));
        let model = checkpoint(&dir);
        let weights = model.join(weights_name);
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..keep.min(bytes.len() - 1)]).unwrap();
        both_fail(&dir, &model, &[s(&weights), "not a valid safetensors"]);
    }
}

#[test]
fn missing_tensor() {
    let dir = scratch("ck-missing-tensor");
    let model = checkpoint(&dir);
    let weights = model.join("model.safetensors");
    let mut t = golden_tensors();
    let removed = t.remove(t.len() / 2).0;
    retort::checkpoint::save_weights(&weights, &t).unwrap();
    both_fail(&dir, &model, &[s(&weights), "missing", &removed]);
}

#[test]
fn extra_tensor() {
    let dir = scratch("ck-extra-tensor");
    let model = checkpoint(&dir);
    let weights = model.join("model.safetensors");
    let mut t = golden_tensors();
    t.push((
        "decoder.surprise".into(),
        retort::Tensor::zeros(&[3]).unwrap(),
    ));
    retort::checkpoint::save_weights(&weights, &t).unwrap();
    both_fail(&dir, &model, &[s(&weights), "decoder.surprise"]);
}

#[test]
fn wrong_shape() {
    let dir = scratch("ck-shape");
    let model = checkpoint(&dir);
    let weights = model.join("model.safetensors");
    let mut t = golden_tensors();
    let i = t.iter().position(|(n, _)| n == "head.bias").unwrap();
    t[i].1 = retort::Tensor::zeros(&[t[i].1.numel() + 1]).unwrap();
    retort::checkpoint::save_weights(&weights, &t).unwrap();
    both_fail(&dir, &model, &[s(&weights), "head.bias", "shape"]);
}

/// A safetensors file holding one F64 tensor named `name`.
fn f64_safetensors(name: &str, values: &[f64]) -> Vec<u8> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut header = format!(
        "{{\"{name}\":{{\"dtype\":\"F64\",\"shape\":[{}],\"data_offsets\":[0,{}]}}}}",
        values.len(),
        data.len()
    )
    .into_bytes();
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

#[test]
fn f64_dtype() {
    let dir = scratch("ck-f64");
    let model = checkpoint(&dir);
    let weights = model.join("model.safetensors");
    std::fs::write(&weights, f64_safetensors("head.bias", &[0.0; 11])).unwrap();
    both_fail(&dir, &model, &[s(&weights), "head.bias", "F64"]);
}

#[test]
fn config_not_matching_weights() {
    let dir = scratch("ck-config");
    let model = checkpoint(&dir);
    let config = model.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let changed = text.replace("\"hidden\": 6", "\"hidden\": 7");
    assert_ne!(text, changed, "config.json layout changed");
    std::fs::write(&config, changed).unwrap();
    let weights = model.join("model.safetensors");
    both_fail(&dir, &model, &[s(&weights), "do not match", "config.json"]);
}

#[test]
fn config_json_broken() {
    let dir = scratch("ck-config-broken");
    let model = checkpoint(&dir);
    let config = model.join("config.json");
    std::fs::write(&config, "{\"model\": {\"in_channels\": 1,").unwrap();
    both_fail(&dir, &model, &[s(&config), "invalid checkpoint config"]);
}

#[test]
fn config_with_unknown_key() {
    let dir = scratch("ck-config-key");
    let model = checkpoint(&dir);
    let config = model.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let changed = text.replacen("\"hidden\"", "\"colour\": 3, \"hidden\"", 1);
    std::fs::write(&config, changed).unwrap();
    both_fail(&dir, &model, &[s(&config), "colour"]);
}

/// Sets the value at `pointer` (a JSON pointer into the `model` object) of
/// the checkpoint's `config.json`.
fn edit_config(model: &Path, pointer: &str, value: serde_json::Value) {
    let path = model.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    *json["model"].pointer_mut(pointer).unwrap() = value;
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

/// Valid JSON with huge layer sizes (a model of terabytes) is refused from
/// the sizes, before the model is built: quickly, naming both files.
#[test]
fn config_with_huge_layers_is_refused_before_allocating() {
    let cases = [
        ("/blocks/0/out_channels", 1u64 << 40, " TB"),
        ("/layers", 1_000_000_000, " TB"),
        // 4 x hidden^2 x 2 directions x 2 layers does not even fit 64 bits.
        ("/hidden", 1_000_000_000, "more values than can be counted"),
    ];
    for (pointer, value, size) in cases {
        let name = pointer.rsplit('/').next().unwrap();
        let dir = scratch(&format!("ck-huge-{name}"));
        let model = checkpoint(&dir);
        edit_config(&model, pointer, value.into());
        let config = model.join("config.json");
        let weights = model.join("model.safetensors");
        let data = dataset(&dir, None);
        let started = std::time::Instant::now();
        fails_with(
            &eval(&model, &data),
            &[
                s(&config),
                s(&weights),
                size,
                "does not match",
                "before building",
            ],
        );
        assert!(
            started.elapsed().as_secs() < 10,
            "{name}: refused only after {:?}",
            started.elapsed()
        );
    }
}
