//! Command-line interface: argument parsing and one module per command.

mod devices;

use crate::error::Result;
use clap::{Parser, Subcommand};

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
    /// Lists the compute devices retort can use: CPU threads and CUDA GPUs.
    Devices,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(n) = cli.threads {
        crate::set_threads(n)?;
    }
    match cli.command {
        Command::Devices => devices::run(),
    }
}
