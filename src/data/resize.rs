//! Resizing text lines to the network's input height, and pixel
//! normalisation.

use super::image::GrayImage;

/// The input height of every recogniser, in pixels.
pub const HEIGHT: usize = 32;

/// The width an image of `width` x `height` gets when resized to `target`
/// rows keeping its aspect ratio: `round(width * target / height)`, at least
/// 1 and at most `max_width` (wider lines are squashed). Zero sizes give 1.
pub fn resized_width(width: usize, height: usize, target: usize, max_width: usize) -> usize {
    let max_width = max_width.max(1);
    if width == 0 || height == 0 {
        return 1;
    }
    let w = (width as f64 * target.max(1) as f64 / height as f64).round();
    if w >= max_width as f64 {
        max_width
    } else {
        (w as usize).max(1)
    }
}

/// Resizes `img` to `height` rows keeping the aspect ratio (see
/// [`resized_width`]): area averaging along an axis that shrinks, bilinear
/// interpolation along one that grows. Memory beyond the input and output is
/// at most one intermediate image of the smaller of (new width x old height)
/// and (old width x new height), so a line 100,000 pixels wide resizes
/// without trouble. A `height` or `max_width` of 0 counts as 1; an empty or
/// malformed input (pixel count not width x height) gives a white 1-pixel
/// wide image.
pub fn resize_to_height(img: &GrayImage, height: usize, max_width: usize) -> GrayImage {
    let height = height.max(1);
    let (w, h) = (img.width, img.height);
    if w == 0 || h == 0 || img.pixels.len() != w * h {
        return GrayImage::filled(1, height, 255);
    }
    let new_w = resized_width(w, h, height, max_width);
    if new_w == w && height == h {
        return img.clone();
    }
    let htaps = Taps::new(w, new_w);
    let vtaps = Taps::new(h, height);
    let out = if new_w * h <= w * height {
        let mid = horizontal(&img.pixels, w, h, &htaps);
        vertical(&mid, new_w, &vtaps)
    } else {
        let mid = vertical(&img.pixels, w, &vtaps);
        horizontal(&mid, w, height, &htaps)
    };
    GrayImage {
        width: new_w,
        height,
        pixels: out
            .into_iter()
            .map(|v| v.round().clamp(0.0, 255.0) as u8)
            .collect(),
    }
}

/// Maps 8-bit grey pixels to the network's input range: `p / 127.5 - 1`
/// (0 gives -1, 255 gives 1).
pub fn normalize(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&p| p as f32 / 127.5 - 1.0).collect()
}

/// For each output index along one axis, a run of contiguous source indices
/// and their weights (summing to 1).
struct Taps {
    /// First source index of each output index.
    start: Vec<usize>,
    /// `weights[offsets[j]..offsets[j + 1]]` are the weights of output `j`.
    offsets: Vec<usize>,
    weights: Vec<f32>,
}

impl Taps {
    fn new(src: usize, dst: usize) -> Taps {
        let mut start = Vec::with_capacity(dst);
        let mut offsets = Vec::with_capacity(dst + 1);
        let mut weights = Vec::new();
        offsets.push(0);
        let scale = src as f64 / dst as f64;
        for j in 0..dst {
            if dst == src {
                start.push(j);
                weights.push(1.0);
            } else if dst < src {
                // Area average over the source interval [lo, hi).
                let lo = j as f64 * scale;
                let hi = ((j + 1) as f64 * scale).min(src as f64);
                let first = (lo.floor() as usize).min(src - 1);
                let last = ((hi.ceil() as usize).max(first + 1)).min(src);
                let begin = weights.len();
                for i in first..last {
                    let overlap = (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0);
                    weights.push(overlap as f32);
                }
                let sum: f32 = weights[begin..].iter().sum();
                if sum > 0.0 {
                    weights[begin..].iter_mut().for_each(|x| *x /= sum);
                } else {
                    weights[begin] = 1.0;
                }
                start.push(first);
            } else {
                // Bilinear between the two nearest source centres.
                let x = ((j as f64 + 0.5) * scale - 0.5).clamp(0.0, (src - 1) as f64);
                let i0 = (x.floor() as usize).min(src - 1);
                let f = (x - i0 as f64) as f32;
                start.push(i0);
                if i0 + 1 < src && f > 0.0 {
                    weights.push(1.0 - f);
                    weights.push(f);
                } else {
                    weights.push(1.0);
                }
            }
            offsets.push(weights.len());
        }
        Taps {
            start,
            offsets,
            weights,
        }
    }

    fn get(&self, j: usize) -> (usize, &[f32]) {
        (
            self.start[j],
            &self.weights[self.offsets[j]..self.offsets[j + 1]],
        )
    }
}

/// Resamples each of the `h` rows of a `w`-wide image to `taps.start.len()` columns.
fn horizontal<T: Copy + Into<f32>>(src: &[T], w: usize, h: usize, taps: &Taps) -> Vec<f32> {
    let new_w = taps.start.len();
    let mut out = Vec::with_capacity(new_w * h);
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..new_w {
            let (s, ws) = taps.get(x);
            let v: f32 = ws
                .iter()
                .zip(&row[s..s + ws.len()])
                .map(|(&wt, &p)| wt * p.into())
                .sum();
            out.push(v);
        }
    }
    out
}

/// Resamples the rows of a `w`-wide image to `taps.start.len()` rows.
fn vertical<T: Copy + Into<f32>>(src: &[T], w: usize, taps: &Taps) -> Vec<f32> {
    let new_h = taps.start.len();
    let mut out = vec![0.0f32; w * new_h];
    for y in 0..new_h {
        let (s, ws) = taps.get(y);
        let dst = &mut out[y * w..(y + 1) * w];
        for (k, &wt) in ws.iter().enumerate() {
            let row = &src[(s + k) * w..(s + k + 1) * w];
            for (d, &p) in dst.iter_mut().zip(row) {
                *d += wt * p.into();
            }
        }
    }
    out
}
