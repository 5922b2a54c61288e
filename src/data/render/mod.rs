//! The synthetic text-line renderer behind `retort render`.
//!
//! Each line is a random string over the charset (or a line of a word file),
//! drawn with one of many typefaces (the 21 DejaVu faces embedded in the
//! binary, a built-in bitmap font in block and dot-matrix styles, optionally
//! the system's fonts and user font files) at a random size, with kerning,
//! letter-spacing, baseline and size jitter; cropped to the text with random
//! margins; degraded with [`crate::data::augment::augment`]; and
//! resized to the stored height keeping the aspect ratio.
//!
//! Rendering is deterministic: sample `i` of seed `s` depends only on `(s,
//! i)` and the configuration, not on the thread count or the order in which
//! samples are drawn.
//!
//! ```no_run
//! use retort::data::render::{render_dataset, RenderConfig};
//! let cfg = RenderConfig { count: 100, seed: 7, ..RenderConfig::default() };
//! let summary = render_dataset(std::path::Path::new("lines"), &cfg)?;
//! println!("{} lines in {} typefaces", summary.count, summary.fonts.len());
//! # Ok::<(), retort::Error>(())
//! ```

mod bitmap_font;
mod fonts;
mod sheet;
mod text;

pub use sheet::contact_sheet;

use crate::data::augment::{augment, AugmentConfig};
use crate::data::charset::Charset;
use crate::data::image::{write_png, GrayImage};
use crate::data::labels::write_labels;
use crate::data::resize::resize_to_height;
use crate::error::{Error, Result};
use crate::rng::Rng;
use fonts::{Style, Typeface};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use text::Symbols;

/// The name of the file recording the typeface of every line.
pub const FONTS_FILE: &str = "fonts.tsv";
/// The name of the contact sheet written into the output folder.
pub const CONTACT_SHEET_FILE: &str = "contact_sheet.png";
/// How many samples the contact sheet shows (at most).
pub const CONTACT_SHEET_SAMPLES: usize = 48;
/// The largest stored image height accepted.
pub const MAX_HEIGHT: usize = 1024;

/// What to render.
#[derive(Clone, Debug)]
pub struct RenderConfig {
    /// Number of lines (at least 1).
    pub count: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Shortest random string, in symbols (at least 1).
    pub min_len: usize,
    /// Longest random string, in symbols (at least `min_len`).
    pub max_len: usize,
    /// A word file (UTF-8, one line per text line) to draw lines from instead
    /// of random strings; each line is filtered to the charset.
    pub words: Option<PathBuf>,
    /// The symbols lines are made of.
    pub charset: Charset,
    /// Also use every TrueType/OpenType font under the system's font folders
    /// that has a glyph for every symbol of the charset.
    pub system_fonts: bool,
    /// Extra font files (TrueType/OpenType); each must be readable.
    pub fonts: Vec<PathBuf>,
    /// The scan-like degradations applied before the final resize.
    pub augment: AugmentConfig,
    /// Height of the stored images, in pixels (1 to [`MAX_HEIGHT`]).
    pub height: usize,
}

impl Default for RenderConfig {
    /// 1,000 lines of 4 to 12 symbols of the default charset, seed 0, the
    /// embedded typefaces, default augmentation, 32 pixels high.
    fn default() -> RenderConfig {
        RenderConfig {
            count: 1000,
            seed: 0,
            min_len: 4,
            max_len: 12,
            words: None,
            charset: Charset::default_alnum(),
            system_fonts: false,
            fonts: Vec::new(),
            augment: AugmentConfig::default(),
            height: 32,
        }
    }
}

/// What [`render_dataset`] wrote.
#[derive(Clone, Debug)]
pub struct RenderSummary {
    /// Number of lines written.
    pub count: usize,
    /// Names of the typefaces that drew at least one line, in the
    /// renderer's order.
    pub fonts: Vec<String>,
    /// The output folder.
    pub out: PathBuf,
}

/// One rendered line.
#[derive(Clone, Debug)]
pub struct RenderedLine {
    /// The image, `height` pixels high.
    pub image: GrayImage,
    /// Its text.
    pub label: String,
    /// The index of its typeface in [`Renderer::font_names`].
    pub font: usize,
}

/// A loaded renderer: typefaces, their coverage of the charset, and the word
/// lines. Cheap to share between threads.
pub struct Renderer {
    cfg: RenderConfig,
    symbols: Symbols,
    faces: Vec<Typeface>,
    /// Per typeface, the symbols it covers.
    covered: Vec<Vec<usize>>,
    /// Word-file lines with the typefaces that cover them.
    words: Option<Vec<(Vec<usize>, Vec<usize>)>>,
}

impl Renderer {
    /// Checks the configuration and loads the typefaces and the word file.
    /// Errors name the font or word file at fault, or the option that is
    /// out of range.
    pub fn new(cfg: &RenderConfig) -> Result<Renderer> {
        if cfg.min_len == 0 {
            return Err(Error::invalid("render", "--min-len must be at least 1"));
        }
        if cfg.min_len > cfg.max_len {
            return Err(Error::invalid(
                "render",
                format!(
                    "--min-len {} is larger than --max-len {}",
                    cfg.min_len, cfg.max_len
                ),
            ));
        }
        if cfg.height == 0 || cfg.height > MAX_HEIGHT {
            return Err(Error::invalid(
                "render",
                format!("--height {} is not in 1..={MAX_HEIGHT}", cfg.height),
            ));
        }
        let symbols = Symbols::new(cfg.charset.symbols());
        let n = symbols.list().len();
        if (0..n).all(|i| symbols.is_space(i)) {
            return Err(Error::invalid(
                "render",
                "the charset has no symbol other than the space",
            ));
        }
        let mut faces = fonts::embedded();
        faces.extend(fonts::bitmap());
        if cfg.system_fonts {
            for path in fonts::find_font_files(&fonts::system_font_dirs()) {
                let Ok(face) = fonts::load_file(&path) else {
                    continue;
                };
                if faces.iter().any(|f| f.name == face.name) {
                    continue;
                }
                if symbols.list().iter().all(|s| face.covers(s)) {
                    faces.push(face);
                }
            }
        }
        let mut user = Vec::new();
        for path in &cfg.fonts {
            let mut face = fonts::load_file(path)?;
            if !symbols
                .list()
                .iter()
                .enumerate()
                .any(|(i, s)| !symbols.is_space(i) && face.covers(s))
            {
                return Err(Error::data(
                    path,
                    None,
                    "the font has no glyph for any symbol of the charset",
                ));
            }
            if faces
                .iter()
                .chain(&user)
                .any(|f: &Typeface| f.name == face.name)
            {
                let file = path.file_name().unwrap_or_default().to_string_lossy();
                face.name = format!("{} ({file})", face.name);
            }
            user.push(face);
        }
        faces.extend(user);
        // Keep the typefaces that can draw at least one non-space symbol.
        let mut kept = Vec::new();
        let mut covered = Vec::new();
        for face in faces {
            let c: Vec<usize> = (0..n)
                .filter(|&i| face.covers(&symbols.list()[i]))
                .collect();
            if c.iter().any(|&i| !symbols.is_space(i)) {
                kept.push(face);
                covered.push(c);
            }
        }
        let mut missing: Vec<&str> = (0..n)
            .filter(|i| !covered.iter().any(|c| c.contains(i)))
            .map(|i| symbols.list()[i].as_str())
            .collect();
        if !missing.is_empty() {
            let more = missing.len();
            missing.truncate(10);
            return Err(Error::invalid(
                "render",
                format!(
                    "no typeface has glyphs for {more} symbol(s) of the charset, such as {missing:?}; \
                     add a font that has them with --font"
                ),
            ));
        }
        let words = match &cfg.words {
            None => None,
            Some(path) => {
                let lines = text::read_words(path, &symbols)?;
                let has: Vec<Vec<bool>> = covered
                    .iter()
                    .map(|c| {
                        let mut v = vec![false; n];
                        c.iter().for_each(|&i| v[i] = true);
                        v
                    })
                    .collect();
                let usable: Vec<(Vec<usize>, Vec<usize>)> = lines
                    .into_iter()
                    .filter_map(|line| {
                        let by: Vec<usize> = (0..kept.len())
                            .filter(|&f| line.iter().all(|&s| has[f][s]))
                            .collect();
                        (!by.is_empty()).then_some((line, by))
                    })
                    .collect();
                if usable.is_empty() {
                    return Err(Error::data(
                        path,
                        None,
                        "no line of the word file can be drawn with a single typeface",
                    ));
                }
                Some(usable)
            }
        };
        Ok(Renderer {
            cfg: cfg.clone(),
            symbols,
            faces: kept,
            covered,
            words,
        })
    }

    /// The names of the typefaces, in the order [`RenderedLine::font`]
    /// indexes.
    pub fn font_names(&self) -> Vec<String> {
        self.faces.iter().map(|f| f.name.clone()).collect()
    }

    /// Renders line `index`; the result depends only on the configuration,
    /// its seed and `index`.
    pub fn render(&self, index: u64) -> RenderedLine {
        let mut rng = Rng::seed(self.cfg.seed).fork(index);
        let (ids, font) = match &self.words {
            Some(words) => {
                let (line, by) = &words[rng.below(words.len())];
                (line.clone(), by[rng.below(by.len())])
            }
            None => {
                let font = rng.below(self.faces.len());
                let span = self.cfg.max_len - self.cfg.min_len + 1;
                let len = self.cfg.min_len + rng.below(span);
                (
                    self.symbols.random(&self.covered[font], len, &mut rng),
                    font,
                )
            }
        };
        let label = self.symbols.text(&ids);
        let style = random_style(&mut rng);
        let drawn = self.faces[font].draw(&label, &style, &mut rng);
        let line = compose(&drawn, &mut rng);
        let line = augment(&line, &self.cfg.augment, &mut rng);
        let image = resize_to_height(&line, self.cfg.height, usize::MAX);
        RenderedLine { image, label, font }
    }
}

fn random_style(rng: &mut Rng) -> Style {
    let size = rng.range(18.0, 48.0);
    let tracking = if rng.uniform() < 0.8 {
        rng.range(-0.03, 0.06)
    } else {
        rng.range(0.06, 0.25)
    } * size;
    let jitter = |rng: &mut Rng, p: f32, max: f32| {
        if rng.uniform() < p {
            rng.range(0.0, max)
        } else {
            0.0
        }
    };
    Style {
        size,
        tracking,
        tracking_jitter: jitter(rng, 0.5, 0.025),
        baseline_jitter: jitter(rng, 0.4, 0.02),
        size_jitter: jitter(rng, 0.4, 0.04),
        dot_radius: rng.range(0.75, 1.05),
    }
}

/// Crops the drawn text with random margins and paints it: mostly dark ink
/// on light paper, sometimes low contrast, sometimes inverted.
fn compose(drawn: &fonts::Drawn, rng: &mut Rng) -> GrayImage {
    let line_h = (drawn.bottom - drawn.top).max(1.0);
    let (mut x0, mut y0, mut x1, mut y1) = (i32::MAX, i32::MAX, i32::MIN, i32::MIN);
    for &(x, y, _) in &drawn.splats {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x + 1);
        y1 = y1.max(y + 1);
    }
    if x0 > x1 {
        (x0, x1) = (0, drawn.advance.max(1.0).ceil() as i32);
        (y0, y1) = (drawn.top.floor() as i32, drawn.bottom.ceil() as i32);
    }
    // The line box from the font's metrics, somewhat tightened, never
    // cutting the ink.
    let top = (drawn.top * rng.range(0.75, 1.0)).min(y0 as f32);
    let bottom = (drawn.bottom * rng.range(0.4, 1.0)).max(y1 as f32);
    let left = x0 as f32 - rng.range(0.03, 0.35) * line_h;
    let right = x1 as f32 + rng.range(0.03, 0.35) * line_h;
    let top = top - rng.range(0.0, 0.12) * line_h;
    let bottom = bottom + rng.range(0.0, 0.12) * line_h;
    let (ox, oy) = (left.floor() as i32, top.floor() as i32);
    let w = ((right.ceil() as i32 - ox).max(1)) as usize;
    let h = ((bottom.ceil() as i32 - oy).max(1)) as usize;
    let mut cover = vec![0f32; w * h];
    for &(x, y, c) in &drawn.splats {
        let (cx, cy) = (x - ox, y - oy);
        if cx >= 0 && cy >= 0 && (cx as usize) < w && (cy as usize) < h {
            let i = cy as usize * w + cx as usize;
            cover[i] = cover[i].max(c);
        }
    }
    let roll = rng.uniform();
    let (paper, ink) = if roll < 0.8 {
        (rng.range(185.0, 255.0), rng.range(0.0, 80.0))
    } else if roll < 0.9 {
        let paper = rng.range(150.0, 235.0);
        (paper, paper - rng.range(60.0, 100.0))
    } else {
        (rng.range(0.0, 70.0), rng.range(180.0, 255.0))
    };
    GrayImage {
        width: w,
        height: h,
        pixels: cover
            .iter()
            .map(|&c| (paper + (ink - paper) * c).round().clamp(0.0, 255.0) as u8)
            .collect(),
    }
}

/// Renders `cfg.count` lines into `out`: `out/images/000000.png …`,
/// `out/labels.txt` (PaddleOCR format, `images/000000.png<TAB>label`),
/// `out/fonts.tsv` (`images/000000.png<TAB>typeface name`) and
/// `out/contact_sheet.png` (the first 48 lines with their labels). Lines are
/// rendered in parallel on the rayon pool. `out` is created if needed; files
/// already there are overwritten.
pub fn render_dataset(out: &Path, cfg: &RenderConfig) -> Result<RenderSummary> {
    render_dataset_with_progress(out, cfg, &|| {})
}

/// [`render_dataset`], calling `progress` once per line written (from the
/// worker threads).
pub fn render_dataset_with_progress(
    out: &Path,
    cfg: &RenderConfig,
    progress: &(dyn Fn() + Sync),
) -> Result<RenderSummary> {
    if cfg.count == 0 {
        return Err(Error::invalid("render", "--count must be at least 1"));
    }
    if out.exists() && !out.is_dir() {
        return Err(Error::data(out, None, "exists and is not a folder"));
    }
    let renderer = Renderer::new(cfg)?;
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| Error::io(&images, e))?;
    let lines: Vec<(String, String, usize, Option<GrayImage>)> = (0..cfg.count)
        .into_par_iter()
        .map(|i| {
            let line = renderer.render(i as u64);
            let rel = format!("images/{i:06}.png");
            write_png(&out.join(&rel), &line.image)?;
            progress();
            let keep = (i < CONTACT_SHEET_SAMPLES).then_some(line.image);
            Ok((rel, line.label, line.font, keep))
        })
        .collect::<Result<_>>()?;
    let entries: Vec<(String, String)> = lines
        .iter()
        .map(|(rel, label, _, _)| (rel.clone(), label.clone()))
        .collect();
    write_labels(out, &entries)?;
    let names = renderer.font_names();
    let mut tsv = String::new();
    let mut used = vec![false; names.len()];
    for (rel, _, font, _) in &lines {
        tsv.push_str(rel);
        tsv.push('\t');
        tsv.push_str(&names[*font]);
        tsv.push('\n');
        used[*font] = true;
    }
    crate::fsutil::write_atomic(&out.join(FONTS_FILE), tsv.as_bytes())?;
    let samples: Vec<(GrayImage, String)> = lines
        .into_iter()
        .filter_map(|(_, label, _, img)| img.map(|img| (img, label)))
        .collect();
    write_png(
        &out.join(CONTACT_SHEET_FILE),
        &contact_sheet(&samples, 3, 256),
    )?;
    Ok(RenderSummary {
        count: cfg.count,
        fonts: names
            .into_iter()
            .zip(used)
            .filter_map(|(n, u)| u.then_some(n))
            .collect(),
        out: out.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_index_same_line() {
        let r = Renderer::new(&RenderConfig::default()).unwrap();
        let a = r.render(17);
        let b = r.render(17);
        assert_eq!(a.image, b.image);
        assert_eq!(a.label, b.label);
        assert_eq!(a.image.height, 32);
    }

    #[test]
    fn bad_lengths_are_refused() {
        let cfg = RenderConfig {
            min_len: 5,
            max_len: 3,
            ..RenderConfig::default()
        };
        assert!(Renderer::new(&cfg).is_err());
    }
}
