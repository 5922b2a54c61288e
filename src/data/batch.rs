//! Batches of text lines: images resized to height 32, padded on the right to
//! a common width, with the true widths carried for the CTC input lengths.

use super::image::GrayImage;
use super::labels::Sample;
use super::resize::{normalize, resize_to_height, HEIGHT};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::path::PathBuf;

/// How the images of a batch get their common width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WidthPolicy {
    /// Every image is resized to height 32 (keeping its aspect ratio, and
    /// squashed if wider than this) then padded to exactly this width.
    /// `Fixed(128)` is the benchmark shape.
    Fixed(usize),
    /// Images are resized to height 32 keeping their aspect ratio, never
    /// wider than `max_width`; the batch is padded to its widest image,
    /// rounded up to a multiple of `multiple` (e.g. 4 or 8; 0 counts as 1).
    Pad {
        /// The widest an image may be after resizing (wider ones are squashed).
        max_width: usize,
        /// The batch width is rounded up to a multiple of this.
        multiple: usize,
    },
}

impl WidthPolicy {
    /// The widest an image may be after resizing under this policy (at least 1).
    pub fn max_width(&self) -> usize {
        match *self {
            WidthPolicy::Fixed(w) => w.max(1),
            WidthPolicy::Pad { max_width, .. } => max_width.max(1),
        }
    }

    /// The batch width for images whose widest is `widest` pixels.
    pub fn batch_width(&self, widest: usize) -> usize {
        match *self {
            WidthPolicy::Fixed(w) => w.max(1),
            WidthPolicy::Pad { multiple, .. } => {
                let m = multiple.max(1);
                widest.max(1).div_ceil(m) * m
            }
        }
    }
}

/// A batch ready for a model.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The images, shape (N, 1, 32, W), normalised to [-1, 1].
    pub images: Tensor,
    /// The true pixel width of each image after resizing (before padding).
    pub widths: Vec<usize>,
    /// The encoded label of each image.
    pub targets: Vec<Vec<usize>>,
    /// The label text of each image.
    pub labels: Vec<String>,
    /// The image file of each image.
    pub paths: Vec<PathBuf>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.widths.len()
    }

    /// Whether the batch holds no image (never true for a batch from
    /// [`make_batch`]).
    pub fn is_empty(&self) -> bool {
        self.widths.is_empty()
    }
}

/// Resizes an image for `policy`: height 32, aspect ratio kept, at most the
/// policy's maximum width (see [`resize_to_height`]).
pub fn prepare_image(img: &GrayImage, policy: WidthPolicy) -> GrayImage {
    resize_to_height(img, HEIGHT, policy.max_width())
}

/// The pixel data of a batch before it becomes a tensor (so it can be built
/// on a worker thread whatever the tensor's storage).
pub(crate) struct RawBatch {
    pub data: Vec<f32>,
    pub dims: [usize; 4],
    pub widths: Vec<usize>,
    pub targets: Vec<Vec<usize>>,
    pub labels: Vec<String>,
    pub paths: Vec<PathBuf>,
}

impl RawBatch {
    pub fn into_batch(self) -> Result<Batch> {
        Ok(Batch {
            images: Tensor::from_vec(self.data, &self.dims)?,
            widths: self.widths,
            targets: self.targets,
            labels: self.labels,
            paths: self.paths,
        })
    }
}

pub(crate) fn assemble(items: Vec<(GrayImage, Sample)>, policy: WidthPolicy) -> Result<RawBatch> {
    if items.is_empty() {
        return Err(Error::invalid("make_batch", "no images to batch"));
    }
    let max_w = policy.max_width();
    let images: Vec<(GrayImage, Sample)> = items
        .into_iter()
        .map(|(img, s)| {
            let fits = img.height == HEIGHT
                && img.width >= 1
                && img.width <= max_w
                && img.pixels.len() == img.width * img.height;
            if fits {
                (img, s)
            } else {
                (prepare_image(&img, policy), s)
            }
        })
        .collect();
    let widest = images.iter().map(|(img, _)| img.width).max().unwrap_or(1);
    let w = policy.batch_width(widest);
    let n = images.len();
    let mut data = Vec::with_capacity(n * HEIGHT * w);
    let mut widths = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    let mut paths = Vec::with_capacity(n);
    for (img, sample) in images {
        let values = normalize(&img.pixels);
        for y in 0..HEIGHT {
            let row = &values[y * img.width..(y + 1) * img.width];
            data.extend_from_slice(row);
            // Edge padding: repeat the last column.
            let edge = row[img.width - 1];
            data.extend(std::iter::repeat_n(edge, w - img.width));
        }
        widths.push(img.width);
        targets.push(sample.target);
        labels.push(sample.label);
        paths.push(sample.path);
    }
    Ok(RawBatch {
        data,
        dims: [n, 1, HEIGHT, w],
        widths,
        targets,
        labels,
        paths,
    })
}

/// Builds a batch from images already resized with [`prepare_image`] (any
/// image that does not fit the policy, by height or width, is resized here)
/// and their samples, in order. Each image is padded on the right to the
/// batch width by repeating its last column. Errors on an empty list.
pub fn make_batch(items: Vec<(GrayImage, Sample)>, policy: WidthPolicy) -> Result<Batch> {
    assemble(items, policy)?.into_batch()
}
