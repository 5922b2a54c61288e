//! `retort eval`: measure a model on labelled data.

use crate::data::charset::Charset;
use crate::data::labels::load_datasets;
use crate::data::loader::{Loader, LoaderConfig};
use crate::error::Result;
use crate::train::evaluate_at;
use std::path::PathBuf;

/// Arguments of `retort eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A checkpoint folder, or a preset name used with `--weights`.
    #[arg(long)]
    pub model: String,
    /// Weights (model.safetensors) for a preset `--model`.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Labelled data folders (each with labels.txt).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// CTC beam width (1 = greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// How many of the worst-recognised lines to show.
    #[arg(long, default_value_t = 10)]
    pub worst: usize,
    /// Image widths: `pad`, `pad:MAX` or `fixed:W`.
    #[arg(long, default_value = "pad")]
    pub width: String,
    /// Skip bad label lines instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Measure at this early exit (a model trained with `self_distill`), e.g. b3.
    #[arg(long)]
    pub exit: Option<String>,
    /// Where to run the model: cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "cpu")]
    pub device: crate::DeviceChoice,
}

/// Runs `retort eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let mut ck = super::load_checkpoint(&args.model, args.weights.as_deref())?;
    ck.model.to_device(device)?;
    let charset = Charset::from_symbols(ck.charset.clone())?;
    let data = load_datasets(&args.data, &charset, args.skip_bad)?;
    let loader = Loader::new(
        data.samples,
        LoaderConfig {
            batch_size: args.batch_size,
            shuffle: false,
            width: super::train::parse_width(&args.width)?,
            cache_images: false,
            ..LoaderConfig::default()
        },
    )?;
    let report = evaluate_at(
        &mut ck.model,
        &charset,
        &loader,
        args.beam,
        args.worst,
        args.exit.as_deref(),
    )?;
    let m = &report.metrics;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "exact_match": m.exact_match(),
                "cer": m.cer(),
                "n": m.n,
                "images_per_s": report.images_per_s,
            })
        );
        return Ok(());
    }
    println!("lines        {}", m.n);
    if !data.skipped.is_empty() {
        println!("skipped      {} bad line(s)", data.skipped.len());
    }
    println!("exact match  {:.2}%", 100.0 * m.exact_match());
    println!("CER          {:.2}%", 100.0 * m.cer());
    println!("images/s     {:.1}", report.images_per_s);
    if !report.worst.is_empty() {
        println!("\nworst recognised (edit distance, label, read, image):");
        for w in &report.worst {
            println!(
                "  {}\t{}\t{}\t{}",
                w.distance,
                w.label,
                w.predicted,
                w.path.display()
            );
        }
    }
    Ok(())
}
