//! Datasets in PaddleOCR's recognition format: a folder holding the images
//! and a `labels.txt`, UTF-8, one `relative/path.png<TAB>label` per line.

use super::charset::Charset;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The name of the label file inside a dataset folder.
pub const LABELS_FILE: &str = "labels.txt";

/// One labelled text-line image.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The image file: absolute as written in the label file, or joined
    /// with the dataset folder.
    pub path: PathBuf,
    /// The label text.
    pub label: String,
    /// The label encoded with the charset (classes `1..num_classes`).
    pub target: Vec<usize>,
}

/// The samples of one or more label files, and the lines skipped.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// The good lines, in file order (folders in the order given).
    pub samples: Vec<Sample>,
    /// One human-readable reason per skipped line, `file:line: reason`
    /// (only filled when bad lines are skipped rather than refused).
    pub skipped: Vec<String>,
}

/// A parsed line with its 1-based line number.
struct Parsed {
    line: usize,
    sample: Sample,
}

fn parse_lines(
    text: &str,
    dir: &Path,
    file: &Path,
    charset: &Charset,
    skip_bad: bool,
    skipped: &mut Vec<String>,
) -> Result<Vec<Parsed>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if !line.contains('\t') && line.trim().is_empty() {
            continue;
        }
        match parse_line(line, dir, charset) {
            Ok(sample) => out.push(Parsed {
                line: line_no,
                sample,
            }),
            Err(reason) => {
                if skip_bad {
                    skipped.push(format!("{}:{}: {}", file.display(), line_no, reason));
                } else {
                    return Err(Error::data(file, Some(line_no), reason));
                }
            }
        }
    }
    Ok(out)
}

fn parse_line(line: &str, dir: &Path, charset: &Charset) -> std::result::Result<Sample, String> {
    let (path, label) = line
        .split_once('\t')
        .ok_or_else(|| "no TAB between image path and label".to_string())?;
    if path.trim().is_empty() {
        return Err("empty image path".to_string());
    }
    if label.is_empty() {
        return Err(format!("empty label for image {path:?}"));
    }
    let target = charset
        .encode(label)
        .map_err(|e| format!("label {label:?}: {e}"))?;
    let rel = Path::new(path);
    let path = if rel.is_absolute() {
        rel.to_path_buf()
    } else {
        dir.join(rel)
    };
    Ok(Sample {
        path,
        label: label.to_string(),
        target,
    })
}

/// Parses the text of a label file without touching the disk (image files
/// are not checked). `dir` is joined to relative image paths; `file` names
/// the label file in messages. A UTF-8 byte-order mark, CRLF line endings and
/// blank lines are accepted. A line with no TAB, an empty image path, an
/// empty label or a symbol outside `charset` is an error naming `file:line`,
/// or with `skip_bad` is skipped and recorded in [`Dataset::skipped`].
pub fn parse_labels(
    text: &str,
    dir: &Path,
    file: &Path,
    charset: &Charset,
    skip_bad: bool,
) -> Result<Dataset> {
    let mut skipped = Vec::new();
    let parsed = parse_lines(text, dir, file, charset, skip_bad, &mut skipped)?;
    Ok(Dataset {
        samples: parsed.into_iter().map(|p| p.sample).collect(),
        skipped,
    })
}

/// Reads `dir/labels.txt` (see [`parse_labels`]) and checks that every image
/// file exists. Errors name the label file when it is missing or not UTF-8,
/// and `file:line` plus the image path for a missing image (skipped and
/// recorded instead with `skip_bad`).
pub fn load_dataset(dir: &Path, charset: &Charset, skip_bad: bool) -> Result<Dataset> {
    let file = dir.join(LABELS_FILE);
    let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Error::data(
            &file,
            Some(line),
            format!(
                "not valid UTF-8 (byte {}); label files must be UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    let mut skipped = Vec::new();
    let parsed = parse_lines(text, dir, &file, charset, skip_bad, &mut skipped)?;
    let mut samples = Vec::with_capacity(parsed.len());
    for p in parsed {
        if p.sample.path.is_file() {
            samples.push(p.sample);
            continue;
        }
        let reason = format!("image {} not found", p.sample.path.display());
        if skip_bad {
            skipped.push(format!("{}:{}: {}", file.display(), p.line, reason));
        } else {
            return Err(Error::data(&file, Some(p.line), reason));
        }
    }
    Ok(Dataset { samples, skipped })
}

/// Loads several dataset folders (see [`load_dataset`]) into one dataset,
/// samples in folder order. Errors when no folder is given.
pub fn load_datasets(dirs: &[PathBuf], charset: &Charset, skip_bad: bool) -> Result<Dataset> {
    if dirs.is_empty() {
        return Err(Error::invalid("load_datasets", "no dataset folder given"));
    }
    let mut all = Dataset::default();
    for dir in dirs {
        let one = load_dataset(dir, charset, skip_bad)?;
        all.samples.extend(one.samples);
        all.skipped.extend(one.skipped);
    }
    Ok(all)
}

/// Writes `dir/labels.txt` atomically (a temporary file in the same folder,
/// synced, then renamed), creating `dir` if needed. Each entry is a path
/// relative to `dir` and its label. Refuses an empty path or label, a path
/// holding a TAB or line break, and a label holding a line break, since the
/// file could not be read back.
pub fn write_labels(dir: &Path, entries: &[(String, String)]) -> Result<()> {
    let mut text = String::new();
    for (i, (path, label)) in entries.iter().enumerate() {
        let bad = |what: &str| {
            Error::invalid(
                "write_labels",
                format!("entry {} ({path:?}, {label:?}): {what}", i + 1),
            )
        };
        if path.trim().is_empty() {
            return Err(bad("empty image path"));
        }
        if path.contains(['\t', '\n', '\r']) {
            return Err(bad("image path holds a TAB or line break"));
        }
        if label.is_empty() {
            return Err(bad("empty label"));
        }
        if label.contains(['\n', '\r']) {
            return Err(bad("label holds a line break"));
        }
        text.push_str(path);
        text.push('\t');
        text.push_str(label);
        text.push('\n');
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::fsutil::write_atomic(&dir.join(LABELS_FILE), text.as_bytes())
}
