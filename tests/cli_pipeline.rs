//! The OCR pipeline from the command line: render, train, eval, infer, and
//! the errors a user meets on the way.

#[path = "common/cli.rs"]
mod cli;
use cli::{fails_with, retort, s, scratch, succeeds};

#[test]
fn render_train_eval_infer_end_to_end() {
    let dir = scratch("e2e");
    let (train, val, run) = (dir.join("train"), dir.join("val"), dir.join("run"));
    succeeds(&retort(&[
        "render",
        "--out",
        s(&train),
        "--count",
        "64",
        "--seed",
        "3",
    ]));
    succeeds(&retort(&[
        "render",
        "--out",
        s(&val),
        "--count",
        "16",
        "--seed",
        "4",
    ]));
    let text = succeeds(&retort(&[
        "--threads",
        "2",
        "train",
        "--model",
        "crnn-s",
        "--train",
        s(&train),
        "--val",
        s(&val),
        "--out",
        s(&run),
        "--steps",
        "6",
        "--val-every",
        "3",
        "--batch-size",
        "8",
        "--quiet",
    ]));
    assert!(text.contains("trained 6 steps"), "{text}");
    for file in [
        "best/config.json",
        "best/model.safetensors",
        "last/model.safetensors",
        "metrics.jsonl",
        "training.svg",
        "train_config.json",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let log = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let vals: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        vals.iter()
            .filter(|v| v.get("val_exact_match").is_some())
            .count(),
        2
    );

    let json = succeeds(&retort(&[
        "eval",
        "--model",
        s(&run.join("best")),
        "--data",
        s(&val),
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    for key in ["exact_match", "cer", "n", "images_per_s"] {
        assert!(v.get(key).is_some(), "{key} missing in {json}");
    }
    assert_eq!(v["n"], 16);
    let report = succeeds(&retort(&[
        "eval",
        "--model",
        s(&run.join("best")),
        "--data",
        s(&val),
        "--worst",
        "3",
    ]));
    assert!(
        report.contains("exact match") && report.contains("CER"),
        "{report}"
    );

    // A preset with a weights file works like the checkpoint folder.
    let weights = run.join("best/model.safetensors");
    let same = succeeds(&retort(&[
        "eval",
        "--model",
        "crnn-s",
        "--weights",
        s(&weights),
        "--data",
        s(&val),
        "--json",
    ]));
    let w: serde_json::Value = serde_json::from_str(same.trim()).unwrap();
    assert_eq!(w["exact_match"], v["exact_match"]);
    assert_eq!(w["cer"], v["cer"]);

    let images = [val.join("images/000000.png"), val.join("images/000001.png")];
    let read = succeeds(&retort(&[
        "infer",
        "--model",
        s(&run.join("best")),
        s(&images[0]),
        s(&images[1]),
    ]));
    let lines: Vec<&str> = read.lines().collect();
    assert_eq!(lines.len(), 2);
    for (line, image) in lines.iter().zip(&images) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert_eq!(fields[0], s(image));
        let conf: f32 = fields[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&conf));
    }
    let beam = succeeds(&retort(&[
        "infer",
        "--model",
        s(&run.join("best")),
        "--beam",
        "4",
        s(&images[0]),
    ]));
    assert_eq!(beam.lines().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_preset_without_weights_cannot_recognise() {
    let err = fails_with(&retort(&["infer", "--model", "crnn-t", "x.png"]), &[]);
    assert!(err.contains("--weights"), "{err}");
}

#[test]
fn missing_labels_file_is_named() {
    let dir = scratch("nolabels");
    let err = fails_with(
        &retort(&[
            "eval",
            "--model",
            "crnn-s",
            "--weights",
            "none.safetensors",
            "--data",
            s(&dir),
        ]),
        &[],
    );
    assert!(
        err.contains("none.safetensors") || err.contains("labels.txt"),
        "{err}"
    );
    let err = fails_with(
        &retort(&[
            "train",
            "--model",
            "crnn-s",
            "--train",
            s(&dir),
            "--val",
            s(&dir),
            "--out",
            s(&dir.join("o")),
            "--steps",
            "1",
        ]),
        &[],
    );
    assert!(err.contains("labels.txt"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreadable_image_is_reported_and_the_rest_still_read() {
    let dir = scratch("badimg");
    let (data, run) = (dir.join("d"), dir.join("run"));
    succeeds(&retort(&[
        "render",
        "--out",
        s(&data),
        "--count",
        "8",
        "--seed",
        "5",
    ]));
    succeeds(&retort(&[
        "train",
        "--model",
        "crnn-s",
        "--train",
        s(&data),
        "--val",
        s(&data),
        "--out",
        s(&run),
        "--steps",
        "1",
        "--val-every",
        "1",
        "--quiet",
    ]));
    let bad = dir.join("bad.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let good = data.join("images/000000.png");
    let out = retort(&["infer", "--model", s(&run.join("last")), s(&bad), s(&good)]);
    let err = fails_with(&out, &[]);
    assert!(err.contains("bad.png"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_training_arguments_are_refused() {
    let err = fails_with(
        &retort(&[
            "train", "--model", "crnn-x", "--train", "a", "--val", "b", "--out", "c",
        ]),
        &[],
    );
    assert!(err.contains("crnn-t"), "{err}");
    let err = fails_with(
        &retort(&[
            "train", "--model", "crnn-s", "--train", "a", "--val", "b", "--out", "c", "--width",
            "wide",
        ]),
        &[],
    );
    assert!(err.contains("wide"), "{err}");
}
