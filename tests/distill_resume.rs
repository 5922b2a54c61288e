//! A distillation run that is killed and resumed (`retort distill --resume`)
//! ends with the same weights as one that never stopped.

use retort::checkpoint;
use retort::data::render::{render_dataset, RenderConfig};
use retort::nn::{Crnn, CrnnConfig};
use retort::Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_retort"));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn weights(dir: &Path) -> Vec<(String, Vec<u32>)> {
    checkpoint::load_weights(&dir.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.data().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn setup() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retort-distill-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (sub, count, seed) in [("train", 48, 1), ("val", 8, 2)] {
        let cfg = RenderConfig {
            count,
            seed,
            ..RenderConfig::default()
        };
        render_dataset(&dir.join(sub), &cfg).unwrap();
    }
    let teacher = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut Rng::seed(3)).unwrap();
    checkpoint::save(
        &dir.join("teacher"),
        &teacher,
        &checkpoint::default_charset(),
    )
    .unwrap();
    dir
}

fn config(dir: &Path, out: &Path, strategy: &str) -> PathBuf {
    let text = format!(
        r#"{{"train": [{train:?}], "val": [{val:?}], "out": {out:?},
  "budget": {{"steps": 24}}, "batch_size": 8, "val_every": 4, "warmup_steps": 4,
  "optimizer": {{"kind": "sgd", "momentum": 0.9}}, "lr": 0.01, "progress": false,
  "strategy": {strategy}}}"#,
        train = s(&dir.join("train")),
        val = s(&dir.join("val")),
        out = s(out),
    );
    let path = out.with_extension("json");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `config` whole into one folder, and killed after its first resume
/// file then resumed into another; returns both folders.
fn whole_and_resumed(
    dir: &Path,
    name: &str,
    strategy: &str,
    resume_file: &str,
) -> (PathBuf, PathBuf) {
    let whole = dir.join(format!("{name}-whole"));
    let cfg = config(dir, &whole, strategy);
    let status = bin()
        .args(["--threads", "2", "distill", "--config", s(&cfg)])
        .status()
        .unwrap();
    assert!(status.success(), "{name}: the uninterrupted run failed");
    let cut = dir.join(format!("{name}-cut"));
    let cfg = config(dir, &cut, strategy);
    let mut child = bin()
        .args(["--threads", "2", "distill", "--config", s(&cfg)])
        .spawn()
        .unwrap();
    let file = cut.join(resume_file);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(file.exists(), "{name}: no resume file before the kill");
    let status = bin()
        .args(["--threads", "2", "distill", "--resume", s(&cut)])
        .status()
        .unwrap();
    assert!(status.success(), "{name}: the resumed run failed");
    (whole, cut)
}

#[test]
fn killed_and_resumed_distillation_ends_with_the_same_weights() {
    let dir = setup();
    let teacher = s(&dir.join("teacher")).to_string();
    let teacher_student = format!(
        r#"{{"kind": "teacher_student", "teachers": [{{"model": {teacher:?}}}], "student": {{"preset": "crnn-s"}},
           "objective": {{"kd": {{"temperature": 4.0}}, "intermediate_matches": [{{"teacher_layer": "b4", "student_layer": "b4", "loss": "hint"}}]}}}}"#
    );
    let (whole, cut) = whole_and_resumed(&dir, "ts", &teacher_student, "resume.safetensors");
    assert_eq!(weights(&whole.join("last")), weights(&cut.join("last")));

    let mutual = r#"{"kind": "mutual", "models": [{"preset": "crnn-s"}, {"preset": "crnn-s"}]}"#;
    let (whole, cut) = whole_and_resumed(&dir, "dml", mutual, "resume.safetensors");
    for m in ["model-1", "model-2"] {
        assert_eq!(
            weights(&whole.join(m).join("last")),
            weights(&cut.join(m).join("last")),
            "{m}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
