//! The seeded data loader: shuffles, decodes, augments and batches on worker
//! threads ahead of the training loop, with results that depend only on the
//! seed and the epoch, never on thread scheduling.

use super::batch::{assemble, prepare_image, Batch, RawBatch, WidthPolicy};
use super::image::{read_png, GrayImage};
use super::labels::Sample;
use super::resize::{resized_width, HEIGHT};
use crate::error::{Error, Result};
use crate::rng::Rng;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// An augmentation: takes an image of height 32 and a generator, returns the
/// augmented image (any size; it is resized back to the policy afterwards).
pub type AugmentFn = Arc<dyn Fn(&GrayImage, &mut Rng) -> GrayImage + Send + Sync>;

/// With `buckets`, samples are sorted by width inside shuffled windows of
/// this many batches.
const BUCKET_WINDOW_BATCHES: usize = 16;

/// How a [`Loader`] builds its batches.
#[derive(Clone)]
pub struct LoaderConfig {
    /// Images per batch (at least 1).
    pub batch_size: usize,
    /// Shuffle the samples every epoch (seeded by `seed` and the epoch).
    pub shuffle: bool,
    /// Seed of the shuffling and of the augmentation.
    pub seed: u64,
    /// How images are resized and padded.
    pub width: WidthPolicy,
    /// Augmentation applied to each image (after decoding and resizing).
    pub augment: Option<AugmentFn>,
    /// Worker threads decoding batches; 0 decodes on the consumer's thread.
    pub workers: usize,
    /// Batches decoded ahead of the consumer (at least one per worker).
    pub prefetch: usize,
    /// Drop the last batch of an epoch when it is incomplete.
    pub drop_last: bool,
    /// Group samples of similar width into batches (sort a shuffled window
    /// by width, then shuffle the order of the batches), so less padding is
    /// computed.
    pub buckets: bool,
    /// Keep decoded and resized images in memory after their first load
    /// (augmentation still runs afresh every epoch).
    pub cache_images: bool,
}

impl Default for LoaderConfig {
    /// Batch 32, shuffled, seed 0, `Pad { max_width: 512, multiple: 4 }`, no
    /// augmentation, 2 workers, 4 batches ahead, last batch kept, no
    /// buckets, images cached.
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            shuffle: true,
            seed: 0,
            width: WidthPolicy::Pad {
                max_width: 512,
                multiple: 4,
            },
            augment: None,
            workers: 2,
            prefetch: 4,
            drop_last: false,
            buckets: false,
            cache_images: true,
        }
    }
}

impl std::fmt::Debug for LoaderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoaderConfig")
            .field("batch_size", &self.batch_size)
            .field("shuffle", &self.shuffle)
            .field("seed", &self.seed)
            .field("width", &self.width)
            .field("augment", &self.augment.as_ref().map(|_| "Fn"))
            .field("workers", &self.workers)
            .field("prefetch", &self.prefetch)
            .field("drop_last", &self.drop_last)
            .field("buckets", &self.buckets)
            .field("cache_images", &self.cache_images)
            .finish()
    }
}

/// What the loader shares with its workers.
struct Shared {
    samples: Vec<Sample>,
    config: LoaderConfig,
    /// Decoded and resized images, filled on first load when caching.
    cache: Vec<OnceLock<GrayImage>>,
    /// Expected width of every sample after resizing, read from the PNG
    /// headers on the first bucketed epoch.
    widths: OnceLock<Vec<usize>>,
}

/// Batches of a dataset, epoch by epoch. Cloning is cheap and shares the
/// image cache.
#[derive(Clone)]
pub struct Loader {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("samples", &self.shared.samples.len())
            .field("config", &self.shared.config)
            .finish()
    }
}

/// A 64-bit mix of several words (splitmix64 finaliser over a running sum),
/// giving independent seeds for (seed, epoch, stream).
fn mix(words: &[u64]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    for &w in words {
        h = h.wrapping_add(w).wrapping_add(0x9E37_79B9_7F4A_7C15);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

/// Domain tags so that shuffling and augmentation never share a stream.
const SHUFFLE_STREAM: u64 = 0x5348_5546;
const AUGMENT_STREAM: u64 = 0x4155_474D;

/// Width and height from a PNG's IHDR chunk, reading only its first 24 bytes.
fn png_size(path: &Path) -> Option<(usize, usize)> {
    let mut head = [0u8; 24];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if &head[..8] != b"\x89PNG\r\n\x1a\n" || &head[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes([head[16], head[17], head[18], head[19]]) as usize;
    let h = u32::from_be_bytes([head[20], head[21], head[22], head[23]]) as usize;
    Some((w, h))
}

impl Loader {
    /// A loader over `samples`. Errors on a batch size of 0, an empty
    /// dataset or a width policy of width 0.
    pub fn new(samples: Vec<Sample>, config: LoaderConfig) -> Result<Loader> {
        if config.batch_size == 0 {
            return Err(Error::invalid(
                "Loader::new",
                "batch size must be at least 1",
            ));
        }
        if samples.is_empty() {
            return Err(Error::invalid("Loader::new", "the dataset has no samples"));
        }
        let zero_width = match config.width {
            WidthPolicy::Fixed(w) => w == 0,
            WidthPolicy::Pad { max_width, .. } => max_width == 0,
        };
        if zero_width {
            return Err(Error::invalid(
                "Loader::new",
                format!("width policy {:?} allows no pixel", config.width),
            ));
        }
        let cache = if config.cache_images {
            (0..samples.len()).map(|_| OnceLock::new()).collect()
        } else {
            Vec::new()
        };
        Ok(Loader {
            shared: Arc::new(Shared {
                samples,
                config,
                cache,
                widths: OnceLock::new(),
            }),
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.shared.samples.len()
    }

    /// Whether there is no sample (never true: [`Loader::new`] refuses it).
    pub fn is_empty(&self) -> bool {
        self.shared.samples.is_empty()
    }

    /// The samples, in dataset order.
    pub fn samples(&self) -> &[Sample] {
        &self.shared.samples
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.shared.config
    }

    /// Batches in one epoch (the last, incomplete one counted unless
    /// `drop_last`).
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.len(), self.shared.config.batch_size);
        if self.shared.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Batches of one epoch, decoded (and augmented) on `workers` threads
    /// ahead of the consumer, in a deterministic order fixed by
    /// (seed, epoch): the same seed and epoch give identical batches. The
    /// augmentation generator of each sample is derived from the seed, the
    /// epoch and the sample's index, so worker scheduling never changes the
    /// results. An unreadable image gives an `Err` naming the file for its
    /// batch (later batches still come). Dropping the iterator early stops
    /// the workers.
    pub fn epoch(&self, epoch: usize) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch index `start` on (for resuming a
    /// run mid-epoch): the same batches as [`Loader::epoch`] after skipping
    /// `start`, without decoding the skipped ones.
    pub fn epoch_from(&self, epoch: usize, start: usize) -> EpochIter {
        let plan: Vec<Vec<usize>> = self.plan(epoch).into_iter().skip(start).collect();
        EpochIter::start(self.shared.clone(), epoch as u64, plan)
    }

    /// The sample indices of each batch of `epoch`, in order.
    pub fn epoch_plan(&self, epoch: usize) -> Vec<Vec<usize>> {
        self.plan(epoch)
    }

    fn plan(&self, epoch: usize) -> Vec<Vec<usize>> {
        let cfg = &self.shared.config;
        let n = self.len();
        let b = cfg.batch_size;
        let mut rng = Rng::seed(mix(&[cfg.seed, epoch as u64, SHUFFLE_STREAM]));
        let mut order: Vec<usize> = (0..n).collect();
        if cfg.shuffle {
            rng.shuffle(&mut order);
        }
        if cfg.buckets {
            let widths = self.widths();
            let window = b * BUCKET_WINDOW_BATCHES;
            for chunk in order.chunks_mut(window) {
                chunk.sort_by_key(|&i| (widths[i], i));
            }
        }
        let mut batches: Vec<Vec<usize>> = order.chunks(b).map(|c| c.to_vec()).collect();
        if cfg.drop_last && batches.last().is_some_and(|l| l.len() < b) {
            batches.pop();
        }
        if cfg.buckets && cfg.shuffle {
            rng.shuffle(&mut batches);
        }
        batches
    }

    /// Expected resized width of every sample: from the cache where
    /// decoded, else from the PNG header (0 when unreadable).
    fn widths(&self) -> &[usize] {
        self.shared.widths.get_or_init(|| {
            let policy = self.shared.config.width;
            let max_w = policy.max_width();
            self.shared
                .samples
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    if let Some(img) = self.shared.cache.get(i).and_then(|c| c.get()) {
                        return img.width;
                    }
                    png_size(&s.path)
                        .map(|(w, h)| resized_width(w, h, HEIGHT, max_w))
                        .unwrap_or(0)
                })
                .collect()
        })
    }
}

impl Shared {
    /// The image of sample `i`, decoded and resized (from the cache when held).
    fn base_image(&self, i: usize) -> Result<GrayImage> {
        if let Some(img) = self.cache.get(i).and_then(|c| c.get()) {
            return Ok(img.clone());
        }
        let img = prepare_image(&read_png(&self.samples[i].path)?, self.config.width);
        if let Some(cell) = self.cache.get(i) {
            // Another worker may have filled it meanwhile: same content.
            let _ = cell.set(img.clone());
        }
        Ok(img)
    }

    fn build(&self, epoch: u64, indices: &[usize]) -> Result<RawBatch> {
        let policy = self.config.width;
        let mut items = Vec::with_capacity(indices.len());
        for &i in indices {
            let mut img = self.base_image(i)?;
            if let Some(augment) = &self.config.augment {
                let mut rng = Rng::seed(mix(&[self.config.seed, epoch, AUGMENT_STREAM, i as u64]));
                img = augment(&img, &mut rng);
                // `assemble` resizes anything that no longer fits the policy.
            }
            items.push((img, self.samples[i].clone()));
        }
        assemble(items, policy)
    }
}

/// The batches of one epoch, in order; see [`Loader::epoch`].
pub struct EpochIter {
    shared: Arc<Shared>,
    epoch: u64,
    plan: Vec<Vec<usize>>,
    /// Index into `plan` of the next batch to yield.
    next: usize,
    /// One channel per worker; batch `k` comes from worker `k % workers`.
    receivers: Vec<Receiver<Result<RawBatch>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Set after a worker died: nothing more is yielded.
    broken: bool,
}

impl EpochIter {
    fn start(shared: Arc<Shared>, epoch: u64, plan: Vec<Vec<usize>>) -> EpochIter {
        let workers = shared.config.workers.min(plan.len());
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        if workers > 0 {
            let per_worker = shared.config.prefetch.div_ceil(workers).max(1);
            let plan = Arc::new(plan.clone());
            for w in 0..workers {
                let (tx, rx) = sync_channel(per_worker);
                let shared = shared.clone();
                let plan = plan.clone();
                let stop_w = stop.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("retort-loader-{w}"))
                    .spawn(move || {
                        for k in (w..plan.len()).step_by(workers) {
                            if stop_w.load(Ordering::Relaxed) {
                                return;
                            }
                            let batch = shared.build(epoch, &plan[k]);
                            if tx.send(batch).is_err() {
                                return;
                            }
                        }
                    });
                match spawned {
                    Ok(h) => {
                        receivers.push(rx);
                        handles.push(h);
                    }
                    Err(_) => {
                        // Could not spawn: decode on the consumer's thread instead.
                        stop.store(true, Ordering::Relaxed);
                        receivers.clear();
                        for h in handles.drain(..) {
                            let _ = h.join();
                        }
                        break;
                    }
                }
            }
        }
        EpochIter {
            shared,
            epoch,
            plan,
            next: 0,
            receivers,
            handles,
            stop,
            broken: false,
        }
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.broken || self.next >= self.plan.len() {
            return None;
        }
        let k = self.next;
        self.next += 1;
        let raw = if self.receivers.is_empty() {
            self.shared.build(self.epoch, &self.plan[k])
        } else {
            match self.receivers[k % self.receivers.len()].recv() {
                Ok(r) => r,
                Err(_) => {
                    self.broken = true;
                    return Some(Err(Error::invalid(
                        "Loader",
                        format!("a loader worker stopped (panicked?) before batch {k}"),
                    )));
                }
            }
        };
        Some(raw.and_then(RawBatch::into_batch))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = if self.broken {
            0
        } else {
            self.plan.len() - self.next
        };
        (left.min(1), Some(left))
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers unblocks workers waiting to send.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
