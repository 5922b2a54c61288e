//! `retort infer`: read the text in images.

use crate::checkpoint::load_model;
use crate::data::batch::{make_batch, prepare_image, WidthPolicy};
use crate::data::charset::Charset;
use crate::data::image::read_png;
use crate::data::labels::Sample;
use crate::error::{Error, Result};
use crate::train::recognize_batch;
use std::path::PathBuf;

/// Arguments of `retort infer`.
#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// A checkpoint folder, or a preset name used with `--weights`.
    #[arg(long)]
    pub model: String,
    /// Weights (model.safetensors) for a preset `--model`.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// CTC beam width (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// PNG images of single text lines.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// Runs `retort infer`: prints `path<TAB>text<TAB>confidence` per image. An
/// unreadable image is reported on stderr and the others are still read; the
/// exit status is then non-zero.
pub fn run(args: InferArgs) -> Result<()> {
    let mut ck = load_model(&args.model, args.weights.as_deref(), None)?;
    let charset = Charset::from_symbols(ck.charset.clone())?;
    let policy = WidthPolicy::Pad {
        max_width: 2048,
        multiple: 4,
    };
    let mut failed = 0usize;
    for path in &args.images {
        let result = read_png(path).and_then(|img| {
            let sample = Sample {
                path: path.clone(),
                label: String::new(),
                target: Vec::new(),
            };
            let batch = make_batch(vec![(prepare_image(&img, policy), sample)], policy)?;
            recognize_batch(&mut ck.model, &batch, &charset, args.beam)
        });
        match result {
            Ok(read) => {
                for r in read {
                    println!("{}\t{}\t{:.4}", path.display(), r.text, r.confidence);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Error::invalid(
            "infer",
            format!("{failed} image(s) could not be read"),
        ));
    }
    Ok(())
}
