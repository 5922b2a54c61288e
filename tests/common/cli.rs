//! Helpers for tests that run the `retort` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `retort` with `args` and waits for it.
pub fn retort(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(args)
        .output()
        .expect("run retort")
}

/// A scratch folder, removed when dropped unless the thread is panicking
/// (a failing test keeps its files to look at).
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh, empty scratch folder unique to this test process.
pub fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("retort-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn succeeds(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a clean failure: exit code 1, no panic, and a message holding
/// every one of `needles`. Returns the message.
#[track_caller]
pub fn fails_with(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "should have failed; stdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panicked:\n{err}"
    );
    for n in needles {
        assert!(err.contains(n), "message lacks {n:?}:\n{err}");
    }
    err
}
