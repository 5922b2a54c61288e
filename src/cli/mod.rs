//! Command-line interface: argument parsing and one module per command.

pub mod bench;
mod demo;
mod devices;
mod distill;
mod eval;
mod infer;
mod render;
mod train;
mod zoo;

use crate::checkpoint::{load_model, Checkpoint};
use crate::error::{Error, Result};
use clap::{Parser, Subcommand};
use std::path::Path;

/// retort: knowledge distillation for OCR text-line recognition.
#[derive(Parser, Debug)]
#[command(name = "retort", version, about)]
pub struct Cli {
    /// Worker threads for CPU kernels (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Times the reference steps (train-step, distill-step, inference) on random data.
    Bench(bench::BenchArgs),
    /// The main job on an embedded default: renders lines, trains crnn-t, trains crnn-s alone and with KD, prints one table.
    Demo(demo::DemoArgs),
    /// Lists the compute devices retort can use: CPU threads and CUDA GPUs.
    Devices,
    /// Runs a distillation strategy from a JSON config (teacher→student, mutual, self, generations, noisy student).
    Distill(distill::DistillArgs),
    /// Trains a CRNN recogniser with CTC on labelled folders.
    Train(Box<train::TrainArgs>),
    /// Measures a model on labelled folders: exact match, CER, speed.
    Eval(eval::EvalArgs),
    /// Reads the text in PNG images of single lines.
    Infer(infer::InferArgs),
    /// Writes a folder of synthetic text lines.
    Render(render::RenderArgs),
    /// Trains the student alone and with every distillation method; writes zoo.md and zoo.json.
    Zoo(zoo::ZooArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        crate::set_threads(n)?;
    }
    match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Devices => devices::run(),
        Command::Distill(args) => distill::run(args),
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => eval::run(args),
        Command::Infer(args) => infer::run(args),
        Command::Render(args) => render::run(args),
        Command::Zoo(args) => zoo::run(args),
    }
}

/// Loads `--model`: a checkpoint folder, or a preset name with `--weights`
/// (a preset alone has no trained weights, so it is refused).
pub fn load_checkpoint(spec: &str, weights: Option<&Path>) -> Result<Checkpoint> {
    if !Path::new(spec).is_dir() && weights.is_none() {
        return Err(Error::invalid(
            "--model",
            format!(
                "`{spec}` is not a checkpoint folder; a preset needs its trained weights: --weights FILE.safetensors"
            ),
        ));
    }
    load_model(spec, weights, None)
}
