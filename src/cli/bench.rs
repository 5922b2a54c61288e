//! `retort bench`: times the three reference steps of `reference-models.md`
//! ("The steps that are timed") on random data at the benchmark shapes
//! (N = 32, 1 x 32 x 128, K = 37): `train-step crnn-t`, `distill-step`
//! (crnn-t teacher, crnn-s student) and `infer crnn-s` at batch 1 and 32.
//!
//! Every row runs a few warm-up iterations, then the timed ones, and reports
//! the median time, the images per second it means and, for inference, the
//! latency per line in microseconds. `--peak` also measures the CPU's FP32
//! peak (an FMA loop per core, [`crate::cpu::peak`]).
//!
//! The steps themselves are built by [`train_step`], [`distill_step`] and
//! [`infer_step`]; `benches/kernels.rs` times the same steps with criterion.

use crate::autograd::{Param, Tape};
use crate::data::batch::Batch;
use crate::data::charset::Charset;
use crate::distill::{hint_loss, soft_kd, Adaptor};
use crate::error::{Error, Result};
use crate::nn::{Crnn, CrnnConfig};
use crate::ops;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::rng::Rng;
use crate::tensor::{Device, Tensor};
use crate::train::{ctc_objective, recognize_batch};
use clap::{Args, ValueEnum};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

/// Image height and width of the reference input.
const HEIGHT: usize = 32;
const WIDTH: usize = 128;
/// Symbols of the benchmark charset (class 0 is the blank, so K = 37).
const SYMBOLS: usize = 36;
/// Distillation temperature and the weight of the KL term (T²).
const TEMPERATURE: f32 = 4.0;
/// Learning rate of the SGD-momentum updates (its value does not change the cost).
const LR: f32 = 0.01;
/// Batch-1 inference is short (a fifth of a millisecond), so it gets this
/// many times the runs: with 5x, 35 runs took 7 ms in all and one busy
/// moment of a shared host moved the median by a third.
const SINGLE_FACTOR: usize = 50;

/// Where the steps run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchDevice {
    /// The CPU engine, on `--threads` worker threads.
    Cpu,
    /// CUDA GPU 0 (needs a build with `--features cuda`).
    Cuda,
}

/// Arguments of `retort bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Device to run the steps on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: BenchDevice,
    /// Print one JSON object per row instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Timed runs per row; the median is reported (batch-1 inference runs 50x as many).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    pub reps: u64,
    /// Untimed warm-up runs per row (batch-1 inference runs 50x as many).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Batch size of the batched rows (the reference is 32; smaller for quick tests).
    #[arg(long, default_value_t = 32, hide = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Also measure the CPU's single-precision peak (an FMA loop on one
    /// core and on every worker thread) and print each row's share of it.
    #[arg(long)]
    pub peak: bool,
    /// Time only these rows (repeatable; default: all). Run one row alone
    /// to profile it or to read its peak memory.
    #[arg(long, value_enum)]
    pub only: Vec<BenchRow>,
}

/// The rows `retort bench` can time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchRow {
    /// train-step crnn-t at the batch size.
    Train,
    /// distill-step crnn-t -> crnn-s at the batch size.
    Distill,
    /// infer crnn-s on one line.
    Infer1,
    /// infer crnn-s at the batch size.
    InferBatch,
}

/// One measured row.
#[derive(Clone, Debug)]
struct Row {
    name: &'static str,
    batch: usize,
    median_s: f64,
}

impl Row {
    fn images_per_s(&self) -> f64 {
        self.batch as f64 / self.median_s
    }

    /// Microseconds per line, for the inference rows (a line is an image).
    fn us_per_line(&self) -> Option<f64> {
        self.name
            .starts_with("infer")
            .then(|| self.median_s * 1e6 / self.batch as f64)
    }
}

/// Runs `retort bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let (device, device_name) = match args.device {
        BenchDevice::Cpu => (Device::Cpu, "device cpu".to_string()),
        BenchDevice::Cuda => {
            let device = crate::DeviceChoice::Cuda(0).resolve()?;
            (device, format!("device {}", gpu_name(device)?))
        }
    };
    let threads = rayon::current_num_threads();
    let batch = args.batch as usize;
    let reps = args.reps as usize;
    let warmup = args.warmup as usize;
    let cpu = cpu_model();
    if !args.json {
        println!(
            "retort bench: {cpu}, {threads} thread(s), {device_name}, 1 x {HEIGHT} x {WIDTH} images, median of {reps} runs after {warmup} warm-up(s) ({}x for batch 1)",
            SINGLE_FACTOR
        );
    }
    let peaks = if args.peak {
        let mut peaks = crate::cpu::peak::measure(1, 0.005, 40);
        if threads > 1 {
            peaks.extend(crate::cpu::peak::measure(threads, 0.005, 40));
        }
        for p in &peaks {
            if args.json {
                let value = serde_json::json!({
                    "peak": p.isa,
                    "threads": p.threads,
                    "gflops": p.gflops,
                    "cpu": cpu,
                });
                println!("{value}");
            } else {
                println!(
                    "FP32 peak ({} FMA loop, {} thread(s)): {:.1} GFLOP/s",
                    p.isa, p.threads, p.gflops
                );
            }
        }
        peaks
    } else {
        Vec::new()
    };
    let mut rng = Rng::seed(42);
    let mut rows = Vec::new();
    let mut emit = |row: Row| {
        if args.json {
            print_json(&row, threads, &device_name, &cpu);
        }
        rows.push(row);
    };
    let wanted = |row: BenchRow| args.only.is_empty() || args.only.contains(&row);
    if wanted(BenchRow::Train) {
        emit(train_row(batch, warmup, reps, &mut rng, device)?);
    }
    if wanted(BenchRow::Distill) {
        emit(distill_row(batch, warmup, reps, &mut rng, device)?);
    }
    if wanted(BenchRow::Infer1) {
        emit(infer_row(
            1,
            warmup * SINGLE_FACTOR,
            reps * SINGLE_FACTOR,
            &mut rng,
            device,
        )?);
    }
    if wanted(BenchRow::InferBatch) {
        emit(infer_row(batch, warmup, reps, &mut rng, device)?);
    }
    if !args.json {
        print_table(&rows);
        if let Some(p) = peaks.iter().find(|p| p.threads == threads) {
            print_peak_share(&rows, p);
        }
    }
    Ok(())
}

/// FLOPs of one image through the forward pass of `preset` at the
/// reference shape (convolutions, LSTM products and head; 2 per
/// multiply-add; elementwise work not counted).
pub fn forward_flops(preset: &str) -> Result<f64> {
    let cfg = CrnnConfig::preset(preset)?;
    let (mut c, mut h, mut w) = (cfg.in_channels, HEIGHT, WIDTH);
    let mut macs = 0.0f64;
    for b in &cfg.blocks {
        macs += (b.out_channels * c * 9 * h * w) as f64;
        c = b.out_channels;
        if let Some((ph, pw)) = b.pool {
            h /= ph;
            w /= pw;
        }
    }
    let (t, hid) = (w, cfg.hidden);
    let dirs = if cfg.bidirectional { 2 } else { 1 };
    let mut input = c * h;
    for _ in 0..cfg.layers {
        macs += (dirs * t * 4 * hid * (input + hid)) as f64;
        input = dirs * hid;
    }
    macs += (t * input * cfg.num_classes) as f64;
    Ok(2.0 * macs)
}

/// Each row's forward FLOP rate as a share of the peak `p` (backward and
/// update work not counted, so training rows read low).
fn print_peak_share(rows: &[Row], p: &crate::cpu::peak::Peak) {
    for row in rows {
        let flops = match row.name {
            "infer crnn-s" => forward_flops("crnn-s"),
            "train-step crnn-t" => forward_flops("crnn-t").map(|f| 3.0 * f),
            _ => continue,
        };
        let Ok(flops) = flops else { continue };
        let gflops = flops * row.batch as f64 / row.median_s / 1e9;
        println!(
            "{:<18} batch {:>3}: {:.1} GFLOP/s of model FLOPs{} = {:.1}% of the {} peak",
            row.name,
            row.batch,
            gflops,
            if row.name.starts_with("train") {
                " (3x forward)"
            } else {
                ""
            },
            100.0 * gflops / p.gflops,
            p.isa
        );
    }
}

/// The CPU's model name from `/proc/cpuinfo`, or "unknown CPU".
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

fn print_json(row: &Row, threads: usize, device: &str, cpu: &str) {
    let value = serde_json::json!({
        "row": row.name,
        "batch": row.batch,
        "threads": threads,
        "device": device.trim_start_matches("device "),
        "median_ms": row.median_s * 1e3,
        "images_per_s": row.images_per_s(),
        "us_per_line": row.us_per_line(),
        "cpu": cpu,
    });
    println!("{value}");
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<18} {:>5} {:>11} {:>11} {:>14}",
        "row", "batch", "median ms", "images/s", "µs per line"
    );
    for row in rows {
        let latency = row
            .us_per_line()
            .map(|us| format!("{us:.0}"))
            .unwrap_or_default();
        println!(
            "{:<18} {:>5} {:>11.3} {:>11.1} {:>14}",
            row.name,
            row.batch,
            row.median_s * 1e3,
            row.images_per_s(),
            latency
        );
    }
}

/// Runs `f` `warmup` times, then `reps` timed times; the median in seconds.
fn time(warmup: usize, reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// A random batch: images in [-1, 1], every width 128, labels of 4..=12
/// symbols drawn from classes 1..=36.
fn batch(n: usize, rng: &mut Rng) -> Result<Batch> {
    let data: Vec<f32> = (0..n * HEIGHT * WIDTH)
        .map(|_| rng.range(-1.0, 1.0))
        .collect();
    let targets: Vec<Vec<usize>> = (0..n)
        .map(|_| {
            let len = 4 + rng.below(9);
            (0..len).map(|_| 1 + rng.below(SYMBOLS)).collect()
        })
        .collect();
    Ok(Batch {
        images: Tensor::from_vec(data, &[n, 1, HEIGHT, WIDTH])?,
        widths: vec![WIDTH; n],
        labels: vec![String::new(); n],
        paths: vec![PathBuf::new(); n],
        targets,
    })
}

fn model(preset: &str, seed: u64, device: Device) -> Result<Crnn> {
    let mut model = Crnn::new(CrnnConfig::preset(preset)?, &mut Rng::seed(seed))?;
    model.to_device(device)?;
    Ok(model)
}

/// Waits until `device` has finished the queued work, so that a timed step
/// includes it.
fn wait_for(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => crate::cuda::CudaDevice::get(ordinal)?.synchronize(),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(Error::Device(
            "retort was built without the `cuda` feature".into(),
        )),
    }
}

/// "NVIDIA H200 (cuda:0)" for a GPU.
fn gpu_name(device: Device) -> Result<String> {
    match device {
        Device::Cpu => Ok("cpu".into()),
        Device::Cuda(ordinal) => {
            let gpu = crate::cuda::probe(ordinal)?;
            Ok(format!("{} (cuda:{ordinal})", gpu.name))
        }
    }
}

/// One prepared reference step: each call runs the step once on the same
/// batch (the model's state moves on, as in training).
pub type Step = Box<dyn FnMut() -> Result<()>>;

/// `train-step crnn-t` on a random batch of `n` images: forward, CTC,
/// backward, SGD-momentum update — the training loop's own step.
pub fn train_step(n: usize, rng: &mut Rng) -> Result<Step> {
    train_step_on(n, rng, Device::Cpu)
}

/// [`train_step`] with the model on `device` (the batch comes from host
/// memory each step, as in the training loop; each step waits for the device).
pub fn train_step_on(n: usize, rng: &mut Rng, device: Device) -> Result<Step> {
    let batch = batch(n, rng)?;
    let mut model = model("crnn-t", 0, device)?;
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.9))?;
    let mut step_rng = Rng::seed(1);
    Ok(Box::new(move || {
        black_box(crate::train::train_step(
            &mut model,
            &mut opt,
            &batch,
            LR,
            None,
            &mut step_rng,
        )?);
        wait_for(device)
    }))
}

fn train_row(n: usize, warmup: usize, reps: usize, rng: &mut Rng, device: Device) -> Result<Row> {
    let median_s = time(warmup, reps, train_step_on(n, rng, device)?)?;
    Ok(Row {
        name: "train-step crnn-t",
        batch: n,
        median_s,
    })
}

/// `distill-step`: the crnn-t teacher's forward on a no-grad tape, the
/// crnn-s student's forward, loss = CTC(student) + soft-target KD at T = 4
/// per frame + hint MSE between a 1x1-conv adaptor of the student's b4
/// (32 → 128 channels) and the teacher's b4, backward through student and
/// adaptor, SGD-momentum update of both.
pub fn distill_step(n: usize, rng: &mut Rng) -> Result<Step> {
    distill_step_on(n, rng, Device::Cpu)
}

/// [`distill_step`] with teacher, student and adaptor on `device`.
pub fn distill_step_on(n: usize, rng: &mut Rng, device: Device) -> Result<Step> {
    let batch = batch(n, rng)?;
    let mut teacher = model("crnn-t", 0, device)?;
    let mut student = model("crnn-s", 1, device)?;
    let mut adaptor = Adaptor::for_map(
        student.config.blocks[3].out_channels,
        teacher.config.blocks[3].out_channels,
        &mut Rng::seed(2),
    )?;
    for (_, p) in adaptor.params_mut() {
        p.move_to(device)?;
    }
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.9))?;
    let mut step_rng = Rng::seed(3);
    Ok(Box::new(move || {
        let (images, widths) = (&batch.images, &batch.widths);
        let (t_logits, t_b4) = {
            let mut frozen = Tape::no_grad();
            let t = teacher.forward(&mut frozen, images, widths, false, &mut step_rng)?;
            (t.logits, feature(&t.features, "b4")?.clone())
        };
        let mut tape = Tape::new();
        let s = student.forward(&mut tape, images, widths, true, &mut step_rng)?;
        let ctc = ctc_objective(&mut tape, &s, &batch.targets)?;
        let kd = soft_kd(&mut tape, &s.logits, &t_logits, &s.lengths, TEMPERATURE)?;
        let hint = hint_loss(&mut tape, &adaptor, feature(&s.features, "b4")?, &t_b4)?;
        let loss = ops::add(&mut tape, &ctc, &kd)?;
        let loss = ops::add(&mut tape, &loss, &hint)?;
        let grads = tape.backward(&loss)?;
        drop(tape);
        let mut params: Vec<&mut Param> = student
            .params_mut()
            .into_iter()
            .chain(adaptor.params_mut())
            .map(|(_, p)| p)
            .collect();
        opt.step(&mut params, &grads, LR)?;
        black_box(loss.item()?);
        wait_for(device)
    }))
}

fn distill_row(n: usize, warmup: usize, reps: usize, rng: &mut Rng, device: Device) -> Result<Row> {
    let median_s = time(warmup, reps, distill_step_on(n, rng, device)?)?;
    Ok(Row {
        name: "distill-step",
        batch: n,
        median_s,
    })
}

fn feature<'a>(
    features: &'a std::collections::BTreeMap<String, Tensor>,
    name: &str,
) -> Result<&'a Tensor> {
    features
        .get(name)
        .ok_or_else(|| Error::invalid("retort bench", format!("the model has no feature `{name}`")))
}

/// `infer crnn-s` on a random batch of `n` images: eval-mode forward on a
/// no-grad tape, greedy decoding and the charset lookup — what
/// `retort infer` does per batch.
pub fn infer_step(n: usize, rng: &mut Rng) -> Result<Step> {
    infer_step_on(n, rng, Device::Cpu)
}

/// [`infer_step`] with the model on `device` (decoding reads the scores
/// back to the host, which waits for the device).
pub fn infer_step_on(n: usize, rng: &mut Rng, device: Device) -> Result<Step> {
    let batch = batch(n, rng)?;
    let mut student = model("crnn-s", 1, device)?;
    let charset = Charset::default_alnum();
    Ok(Box::new(move || {
        black_box(recognize_batch(&mut student, &batch, &charset, 1)?);
        Ok(())
    }))
}

fn infer_row(n: usize, warmup: usize, reps: usize, rng: &mut Rng, device: Device) -> Result<Row> {
    let median_s = time(warmup, reps, infer_step_on(n, rng, device)?)?;
    Ok(Row {
        name: "infer crnn-s",
        batch: n,
        median_s,
    })
}
