//! Checkpoints: the tiny CRNN saved by PyTorch loads and gives PyTorch's
//! logits (tests/golden/make_crnn_golden.py), round trips are exact, writes
//! are atomic and every broken checkpoint is a clear error naming the file.
//!
//! The reverse direction (a retort-saved checkpoint loaded by PyTorch) is
//! checked by the script: `RETORT_CRNN_EXPORT=DIR cargo test --test
//! checkpoint export_for_pytorch`, then `make_crnn_golden.py --check-rust DIR`.

#[path = "golden/check.rs"]
mod check;
#[rustfmt::skip]
#[path = "golden/crnn_tiny_logits.rs"]
mod golden;

use golden::*;
use retort::checkpoint::{self, Checkpoint};
use retort::nn::{Crnn, CrnnConfig};
use retort::{Rng, Tape, Tensor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The checkpoint folder written by PyTorch.
fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/crnn_tiny")
}

/// A fresh, empty temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "retort-ckpt-{}-{}-{name}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The golden input.
fn input() -> Tensor {
    Tensor::from_slice(&CRNN_TINY_INPUT, &CRNN_TINY_INPUT_SHAPE).unwrap()
}

/// Eval-mode logits of `model` on the golden input.
fn logits(model: &mut Crnn, x: &Tensor, widths: &[usize]) -> Tensor {
    model
        .forward(&mut Tape::no_grad(), x, widths, false, &mut Rng::seed(0))
        .unwrap()
        .logits
}

/// A copy of the golden checkpoint folder whose weights are replaced by `tensors`.
fn with_weights(name: &str, tensors: &[(String, Tensor)]) -> TempDir {
    let dir = TempDir::new(name);
    std::fs::copy(
        golden_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    checkpoint::save_weights(&dir.path().join("model.safetensors"), tensors).unwrap();
    dir
}

fn error_of(result: retort::Result<Checkpoint>) -> String {
    match result {
        Ok(_) => panic!("the checkpoint loaded but should not have"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "error {err:?} does not mention {p:?}");
    }
}

#[test]
fn pytorch_checkpoint_gives_pytorch_logits() {
    let mut ckpt = checkpoint::load(&golden_dir()).unwrap();
    assert_eq!(ckpt.charset.len(), 10);
    assert_eq!(ckpt.model.config.num_classes, 11);
    let got = logits(&mut ckpt.model, &input(), &CRNN_TINY_WIDTHS);
    check::assert_close(
        "tiny CRNN logits",
        &got,
        &CRNN_TINY_LOGITS,
        &CRNN_TINY_LOGITS_SHAPE,
    );
}

#[test]
fn round_trip_is_exact_and_atomic() {
    let mut ckpt = checkpoint::load(&golden_dir()).unwrap();
    let dir = TempDir::new("round-trip");
    let out = dir.path().join("nested/ckpt");
    checkpoint::save(&out, &ckpt.model, &ckpt.charset).unwrap();
    // Saving again over an existing checkpoint works too.
    checkpoint::save(&out, &ckpt.model, &ckpt.charset).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["config.json", "model.safetensors"],
        "temporary files left behind"
    );

    let mut back = checkpoint::load(&out).unwrap();
    assert_eq!(back.charset, ckpt.charset);
    assert_eq!(back.model.config, ckpt.model.config);
    let (a, b) = (ckpt.model.state_dict(), back.model.state_dict());
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(ta.dims(), tb.dims(), "{na}");
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(ta), bits(tb), "{na} changed in the round trip");
    }
    let x = input();
    let la = logits(&mut ckpt.model, &x, &CRNN_TINY_WIDTHS);
    let lb = logits(&mut back.model, &x, &CRNN_TINY_WIDTHS);
    assert_eq!(la.data(), lb.data());

    // The weights file alone round-trips too, with PyTorch's names.
    let file = dir.path().join("w.safetensors");
    checkpoint::save_weights(&file, &a).unwrap();
    let loaded = checkpoint::load_weights(&file).unwrap();
    let mut names: Vec<&str> = loaded.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    let mut want: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn a_saved_model_keeps_training_state_and_identity() {
    // Loading keeps the parameters' identities (an optimizer keyed by them keeps working).
    let mut ckpt = checkpoint::load(&golden_dir()).unwrap();
    let ids: Vec<_> = ckpt
        .model
        .params()
        .iter()
        .map(|(_, p)| p.tensor().id())
        .collect();
    let state = ckpt.model.state_dict();
    ckpt.model.load_state_dict(&state).unwrap();
    let ids_after: Vec<_> = ckpt
        .model
        .params()
        .iter()
        .map(|(_, p)| p.tensor().id())
        .collect();
    assert_eq!(ids, ids_after);
    // num_batches_tracked, as PyTorch's state dict has it, is ignored.
    let mut with_counter = state.clone();
    with_counter.push(("cnn.b1.bn.num_batches_tracked".into(), Tensor::scalar(3.0)));
    ckpt.model.load_state_dict(&with_counter).unwrap();
    // A failed load changes nothing.
    let mut broken = state.clone();
    broken.retain(|(n, _)| n != "head.bias");
    broken[0].1 = Tensor::zeros(broken[0].1.dims()).unwrap();
    let err = ckpt.model.load_state_dict(&broken).unwrap_err().to_string();
    assert_mentions(&err, &["missing tensors: head.bias"]);
    assert_eq!(ckpt.model.state_dict()[0].1.data(), state[0].1.data());
}

#[test]
fn missing_files_are_named() {
    let dir = TempDir::new("missing");
    let err = error_of(checkpoint::load(&dir.path().join("nope")));
    assert_mentions(&err, &["nope", "not found"]);

    let only_weights = TempDir::new("no-config");
    std::fs::copy(
        golden_dir().join("model.safetensors"),
        only_weights.path().join("model.safetensors"),
    )
    .unwrap();
    let err = error_of(checkpoint::load(only_weights.path()));
    assert_mentions(&err, &["config.json", "not found"]);

    let only_config = TempDir::new("no-weights");
    std::fs::copy(
        golden_dir().join("config.json"),
        only_config.path().join("config.json"),
    )
    .unwrap();
    let err = error_of(checkpoint::load(only_config.path()));
    assert_mentions(&err, &["model.safetensors", "not found"]);
}

#[test]
fn broken_weights_are_named() {
    let good = checkpoint::load(&golden_dir()).unwrap().model.state_dict();

    // Truncated file.
    let dir = with_weights("truncated", &good);
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = error_of(checkpoint::load(dir.path()));
    assert_mentions(&err, &["model.safetensors", "not a valid safetensors file"]);
    std::fs::write(&path, &bytes[..5]).unwrap();
    let err = error_of(checkpoint::load(dir.path()));
    assert_mentions(&err, &["model.safetensors", "not a valid safetensors file"]);

    // An extra tensor.
    let mut extra = good.clone();
    extra.push(("cnn.b9.conv.weight".into(), Tensor::zeros(&[2, 2]).unwrap()));
    let err = error_of(checkpoint::load(with_weights("extra", &extra).path()));
    assert_mentions(
        &err,
        &[
            "model.safetensors",
            "config.json",
            "unexpected tensors: cnn.b9.conv.weight",
        ],
    );

    // A missing tensor.
    let mut missing = good.clone();
    missing.retain(|(n, _)| n != "rnn.weight_hh_l1_reverse");
    let err = error_of(checkpoint::load(with_weights("missing", &missing).path()));
    assert_mentions(
        &err,
        &[
            "model.safetensors",
            "missing tensors: rnn.weight_hh_l1_reverse",
        ],
    );

    // A wrong shape: weights that do not match the config.
    let mut wrong = good.clone();
    for (name, t) in wrong.iter_mut() {
        if name == "head.bias" {
            *t = Tensor::zeros(&[12]).unwrap();
        }
    }
    let err = error_of(checkpoint::load(with_weights("shape", &wrong).path()));
    assert_mentions(
        &err,
        &[
            "model.safetensors",
            "wrong shapes: head.bias is [12] but the model expects [11]",
        ],
    );

    // F64 tensors.
    let dir = with_weights("f64", &good);
    write_f64_safetensors(&dir.path().join("model.safetensors"));
    let err = error_of(checkpoint::load(dir.path()));
    assert_mentions(&err, &["model.safetensors", "F64", "only F32"]);
    let err = checkpoint::load_weights(&dir.path().join("model.safetensors"))
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["model.safetensors", "F64"]);
}

/// A valid safetensors file holding one F64 tensor, written by hand.
fn write_f64_safetensors(path: &Path) {
    let mut header = br#"{"head.bias":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#.to_vec();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend(1.5f64.to_le_bytes());
    bytes.extend((-2.0f64).to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn broken_configs_are_named() {
    let text = std::fs::read_to_string(golden_dir().join("config.json")).unwrap();
    let try_config = |name: &str, content: &str| {
        let dir = TempDir::new(name);
        std::fs::write(dir.path().join("config.json"), content).unwrap();
        std::fs::copy(
            golden_dir().join("model.safetensors"),
            dir.path().join("model.safetensors"),
        )
        .unwrap();
        error_of(checkpoint::load(dir.path()))
    };
    let err = try_config("unknown-top", &text.replacen('{', "{\"optimizer\": 1,", 1));
    assert_mentions(&err, &["config.json", "unknown field `optimizer`"]);
    let err = try_config(
        "unknown-model",
        &text.replace("\"hidden\"", "\"size\": 3, \"hidden\""),
    );
    assert_mentions(&err, &["config.json", "unknown field `size`"]);
    let err = try_config("bad-json", &text[..text.len() / 2]);
    assert_mentions(&err, &["config.json", "invalid checkpoint config"]);
    // A config that does not match the weights.
    let err = try_config(
        "other-hidden",
        &text.replace("\"hidden\": 6", "\"hidden\": 7"),
    );
    assert_mentions(
        &err,
        &[
            "model.safetensors",
            "config.json",
            "wrong shapes",
            "rnn.weight_hh_l0",
        ],
    );
    // A charset that does not fit the classes.
    let err = try_config("charset", &text.replace("\"9\"", "\"9\", \"x\""));
    assert_mentions(&err, &["config.json", "11 symbols", "11 classes"]);
    // An invalid model config.
    let err = try_config("invalid", &text.replace("\"layers\": 2", "\"layers\": 0"));
    assert_mentions(&err, &["config.json", "layers must be at least 1"]);
}

#[test]
fn save_refuses_a_charset_that_does_not_fit() {
    let ckpt = checkpoint::load(&golden_dir()).unwrap();
    let dir = TempDir::new("bad-charset");
    let short: Vec<String> = ckpt.charset[..9].to_vec();
    assert!(checkpoint::save(dir.path(), &ckpt.model, &short).is_err());
    let mut twice = ckpt.charset.clone();
    twice[1] = twice[0].clone();
    assert!(checkpoint::save(dir.path(), &ckpt.model, &twice).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn load_model_takes_a_folder_or_a_preset_with_weights() {
    // A folder.
    let mut from_folder =
        checkpoint::load_model(golden_dir().to_str().unwrap(), None, None).unwrap();
    let got = logits(&mut from_folder.model, &input(), &CRNN_TINY_WIDTHS);
    check::assert_close(
        "load_model folder",
        &got,
        &CRNN_TINY_LOGITS,
        &CRNN_TINY_LOGITS_SHAPE,
    );
    let err = checkpoint::load_model(golden_dir().to_str().unwrap(), None, Some(36))
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["config.json", "10 symbols"]);

    // A preset with a weights file.
    let dir = TempDir::new("preset");
    let mut rng = Rng::seed(42);
    let mut model = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut rng).unwrap();
    let x = Tensor::from_vec(
        (0..2 * 32 * 40).map(|_| rng.range(-1.0, 1.0)).collect(),
        &[2, 1, 32, 40],
    )
    .unwrap();
    model
        .forward(&mut Tape::no_grad(), &x, &[40, 40], true, &mut rng)
        .unwrap();
    let file = dir.path().join("s.safetensors");
    checkpoint::save_weights(&file, &model.state_dict()).unwrap();
    let mut loaded = checkpoint::load_model("crnn-s", Some(&file), None).unwrap();
    assert_eq!(
        loaded.charset.concat(),
        "0123456789abcdefghijklmnopqrstuvwxyz"
    );
    let want = logits(&mut model, &x, &[40, 30]);
    let got = logits(&mut loaded.model, &x, &[40, 30]);
    assert_eq!(want.data(), got.data());
    // The wrong preset for the weights.
    let err = checkpoint::load_model("crnn-t", Some(&file), None)
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["s.safetensors", "crnn-t", "wrong shapes"]);
    // A preset sized for another charset takes the class count from it.
    let fresh = checkpoint::load_model("crnn-t", None, Some(20)).unwrap();
    assert_eq!(fresh.model.config.num_classes, 21);
    assert!(fresh.charset.is_empty());
    // Weights of another class count need the caller's charset.
    let mut other = Crnn::new(
        CrnnConfig::preset("crnn-s").unwrap().with_classes(11),
        &mut rng,
    )
    .unwrap();
    let file11 = dir.path().join("s11.safetensors");
    checkpoint::save_weights(&file11, &other.state_dict()).unwrap();
    let err = checkpoint::load_model("crnn-s", Some(&file11), None)
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["s11.safetensors", "11 classes", "charset"]);
    let mut eleven = checkpoint::load_model("crnn-s", Some(&file11), Some(10)).unwrap();
    assert!(eleven.charset.is_empty());
    let want = logits(&mut other, &x, &[40, 40]);
    assert_eq!(logits(&mut eleven.model, &x, &[40, 40]).data(), want.data());
    // Neither a folder nor a preset.
    let err = checkpoint::load_model("crnn-xl", None, None)
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["crnn-xl", "crnn-t", "crnn-s"]);
}

/// Writes retort-saved checkpoints for the PyTorch check of
/// make_crnn_golden.py (`--check-rust DIR`) into `$RETORT_CRNN_EXPORT`, or
/// into a temporary folder when it is not set (then only the writing is tested).
#[test]
fn export_for_pytorch() {
    let temp = TempDir::new("export");
    let root = std::env::var_os("RETORT_CRNN_EXPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let x = input();
    let widths = CRNN_TINY_WIDTHS;

    // 1. The golden model, loaded and saved again by retort.
    let mut golden = checkpoint::load(&golden_dir()).unwrap();
    export(
        &root.join("golden"),
        &mut golden.model,
        &golden.charset,
        &x,
        &widths,
    );

    // 2. A model initialised in Rust, BatchNorm affine values perturbed and
    //    running statistics moved by a few training-mode forwards.
    let mut rng = Rng::seed(77);
    let mut model = Crnn::new(golden.model.config.clone(), &mut rng).unwrap();
    for (name, p) in model.params_mut() {
        if name.contains(".bn.") {
            for v in p.values_mut() {
                *v += rng.range(-0.5, 0.5);
            }
        }
    }
    for _ in 0..3 {
        let batch = Tensor::from_vec(
            (0..4 * 32 * 24).map(|_| rng.range(-1.0, 1.4)).collect(),
            &[4, 1, 32, 24],
        )
        .unwrap();
        model
            .forward(&mut Tape::no_grad(), &batch, &[24; 4], true, &mut rng)
            .unwrap();
    }
    export(
        &root.join("rust_init"),
        &mut model,
        &golden.charset,
        &x,
        &widths,
    );
}

fn export(dir: &Path, model: &mut Crnn, charset: &[String], x: &Tensor, widths: &[usize]) {
    checkpoint::save(dir, model, charset).unwrap();
    let out = logits(model, x, widths);
    let io = serde_json::json!({
        "input_shape": x.dims(),
        "input": x.data(),
        "widths": widths,
        "logits_shape": out.dims(),
        "logits": out.data(),
    });
    std::fs::write(dir.join("io.json"), io.to_string()).unwrap();
    checkpoint::load(dir).unwrap();
}

#[test]
fn pytorch_batchnorm_step_counters_are_skipped() {
    // A state_dict saved by PyTorch with its int64 num_batches_tracked
    // tensors still loads: they are not part of the model.
    use safetensors::tensor::{Dtype, TensorView};
    let model = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut Rng::seed(4)).unwrap();
    let state = model.state_dict();
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = state
        .iter()
        .map(|(n, t)| {
            let data = t.data().iter().flat_map(|v| v.to_le_bytes()).collect();
            (n.clone(), data, t.dims().to_vec())
        })
        .collect();
    let counter = 7i64.to_le_bytes().to_vec();
    let mut views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, d, s)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    for b in 1..=4 {
        views.push((
            format!("cnn.b{b}.bn.num_batches_tracked"),
            TensorView::new(Dtype::I64, vec![], &counter).unwrap(),
        ));
    }
    let dir = std::env::temp_dir().join(format!("retort-nbt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("model.safetensors");
    std::fs::write(&file, safetensors::serialize(views, None).unwrap()).unwrap();
    let loaded = checkpoint::load_weights(&file).unwrap();
    assert_eq!(loaded.len(), state.len());
    let mut other = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut Rng::seed(5)).unwrap();
    other.load_state_dict(&loaded).unwrap();
    for ((n, a), (_, b)) in other.state_dict().iter().zip(&state) {
        assert_eq!(a.data(), b.data(), "{n}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
