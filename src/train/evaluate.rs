//! Recognising batches and measuring a model on a labelled set, at the
//! final head or at an early exit (Phuong & Lampert, "Distillation-based
//! training for multi-exit architectures", ICCV 2019: a multi-exit model
//! answers at whichever exit the budget allows).

use crate::autograd::Tape;
use crate::data::batch::Batch;
use crate::data::charset::Charset;
use crate::data::loader::Loader;
use crate::decode::{beam_search, greedy};
use crate::error::Result;
use crate::metrics::{edit_distance, RecognitionMetrics};
use crate::nn::Crnn;
use crate::rng::Rng;
use std::path::PathBuf;
use std::time::Instant;

/// The text recognised in one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Recognized {
    /// The text.
    pub text: String,
    /// Confidence in [0, 1] (see `decode`).
    pub confidence: f32,
}

/// A validation line recognised wrongly.
#[derive(Clone, Debug, PartialEq)]
pub struct Mistake {
    /// The image.
    pub path: PathBuf,
    /// The true text.
    pub label: String,
    /// What the model read.
    pub predicted: String,
    /// Edit distance between them, in characters.
    pub distance: usize,
}

/// What an evaluation found.
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// Exact match, CER and counts.
    pub metrics: RecognitionMetrics,
    /// Recognition throughput (forward and decoding, not image loading);
    /// at an early exit, the speed of stopping there.
    pub images_per_s: f64,
    /// The worst-recognised lines, largest edit distance first.
    pub worst: Vec<Mistake>,
}

/// Recognises every image of `batch` (evaluation mode, no tape), greedy when
/// `beam` ≤ 1, CTC prefix beam search otherwise. The same as
/// [`recognize_batch_at`] with no exit.
pub fn recognize_batch(
    model: &mut Crnn,
    batch: &Batch,
    charset: &Charset,
    beam: usize,
) -> Result<Vec<Recognized>> {
    recognize_batch_at(model, batch, charset, beam, None)
}

/// Recognises every image of `batch` as [`recognize_batch`] does, reading
/// the logits of the early exit `exit` (a name of `CrnnConfig::exits`, e.g.
/// `"b3"`; the model runs only up to it, [`Crnn::forward_to_exit`]) or of the
/// final head when `exit` is `None`. An exit the model lacks is an error
/// listing its exits.
pub fn recognize_batch_at(
    model: &mut Crnn,
    batch: &Batch,
    charset: &Charset,
    beam: usize,
    exit: Option<&str>,
) -> Result<Vec<Recognized>> {
    // The forward pass and decoding run inside the thread pool (see `on_pool`).
    let decoded = crate::threads::on_pool(|| -> Result<_> {
        let mut tape = Tape::no_grad();
        let mut rng = Rng::seed(0);
        let (images, widths) = (&batch.images, &batch.widths);
        let out = match exit {
            None => model.forward(&mut tape, images, widths, false, &mut rng)?,
            Some(e) => model.forward_to_exit(&mut tape, images, widths, e, false, &mut rng)?,
        };
        let decoded = if beam <= 1 {
            greedy(&out.logits, &out.lengths)?
        } else {
            beam_search(&out.logits, &out.lengths, beam)?
        };
        Ok(decoded)
    })?;
    Ok(decoded
        .into_iter()
        .map(|d| Recognized {
            text: charset.decode(&d.classes),
            confidence: d.confidence,
        })
        .collect())
}

/// Recognises every line of `loader` (one epoch, in order) and compares with
/// the labels; keeps the `keep_worst` worst lines. The same as
/// [`evaluate_at`] with no exit.
pub fn evaluate(
    model: &mut Crnn,
    charset: &Charset,
    loader: &Loader,
    beam: usize,
    keep_worst: usize,
) -> Result<EvalReport> {
    evaluate_at(model, charset, loader, beam, keep_worst, None)
}

/// Evaluates as [`evaluate`] does, recognising at the early exit `exit`
/// (see [`recognize_batch_at`]) or at the final head when `None`; the
/// report's `images_per_s` is then the speed of stopping at that exit. An
/// exit the model lacks is an error (before any image is read).
pub fn evaluate_at(
    model: &mut Crnn,
    charset: &Charset,
    loader: &Loader,
    beam: usize,
    keep_worst: usize,
    exit: Option<&str>,
) -> Result<EvalReport> {
    if let Some(e) = exit {
        model.exit_index(e)?;
    }
    let mut metrics = RecognitionMetrics::default();
    let mut mistakes = Vec::new();
    let mut compute = 0.0f64;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let start = Instant::now();
        let read = recognize_batch_at(model, &batch, charset, beam, exit)?;
        compute += start.elapsed().as_secs_f64();
        for ((r, label), path) in read.iter().zip(&batch.labels).zip(&batch.paths) {
            metrics.add(&r.text, label);
            if r.text != *label {
                let a: Vec<char> = r.text.chars().collect();
                let b: Vec<char> = label.chars().collect();
                mistakes.push(Mistake {
                    path: path.clone(),
                    label: label.clone(),
                    predicted: r.text.clone(),
                    distance: edit_distance(&a, &b),
                });
            }
        }
    }
    mistakes.sort_by(|a, b| {
        b.distance
            .cmp(&a.distance)
            .then_with(|| a.path.cmp(&b.path))
    });
    mistakes.truncate(keep_worst);
    Ok(EvalReport {
        images_per_s: metrics.n as f64 / compute.max(1e-9),
        metrics,
        worst: mistakes,
    })
}
