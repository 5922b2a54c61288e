//! Probing for a GPU never panics: on a machine without a driver (or a build
//! without the `cuda` feature) it is an error that says what is missing.

use std::process::Command;

#[test]
fn probing_gives_a_gpu_or_a_clear_error() {
    match retort::cuda::probe(0) {
        Ok(gpu) => {
            assert!(!gpu.name.is_empty());
            assert!(gpu.memory_bytes > 0);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("`cuda` feature") || msg.contains("libcuda") || msg.contains("CUDA"),
                "unhelpful message: {msg}"
            );
            eprintln!("no GPU here: {msg}");
        }
    }
}

#[test]
fn asking_for_a_device_that_does_not_exist_is_an_error() {
    assert!(retort::cuda::probe(10_000).is_err());
}

#[test]
fn the_devices_command_reports_and_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(["devices"])
        .output()
        .expect("run retort");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("cpu\t"), "{text}");
    assert!(text.contains("cuda"), "{text}");
}

#[test]
fn zero_threads_is_refused_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(["--threads", "0", "devices"])
        .output()
        .expect("run retort");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1"));
}
