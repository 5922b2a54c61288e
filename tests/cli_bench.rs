//! `retort bench`: the JSON rows of the reference steps, and the refusal of
//! the CUDA device.

use std::process::{Command, Output};

fn retort(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(args)
        .output()
        .expect("run retort")
}

#[test]
fn json_rows_have_the_keys_and_positive_numbers() {
    let out = retort(&[
        "--threads",
        "1",
        "bench",
        "--json",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--batch",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    let names: Vec<&str> = rows.iter().map(|r| r["row"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "train-step crnn-t",
            "distill-step",
            "infer crnn-s",
            "infer crnn-s"
        ]
    );
    let batches: Vec<u64> = rows.iter().map(|r| r["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [2, 2, 1, 2]);
    for row in &rows {
        assert_eq!(row["threads"].as_u64(), Some(1), "{row}");
        assert_eq!(row["device"].as_str(), Some("cpu"), "{row}");
        for key in ["median_ms", "images_per_s"] {
            let v = row[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} in {row}"));
            assert!(v > 0.0 && v.is_finite(), "{key} = {v} in {row}");
        }
    }
}

#[test]
fn cuda_device_is_refused_with_a_clear_message() {
    let out = retort(&["bench", "--device", "cuda", "--reps", "1", "--warmup", "0"]);
    assert!(!out.status.success(), "should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cuda") || stderr.contains("CUDA"),
        "{stderr}"
    );
    assert!(stderr.contains("not there yet"), "{stderr}");
    assert!(out.stdout.is_empty(), "printed rows: {:?}", out.stdout);
}
