//! `retort bench`: the JSON rows of the reference steps (with the latency
//! per line of the inference rows), the peak line, and the refusal of the
//! CUDA device.

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
        // Latency per line: microseconds per image for inference rows,
        // null for the training rows.
        let us = &row["us_per_line"];
        if row["row"].as_str().unwrap().starts_with("infer") {
            let us = us
                .as_f64()
                .unwrap_or_else(|| panic!("us_per_line in {row}"));
            let ms = row["median_ms"].as_f64().unwrap();
            let batch = row["batch"].as_f64().unwrap();
            assert!(
                (us - ms * 1e3 / batch).abs() <= 1e-6 * us.max(1.0),
                "us_per_line {us} vs median_ms {ms} / batch {batch} in {row}"
            );
        } else {
            assert!(us.is_null(), "{row}");
        }
    }
}

#[test]
fn table_shows_latency_per_line_and_peak_share() {
    let out = retort(&[
        "--threads",
        "1",
        "bench",
        "--peak",
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
    assert!(stdout.contains("µs per line"), "{stdout}");
    let infer: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("infer crnn-s"))
        .collect();
    // Two table rows (batch 1 and 2), each ending in its latency, and the
    // share-of-peak lines where the CPU has an FMA loop.
    let table_rows: Vec<&&str> = infer.iter().filter(|l| !l.contains("peak")).collect();
    assert_eq!(table_rows.len(), 2, "{stdout}");
    for row in table_rows {
        let last = row.split_whitespace().last().unwrap();
        assert!(last.parse::<f64>().is_ok_and(|v| v > 0.0), "{row}");
    }
    if stdout.contains("FP32 peak") {
        assert!(stdout.contains("% of the"), "{stdout}");
    }
}

#[test]
fn json_peak_line_precedes_the_rows() {
    let out = retort(&[
        "--threads",
        "1",
        "bench",
        "--json",
        "--peak",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--batch",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let values: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let peaks: Vec<&serde_json::Value> =
        values.iter().filter(|v| v.get("peak").is_some()).collect();
    for p in &peaks {
        let g = p["gflops"].as_f64().unwrap();
        assert!(g > 0.0 && g.is_finite(), "{p}");
        assert!(
            ["avx512", "avx2"].contains(&p["peak"].as_str().unwrap()),
            "{p}"
        );
    }
    assert_eq!(values.len(), peaks.len() + 4, "{stdout}");
    assert!(values[peaks.len()..].iter().all(|v| v.get("row").is_some()));
}

#[test]
fn cuda_device_without_a_gpu_is_refused_with_a_clear_message() {
    if retort::cuda::probe(0).is_ok() {
        eprintln!("skipped: this machine has a GPU, so --device cuda runs");
        return;
    }
    let out = retort(&["bench", "--device", "cuda", "--reps", "1", "--warmup", "0"]);
    assert!(!out.status.success(), "should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`cuda` feature") || stderr.contains("CUDA driver"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "printed rows: {:?}", out.stdout);
}
