//! Frozen teachers: loading, running without a tape, averaging their soft
//! targets, and keeping their logits across epochs when nothing changes them.

use super::config::TeacherSpec;
use crate::autograd::Tape;
use crate::checkpoint::load_model;
use crate::data::batch::Batch;
use crate::data::charset::Charset;
use crate::error::{Error, Result};
use crate::nn::{Crnn, CrnnOutput};
use crate::rng::Rng;
use crate::tensor::{Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

/// A frozen teacher and its share of the soft targets.
#[derive(Clone, Debug)]
pub struct Teacher {
    /// Where it came from (for messages).
    pub name: String,
    /// The model (always run in evaluation mode).
    pub model: Crnn,
    /// Its share in the averaged soft targets.
    pub weight: f32,
}

/// Loads a teacher onto `device` and checks that it reads the run's charset.
pub fn load_teacher(spec: &TeacherSpec, charset: &Charset, device: Device) -> Result<Teacher> {
    let ck = load_model(
        &spec.model,
        spec.weights.as_deref(),
        Some(charset.symbols().len()),
    )?;
    if !ck.charset.is_empty() && ck.charset != charset.symbols() {
        return Err(Error::invalid(
            "teacher",
            format!(
                "teacher {} reads a different charset ({} symbols, starting {:?}) than the run ({} symbols, starting {:?}); teacher and student must share one charset",
                spec.model,
                ck.charset.len(),
                ck.charset.iter().take(5).collect::<Vec<_>>(),
                charset.symbols().len(),
                charset.symbols().iter().take(5).collect::<Vec<_>>()
            ),
        ));
    }
    if ck.model.config.num_classes != charset.num_classes() {
        return Err(Error::invalid(
            "teacher",
            format!(
                "teacher {} has {} classes but the run's charset needs {}",
                spec.model,
                ck.model.config.num_classes,
                charset.num_classes()
            ),
        ));
    }
    let mut model = ck.model;
    model.to_device(device)?;
    Ok(Teacher {
        name: spec.model.clone(),
        model,
        weight: spec.weight,
    })
}

/// Runs a frozen model on a batch: evaluation mode, no tape.
pub fn run_frozen(model: &mut Crnn, batch: &Batch) -> Result<CrnnOutput> {
    let mut tape = Tape::no_grad();
    model.forward(
        &mut tape,
        &batch.images,
        &batch.widths,
        false,
        &mut Rng::seed(0),
    )
}

/// The soft targets of several teachers as one set of logits: with weights
/// wᵢ (normalised to sum 1), `T · log Σᵢ wᵢ softmax(zᵢ / T)`, whose softmax
/// at temperature T is the weighted average of the teachers' softened
/// distributions. One teacher's logits are returned as they are.
pub fn combined_logits(logits: &[(&Tensor, f32)], temperature: f32) -> Result<Tensor> {
    match logits {
        [] => Err(Error::invalid("combined_logits", "no teacher logits")),
        [(z, _)] => Ok((*z).detach()),
        _ => {
            let shape = logits[0].0.dims().to_vec();
            if let Some((z, _)) = logits.iter().find(|(z, _)| z.dims() != shape.as_slice()) {
                return Err(Error::shape(
                    "combined_logits",
                    format!(
                        "teachers give logits of different shapes {:?} and {:?} (their pooling differs)",
                        shape,
                        z.dims()
                    ),
                ));
            }
            let k = *shape.last().unwrap_or(&1);
            let total_w: f32 = logits.iter().map(|(_, w)| w).sum();
            let mut avg = vec![0.0f32; logits[0].0.numel()];
            for (z, w) in logits {
                let share = w / total_w;
                for (row, out) in z.data().chunks_exact(k).zip(avg.chunks_exact_mut(k)) {
                    let m = row
                        .iter()
                        .fold(f32::NEG_INFINITY, |a, &b| a.max(b / temperature));
                    let sum: f32 = row.iter().map(|&v| (v / temperature - m).exp()).sum();
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o += share * (v / temperature - m).exp() / sum;
                    }
                }
            }
            let out: Vec<f32> = avg
                .into_iter()
                .map(|p| temperature * p.max(1e-30).ln())
                .collect();
            Tensor::from_vec(out, &shape)?.to_device(logits[0].0.device())
        }
    }
}

/// Teachers' logits kept per image across epochs: each image's real frames
/// (length × classes), per teacher, from the first batch it appeared in.
/// Valid only when the images do not change between epochs (no augmentation).
#[derive(Debug, Default)]
pub struct TeacherCache {
    entries: HashMap<PathBuf, Vec<Vec<f32>>>,
    classes: usize,
    hits: u64,
    misses: u64,
}

impl TeacherCache {
    /// An empty cache.
    pub fn new() -> TeacherCache {
        TeacherCache::default()
    }

    /// (batches served from the cache, batches computed).
    pub fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Each teacher's logits (T, N, K) for `batch`, whose student frames
    /// number `t` with real lengths `lengths`: from the cache when every
    /// image is there, else computed (and stored). Padded frames of cached
    /// logits are 0 (they are masked by the losses).
    pub fn logits(
        &mut self,
        teachers: &mut [Teacher],
        batch: &Batch,
        lengths: &[usize],
        t: usize,
    ) -> Result<Vec<Tensor>> {
        let n = batch.len();
        if self.classes > 0 && batch.paths.iter().all(|p| self.entries.contains_key(p)) {
            self.hits += 1;
            let k = self.classes;
            let device = teachers.first().map_or(Device::Cpu, |t| t.model.device());
            return (0..teachers.len())
                .map(|ti| {
                    let mut data = vec![0.0f32; t * n * k];
                    for (ni, path) in batch.paths.iter().enumerate() {
                        let rows = &self.entries[path][ti];
                        let len = (rows.len() / k).min(lengths[ni]).min(t);
                        for step in 0..len {
                            let at = (step * n + ni) * k;
                            data[at..at + k].copy_from_slice(&rows[step * k..(step + 1) * k]);
                        }
                    }
                    Tensor::from_vec(data, &[t, n, k])?.to_device(device)
                })
                .collect();
        }
        self.misses += 1;
        let mut out = Vec::with_capacity(teachers.len());
        let mut per_image: Vec<Vec<Vec<f32>>> = vec![Vec::new(); n];
        for teacher in teachers.iter_mut() {
            let o = run_frozen(&mut teacher.model, batch)?;
            let &[tt, nn, k] = o.logits.dims() else {
                return Err(Error::shape(
                    "TeacherCache",
                    "teacher logits are not (T, N, K)",
                ));
            };
            self.classes = k;
            let data = o.logits.data();
            for (ni, rows) in per_image.iter_mut().enumerate().take(nn) {
                let len = o.lengths[ni].min(tt);
                let mut own = Vec::with_capacity(len * k);
                for step in 0..len {
                    let at = (step * nn + ni) * k;
                    own.extend_from_slice(&data[at..at + k]);
                }
                rows.push(own);
            }
            out.push(o.logits);
        }
        for (path, rows) in batch.paths.iter().zip(per_image) {
            self.entries.entry(path.clone()).or_insert(rows);
        }
        Ok(out)
    }
}
