//! `retort zoo`: the student alone and every distillation method, one table.

use crate::distill::config::TeacherSpec;
use crate::distill::zoo::{run_zoo, ZooConfig, METHODS};
use crate::error::Result;
use std::path::PathBuf;

/// Arguments of `retort zoo`.
#[derive(clap::Args, Debug)]
pub struct ZooArgs {
    /// The trained teacher: a checkpoint folder (or a preset with --weights).
    #[arg(long)]
    pub teacher: String,
    /// Weights of a preset teacher.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Training data folders.
    #[arg(long, required = true, num_args = 1..)]
    pub train: Vec<PathBuf>,
    /// Validation data folders.
    #[arg(long, required = true, num_args = 1..)]
    pub val: Vec<PathBuf>,
    /// Steps of every trained model.
    #[arg(long)]
    pub budget: u64,
    /// The student: a preset, a model config JSON, or a checkpoint folder.
    #[arg(long, default_value = "crnn-s")]
    pub student: String,
    /// Output folder (a sub-folder per method, zoo.md, zoo.json).
    #[arg(long, default_value = "runs/zoo")]
    pub out: PathBuf,
    /// Seed of every run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate of every run.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// A folder of unlabelled PNG lines, for noisy student and domain alignment.
    #[arg(long)]
    pub unlabeled: Option<PathBuf>,
    /// Only these methods, comma-separated (the student alone always runs).
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Where to compute: cpu, cuda, cuda:N, or auto (the GPU when one is usable, otherwise the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: crate::DeviceChoice,
    /// Hide the progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `retort zoo` and prints the table.
pub fn run(args: ZooArgs) -> Result<()> {
    let cfg = ZooConfig {
        teacher: TeacherSpec {
            model: args.teacher,
            weights: args.weights,
            weight: 1.0,
        },
        train: args.train,
        val: args.val,
        out: args.out,
        steps: args.budget,
        student: super::train::model_source(&args.student)?,
        seed: args.seed,
        batch_size: args.batch_size,
        lr: args.lr,
        unlabeled: args.unlabeled,
        only: args.only,
        progress: !args.quiet,
        device: args.device,
    };
    eprintln!(
        "zoo: {} methods, {} steps each",
        cfg.only.as_ref().map_or(METHODS.len(), |o| o.len() + 1),
        cfg.steps
    );
    let rows = run_zoo(&cfg)?;
    println!(
        "{:<14} {:>12} {:>8} {:>10} {:>8}  note",
        "method", "exact match", "CER", "gain", "time"
    );
    for r in &rows {
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.2}%", 100.0 * v));
        println!(
            "{:<14} {:>12} {:>8} {:>10} {:>7.0}s  {}",
            r.method,
            pct(r.exact_match),
            pct(r.cer),
            r.gain_pp.map_or("–".into(), |g| format!("{g:+.2} pp")),
            r.seconds,
            r.note
        );
    }
    println!("table: {}", cfg.out.join("zoo.md").display());
    Ok(())
}
