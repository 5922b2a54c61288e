//! 8-bit grey images and PNG files.

use crate::error::{Error, Result};
use std::path::Path;

/// An 8-bit greyscale image, row-major, 0 = black, 255 = white.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrayImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` pixels, row by row.
    pub pixels: Vec<u8>,
}

/// The largest width or height accepted from a file; larger images are
/// refused before their pixels are allocated.
pub const MAX_SIDE: usize = 1 << 16;

/// The most pixels an image may have (width x height): 2^25, 32 MB grey.
pub const MAX_PIXELS: usize = 1 << 25;

impl GrayImage {
    /// An image filled with one grey level.
    pub fn filled(width: usize, height: usize, level: u8) -> GrayImage {
        GrayImage {
            width,
            height,
            pixels: vec![level; width * height],
        }
    }

    /// The pixel at column `x`, row `y`.
    pub fn get(&self, x: usize, y: usize) -> u8 {
        self.pixels[y * self.width + x]
    }

    /// Sets the pixel at column `x`, row `y`.
    pub fn set(&mut self, x: usize, y: usize, level: u8) {
        self.pixels[y * self.width + x] = level;
    }
}

fn png_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::data(path, None, format!("not a readable PNG image: {what}"))
}

fn png_write_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::data(path, None, format!("could not write the PNG image: {what}"))
}

/// Reads a PNG of any colour type and bit depth and converts it to grey
/// (ITU-R BT.601 luma; alpha composited over white).
pub fn read_png(path: &Path) -> Result<GrayImage> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_png(&bytes).map_err(|e| png_error(path, e))
}

/// Decodes PNG bytes to grey; the error says what is wrong with them.
pub fn decode_png(bytes: &[u8]) -> std::result::Result<GrayImage, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let (width, height) = {
        let info = reader.info();
        // The png crate (0.18.1) accepts a PLTE chunk of any length from 3
        // to 768 bytes, then panics expanding a palette whose length is not
        // a multiple of 3 (found by the `image` fuzz target: a PLTE of 268
        // bytes). The PNG specification makes such a palette an error.
        if let Some(palette) = info.palette.as_deref() {
            if palette.len() % 3 != 0 {
                return Err(format!(
                    "the PLTE chunk holds {} bytes, not a whole number of RGB entries",
                    palette.len()
                ));
            }
        }
        (info.width as usize, info.height as usize)
    };
    if width == 0 || height == 0 {
        return Err(format!("image is {width}x{height} pixels"));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "image is {width}x{height} pixels, larger than {MAX_SIDE} on a side"
        ));
    }
    // A few header bytes must not make us allocate gigabytes (found by the
    // `image` fuzz target: 65534 x 64260 passed the per-side limit).
    if width * height > MAX_PIXELS {
        return Err(format!(
            "image is {width}x{height} pixels, more than {MAX_PIXELS} pixels in all"
        ));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| "image too large".to_string())?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let channels = frame.color_type.samples();
    let line = frame.line_size;
    let mut pixels = Vec::with_capacity(width * height);
    for y in 0..height {
        let row = &buf[y * line..y * line + width * channels];
        for px in row.chunks_exact(channels) {
            pixels.push(to_gray(px));
        }
    }
    Ok(GrayImage {
        width,
        height,
        pixels,
    })
}

fn to_gray(px: &[u8]) -> u8 {
    let luma = |r: u8, g: u8, b: u8| 0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32;
    let over_white = |v: f32, a: u8| v * (a as f32 / 255.0) + 255.0 * (1.0 - a as f32 / 255.0);
    let v = match *px {
        [g] => g as f32,
        [g, a] => over_white(g as f32, a),
        [r, g, b] => luma(r, g, b),
        [r, g, b, a] => over_white(luma(r, g, b), a),
        _ => 255.0,
    };
    v.round().clamp(0.0, 255.0) as u8
}

/// Writes an 8-bit grey PNG.
pub fn write_png(path: &Path, image: &GrayImage) -> Result<()> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io_err)?;
    let mut encoder = png::Encoder::new(
        std::io::BufWriter::new(file),
        image.width as u32,
        image.height as u32,
    );
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| png_write_error(path, e))?;
    writer
        .write_image_data(&image.pixels)
        .map_err(|e| png_write_error(path, e))?;
    writer.finish().map_err(|e| png_write_error(path, e))
}
