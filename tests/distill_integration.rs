//! A small teacher → student run end to end: the distillation loss goes
//! down, and the distilled student is not worse than the same student
//! trained alone on the same data, steps and seed.

use retort::data::charset::Charset;
use retort::data::render::{render_dataset, RenderConfig};
use retort::distill::config::{DistillConfig, Objective, Strategy};
use retort::distill::distill;
use retort::nn::{BlockConfig, CrnnConfig};
use retort::train::{train, Budget, ModelSource, TrainConfig};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retort-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn model(channels: [usize; 4], hidden: usize, classes: usize) -> CrnnConfig {
    let pools = [Some((2, 2)), Some((2, 2)), None, Some((2, 1))];
    CrnnConfig {
        in_channels: 1,
        height: 32,
        blocks: channels
            .iter()
            .zip(pools)
            .map(|(&out_channels, pool)| BlockConfig { out_channels, pool })
            .collect(),
        hidden,
        layers: 1,
        bidirectional: true,
        num_classes: classes,
        dropout: 0.0,
        exits: Vec::new(),
    }
}

fn digits(root: &Path) -> (PathBuf, Charset) {
    let path = root.join("digits.txt");
    std::fs::write(&path, "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n").unwrap();
    (path.clone(), Charset::from_file(&path).unwrap())
}

fn run_config(
    root: &Path,
    charset: &Path,
    model: CrnnConfig,
    out: &str,
    steps: u64,
) -> TrainConfig {
    TrainConfig {
        model: ModelSource::Config(model),
        charset: Some(charset.to_path_buf()),
        budget: Budget::Steps(steps),
        batch_size: 16,
        lr: 3e-3,
        warmup_steps: 20,
        val_every: steps,
        augment: 0.0,
        progress: false,
        ..TrainConfig::new(
            "crnn-s",
            vec![root.join("train")],
            vec![root.join("val")],
            root.join(out),
        )
    }
}

#[test]
fn kd_lowers_the_distillation_loss_and_the_student_is_not_worse_than_alone() {
    let root = scratch("distill-integration");
    let (charset_file, charset) = digits(&root);
    for (dir, count, seed) in [("train", 480, 1), ("val", 96, 2)] {
        let cfg = RenderConfig {
            count,
            seed,
            min_len: 3,
            max_len: 5,
            charset: charset.clone(),
            ..RenderConfig::default()
        };
        render_dataset(&root.join(dir), &cfg).unwrap();
    }
    let classes = charset.num_classes();
    let teacher = train(&run_config(
        &root,
        &charset_file,
        model([16, 32, 48, 48], 48, classes),
        "teacher",
        400,
    ))
    .unwrap();
    assert!(
        teacher.best_exact_match > 0.5,
        "the teacher must learn the task first: {teacher:?}"
    );

    let student = model([8, 16, 24, 24], 24, classes);
    let steps = 300;
    let alone = train(&run_config(
        &root,
        &charset_file,
        student.clone(),
        "alone",
        steps,
    ))
    .unwrap();

    let base = run_config(&root, &charset_file, student.clone(), "kd", steps);
    let kd_cfg = DistillConfig {
        log_every: 10,
        ..DistillConfig::from_train(
            &base,
            Strategy::teacher_student(
                &root.join("teacher/best"),
                ModelSource::Config(student),
                Objective::kd_with_hint(4.0, "b4"),
            ),
        )
    };
    let report = distill(&kd_cfg).unwrap();

    // The distillation terms, as logged every 10 steps: the last quarter's
    // mean is well below the first logged values.
    let log = std::fs::read_to_string(root.join("kd/metrics.jsonl")).unwrap();
    let series = |term: &str| -> Vec<f64> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get(term).and_then(|x| x.as_f64()))
            .collect()
    };
    for term in ["kd", "hint"] {
        let s = series(term);
        assert!(s.len() >= 20, "{term}: {s:?}");
        let tail = &s[s.len() * 3 / 4..];
        let tail_mean = tail.iter().sum::<f64>() / tail.len() as f64;
        assert!(
            tail_mean < 0.6 * s[0],
            "{term} did not go down: first {}, last quarter {tail_mean}",
            s[0]
        );
    }

    let kd = report.student().unwrap();
    assert!(
        kd.exact_match + 0.02 >= alone.best_exact_match,
        "KD student {:.3} is worse than the student alone {:.3}",
        kd.exact_match,
        alone.best_exact_match
    );
    assert!(
        kd.cer <= alone.best_cer + 0.02,
        "KD student CER {:.3} is worse than the student alone's {:.3}",
        kd.cer,
        alone.best_cer
    );
    eprintln!(
        "teacher {:.3}, alone {:.3} (CER {:.3}), KD {:.3} (CER {:.3})",
        teacher.best_exact_match, alone.best_exact_match, alone.best_cer, kd.exact_match, kd.cer
    );
    let _ = std::fs::remove_dir_all(&root);
}
