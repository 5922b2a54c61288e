//! `retort render`: writes a folder of synthetic text lines.

use crate::data::augment::AugmentConfig;
use crate::data::charset::Charset;
use crate::data::render::{render_dataset_with_progress, RenderConfig};
use crate::error::{Error, Result};
use std::path::PathBuf;

/// Options of `retort render`.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// Output folder (created if needed): images/, labels.txt, fonts.tsv and
    /// contact_sheet.png.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of lines to render.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub count: usize,
    /// Seed of every random choice; the same seed gives the same files.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Shortest random line, in symbols.
    #[arg(long, default_value_t = 4)]
    pub min_len: usize,
    /// Longest random line, in symbols.
    #[arg(long, default_value_t = 12)]
    pub max_len: usize,
    /// Draw lines from this UTF-8 file (one per line, filtered to the
    /// charset) instead of random strings.
    #[arg(long, value_name = "FILE")]
    pub words: Option<PathBuf>,
    /// Charset file, one symbol per line (default: 0-9 a-z).
    #[arg(long, value_name = "FILE")]
    pub charset: Option<PathBuf>,
    /// Also use every TrueType/OpenType font in the system's font folders
    /// that has all the charset's symbols.
    #[arg(long)]
    pub system_fonts: bool,
    /// An extra font file (TrueType/OpenType); repeatable.
    #[arg(long = "font", value_name = "FILE")]
    pub fonts: Vec<PathBuf>,
    /// Strength of the scan-like degradations: 0 = none, 1 = default, 2 = harsh.
    #[arg(long, default_value_t = 1.0, value_name = "STRENGTH")]
    pub augment: f32,
    /// Height of the stored images, in pixels.
    #[arg(long, default_value_t = 32)]
    pub height: usize,
}

/// Renders the lines with a progress bar on stderr and prints a one-line
/// summary.
pub fn run(args: RenderArgs) -> Result<()> {
    if !args.augment.is_finite() || !(0.0..=2.0).contains(&args.augment) {
        return Err(Error::invalid(
            "render",
            format!("--augment {} is not in 0..=2", args.augment),
        ));
    }
    let charset = match &args.charset {
        Some(path) => Charset::from_file(path)?,
        None => Charset::default_alnum(),
    };
    let cfg = RenderConfig {
        count: args.count,
        seed: args.seed,
        min_len: args.min_len,
        max_len: args.max_len,
        words: args.words,
        charset,
        system_fonts: args.system_fonts,
        fonts: args.fonts,
        augment: AugmentConfig::with_strength(args.augment),
        height: args.height,
    };
    let bar = indicatif::ProgressBar::new(cfg.count as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "render {bar:40} {pos}/{len} lines  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let result = render_dataset_with_progress(&args.out, &cfg, &|| bar.inc(1));
    bar.finish_and_clear();
    let summary = result?;
    println!(
        "rendered {} lines into {} with {} typefaces",
        summary.count,
        summary.out.display(),
        summary.fonts.len()
    );
    Ok(())
}
