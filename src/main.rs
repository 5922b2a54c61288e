//! The `retort` command line.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    retort::keep_freed_memory();
    let cli = retort::cli::Cli::parse();
    match retort::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
