//! `retort infer`: read the text in images.

use crate::data::charset::Charset;
use crate::error::{Error, Result};
use crate::recognizer::Recognizer;
use std::path::{Path, PathBuf};

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
    /// Stop at this early exit (a model trained with `self_distill`), e.g. b3.
    #[arg(long)]
    pub exit: Option<String>,
    /// Where to run the model: cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "cpu")]
    pub device: crate::DeviceChoice,
    /// PNG images of single text lines.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

fn load_recognizer(spec: &str, weights: Option<&Path>) -> Result<Recognizer> {
    let ck = super::load_checkpoint(spec, weights)?;
    Ok(Recognizer::new(
        ck.model,
        Charset::from_symbols(ck.charset)?,
    ))
}

/// Runs `retort infer`: prints `path<TAB>text<TAB>confidence` per image. An
/// unreadable image is reported on stderr and the others are still read; the
/// exit status is then non-zero.
pub fn run(args: InferArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let mut reader = load_recognizer(&args.model, args.weights.as_deref())?
        .with_beam(args.beam)
        .with_exit(args.exit.clone())
        .on_device(device)?;
    let mut failed = 0usize;
    for path in &args.images {
        match reader.recognize_png(path) {
            Ok(r) => println!("{}\t{}\t{:.4}", path.display(), r.text, r.confidence),
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
