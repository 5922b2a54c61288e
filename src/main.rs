//! The `retort` command line.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    retort::keep_freed_memory();
    let cli = retort::cli::Cli::parse();
    // This thread does all the work: it is also a worker of the kernels'
    // pool (`run` then finds the pool built with the asked-for count).
    if let Err(e) = retort::set_threads_with_caller(cli.threads) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match retort::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
