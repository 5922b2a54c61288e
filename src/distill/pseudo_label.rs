//! Pseudo-labelling unlabeled text lines with a teacher, for noisy-student
//! training (Xie, Luong, Hovy & Le, "Self-training with Noisy Student
//! improves ImageNet classification", CVPR 2020, §2): a teacher, run without
//! noise, labels unlabeled images; the images it reads with enough
//! confidence (the paper filters out those on which the teacher's confidence
//! is low) join the labelled set on which a noised, equal-or-larger student
//! is trained; the student then becomes the next teacher.
//!
//! Here the teacher reads each line greedily (best-path CTC), its
//! confidence is the per-frame geometric mean CTC probability of the reading
//! that [`crate::decode`] reports, and the kept lines are written as a
//! PaddleOCR dataset folder that [`load_dataset`](crate::data::labels::load_dataset)
//! reads like any other.

use crate::data::batch::WidthPolicy;
use crate::data::charset::Charset;
use crate::data::labels::{write_labels, Sample, LABELS_FILE};
use crate::data::loader::{Loader, LoaderConfig};
use crate::error::{Error, Result};
use crate::nn::Crnn;
use crate::train::recognize_batch;
use std::path::{Path, PathBuf};

/// One line the teacher labelled confidently enough.
#[derive(Clone, Debug, PartialEq)]
pub struct PseudoLabel {
    /// The image file, as given.
    pub path: PathBuf,
    /// What the teacher read (never empty).
    pub text: String,
    /// The teacher's confidence in [0, 1], as [`crate::decode`] reports it
    /// (the CTC probability of `text`, as a geometric mean per frame).
    pub confidence: f32,
}

/// What [`pseudo_label`] kept and dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PseudoLabels {
    /// The kept lines, in the order of the images given.
    pub kept: Vec<PseudoLabel>,
    /// Lines read as non-empty text with a confidence below the threshold.
    pub below_threshold: usize,
    /// Lines read as empty text (always dropped: a label cannot be empty).
    pub empty: usize,
}

impl PseudoLabels {
    /// Every line looked at: kept plus dropped.
    pub fn total(&self) -> usize {
        self.kept.len() + self.below_threshold + self.empty
    }
}

/// The PNG images of an unlabeled folder `dir`, sorted by path: the files
/// directly in it whose extension is `png` (any case). Sub-folders are not
/// searched, hidden files (names starting with `.`) are skipped, and a
/// `labels.txt` is ignored (a labelled folder's images may be pseudo-labelled
/// afresh, but only those lying directly in it). Any other file is an error
/// naming it, as is a folder that holds no PNG image or cannot be read.
pub fn list_png_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let hidden = name.to_string_lossy().starts_with('.');
        if path.is_dir() || hidden || name == LABELS_FILE {
            continue;
        }
        let png = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        if !png {
            return Err(Error::data(
                &path,
                None,
                format!(
                    "not a PNG image: an unlabeled folder holds only .png images \
                     (and optionally a {LABELS_FILE}, which is ignored)"
                ),
            ));
        }
        out.push(path);
    }
    if out.is_empty() {
        return Err(Error::data(
            dir,
            None,
            "the folder holds no PNG image (sub-folders are not searched)",
        ));
    }
    out.sort();
    Ok(out)
}

/// Labels `images` with `teacher` (Xie et al., CVPR 2020, §2): each image is
/// read and batched as the data loader does (height 32, `width` policy,
/// `batch_size` per batch, in the order given), recognised greedily in
/// evaluation mode ([`recognize_batch`]), and kept when its text is not
/// empty and its confidence is at least `threshold`. A threshold of 0 keeps
/// every non-empty reading.
///
/// Errors: a threshold outside [0, 1] (or NaN), no image, a batch size of 0,
/// a charset that does not fit the teacher's classes, and an unreadable image
/// (the loader's error, naming the file).
pub fn pseudo_label(
    teacher: &mut Crnn,
    charset: &Charset,
    images: &[PathBuf],
    threshold: f32,
    batch_size: usize,
    width: WidthPolicy,
) -> Result<PseudoLabels> {
    const OP: &str = "pseudo_label";
    if !(0.0..=1.0).contains(&threshold) {
        return Err(Error::invalid(
            OP,
            format!("confidence threshold {threshold} must be in [0, 1]"),
        ));
    }
    if images.is_empty() {
        return Err(Error::invalid(OP, "no image to label"));
    }
    if charset.num_classes() != teacher.config.num_classes {
        return Err(Error::invalid(
            OP,
            format!(
                "the charset has {} symbols but the teacher has {} classes ({} symbols and the blank)",
                charset.symbols().len(),
                teacher.config.num_classes,
                teacher.config.num_classes.saturating_sub(1)
            ),
        ));
    }
    let samples: Vec<Sample> = images
        .iter()
        .map(|path| Sample {
            path: path.clone(),
            label: String::new(),
            target: Vec::new(),
        })
        .collect();
    let loader = Loader::new(
        samples,
        LoaderConfig {
            batch_size,
            shuffle: false,
            width,
            augment: None,
            drop_last: false,
            buckets: false,
            cache_images: false,
            ..LoaderConfig::default()
        },
    )?;
    let mut out = PseudoLabels::default();
    for batch in loader.epoch(0) {
        let batch = batch?;
        let read = recognize_batch(teacher, &batch, charset, 1)?;
        for (r, path) in read.into_iter().zip(batch.paths) {
            if r.text.is_empty() {
                out.empty += 1;
            } else if r.confidence >= threshold {
                out.kept.push(PseudoLabel {
                    path,
                    text: r.text,
                    confidence: r.confidence,
                });
            } else {
                out.below_threshold += 1;
            }
        }
    }
    Ok(out)
}

/// Writes `labels` as a PaddleOCR dataset folder `dir` (created if needed):
/// a `labels.txt` (written atomically by
/// [`write_labels`](crate::data::labels::write_labels)) with one
/// `absolute/image/path.png<TAB>text` line per entry, so that the images stay
/// where they are and [`load_dataset`](crate::data::labels::load_dataset)
/// reads the folder back.
///
/// Errors: no entry (nothing was kept: lower the threshold), an image path
/// that is not UTF-8 or holds a TAB or line break, a text holding a line
/// break, and the folder or file that cannot be written.
pub fn write_pseudo_labels(dir: &Path, labels: &[PseudoLabel]) -> Result<()> {
    const OP: &str = "write_pseudo_labels";
    if labels.is_empty() {
        return Err(Error::invalid(
            OP,
            format!(
                "no pseudo-labelled line to write to {} (every line was dropped: lower the \
                 confidence threshold?)",
                dir.display()
            ),
        ));
    }
    let mut entries = Vec::with_capacity(labels.len());
    for label in labels {
        let absolute = std::path::absolute(&label.path).map_err(|e| Error::io(&label.path, e))?;
        let Some(text) = absolute.to_str() else {
            return Err(Error::data(
                &label.path,
                None,
                "the image path is not valid UTF-8, so a label file cannot name it",
            ));
        };
        entries.push((text.to_string(), label.text.clone()));
    }
    write_labels(dir, &entries)
}
