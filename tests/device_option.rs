//! `--device` on the commands, on a machine without a usable GPU (where
//! there is one, the cases that need its absence are skipped): `auto` falls
//! back to the CPU and says why, `cuda` stops before the run with the
//! reason, a device that is not one is refused, in flags and config files.

#[path = "common/cli.rs"]
mod cli;
use cli::{fails_with, retort, s, scratch, succeeds};

fn gpu_usable() -> bool {
    retort::DeviceChoice::Cuda(0).resolve().is_ok()
}

fn data(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (train, val) = (dir.join("train"), dir.join("val"));
    for (out, count, seed) in [(&train, "24", "5"), (&val, "8", "6")] {
        succeeds(&retort(&[
            "render",
            "--out",
            s(out),
            "--count",
            count,
            "--seed",
            seed,
        ]));
    }
    (train, val)
}

fn train_args<'a>(train: &'a str, val: &'a str, out: &'a str, device: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--model",
        "crnn-s",
        "--train",
        train,
        "--val",
        val,
        "--out",
        out,
        "--steps",
        "2",
        "--val-every",
        "2",
        "--batch-size",
        "8",
        "--quiet",
        "--device",
        device,
    ]
}

#[test]
fn auto_without_a_gpu_trains_on_the_cpu_and_says_why() {
    if gpu_usable() {
        eprintln!("skipped: a GPU is usable here, so auto takes it");
        return;
    }
    let dir = scratch("device-auto");
    let (train, val) = data(&dir);
    let run = dir.join("run");
    let out = retort(&train_args(s(&train), s(&val), s(&run), "auto"));
    let text = succeeds(&out);
    assert!(text.contains("trained 2 steps"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("falling back to the CPU"), "{err}");
    assert!(run.join("best/model.safetensors").is_file());
    let config = std::fs::read_to_string(run.join("train_config.json")).unwrap();
    assert!(config.contains("\"device\": \"auto\""), "{config}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cuda_without_a_gpu_stops_before_the_run_with_the_reason() {
    if gpu_usable() {
        eprintln!("skipped: a GPU is usable here");
        return;
    }
    let dir = scratch("device-cuda");
    let (train, val) = data(&dir);
    let run = dir.join("run");
    let err = fails_with(
        &retort(&train_args(s(&train), s(&val), s(&run), "cuda")),
        &["device"],
    );
    assert!(
        err.contains("`cuda` feature") || err.contains("CUDA driver"),
        "{err}"
    );
    assert!(!run.join("last").exists(), "a checkpoint was written");
    fails_with(
        &retort(&[
            "eval",
            "--model",
            "crnn-s",
            "--data",
            s(&val),
            "--device",
            "cuda:3",
        ]),
        &["device"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_device_that_is_not_one_is_refused_in_flags_and_configs() {
    let out = retort(&[
        "train", "--model", "crnn-s", "--train", "a", "--val", "b", "--out", "c", "--device", "tpu",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cpu, cuda, cuda:N or auto"), "{err}");

    let dir = scratch("device-config");
    let config = dir.join("run.json");
    std::fs::write(
        &config,
        r#"{"train": ["a"], "val": ["b"], "out": "c", "budget": {"steps": 2},
            "strategy": {"kind": "mutual", "models": [{"preset": "crnn-s"}, {"preset": "crnn-s"}]},
            "device": "cuda:x"}"#,
    )
    .unwrap();
    fails_with(
        &retort(&["distill", "--config", s(&config)]),
        &["run.json", "cuda:x"],
    );
    std::fs::remove_dir_all(&dir).ok();
}
