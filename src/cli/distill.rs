//! `retort distill --config FILE.json`: run a distillation strategy.

use crate::distill::{distill, DistillConfig, DistillReport};
use crate::error::{Error, Result};
use std::path::PathBuf;

/// Arguments of `retort distill`.
#[derive(clap::Args, Debug)]
pub struct DistillArgs {
    /// The distillation config (JSON; every key is in the README).
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Continue the interrupted run in this output folder from its last
    /// checkpoints (the config is its distill_config.json).
    #[arg(long, conflicts_with_all = ["config", "out"])]
    pub resume: Option<PathBuf>,
    /// Write into this folder instead of the config's `out`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to compute (cpu, cuda, cuda:N, auto), instead of the config's `device`.
    #[arg(long)]
    pub device: Option<crate::DeviceChoice>,
    /// Hide the progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `retort distill`.
pub fn run(args: DistillArgs) -> Result<()> {
    let config_file = match (&args.config, &args.resume) {
        (_, Some(dir)) => dir.join("distill_config.json"),
        (Some(file), None) => file.clone(),
        (None, None) => {
            return Err(Error::invalid(
                "distill",
                "--config FILE or --resume DIR is required",
            ))
        }
    };
    let mut cfg = DistillConfig::from_file(&config_file)?;
    if let Some(dir) = &args.resume {
        cfg.out = dir.clone();
        cfg.resume = true;
    }
    if let Some(out) = args.out {
        cfg.out = out;
    }
    if args.quiet {
        cfg.progress = false;
    }
    if let Some(device) = args.device {
        cfg.device = device;
    }
    // Problems only the run can see (a layer a model lacks, a teacher of
    // another charset) are still problems of the config file: name it.
    let report = distill(&cfg).map_err(|e| match e {
        Error::InvalidArgument { op, .. } if op == "config" || op == "teacher" => {
            Error::data(&config_file, None, e.to_string())
        }
        other => other,
    })?;
    print_report(&report);
    println!("report: {}", cfg.out.join("report.json").display());
    Ok(())
}

/// Prints the models of a report as a table.
pub fn print_report(report: &DistillReport) {
    println!(
        "{}: {} steps per model in {:.0} s ({:.1} images/s)",
        report.strategy, report.steps, report.seconds, report.images_per_s
    );
    println!(
        "{:<12} {:<40} {:>10} {:>12} {:>8}",
        "role", "model", "parameters", "exact match", "CER"
    );
    let rows = report
        .teachers
        .iter()
        .map(|m| ("teacher", m))
        .chain(report.students.iter().map(|m| ("trained", m)));
    for (role, m) in rows {
        let name = match &m.dir {
            Some(dir) => format!("{} ({})", m.name, dir.join("best").display()),
            None => m.name.clone(),
        };
        println!(
            "{:<12} {:<40} {:>10} {:>11.2}% {:>7.2}%",
            role,
            name,
            m.parameters,
            100.0 * m.exact_match,
            100.0 * m.cer
        );
    }
}
