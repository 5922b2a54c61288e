//! `retort distill`, `retort zoo` and `retort demo` from the command line:
//! a bad config gets a clear error naming the file and the problem, and the
//! commands run end to end on tiny inputs.

#[path = "common/cli.rs"]
mod cli;

use cli::{fails_with, retort, s, scratch, succeeds};
use retort::checkpoint;
use retort::data::render::{render_dataset, RenderConfig};
use retort::nn::{Crnn, CrnnConfig};
use retort::Rng;
use std::path::{Path, PathBuf};

/// Tiny data and an untrained crnn-s teacher (default charset), plus a
/// teacher that reads only digits.
fn fixture(name: &str) -> cli::Scratch {
    let root = scratch(name);
    for (dir, count, seed) in [("train", 16, 1), ("val", 8, 2)] {
        let cfg = RenderConfig {
            count,
            seed,
            ..RenderConfig::default()
        };
        render_dataset(&root.join(dir), &cfg).unwrap();
    }
    let t = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut Rng::seed(1)).unwrap();
    checkpoint::save(&root.join("teacher"), &t, &checkpoint::default_charset()).unwrap();
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let cfg = CrnnConfig::preset("crnn-s").unwrap().with_classes(11);
    let t = Crnn::new(cfg, &mut Rng::seed(2)).unwrap();
    checkpoint::save(&root.join("digit-teacher"), &t, &digits).unwrap();
    root
}

/// A teacher → student config over the fixture, with `strategy_extra`
/// spliced into the strategy object and `top_extra` into the top level.
fn config(root: &Path, top_extra: &str, objective: &str, teacher: &str) -> PathBuf {
    let text = format!(
        r#"{{
  "train": [{train:?}], "val": [{val:?}], "out": {out:?},
  "budget": {{"steps": 2}}, "batch_size": 4, "val_every": 2, "progress": false, "log_every": 1{top_extra},
  "strategy": {{
    "kind": "teacher_student",
    "teachers": [{{"model": {teacher:?}}}],
    "student": {{"preset": "crnn-s"}},
    "objective": {objective}
  }}
}}"#,
        train = s(&root.join("train")),
        val = s(&root.join("val")),
        out = s(&root.join("out")),
        teacher = s(&root.join(teacher)),
    );
    let n = std::fs::read_dir(root).unwrap().count();
    let path = root.join(format!("distill-{n}.json"));
    std::fs::write(&path, text).unwrap();
    path
}

const KD: &str = r#"{"kd": {"temperature": 4.0}}"#;

#[test]
fn a_valid_config_distils_and_writes_checkpoints_and_a_report() {
    let root = fixture("distill-ok");
    let cfg = config(
        &root,
        "",
        r#"{"kd": {"temperature": 4.0}, "intermediate_matches": [{"teacher_layer": "b4", "student_layer": "b4", "loss": "hint"}]}"#,
        "teacher",
    );
    let out = succeeds(&retort(&["distill", "--config", s(&cfg)]));
    assert!(out.contains("teacher_student"), "{out}");
    assert!(out.contains("exact match"), "{out}");
    checkpoint::load(&root.join("out/best")).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["strategy"], "teacher_student");
    let log = std::fs::read_to_string(root.join("out/metrics.jsonl")).unwrap();
    assert!(log.contains("\"kd\"") && log.contains("\"hint\""), "{log}");
}

#[test]
fn bad_configs_name_the_file_and_the_problem() {
    let root = fixture("distill-bad");
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            config(&root, r#", "learning_rate": 0.1"#, KD, "teacher"),
            vec!["distill-", "unknown field `learning_rate`"],
        ),
        (
            config(&root, r#", "seed": "many""#, KD, "teacher"),
            vec!["distill-", "invalid type"],
        ),
        (
            config(
                &root,
                "",
                r#"{"intermediate_matches": [{"teacher_layer": "b9", "student_layer": "b4", "loss": "hint"}]}"#,
                "teacher",
            ),
            vec!["distill-", "intermediate_matches[0]", "`b9`"],
        ),
        (
            config(&root, "", KD, "digit-teacher"),
            vec!["distill-", "digit-teacher", "charset"],
        ),
        (
            config(&root, "", r#"{"kd": {"temperature": 0.0}}"#, "teacher"),
            vec!["distill-", "temperature must be positive"],
        ),
        (
            config(
                &root,
                "",
                r#"{"kd": {"temperature": 4.0, "weight": -1.0}}"#,
                "teacher",
            ),
            vec!["distill-", "kd.weight", "at least 0"],
        ),
        (
            config(
                &root,
                "",
                r#"{"intermediate_matches": [{"teacher_layer": "b2", "student_layer": "b2", "loss": "fsp"}]}"#,
                "teacher",
            ),
            vec!["distill-", "fsp needs two layers"],
        ),
        (
            config(&root, "", KD, "no-such-teacher"),
            vec!["distill-", "no-such-teacher"],
        ),
    ];
    for (path, needles) in cases {
        let out = retort(&["distill", "--config", s(&path)]);
        fails_with(&out, &needles);
        assert!(
            !root.join("out/best").exists(),
            "a refused config must not train: {needles:?}"
        );
    }
    fails_with(
        &retort(&["distill", "--config", s(&root.join("missing.json"))]),
        &["missing.json"],
    );
}

#[test]
fn zoo_runs_the_chosen_methods_and_writes_its_table() {
    let root = fixture("zoo");
    let out = succeeds(&retort(&[
        "zoo",
        "--teacher",
        s(&root.join("teacher")),
        "--train",
        s(&root.join("train")),
        "--val",
        s(&root.join("val")),
        "--budget",
        "2",
        "--batch-size",
        "4",
        "--only",
        "kd,noisy-student",
        "--out",
        s(&root.join("zoo")),
        "--quiet",
    ]));
    assert!(out.contains("alone") && out.contains("kd"), "{out}");
    let md = std::fs::read_to_string(root.join("zoo/zoo.md")).unwrap();
    assert!(
        md.contains("| alone |") && md.contains("| kd |") && md.contains("| teacher |"),
        "{md}"
    );
    assert!(md.contains("skipped: needs --unlabeled"), "{md}");
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("zoo/zoo.json")).unwrap()).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4, "{rows}");
    fails_with(
        &retort(&[
            "zoo",
            "--teacher",
            s(&root.join("teacher")),
            "--train",
            s(&root.join("train")),
            "--val",
            s(&root.join("val")),
            "--budget",
            "2",
            "--only",
            "telepathy",
            "--out",
            s(&root.join("zoo2")),
        ]),
        &["unknown method `telepathy`"],
    );
}

#[test]
fn demo_runs_end_to_end_on_a_tiny_budget() {
    let root = scratch("demo");
    let out = succeeds(&retort(&[
        "demo",
        "--out",
        s(&root),
        "--lines",
        "24",
        "--val-lines",
        "8",
        "--teacher-steps",
        "2",
        "--student-steps",
        "2",
        "--batch-size",
        "4",
        "--quiet",
    ]));
    for needle in [
        "crnn-t",
        "crnn-s + KD",
        "parameters",
        "size on disk",
        "images/s",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    for dir in ["crnn-t", "crnn-s", "crnn-s-kd"] {
        checkpoint::load(&root.join(dir).join("best")).unwrap();
    }
    assert!(root.join("demo.md").is_file());
}

#[test]
fn self_distillation_reports_each_exit_and_eval_and_infer_stop_early() {
    let root = fixture("self-distill");
    let text = format!(
        r#"{{"train": [{train:?}], "val": [{val:?}], "out": {out:?},
  "budget": {{"steps": 2}}, "batch_size": 4, "val_every": 2, "progress": false,
  "strategy": {{"kind": "self_distill", "model": {{"preset": "crnn-s"}}, "exits": ["b2", "b3"]}}}}"#,
        train = s(&root.join("train")),
        val = s(&root.join("val")),
        out = s(&root.join("out")),
    );
    let cfg = root.join("self.json");
    std::fs::write(&cfg, text).unwrap();
    succeeds(&retort(&["distill", "--config", s(&cfg)]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("out/report.json")).unwrap())
            .unwrap();
    let exits: Vec<&str> = report["details"]["exits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["exit"].as_str().unwrap())
        .collect();
    assert_eq!(exits, ["b2", "b3", "final"]);
    let model = root.join("out/best");
    let json = succeeds(&retort(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&root.join("val")),
        "--exit",
        "b3",
        "--json",
    ]));
    assert!(json.contains("exact_match"), "{json}");
    let image = root.join("val/images/000000.png");
    succeeds(&retort(&[
        "infer",
        "--model",
        s(&model),
        "--exit",
        "b2",
        s(&image),
    ]));
    fails_with(
        &retort(&["infer", "--model", s(&model), "--exit", "b9", s(&image)]),
        &["b9"],
    );
    let bad = root.join("bad-exit.json");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("\"b3\"", "\"b4\""),
    )
    .unwrap();
    fails_with(
        &retort(&["distill", "--config", s(&bad)]),
        &["bad-exit.json", "b4"],
    );
}
