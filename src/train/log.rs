//! The metrics log: one JSON object per line, rewritten atomically.

use crate::error::Result;
use crate::fsutil::write_atomic;
use std::path::{Path, PathBuf};

/// A JSON-lines log of training events. Each push rewrites the file through
/// a temporary file and a rename, so a crash never leaves a torn line.
pub struct MetricsLog {
    path: PathBuf,
    text: String,
}

impl MetricsLog {
    /// A log that will live at `path` (created on the first push).
    pub fn new(path: &Path) -> MetricsLog {
        MetricsLog {
            path: path.to_path_buf(),
            text: String::new(),
        }
    }

    /// A log continuing from `text` (the lines written before a resume).
    pub fn resumed(path: &Path, text: String) -> MetricsLog {
        MetricsLog {
            path: path.to_path_buf(),
            text,
        }
    }

    /// Everything logged so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Appends one event and writes the file.
    pub fn push(&mut self, event: serde_json::Value) -> Result<()> {
        self.text.push_str(&event.to_string());
        self.text.push('\n');
        write_atomic(&self.path, self.text.as_bytes())
    }

    /// Where the log is written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
