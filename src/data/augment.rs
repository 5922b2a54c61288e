//! Scan-like degradations of grey text-line images: geometric jitter
//! (scale, aspect, rotation, shear, padding), blur, noise, contrast and
//! background variation, ink fading and thinning, and JPEG-like blocks.
//!
//! Every function works on any image of at least 1x1 pixels and never
//! panics. Sizes (blur radius, speckle size, margins) are relative to the
//! image height, so the same parameters look alike on a 32-pixel line and on
//! a 64-pixel one. The background level of an image is taken as the median
//! of its border pixels; the ink is whatever differs from it.
//!
//! [`augment`] applies a random subset of them, as configured by
//! [`AugmentConfig`]; it is used by the renderer and, in light mode, by the
//! training loader.

use super::image::GrayImage;
use crate::rng::Rng;

/// How strongly, and with which degradations, [`augment`] changes an image.
///
/// `strength` scales both how often each degradation is applied (its
/// probability is its base probability times `min(strength, 1)`) and how far
/// it goes (its magnitude is the `max_*` field times `strength`, with
/// `strength` capped at 2). The `max_*` values are the magnitudes at
/// strength 1.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// 0 = no change at all, 1 = the default mix, up to 2 = harsher.
    pub strength: f32,
    /// Whether geometric changes (scale and aspect jitter, rotation, shear,
    /// padding and cropping) are allowed; without them the output has the
    /// size of the input.
    pub geometric: bool,
    /// Largest relative scale change along x (y gets half of it); hard
    /// limit 0.3.
    pub max_scale: f32,
    /// Largest rotation in degrees; hard limit 3.
    pub max_rotation_deg: f32,
    /// Largest horizontal shear (x shift per row); hard limit 0.3.
    pub max_shear: f32,
    /// Largest Gaussian blur sigma, as a fraction of the image height; hard
    /// limit 0.08.
    pub max_blur: f32,
    /// Largest standard deviation of the additive Gaussian noise, in grey
    /// levels; hard limit 40.
    pub max_noise: f32,
    /// Whether JPEG-like 8x8 block artefacts may be added.
    pub jpeg: bool,
}

impl Default for AugmentConfig {
    /// The renderer's default mix (strength 1).
    fn default() -> AugmentConfig {
        AugmentConfig {
            strength: 1.0,
            geometric: true,
            max_scale: 0.15,
            max_rotation_deg: 2.0,
            max_shear: 0.15,
            max_blur: 0.03,
            max_noise: 10.0,
            jpeg: true,
        }
    }
}

impl AugmentConfig {
    /// No augmentation (strength 0): [`augment`] returns a copy.
    pub fn none() -> AugmentConfig {
        AugmentConfig {
            strength: 0.0,
            ..AugmentConfig::default()
        }
    }

    /// A light mix for the training loader, on top of images that may
    /// already be degraded: strength 0.5, no JPEG blocks.
    pub fn light() -> AugmentConfig {
        AugmentConfig {
            strength: 0.5,
            jpeg: false,
            ..AugmentConfig::default()
        }
    }

    /// The default mix at another strength.
    pub fn with_strength(strength: f32) -> AugmentConfig {
        AugmentConfig {
            strength,
            ..AugmentConfig::default()
        }
    }
}

/// Applies a random subset of the degradations, in the order of a scanner:
/// ink thinning or fading, background variation, contrast and brightness,
/// scale jitter, rotation, shear, padding or cropping, blur, noise and JPEG
/// blocks. A non-finite or non-positive strength, or an empty image, gives an
/// unchanged copy. The output is never more than `3 * width + 8` pixels wide
/// nor `3 * height + 8` pixels high.
pub fn augment(img: &GrayImage, cfg: &AugmentConfig, rng: &mut Rng) -> GrayImage {
    let s = if cfg.strength.is_finite() {
        cfg.strength.clamp(0.0, 2.0)
    } else {
        0.0
    };
    if s <= 0.0 || !valid(img) {
        return img.clone();
    }
    let p = s.min(1.0);
    let mut out = img.clone();
    let chance = |rng: &mut Rng, base: f32| rng.uniform() < base * p;
    if chance(rng, 0.3) {
        out = ink_thinning(&out, rng, s);
    }
    if chance(rng, 0.25) {
        out = ink_fading(&out, rng, s);
    }
    if chance(rng, 0.5) {
        out = background(&out, rng, s);
    }
    if chance(rng, 0.5) {
        out = contrast_brightness(&out, rng, s);
    }
    if cfg.geometric {
        if chance(rng, 0.5) {
            out = scale_jitter(&out, rng, fin(cfg.max_scale) * s);
        }
        if chance(rng, 0.5) {
            out = rotate(&out, rng, fin(cfg.max_rotation_deg) * s);
        }
        if chance(rng, 0.4) {
            out = shear(&out, rng, fin(cfg.max_shear) * s);
        }
        if chance(rng, 0.5) {
            out = pad_crop(&out, rng, s);
        }
    }
    if chance(rng, 0.5) {
        out = blur(&out, rng, fin(cfg.max_blur) * s);
    }
    if chance(rng, 0.5) {
        out = gaussian_noise(&out, rng, fin(cfg.max_noise) * s);
    }
    if cfg.jpeg && chance(rng, 0.2) {
        out = jpeg_blocks(&out, rng, s);
    }
    // The steps bound their own growth; this makes the documented bound
    // hold whatever their combination.
    let (max_w, max_h) = (3 * img.width + 8, 3 * img.height + 8);
    if out.width > max_w || out.height > max_h {
        out = resample(&out, out.width.min(max_w), out.height.min(max_h));
    }
    out
}

fn fin(v: f32) -> f32 {
    if v.is_finite() {
        v.max(0.0)
    } else {
        0.0
    }
}

fn valid(img: &GrayImage) -> bool {
    img.width > 0 && img.height > 0 && img.pixels.len() == img.width * img.height
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// The background level: the median of the border pixels.
pub fn background_level(img: &GrayImage) -> u8 {
    if !valid(img) {
        return 255;
    }
    let (w, h) = (img.width, img.height);
    let mut hist = [0usize; 256];
    let mut n = 0;
    for x in 0..w {
        hist[img.get(x, 0) as usize] += 1;
        hist[img.get(x, h - 1) as usize] += 1;
        n += 2;
    }
    for y in 0..h {
        hist[img.get(0, y) as usize] += 1;
        hist[img.get(w - 1, y) as usize] += 1;
        n += 2;
    }
    let mut seen = 0;
    for (level, &count) in hist.iter().enumerate() {
        seen += count;
        if 2 * seen >= n {
            return level as u8;
        }
    }
    255
}

/// Whether the ink is darker than the background (the background is at
/// least the image mean).
fn dark_ink(img: &GrayImage, bg: u8) -> bool {
    let mean = img.pixels.iter().map(|&p| p as f64).sum::<f64>() / img.pixels.len().max(1) as f64;
    bg as f64 >= mean
}

/// Bilinear sample at (x, y) in pixel-centre coordinates; `fill` outside.
fn sample(img: &GrayImage, x: f32, y: f32, fill: f32) -> f32 {
    let (w, h) = (img.width as isize, img.height as isize);
    let x0 = x.floor();
    let y0 = y.floor();
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as isize, y0 as isize);
    let px = |xi: isize, yi: isize| -> f32 {
        if xi < 0 || yi < 0 || xi >= w || yi >= h {
            fill
        } else {
            img.pixels[yi as usize * w as usize + xi as usize] as f32
        }
    };
    let top = px(x0, y0) * (1.0 - fx) + px(x0 + 1, y0) * fx;
    let bottom = px(x0, y0 + 1) * (1.0 - fx) + px(x0 + 1, y0 + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Resamples to `new_w` x `new_h` (each at least 1): box-averaged
/// (supersampled) where shrinking, bilinear where growing.
fn resample(img: &GrayImage, new_w: usize, new_h: usize) -> GrayImage {
    let (new_w, new_h) = (new_w.max(1), new_h.max(1));
    let sx = img.width as f32 / new_w as f32;
    let sy = img.height as f32 / new_h as f32;
    // Sub-samples per output pixel along each axis when shrinking.
    let nx = (sx.ceil() as usize).clamp(1, 4);
    let ny = (sy.ceil() as usize).clamp(1, 4);
    let mut pixels = Vec::with_capacity(new_w * new_h);
    let edge = |v: f32, n: usize| v.clamp(0.0, (n - 1) as f32);
    for y in 0..new_h {
        for x in 0..new_w {
            let mut acc = 0.0;
            for j in 0..ny {
                let yy = (y as f32 + (j as f32 + 0.5) / ny as f32) * sy - 0.5;
                for i in 0..nx {
                    let xx = (x as f32 + (i as f32 + 0.5) / nx as f32) * sx - 0.5;
                    acc += sample(img, edge(xx, img.width), edge(yy, img.height), 255.0);
                }
            }
            pixels.push(to_u8(acc / (nx * ny) as f32));
        }
    }
    GrayImage {
        width: new_w,
        height: new_h,
        pixels,
    }
}

/// Scale and aspect jitter: the width is scaled by a factor in
/// `[1 - r, 1 + r]` and the height by one in `[1 - r/2, 1 + r/2]`, with
/// `r = max_rel` clamped to `[0, 0.3]`.
pub fn scale_jitter(img: &GrayImage, rng: &mut Rng, max_rel: f32) -> GrayImage {
    if !valid(img) {
        return img.clone();
    }
    let r = fin(max_rel).min(0.3);
    let fx = 1.0 + rng.range(-r, r);
    let fy = 1.0 + rng.range(-r / 2.0, r / 2.0);
    let w = ((img.width as f32 * fx).round() as usize).max(1);
    let h = ((img.height as f32 * fy).round() as usize).max(1);
    if w == img.width && h == img.height {
        return img.clone();
    }
    resample(img, w, h)
}

/// Rotation by a random angle in `[-max_deg, max_deg]` degrees (`max_deg`
/// clamped to `[0, 3]`), about the centre, on a canvas grown to hold the
/// whole rotated image and filled with the background level. The angle is
/// further limited so that the height grows by at most half of itself
/// (long lines get smaller angles), and the width by at most 10%.
pub fn rotate(img: &GrayImage, rng: &mut Rng, max_deg: f32) -> GrayImage {
    if !valid(img) {
        return img.clone();
    }
    let (w, h) = (img.width as f32, img.height as f32);
    let max = fin(max_deg).min(3.0).to_radians();
    let limit = (0.5 * h / w).min(0.1 * w / h).atan();
    let a = rng.range(-max, max).clamp(-limit, limit);
    if a.abs() < 1e-4 {
        return img.clone();
    }
    let (sin, cos) = a.sin_cos();
    let nw = ((w * cos + h * sin.abs()).ceil() as usize).max(1);
    let nh = ((w * sin.abs() + h * cos).ceil() as usize).max(1);
    let fill = background_level(img) as f32;
    let (cx, cy) = (w / 2.0, h / 2.0);
    let (ncx, ncy) = (nw as f32 / 2.0, nh as f32 / 2.0);
    let mut pixels = Vec::with_capacity(nw * nh);
    for y in 0..nh {
        for x in 0..nw {
            let dx = x as f32 + 0.5 - ncx;
            let dy = y as f32 + 0.5 - ncy;
            let sx = cos * dx + sin * dy + cx - 0.5;
            let sy = -sin * dx + cos * dy + cy - 0.5;
            pixels.push(to_u8(sample(img, sx, sy, fill)));
        }
    }
    GrayImage {
        width: nw,
        height: nh,
        pixels,
    }
}

/// Horizontal shear: row `y` shifts by `k * (y - height / 2)` pixels, with
/// `k` in `[-max_shear, max_shear]` (clamped to `[0, 0.3]`, and so that the
/// width grows by at most half of itself); the canvas grows to hold the
/// result, filled with the background level.
pub fn shear(img: &GrayImage, rng: &mut Rng, max_shear: f32) -> GrayImage {
    if !valid(img) {
        return img.clone();
    }
    let (w, h) = (img.width as f32, img.height as f32);
    let max = fin(max_shear).min(0.3);
    let k = rng.range(-max, max).clamp(-0.5 * w / h, 0.5 * w / h);
    if k.abs() < 1e-4 {
        return img.clone();
    }
    let extra = (k.abs() * h).ceil();
    let nw = (w + extra) as usize;
    let fill = background_level(img) as f32;
    let mut pixels = Vec::with_capacity(nw * img.height);
    for y in 0..img.height {
        let shift = k * (y as f32 + 0.5 - h / 2.0) + extra / 2.0;
        for x in 0..nw {
            pixels.push(to_u8(sample(img, x as f32 - shift, y as f32, fill)));
        }
    }
    GrayImage {
        width: nw,
        height: img.height,
        pixels,
    }
}

/// A separable Gaussian blur with standard deviation `sigma` pixels (edges
/// repeated); `sigma` below 0.05 or not finite gives a copy, above 20 is
/// taken as 20.
pub fn gaussian_blur(img: &GrayImage, sigma: f32) -> GrayImage {
    if !valid(img) || !sigma.is_finite() || sigma < 0.05 {
        return img.clone();
    }
    let sigma = sigma.min(20.0);
    let r = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = (img.width, img.height);
    let mut mid = vec![0f32; w * h];
    for y in 0..h {
        let row = &img.pixels[y * w..(y + 1) * w];
        for x in 0..w {
            let mut acc = 0.0;
            for (i, k) in kernel.iter().enumerate() {
                let xx = (x as isize + i as isize - r).clamp(0, w as isize - 1) as usize;
                acc += k * row[xx] as f32;
            }
            mid[y * w + x] = acc;
        }
    }
    let mut pixels = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (i, k) in kernel.iter().enumerate() {
                let yy = (y as isize + i as isize - r).clamp(0, h as isize - 1) as usize;
                acc += k * mid[yy * w + x];
            }
            pixels[y * w + x] = to_u8(acc);
        }
    }
    GrayImage {
        width: w,
        height: h,
        pixels,
    }
}

/// Gaussian blur with sigma uniform in `[0.3, 0.3 + max_rel * height]`
/// pixels (`max_rel` clamped to `[0, 0.08]`): a slightly out-of-focus scan.
pub fn blur(img: &GrayImage, rng: &mut Rng, max_rel: f32) -> GrayImage {
    let top = fin(max_rel).min(0.08) * img.height as f32;
    gaussian_blur(img, 0.3 + rng.uniform() * top)
}

/// Additive Gaussian noise with a standard deviation uniform in
/// `[0, max_sigma]` grey levels (`max_sigma` clamped to `[0, 40]`).
pub fn gaussian_noise(img: &GrayImage, rng: &mut Rng, max_sigma: f32) -> GrayImage {
    let sigma = rng.uniform() * fin(max_sigma).min(40.0);
    let mut out = img.clone();
    if sigma < 0.1 {
        return out;
    }
    for p in out.pixels.iter_mut() {
        *p = to_u8(*p as f32 + sigma * rng.normal());
    }
    out
}

/// Contrast and brightness: `p' = (p - mean) * c + mean + b` with the
/// contrast factor `c` in `[1 - 0.35 a, 1 + 0.2 a]` (at least 0.4) and the
/// brightness shift `b` in `[-20 a, 20 a]` grey levels, for an amount `a`
/// clamped to `[0, 2]`.
pub fn contrast_brightness(img: &GrayImage, rng: &mut Rng, amount: f32) -> GrayImage {
    let a = fin(amount).min(2.0);
    let c = rng.range(1.0 - 0.35 * a, 1.0 + 0.2 * a).max(0.4);
    let b = rng.range(-20.0 * a, 20.0 * a);
    let mut out = img.clone();
    if !valid(img) {
        return out;
    }
    let mean = img.pixels.iter().map(|&p| p as f32).sum::<f32>() / img.pixels.len().max(1) as f32;
    for p in out.pixels.iter_mut() {
        *p = to_u8((*p as f32 - mean) * c + mean + b);
    }
    out
}

/// A smooth random field over the image: bilinear interpolation of random
/// values in [-1, 1] on a grid with cells of about `cell` pixels.
fn value_noise(w: usize, h: usize, cell: f32, rng: &mut Rng) -> Vec<f32> {
    let cell = cell.max(1.0);
    let gw = (w as f32 / cell).ceil() as usize + 2;
    let gh = (h as f32 / cell).ceil() as usize + 2;
    let grid: Vec<f32> = (0..gw * gh).map(|_| rng.range(-1.0, 1.0)).collect();
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let gy = y as f32 / cell;
        let y0 = (gy.floor() as usize).min(gh - 2);
        let fy = gy - y0 as f32;
        for x in 0..w {
            let gx = x as f32 / cell;
            let x0 = (gx.floor() as usize).min(gw - 2);
            let fx = gx - x0 as f32;
            let g = |i: usize, j: usize| grid[j * gw + i];
            let top = g(x0, y0) * (1.0 - fx) + g(x0 + 1, y0) * fx;
            let bottom = g(x0, y0 + 1) * (1.0 - fx) + g(x0 + 1, y0 + 1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// Background variation, for an amount `a` clamped to `[0, 2]`: a linear
/// illumination gradient of up to `±25 a` grey levels, a paper texture
/// (smooth blotches up to `±12 a`, fine grain up to `±5 a`) and a few
/// speckles (faint dots of up to 4% of the height, at most about one per
/// height-squared of area), each present or not at random.
pub fn background(img: &GrayImage, rng: &mut Rng, amount: f32) -> GrayImage {
    let a = fin(amount).min(2.0);
    if !valid(img) || a == 0.0 {
        return img.clone();
    }
    let (w, h) = (img.width, img.height);
    let mut field = vec![0f32; w * h];
    if rng.uniform() < 0.6 {
        let amp = rng.range(5.0, 25.0) * a;
        let angle = rng.range(0.0, std::f32::consts::TAU);
        let (dx, dy) = (angle.cos(), angle.sin());
        let span = (w as f32 * dx.abs() + h as f32 * dy.abs()).max(1.0);
        for y in 0..h {
            for x in 0..w {
                let t =
                    ((x as f32 - w as f32 / 2.0) * dx + (y as f32 - h as f32 / 2.0) * dy) / span;
                field[y * w + x] += amp * 2.0 * t;
            }
        }
    }
    if rng.uniform() < 0.6 {
        let amp = rng.range(3.0, 12.0) * a;
        let cell = h as f32 * rng.range(0.3, 1.0);
        for (f, n) in field.iter_mut().zip(value_noise(w, h, cell, rng)) {
            *f += amp * n;
        }
        let grain = rng.range(0.0, 5.0) * a;
        if grain > 0.5 {
            for f in field.iter_mut() {
                *f += grain * rng.range(-1.0, 1.0);
            }
        }
    }
    let mut out = img.clone();
    for (p, f) in out.pixels.iter_mut().zip(&field) {
        *p = to_u8(*p as f32 + f);
    }
    if rng.uniform() < 0.4 {
        let bg = background_level(img) as f32;
        let dark = dark_ink(img, bg as u8);
        let specks = ((w as f32 / h as f32) * rng.uniform() * a).round() as usize;
        for _ in 0..specks.min(64) {
            let r = (h as f32 * rng.range(0.01, 0.04)).max(0.5);
            let cx = rng.range(0.0, w as f32);
            let cy = rng.range(0.0, h as f32);
            let depth = rng.range(30.0, 90.0) * if dark { -1.0 } else { 1.0 };
            let x0 = (cx - r - 1.0).max(0.0) as usize;
            let x1 = ((cx + r + 1.0) as usize).min(w - 1);
            let y0 = (cy - r - 1.0).max(0.0) as usize;
            let y1 = ((cy + r + 1.0) as usize).min(h - 1);
            for y in y0..=y1 {
                for x in x0..=x1 {
                    let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                    let cover = (r - d + 0.5).clamp(0.0, 1.0);
                    if cover > 0.0 {
                        let i = y * w + x;
                        out.pixels[i] = to_u8(out.pixels[i] as f32 + depth * cover);
                    }
                }
            }
        }
    }
    out
}

/// 3x3 minimum (`max == false`) or maximum filter, edges repeated.
fn morph(img: &GrayImage, max: bool) -> Vec<u8> {
    let (w, h) = (img.width, img.height);
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut v = img.get(x, y);
            for yy in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for xx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let p = img.get(xx, yy);
                    v = if max { v.max(p) } else { v.min(p) };
                }
            }
            out[y * w + x] = v;
        }
    }
    out
}

/// Ink thinning (worn type, light print) or thickening (ink bleed): a 3x3
/// erosion or dilation of the ink, blended in with a weight uniform in
/// `[0.2, 0.2 + 0.4 a]` (`a` clamped to `[0, 2]`); thinning is chosen two
/// times out of three. Lines under 20 pixels high get a third of the weight,
/// since one pixel is a large part of their strokes.
pub fn ink_thinning(img: &GrayImage, rng: &mut Rng, amount: f32) -> GrayImage {
    let a = fin(amount).min(2.0);
    let thin = rng.uniform() < 2.0 / 3.0;
    let mut t = rng.range(0.2, 0.2 + 0.4 * a).min(1.0);
    if !valid(img) || a == 0.0 {
        return img.clone();
    }
    if img.height < 20 {
        t /= 3.0;
    }
    let bg = background_level(img);
    let dark = dark_ink(img, bg);
    // Thinning dark ink means growing the light background: a maximum.
    let filtered = morph(img, thin == dark);
    let mut out = img.clone();
    for (p, f) in out.pixels.iter_mut().zip(filtered) {
        *p = to_u8(*p as f32 * (1.0 - t) + f as f32 * t);
    }
    out
}

/// Ink fading: the ink moves towards the background level by a fraction that
/// varies smoothly over the image, up to `0.25 a` on average and `0.6` at
/// most (`a` clamped to `[0, 2]`), as in a print with an uneven ribbon.
pub fn ink_fading(img: &GrayImage, rng: &mut Rng, amount: f32) -> GrayImage {
    let a = fin(amount).min(2.0);
    if !valid(img) || a == 0.0 {
        return img.clone();
    }
    let (w, h) = (img.width, img.height);
    let bg = background_level(img) as f32;
    let mean = rng.range(0.05, 0.25) * a;
    let cell = h as f32 * rng.range(0.5, 2.0);
    let noise = value_noise(w, h, cell, rng);
    let mut out = img.clone();
    for (p, n) in out.pixels.iter_mut().zip(noise) {
        let f = (mean * (1.0 + n)).clamp(0.0, 0.6);
        *p = to_u8(*p as f32 + (bg - *p as f32) * f);
    }
    out
}

/// Random margins: each side independently gets background padding (up to
/// `0.25 a` of the smaller side for left and right, `0.12 a` for top and
/// bottom, plus one pixel) or, one time in three, is cropped towards the ink
/// by up to as much, never cutting into the ink (pixels more than 24 grey
/// levels from the background) nor into a band of `1 + height / 16` pixels
/// around it. `a` is clamped to `[0, 2]`.
pub fn pad_crop(img: &GrayImage, rng: &mut Rng, amount: f32) -> GrayImage {
    let a = fin(amount).min(2.0);
    if !valid(img) || a == 0.0 {
        return img.clone();
    }
    let (w, h) = (img.width, img.height);
    let bg = background_level(img);
    let ink = |x: usize, y: usize| (img.get(x, y) as i32 - bg as i32).abs() > 24;
    // The ink's bounding box (the whole image when there is no ink).
    let (mut ix0, mut iy0, mut ix1, mut iy1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if ink(x, y) {
                ix0 = ix0.min(x);
                iy0 = iy0.min(y);
                ix1 = ix1.max(x + 1);
                iy1 = iy1.max(y + 1);
            }
        }
    }
    if ix0 >= ix1 {
        (ix0, iy0, ix1, iy1) = (0, 0, w, h);
    }
    // Keep a safety band around the ink for its faint anti-aliased edges.
    let band = 1 + h / 16;
    let (ix0, iy0) = (ix0.saturating_sub(band), iy0.saturating_sub(band));
    let (ix1, iy1) = ((ix1 + band).min(w), (iy1 + band).min(h));
    let side = w.min(h) as f32;
    let horiz = 0.25 * a * side + 1.0;
    let vert = 0.12 * a * side + 1.0;
    // Signed change per side: positive pads, negative crops.
    let mut change = |limit: f32, room: usize| -> isize {
        let n = rng.range(0.0, limit) as isize;
        if rng.uniform() < 1.0 / 3.0 {
            -(n.min(room as isize))
        } else {
            n
        }
    };
    let left = change(horiz, ix0);
    let right = change(horiz, w - ix1);
    let top = change(vert, iy0);
    let bottom = change(vert, h - iy1);
    let nw = (w as isize + left + right).max(1) as usize;
    let nh = (h as isize + top + bottom).max(1) as usize;
    let mut out = GrayImage::filled(nw, nh, bg);
    for y in 0..nh {
        let sy = y as isize - top;
        if sy < 0 || sy >= h as isize {
            continue;
        }
        for x in 0..nw {
            let sx = x as isize - left;
            if sx >= 0 && sx < w as isize {
                out.set(x, y, img.get(sx as usize, sy as usize));
            }
        }
    }
    out
}

/// The JPEG luminance quantisation table (quality 50).
const JPEG_Q: [f32; 64] = [
    16., 11., 10., 16., 24., 40., 51., 61., 12., 12., 14., 19., 26., 58., 60., 55., 14., 13., 16.,
    24., 40., 57., 69., 56., 14., 17., 22., 29., 51., 87., 80., 62., 18., 22., 37., 56., 68., 109.,
    103., 77., 24., 35., 55., 64., 81., 104., 113., 92., 49., 64., 78., 87., 103., 121., 120.,
    101., 72., 92., 95., 98., 112., 100., 103., 99.,
];

/// JPEG-like compression artefacts: 8x8 DCT blocks quantised with the JPEG
/// luminance table at a quality uniform in `[90 - 30 a, 90]` (`a` clamped to
/// `[0, 2]`, so quality 30 at worst), which gives ringing around strokes and
/// faint block edges.
pub fn jpeg_blocks(img: &GrayImage, rng: &mut Rng, amount: f32) -> GrayImage {
    let a = fin(amount).min(2.0);
    let quality = rng.range(90.0 - 30.0 * a, 90.0).clamp(5.0, 95.0);
    if !valid(img) {
        return img.clone();
    }
    let scale = if quality < 50.0 {
        50.0 / quality
    } else {
        (200.0 - 2.0 * quality) / 100.0
    };
    let q: Vec<f32> = JPEG_Q.iter().map(|v| (v * scale).max(1.0)).collect();
    let mut basis = [[0f32; 8]; 8];
    for (u, row) in basis.iter_mut().enumerate() {
        let cu = if u == 0 { (0.125f32).sqrt() } else { 0.5 };
        for (x, b) in row.iter_mut().enumerate() {
            *b = cu * ((2 * x + 1) as f32 * u as f32 * std::f32::consts::PI / 16.0).cos();
        }
    }
    let mut basis_t = [[0f32; 8]; 8];
    for (u, row) in basis.iter().enumerate() {
        for (x, &b) in row.iter().enumerate() {
            basis_t[x][u] = b;
        }
    }
    let (w, h) = (img.width, img.height);
    let mut out = img.clone();
    let mut block = [[0f32; 8]; 8];
    let mut tmp = [[0f32; 8]; 8];
    for by in (0..h).step_by(8) {
        for bx in (0..w).step_by(8) {
            for (y, row) in block.iter_mut().enumerate() {
                for (x, v) in row.iter_mut().enumerate() {
                    let p = img.get((bx + x).min(w - 1), (by + y).min(h - 1));
                    *v = p as f32 - 128.0;
                }
            }
            // Forward DCT: rows then columns.
            for y in 0..8 {
                for u in 0..8 {
                    tmp[y][u] = (0..8).map(|x| basis[u][x] * block[y][x]).sum();
                }
            }
            for v in 0..8 {
                for u in 0..8 {
                    let c: f32 = (0..8).map(|y| basis[v][y] * tmp[y][u]).sum();
                    let step = q[v * 8 + u];
                    block[v][u] = (c / step).round() * step;
                }
            }
            // Inverse DCT.
            for y in 0..8 {
                for u in 0..8 {
                    tmp[y][u] = (0..8).map(|v| basis[v][y] * block[v][u]).sum();
                }
            }
            let (rows, cols) = ((h - by).min(8), (w - bx).min(8));
            for (y, trow) in tmp.iter().enumerate().take(rows) {
                for (x, bcol) in basis_t.iter().enumerate().take(cols) {
                    let v: f32 = bcol.iter().zip(trow).map(|(b, t)| b * t).sum();
                    out.set(bx + x, by + y, to_u8(v + 128.0));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> GrayImage {
        let mut img = GrayImage::filled(60, 20, 240);
        for y in 5..15 {
            for x in 10..50 {
                if (x / 4) % 2 == 0 {
                    img.set(x, y, 20);
                }
            }
        }
        img
    }

    #[test]
    fn zero_strength_is_identity() {
        let img = line();
        let mut rng = Rng::seed(1);
        assert_eq!(augment(&img, &AugmentConfig::none(), &mut rng), img);
    }

    #[test]
    fn background_level_is_border_median() {
        assert_eq!(background_level(&line()), 240);
    }

    #[test]
    fn non_geometric_keeps_size() {
        let img = line();
        let cfg = AugmentConfig {
            geometric: false,
            strength: 2.0,
            ..AugmentConfig::default()
        };
        for seed in 0..20 {
            let out = augment(&img, &cfg, &mut Rng::seed(seed));
            assert_eq!((out.width, out.height), (60, 20));
        }
    }

    #[test]
    fn jpeg_of_flat_image_is_flat() {
        let img = GrayImage::filled(13, 9, 200);
        let out = jpeg_blocks(&img, &mut Rng::seed(3), 1.0);
        assert!(out.pixels.iter().all(|&p| (p as i32 - 200).abs() <= 1));
    }

    #[test]
    fn crop_never_cuts_ink() {
        let img = line();
        for seed in 0..50 {
            let out = pad_crop(&img, &mut Rng::seed(seed), 2.0);
            let dark = out.pixels.iter().filter(|&&p| p < 100).count();
            assert_eq!(dark, img.pixels.iter().filter(|&&p| p < 100).count());
        }
    }
}
