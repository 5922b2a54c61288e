//! A run whose loss becomes non-finite, from the command line: each such
//! step is skipped with a warning, five in a row stop the run with a
//! non-zero exit and a message naming the last good checkpoint, and that
//! checkpoint (written before the trouble) is untouched and still loads.
//!
//! The run is made to overflow with real inputs: a tiny model is trained for
//! two steps (a checkpoint in `last/`), then its `train_config.json` is given
//! a learning rate of 1e38 without clipping or warm-up and the run is
//! resumed: the first resumed Adam step moves every weight by about 1e38, and
//! from then on every loss is infinite or NaN.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

#[path = "common/cli.rs"]
mod cli;
use cli::{fails_with, retort, s, scratch, succeeds};

/// What the scenario leaves to check.
struct Blowup {
    /// The output folder of the run.
    run: PathBuf,
    /// The validation data.
    val: PathBuf,
    /// The bytes of `last/model.safetensors` before the resumed run.
    last_before: Vec<u8>,
    /// The resumed run that blew up.
    out: Output,
    /// The folder of it all (a static is never dropped, so it stays).
    _dir: cli::Scratch,
}

/// Runs the scenario once for all the tests of this file.
fn blowup() -> &'static Blowup {
    static ONCE: OnceLock<Blowup> = OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = scratch("nan-stop");
        let (train, val, run) = (dir.join("train"), dir.join("val"), dir.join("run"));
        for (out, count, seed) in [(&train, "16", "3"), (&val, "8", "4")] {
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
        succeeds(&retort(&[
            "--threads",
            "1",
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
            "2",
            "--val-every",
            "2",
            "--batch-size",
            "4",
            "--augment",
            "0",
            "--quiet",
        ]));
        let last_before = std::fs::read(run.join("last/model.safetensors")).unwrap();
        overflowing_config(&run);
        let out = retort(&["--threads", "1", "train", "--resume", s(&run)]);
        Blowup {
            run,
            val,
            last_before,
            out,
            _dir: dir,
        }
    })
}

/// Rewrites the run's `train_config.json` so that the resumed run overflows:
/// learning rate 1e38, constant, no warm-up, no clipping, a budget of 20
/// steps and no validation (so no checkpoint) before the end.
fn overflowing_config(run: &Path) {
    let path = run.join("train_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["lr"] = 1e38.into();
    cfg["warmup_steps"] = 0.into();
    cfg["clip_norm"] = serde_json::Value::Null;
    cfg["schedule"] = serde_json::json!({"kind": "constant"});
    cfg["budget"] = serde_json::json!({"steps": 20});
    cfg["val_every"] = 1000.into();
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
}

#[test]
fn five_non_finite_steps_stop_the_run_naming_the_last_good_checkpoint() {
    let b = blowup();
    let last = b.run.join("last");
    let err = fails_with(&b.out, &["5 non-finite steps in a row", s(&last)]);
    assert!(err.contains("last good checkpoint"), "{err}");
    // The checkpoint from before is untouched, and loads and evaluates.
    let now = std::fs::read(last.join("model.safetensors")).unwrap();
    assert!(
        now == b.last_before,
        "last/ was rewritten by the failed run"
    );
    let text = succeeds(&retort(&["eval", "--model", s(&last), "--data", s(&b.val)]));
    assert!(text.contains("lines        8"), "{text}");
}

#[test]
fn each_non_finite_step_is_warned_about() {
    let b = blowup();
    let err = String::from_utf8_lossy(&b.out.stderr);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("warning") && l.contains("non-finite loss"))
        .collect();
    assert_eq!(
        warnings.len(),
        5,
        "one warning per skipped step expected on stderr:\n{err}"
    );
    assert!(warnings.iter().all(|w| w.contains("skipped")), "{err}");
}
