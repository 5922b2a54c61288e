//! A contact sheet: a grid of sample lines, each with its label written
//! underneath in the built-in bitmap font, for a quick look at a dataset.

use super::bitmap_font;
use crate::data::image::GrayImage;
use crate::data::resize::resize_to_height;

/// Grey of the sheet behind the samples.
const SHEET_BG: u8 = 96;
/// Space between cells and around the sheet, in pixels.
const GAP: usize = 8;
/// Height of a label row under a sample.
const LABEL_ROWS: usize = bitmap_font::ROWS + 3;

/// Lays `samples` (image and label) out in `cols` columns of cells
/// `cell_width` pixels wide; a sample wider than its cell is scaled down to
/// fit. Labels are written in white under each image (characters the bitmap
/// font lacks as `?`).
pub fn contact_sheet(samples: &[(GrayImage, String)], cols: usize, cell_width: usize) -> GrayImage {
    let cols = cols.clamp(1, samples.len().max(1));
    let rows = samples.len().div_ceil(cols).max(1);
    let cell_width = cell_width.max(8);
    let image_rows = samples.iter().map(|(img, _)| img.height).max().unwrap_or(1);
    let cell_height = image_rows + LABEL_ROWS;
    let width = GAP + cols * (cell_width + GAP);
    let height = GAP + rows * (cell_height + GAP);
    let mut sheet = GrayImage::filled(width, height, SHEET_BG);
    for (n, (img, label)) in samples.iter().enumerate() {
        let x0 = GAP + (n % cols) * (cell_width + GAP);
        let y0 = GAP + (n / cols) * (cell_height + GAP);
        let fitted;
        let img = if img.width > cell_width && img.height > 0 {
            let h = (img.height * cell_width / img.width).max(1);
            fitted = resize_to_height(img, h, cell_width);
            &fitted
        } else {
            img
        };
        for y in 0..img.height.min(image_rows) {
            for x in 0..img.width.min(cell_width) {
                sheet.set(x0 + x, y0 + y, img.get(x, y));
            }
        }
        write_text(&mut sheet, x0, y0 + image_rows + 2, label, cell_width);
    }
    sheet
}

fn write_text(sheet: &mut GrayImage, x0: usize, y0: usize, text: &str, max_width: usize) {
    let advance = bitmap_font::COLS + 1;
    for (i, c) in text.chars().enumerate() {
        if (i + 1) * advance > max_width {
            break;
        }
        let Some(g) = bitmap_font::glyph(c).or_else(|| bitmap_font::glyph('?')) else {
            continue;
        };
        for row in 0..bitmap_font::ROWS {
            for col in 0..bitmap_font::COLS {
                let (x, y) = (x0 + i * advance + col, y0 + row);
                if bitmap_font::lit(g, col, row) && x < sheet.width && y < sheet.height {
                    sheet.set(x, y, 255);
                }
            }
        }
    }
}
