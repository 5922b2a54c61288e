//! Typefaces for the renderer: the 21 DejaVu faces embedded in the binary,
//! the built-in bitmap font in two styles, the system's TrueType/OpenType
//! fonts and user font files; and drawing a line of text with one of them
//! into a list of coverage values.

use super::bitmap_font;
use crate::error::{Error, Result};
use crate::rng::Rng;
use ab_glyph::{point, Font, FontArc, GlyphId, ScaleFont};
use std::path::{Path, PathBuf};

/// How a typeface draws.
#[derive(Clone)]
pub(crate) enum Face {
    /// A TrueType/OpenType outline font.
    Outline(FontArc),
    /// The built-in bitmap font, as blocks (`dots == false`) or round dots.
    Bitmap {
        /// Dot-matrix style.
        dots: bool,
    },
}

/// A named typeface.
#[derive(Clone)]
pub(crate) struct Typeface {
    /// The name recorded in `fonts.tsv`.
    pub name: String,
    /// How it draws.
    pub face: Face,
}

/// Per-line drawing parameters, all in pixels or fractions of the size.
#[derive(Clone, Debug)]
pub(crate) struct Style {
    /// The em size in pixels.
    pub size: f32,
    /// Extra space after every glyph, in pixels (may be negative).
    pub tracking: f32,
    /// Per-glyph random change of the tracking, as a fraction of the size.
    pub tracking_jitter: f32,
    /// Per-glyph random vertical shift, as a fraction of the size.
    pub baseline_jitter: f32,
    /// Per-glyph random relative change of the size.
    pub size_jitter: f32,
    /// Dot radius relative to half a cell, for the dot-matrix style.
    pub dot_radius: f32,
}

/// A drawn line: coverage values in [0, 1] at pixel positions relative to
/// the pen's start on the baseline, and the line's vertical extent from the
/// font metrics (`top` < 0 < `bottom`).
pub(crate) struct Drawn {
    pub splats: Vec<(i32, i32, f32)>,
    pub top: f32,
    pub bottom: f32,
    /// Where the pen ended (the advance of the whole line).
    pub advance: f32,
}

/// Bitmap units per em: the 7-row capitals are 0.7 of the size.
const BITMAP_UNIT: f32 = 0.1;

impl Typeface {
    /// Whether the face has a glyph for the character.
    pub fn has_char(&self, c: char) -> bool {
        match &self.face {
            Face::Outline(font) => font.glyph_id(c).0 != 0,
            Face::Bitmap { .. } => bitmap_font::glyph(c).is_some(),
        }
    }

    /// Whether the face has a glyph for every character of `symbol`.
    pub fn covers(&self, symbol: &str) -> bool {
        symbol.chars().all(|c| self.has_char(c))
    }

    /// Draws `text` with the style, drawing the jitters from `rng`.
    pub fn draw(&self, text: &str, style: &Style, rng: &mut Rng) -> Drawn {
        match &self.face {
            Face::Outline(font) => draw_outline(font, text, style, rng),
            Face::Bitmap { dots } => draw_bitmap(*dots, text, style, rng),
        }
    }
}

fn jitter(rng: &mut Rng, amount: f32) -> f32 {
    if amount > 0.0 {
        rng.range(-amount, amount)
    } else {
        0.0
    }
}

fn draw_outline(font: &FontArc, text: &str, style: &Style, rng: &mut Rng) -> Drawn {
    let size = style.size;
    let scaled = font.as_scaled(size);
    let mut splats = Vec::new();
    let mut x = 0.0f32;
    let mut prev: Option<GlyphId> = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            x += scaled.kern(p, id);
        }
        let factor = 1.0 + jitter(rng, style.size_jitter);
        let dy = jitter(rng, style.baseline_jitter) * size;
        let glyph = id.with_scale_and_position(size * factor, point(x, dy));
        if let Some(outlined) = font.outline_glyph(glyph) {
            let b = outlined.px_bounds();
            let (x0, y0) = (b.min.x as i32, b.min.y as i32);
            outlined.draw(|gx, gy, cov| {
                if cov > 0.0 {
                    splats.push((x0 + gx as i32, y0 + gy as i32, cov.min(1.0)));
                }
            });
        }
        x += scaled.h_advance(id) * factor
            + style.tracking
            + jitter(rng, style.tracking_jitter) * size;
        prev = Some(id);
    }
    Drawn {
        splats,
        top: -scaled.ascent(),
        bottom: -scaled.descent(),
        advance: x,
    }
}

fn draw_bitmap(dots: bool, text: &str, style: &Style, rng: &mut Rng) -> Drawn {
    let u = (style.size * BITMAP_UNIT).max(0.5);
    let mut splats = Vec::new();
    let mut x = 0.0f32;
    for c in text.chars() {
        let dy = jitter(rng, style.baseline_jitter) * style.size;
        if let Some(g) = bitmap_font::glyph(c) {
            let top = dy - bitmap_font::BASELINE as f32 * u;
            if dots {
                let r = 0.5 * u * style.dot_radius;
                for row in 0..bitmap_font::ROWS {
                    for col in 0..bitmap_font::COLS {
                        if !bitmap_font::lit(g, col, row) {
                            continue;
                        }
                        let cx = x + (col as f32 + 0.5) * u;
                        let cy = top + (row as f32 + 0.5) * u;
                        let (px0, px1) = ((cx - r - 1.0).floor() as i32, (cx + r + 1.0) as i32);
                        let (py0, py1) = ((cy - r - 1.0).floor() as i32, (cy + r + 1.0) as i32);
                        for py in py0..=py1 {
                            for px in px0..=px1 {
                                let d = ((px as f32 + 0.5 - cx).powi(2)
                                    + (py as f32 + 0.5 - cy).powi(2))
                                .sqrt();
                                let cov = (r - d + 0.5).clamp(0.0, 1.0);
                                if cov > 0.0 {
                                    splats.push((px, py, cov));
                                }
                            }
                        }
                    }
                }
            } else {
                // Nearest neighbour: a pixel is ink when its centre falls in
                // an ink cell.
                let px0 = x.floor() as i32;
                let px1 = (x + bitmap_font::COLS as f32 * u).ceil() as i32;
                let py0 = top.floor() as i32;
                let py1 = (top + bitmap_font::ROWS as f32 * u).ceil() as i32;
                for py in py0..py1 {
                    let row = ((py as f32 + 0.5 - top) / u).floor();
                    if row < 0.0 {
                        continue;
                    }
                    for px in px0..px1 {
                        let col = ((px as f32 + 0.5 - x) / u).floor();
                        if col >= 0.0 && bitmap_font::lit(g, col as usize, row as usize) {
                            splats.push((px, py, 1.0));
                        }
                    }
                }
            }
        }
        x += (bitmap_font::COLS + 1) as f32 * u
            + style.tracking
            + jitter(rng, style.tracking_jitter) * style.size;
    }
    Drawn {
        splats,
        top: -8.0 * u,
        bottom: 2.0 * u,
        advance: x,
    }
}

/// The 21 DejaVu faces embedded in the binary, with their names.
pub(crate) fn embedded() -> Vec<Typeface> {
    let faces: [(&str, &'static [u8]); 21] = [
        ("DejaVu Sans", dejavu::sans::regular()),
        ("DejaVu Sans Bold", dejavu::sans::bold()),
        ("DejaVu Sans Bold Oblique", dejavu::sans::bold_oblique()),
        ("DejaVu Sans ExtraLight", dejavu::sans::extra_light()),
        ("DejaVu Sans Oblique", dejavu::sans::oblique()),
        ("DejaVu Sans Condensed", dejavu::sans_condensed::regular()),
        ("DejaVu Sans Condensed Bold", dejavu::sans_condensed::bold()),
        (
            "DejaVu Sans Condensed Bold Oblique",
            dejavu::sans_condensed::bold_oblique(),
        ),
        (
            "DejaVu Sans Condensed Oblique",
            dejavu::sans_condensed::oblique(),
        ),
        ("DejaVu Sans Mono", dejavu::sans_mono::regular()),
        ("DejaVu Sans Mono Bold", dejavu::sans_mono::bold()),
        (
            "DejaVu Sans Mono Bold Oblique",
            dejavu::sans_mono::bold_oblique(),
        ),
        ("DejaVu Sans Mono Oblique", dejavu::sans_mono::oblique()),
        ("DejaVu Serif", dejavu::serif::regular()),
        ("DejaVu Serif Bold", dejavu::serif::bold()),
        ("DejaVu Serif Bold Italic", dejavu::serif::bold_italic()),
        ("DejaVu Serif Italic", dejavu::serif::italic()),
        ("DejaVu Serif Condensed", dejavu::serif_condensed::regular()),
        (
            "DejaVu Serif Condensed Bold",
            dejavu::serif_condensed::bold(),
        ),
        (
            "DejaVu Serif Condensed Bold Italic",
            dejavu::serif_condensed::bold_italic(),
        ),
        (
            "DejaVu Serif Condensed Italic",
            dejavu::serif_condensed::italic(),
        ),
    ];
    faces
        .into_iter()
        .filter_map(|(name, data)| {
            // The embedded files are valid fonts; a failure would only drop one.
            FontArc::try_from_slice(data).ok().map(|f| Typeface {
                name: name.to_string(),
                face: Face::Outline(f),
            })
        })
        .collect()
}

/// The built-in bitmap font in its two styles.
pub(crate) fn bitmap() -> Vec<Typeface> {
    vec![
        Typeface {
            name: "Retort Bitmap 5x9".to_string(),
            face: Face::Bitmap { dots: false },
        },
        Typeface {
            name: "Retort Dot Matrix 5x9".to_string(),
            face: Face::Bitmap { dots: true },
        },
    ]
}

/// Loads a font file; the error names the file when it cannot be read or
/// parsed.
pub(crate) fn load_file(path: &Path) -> Result<Typeface> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let name = font_name(&data).unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
    });
    let font = FontArc::try_from_vec(data).map_err(|e| {
        Error::data(
            path,
            None,
            format!("not a TrueType/OpenType font that can be read: {e}"),
        )
    })?;
    Ok(Typeface {
        name,
        face: Face::Outline(font),
    })
}

/// The folders searched for system fonts.
pub(crate) fn system_font_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/usr/share/fonts"),
        PathBuf::from("/usr/local/share/fonts"),
    ];
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        dirs.push(home.join(".fonts"));
        dirs.push(home.join(".local/share/fonts"));
    }
    dirs
}

/// Every `.ttf` / `.otf` file under `dirs` (sorted, so that the order does
/// not depend on the file system), looking at most 8 folders deep.
pub(crate) fn find_font_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if depth > 8 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, depth + 1, out);
            } else if path
                .extension()
                .map(|e| {
                    let e = e.to_string_lossy().to_ascii_lowercase();
                    e == "ttf" || e == "otf"
                })
                .unwrap_or(false)
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for dir in dirs {
        walk(dir, 0, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn be16(d: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]) as usize)
}

fn be32(d: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_be_bytes([
        *d.get(at)?,
        *d.get(at + 1)?,
        *d.get(at + 2)?,
        *d.get(at + 3)?,
    ]) as usize)
}

/// The full name (name ID 4) from a font's `name` table, preferring the
/// Windows Unicode English record, else the Macintosh Roman one.
pub(crate) fn font_name(d: &[u8]) -> Option<String> {
    let tables = be16(d, 4)?;
    let mut name_table = None;
    for i in 0..tables {
        let rec = 12 + 16 * i;
        if d.get(rec..rec + 4)? == b"name" {
            name_table = Some(be32(d, rec + 8)?);
            break;
        }
    }
    let t = name_table?;
    let count = be16(d, t + 2)?;
    let strings = t + be16(d, t + 4)?;
    let mut mac = None;
    for i in 0..count {
        let r = t + 6 + 12 * i;
        let (platform, encoding, language, id) = (
            be16(d, r)?,
            be16(d, r + 2)?,
            be16(d, r + 4)?,
            be16(d, r + 6)?,
        );
        if id != 4 {
            continue;
        }
        let (len, off) = (be16(d, r + 8)?, be16(d, r + 10)?);
        let bytes = d.get(strings + off..strings + off + len)?;
        if platform == 3 && (encoding == 1 || encoding == 10) && language == 0x409 {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let name = String::from_utf16_lossy(&units).trim().to_string();
            if !name.is_empty() {
                return Some(name);
            }
        } else if platform == 1 && encoding == 0 && mac.is_none() {
            let name: String = bytes
                .iter()
                .map(|&b| if b.is_ascii() { b as char } else { '?' })
                .collect();
            mac = Some(name.trim().to_string()).filter(|n| !n.is_empty());
        }
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_faces_load_with_their_names() {
        let faces = embedded();
        assert_eq!(faces.len(), 21);
        assert_eq!(
            font_name(dejavu::serif::bold()).as_deref(),
            Some("DejaVu Serif Bold")
        );
        for f in &faces {
            assert!(f.covers("aZ09"), "{}", f.name);
            let Face::Outline(font) = &f.face else {
                panic!("{} is not an outline font", f.name);
            };
            assert_eq!(
                font_name(font.font_data()).as_deref(),
                Some(f.name.as_str())
            );
        }
    }

    #[test]
    fn bitmap_covers_ascii_alnum_only() {
        let b = &bitmap()[0];
        assert!(b.covers("Hello, World 42!"));
        assert!(!b.covers("é"));
    }
}
