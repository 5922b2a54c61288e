//! `retort demo`: the whole job on an embedded default. Renders text lines,
//! trains the `crnn-t` teacher, trains the `crnn-s` student alone and with
//! KD (soft-softmax + hint at b4), and prints one table.

use crate::checkpoint;
use crate::data::charset::Charset;
use crate::data::labels::{load_datasets, LABELS_FILE};
use crate::data::loader::{Loader, LoaderConfig};
use crate::data::render::{render_dataset_with_progress, RenderConfig};
use crate::distill::config::{DistillConfig, Objective, Strategy};
use crate::distill::distill;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::train::{evaluate, train, Budget, ModelSource, TrainConfig};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `retort demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Output folder: data/, crnn-t/, crnn-s/, crnn-s-kd/, demo.md.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Training lines to render.
    #[arg(long, default_value_t = 8000)]
    pub lines: usize,
    /// Validation lines to render.
    #[arg(long, default_value_t = 600)]
    pub val_lines: usize,
    /// Steps of the teacher.
    #[arg(long, default_value_t = 900)]
    pub teacher_steps: u64,
    /// Steps of each student.
    #[arg(long, default_value_t = 900)]
    pub student_steps: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Seed of the data and of every run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to train: cpu, cuda, cuda:N, or auto (the GPU when one is usable, otherwise the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: crate::DeviceChoice,
    /// Hide the progress bars.
    #[arg(long)]
    pub quiet: bool,
}

fn render(dir: &Path, count: usize, seed: u64, quiet: bool) -> Result<()> {
    if dir.join(LABELS_FILE).is_file() {
        let n = load_datasets(&[dir.to_path_buf()], &Charset::default_alnum(), false)?
            .samples
            .len();
        if n == count {
            eprintln!("demo: reusing the {n} lines in {}", dir.display());
            return Ok(());
        }
    }
    let cfg = RenderConfig {
        count,
        seed,
        ..RenderConfig::default()
    };
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(count as u64)
    };
    bar.set_message(format!("rendering {}", dir.display()));
    let result = render_dataset_with_progress(dir, &cfg, &|| bar.inc(1));
    bar.finish_and_clear();
    result.map(|_| ())
}

struct Row {
    name: &'static str,
    what: String,
    parameters: usize,
    bytes: u64,
    exact_match: f64,
    cer: f64,
    images_per_s: f64,
    seconds: f64,
}

fn measure(
    name: &'static str,
    what: String,
    dir: &Path,
    val: &Loader,
    seconds: f64,
) -> Result<Row> {
    let best = dir.join("best");
    let mut ck = checkpoint::load(&best)?;
    let charset = Charset::from_symbols(ck.charset.clone())?;
    let report = evaluate(&mut ck.model, &charset, val, 1, 0)?;
    let weights = best.join("model.safetensors");
    let bytes = std::fs::metadata(&weights)
        .map_err(|e| Error::io(&weights, e))?
        .len();
    Ok(Row {
        name,
        what,
        parameters: ck.model.num_parameters(),
        bytes,
        exact_match: report.metrics.exact_match(),
        cer: report.metrics.cer(),
        images_per_s: report.images_per_s,
        seconds,
    })
}

fn table(rows: &[Row], args: &DemoArgs) -> String {
    let mut t = format!(
        "retort demo: {} rendered training lines, {} validation lines, teacher {} steps, students {} steps, batch {}\n\n",
        args.lines, args.val_lines, args.teacher_steps, args.student_steps, args.batch_size
    );
    t.push_str("| model | trained | parameters | size on disk | exact match | CER | images/s | train time |\n");
    t.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {} | {:.1} KiB | {:.2}% | {:.2}% | {:.0} | {:.0} s |\n",
            r.name,
            r.what,
            r.parameters,
            r.bytes as f64 / 1024.0,
            100.0 * r.exact_match,
            100.0 * r.cer,
            r.images_per_s,
            r.seconds
        ));
    }
    t
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let data = args.out.join("data");
    let (train_dir, val_dir) = (data.join("train"), data.join("val"));
    render(&train_dir, args.lines, args.seed * 2 + 1, args.quiet)?;
    render(&val_dir, args.val_lines, args.seed * 2 + 2, args.quiet)?;

    let run_cfg = |model: &str, out: &str, steps: u64| TrainConfig {
        budget: Budget::Steps(steps),
        batch_size: args.batch_size,
        val_every: (steps / 3).max(1),
        warmup_steps: 100.min(steps / 5),
        lr: 2e-3,
        augment: 0.0,
        seed: args.seed,
        progress: !args.quiet,
        device: args.device,
        ..TrainConfig::new(
            model,
            vec![train_dir.clone()],
            vec![val_dir.clone()],
            args.out.join(out),
        )
    };
    eprintln!(
        "demo: training the teacher crnn-t ({} steps)",
        args.teacher_steps
    );
    let t0 = Instant::now();
    train(&run_cfg("crnn-t", "crnn-t", args.teacher_steps))?;
    let teacher_secs = t0.elapsed().as_secs_f64();

    eprintln!(
        "demo: training the student crnn-s alone ({} steps)",
        args.student_steps
    );
    let t0 = Instant::now();
    train(&run_cfg("crnn-s", "crnn-s", args.student_steps))?;
    let alone_secs = t0.elapsed().as_secs_f64();

    eprintln!("demo: distilling crnn-t into crnn-s (soft KD + hint at b4)");
    let base = run_cfg("crnn-s", "crnn-s-kd", args.student_steps);
    let kd_cfg = DistillConfig::from_train(
        &base,
        Strategy::teacher_student(
            &args.out.join("crnn-t").join("best"),
            ModelSource::Preset("crnn-s".into()),
            Objective::kd_with_hint(4.0, "b4"),
        ),
    );
    let t0 = Instant::now();
    distill(&kd_cfg)?;
    let kd_secs = t0.elapsed().as_secs_f64();

    let charset = Charset::default_alnum();
    let val = Loader::new(
        load_datasets(std::slice::from_ref(&val_dir), &charset, false)?.samples,
        LoaderConfig {
            batch_size: 32,
            shuffle: false,
            ..LoaderConfig::default()
        },
    )?;
    let rows = vec![
        measure(
            "crnn-t",
            "teacher, CTC".into(),
            &args.out.join("crnn-t"),
            &val,
            teacher_secs,
        )?,
        measure(
            "crnn-s",
            "student alone, CTC".into(),
            &args.out.join("crnn-s"),
            &val,
            alone_secs,
        )?,
        measure(
            "crnn-s + KD",
            "student, CTC + soft KD (T = 4) + hint at b4".into(),
            &args.out.join("crnn-s-kd"),
            &val,
            kd_secs,
        )?,
    ];
    let text = table(&rows, &args);
    write_atomic(&args.out.join("demo.md"), text.as_bytes())?;
    println!("{text}");
    println!(
        "total {:.1} min; checkpoints in {}/{{crnn-t,crnn-s,crnn-s-kd}}/best, table in {}",
        started.elapsed().as_secs_f64() / 60.0,
        args.out.display(),
        args.out.join("demo.md").display()
    );
    Ok(())
}
