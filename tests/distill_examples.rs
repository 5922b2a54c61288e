//! Every config in `examples/distill/` parses (unknown keys are refused)
//! and runs for a few steps on a tiny rendered set, its paths pointed at
//! the test's data and teachers.

use retort::checkpoint;
use retort::data::charset::Charset;
use retort::data::render::{render_dataset, RenderConfig};
use retort::distill::{distill, DistillConfig};
use retort::nn::{Crnn, CrnnConfig};
use retort::Rng;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retort-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/distill");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_config_parses() {
    let files = examples();
    assert!(files.len() >= 5, "one example per strategy: {files:?}");
    let mut kinds = std::collections::BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let cfg: DistillConfig =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        cfg.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        kinds.insert(cfg.strategy.name());
    }
    for kind in [
        "teacher_student",
        "mutual",
        "self_distill",
        "generations",
        "noisy_student",
    ] {
        assert!(kinds.contains(kind), "no example of {kind}");
    }
}

#[test]
fn every_example_config_runs_a_few_steps() {
    let root = scratch("distill-examples");
    for (dir, count, seed) in [("train", 24, 1), ("val", 8, 2), ("unlabeled", 8, 3)] {
        let cfg = RenderConfig {
            count,
            seed,
            ..RenderConfig::default()
        };
        render_dataset(&root.join(dir), &cfg).unwrap();
    }
    let charset = Charset::default_alnum();
    let teacher = Crnn::new(CrnnConfig::preset("crnn-t").unwrap(), &mut Rng::seed(5)).unwrap();
    checkpoint::save(&root.join("teacher"), &teacher, charset.symbols()).unwrap();
    let teacher_dir = root.join("teacher").display().to_string();
    let replacements = [
        ("data/train", root.join("train").display().to_string()),
        ("data/val", root.join("val").display().to_string()),
        (
            "data/unlabeled/images",
            root.join("unlabeled/images").display().to_string(),
        ),
        (
            "data/scans",
            root.join("unlabeled/images").display().to_string(),
        ),
        ("runs/crnn-t-seed1/best", teacher_dir.clone()),
        ("runs/crnn-t/snapshots/step-1000", teacher_dir.clone()),
        ("runs/crnn-t/best", teacher_dir),
    ];
    for f in examples() {
        let mut text = std::fs::read_to_string(&f).unwrap();
        for (from, to) in &replacements {
            text = text.replace(&format!("\"{from}\""), &format!("{to:?}"));
        }
        let mut cfg: DistillConfig = serde_json::from_str(&text).unwrap();
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        cfg.out = root.join("out").join(&name);
        cfg.budget = retort::train::Budget::Steps(3);
        cfg.batch_size = 4;
        cfg.val_every = 3;
        cfg.warmup_steps = 0;
        cfg.progress = false;
        let report = distill(&cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report.steps, 3, "{name}");
        assert!(!report.students.is_empty(), "{name}");
        for s in &report.students {
            let dir = s.dir.as_ref().unwrap();
            checkpoint::load(&dir.join("best")).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(cfg.out.join("report.json").is_file(), "{name}");
        assert!(cfg.out.join("distill_config.json").is_file(), "{name}");
    }
    let _ = std::fs::remove_dir_all(&root);
}
