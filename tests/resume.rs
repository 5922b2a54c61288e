//! A run that is killed and resumed ends with the same weights as one that
//! never stopped, and a kill at any moment leaves a checkpoint that loads.

use retort::checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TINY: &str = r#"{"in_channels": 1, "height": 32,
  "blocks": [{"out_channels": 4, "pool": [2, 2]}, {"out_channels": 8, "pool": [2, 2]}, {"out_channels": 8, "pool": [2, 1]}],
  "hidden": 8, "layers": 1, "bidirectional": true, "num_classes": 37, "dropout": 0.2}"#;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_retort"));
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A scratch folder with rendered data and the tiny model configuration.
fn setup(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retort-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (sub, count, seed) in [("train", "48", "1"), ("val", "8", "2")] {
        let status = bin()
            .args([
                "render",
                "--out",
                s(&dir.join(sub)),
                "--count",
                count,
                "--seed",
                seed,
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    std::fs::write(dir.join("tiny.json"), TINY).unwrap();
    dir
}

fn train_args<'a>(dir: &'a Path, out: &'a Path, steps: &'a str, val_every: &'a str) -> Vec<String> {
    [
        "--threads",
        "2",
        "train",
        "--model",
        s(&dir.join("tiny.json")),
        "--train",
        s(&dir.join("train")),
        "--val",
        s(&dir.join("val")),
        "--out",
        s(out),
        "--steps",
        steps,
        "--val-every",
        val_every,
        "--batch-size",
        "8",
        "--augment",
        "0.5",
        "--warmup",
        "4",
        "--quiet",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

fn weights(dir: &Path) -> Vec<(String, Vec<u32>)> {
    checkpoint::load_weights(&dir.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.data().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn a_killed_and_resumed_run_ends_with_the_same_weights() {
    let dir = setup("exact");
    let whole = dir.join("whole");
    let status = bin()
        .args(train_args(&dir, &whole, "24", "4"))
        .status()
        .unwrap();
    assert!(status.success());

    let cut = dir.join("cut");
    let mut child = bin()
        .args(train_args(&dir, &cut, "24", "4"))
        .spawn()
        .unwrap();
    let resume_file = cut.join("last").join(retort::train::RESUME_FILE);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !resume_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        resume_file.exists(),
        "no checkpoint was written before the kill"
    );

    let status = bin()
        .args(["--threads", "2", "train", "--resume", s(&cut)])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(weights(&whole.join("last")), weights(&cut.join("last")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_kill_at_any_moment_leaves_a_checkpoint_that_loads() {
    let dir = setup("kills");
    let out = dir.join("run");
    let mut rng = retort::Rng::seed(11);
    let mut loaded = 0;
    for round in 0..20 {
        let args = if round == 0 || !out.join("train_config.json").exists() {
            train_args(&dir, &out, "400", "1")
        } else {
            vec![
                "--threads".into(),
                "2".into(),
                "train".into(),
                "--resume".into(),
                s(&out).into(),
            ]
        };
        let mut child = bin().args(&args).spawn().unwrap();
        if round == 0 {
            // Let the first run write a checkpoint, however loaded the machine is.
            let first = out.join("last").join(retort::train::RESUME_FILE);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !first.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(20 + rng.below(400) as u64));
        let _ = child.kill();
        child.wait().unwrap();
        if out.join("last").join(retort::train::RESUME_FILE).exists() {
            checkpoint::load(&out.join("last")).expect("last/ loads after a kill");
            checkpoint::load_weights(&out.join("last").join(retort::train::RESUME_FILE))
                .expect("the resume file loads after a kill");
            loaded += 1;
        }
        if out.join("best").join("model.safetensors").exists() {
            checkpoint::load(&out.join("best")).expect("best/ loads after a kill");
        }
    }
    assert_eq!(loaded, 20, "a kill left no loadable checkpoint");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resuming_a_folder_without_a_run_names_the_missing_file() {
    let dir = std::env::temp_dir().join(format!("retort-resume-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(["train", "--resume", s(&dir)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("train_config.json"));
    let _ = std::fs::remove_dir_all(&dir);
}
