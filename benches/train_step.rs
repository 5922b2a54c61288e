//! Timings of the pieces of a CPU training step at the reference shapes
//! (`crnn-t`, N = 32, 1 x 32 x 128) and of whole `crnn-t` / `crnn-s` steps.
//!
//! A plain timing harness (no criterion): every row runs a few warm-up
//! iterations, then `REPS` timed ones, and prints the median (and min) time
//! and the images per second that time means for a batch of 32.
//!
//! ```text
//! cargo bench --bench train_step                 # every row
//! cargo bench --bench train_step -- lstm step    # rows whose name contains a word
//! RETORT_BENCH_REPS=21 RETORT_BENCH_THREADS=1 cargo bench --bench train_step
//! ```

use retort::nn::{Crnn, CrnnConfig};
use retort::ops::batchnorm2d::{batchnorm2d, RunningStats};
use retort::ops::conv2d::{conv2d, Conv2dSpec};
use retort::ops::ctc::{ctc_loss, CtcOptions};
use retort::ops::lstm::{lstm, LstmLayer, LstmWeights};
use retort::ops::maxpool2d::{maxpool2d, Pool2dSpec};
use retort::optim::{Optimizer, OptimizerConfig};
use retort::train::ctc_objective;
use retort::{ops, Param, Rng, Tape, Tensor};
use std::hint::black_box;
use std::time::{Duration, Instant};

const N: usize = 32;
const WIDTH: usize = 128;
const CLASSES: usize = 37;

fn weights(d: &[Tensor; 4]) -> LstmWeights<'_> {
    LstmWeights {
        w_ih: &d[0],
        w_hh: &d[1],
        b_ih: &d[2],
        b_hh: &d[3],
    }
}

fn random(rng: &mut Rng, dims: &[usize], scale: f32) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.normal() * scale).collect(), dims).unwrap()
}

fn tracked(rng: &mut Rng, dims: &[usize], scale: f32) -> Tensor {
    random(rng, dims, scale).tracked()
}

/// Images in [-1, 1], pixel widths 64..=128, labels of 3..=10 symbols.
fn batch(rng: &mut Rng) -> (Tensor, Vec<usize>, Vec<Vec<usize>>) {
    let data: Vec<f32> = (0..N * 32 * WIDTH).map(|_| rng.range(-1.0, 1.0)).collect();
    let images = Tensor::from_vec(data, &[N, 1, 32, WIDTH]).unwrap();
    let widths: Vec<usize> = (0..N).map(|i| WIDTH - (i * 7) % 65).collect();
    let targets = (0..N)
        .map(|_| {
            let len = 3 + rng.below(8);
            (0..len).map(|_| 1 + rng.below(CLASSES - 1)).collect()
        })
        .collect();
    (images, widths, targets)
}

struct Bench {
    filters: Vec<String>,
    reps: usize,
}

impl Bench {
    fn row(&self, name: &str, mut f: impl FnMut()) {
        if !self.filters.is_empty() && !self.filters.iter().any(|w| name.contains(w.as_str())) {
            return;
        }
        for _ in 0..2 {
            f();
        }
        let mut times: Vec<Duration> = (0..self.reps)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed()
            })
            .collect();
        times.sort();
        let med = times[times.len() / 2];
        let ms = med.as_secs_f64() * 1e3;
        println!(
            "{name:<28} median {ms:>9.3} ms  min {:>9.3} ms  {:>9.1} images/s",
            times[0].as_secs_f64() * 1e3,
            N as f64 / med.as_secs_f64()
        );
    }
}

/// Forward and backward of one op graph built by `build` (returns a tensor
/// that is summed into the loss).
fn fwd_bwd(build: impl Fn(&mut Tape) -> Tensor) -> impl FnMut() {
    move || {
        let mut tape = Tape::new();
        let y = build(&mut tape);
        let loss = ops::sum_all(&mut tape, &y).unwrap();
        black_box(tape.backward(&loss).unwrap());
    }
}

fn conv_rows(b: &Bench, rng: &mut Rng) {
    // (in channels, out channels, height, width) of b1..b4 of crnn-t.
    let shapes = [
        (1, 32, 32, 128),
        (32, 64, 16, 64),
        (64, 128, 8, 32),
        (128, 128, 8, 32),
    ];
    let spec = Conv2dSpec::new((1, 1), (1, 1));
    for (i, &(c, o, h, w)) in shapes.iter().enumerate() {
        // The images (b1's input) need no gradient; later inputs do.
        let x = random(rng, &[N, c, h, w], 1.0);
        let x = if i == 0 { x } else { x.tracked() };
        let wt = tracked(rng, &[o, c, 3, 3], 0.2);
        b.row(&format!("conv b{} fwd", i + 1), || {
            let mut tape = Tape::new();
            black_box(conv2d(&mut tape, &x, &wt, None, spec).unwrap());
        });
        b.row(
            &format!("conv b{} fwd+bwd", i + 1),
            fwd_bwd(|tape| conv2d(tape, &x, &wt, None, spec).unwrap()),
        );
    }
}

fn pool_bn_rows(b: &Bench, rng: &mut Rng) {
    let x = tracked(rng, &[N, 32, 32, 128], 1.0);
    let p22 = Pool2dSpec::new((2, 2), (2, 2));
    b.row("maxpool 2x2 fwd", || {
        let mut tape = Tape::new();
        black_box(maxpool2d(&mut tape, &x, p22).unwrap());
    });
    b.row(
        "maxpool 2x2 fwd+bwd",
        fwd_bwd(|tape| maxpool2d(tape, &x, p22).unwrap()),
    );
    let x4 = tracked(rng, &[N, 128, 8, 32], 1.0);
    let p21 = Pool2dSpec::new((2, 1), (2, 1));
    b.row(
        "maxpool 2x1 fwd+bwd",
        fwd_bwd(|tape| maxpool2d(tape, &x4, p21).unwrap()),
    );
    // What every fwd+bwd row pays for its `sum_all` loss, at the b1 size.
    b.row("(sum_all b1 fwd+bwd)", fwd_bwd(|_| x.clone()));
    let gamma = tracked(rng, &[32], 0.1);
    let beta = tracked(rng, &[32], 0.1);
    b.row(
        "bn+relu b1 fwd+bwd",
        fwd_bwd(|tape| {
            let mut stats = RunningStats::new(32);
            let y = batchnorm2d(tape, &x, &gamma, &beta, &mut stats, true).unwrap();
            ops::relu(tape, &y).unwrap()
        }),
    );
}

fn lstm_rows(b: &Bench, rng: &mut Rng) {
    let (t, f, h) = (32, 512, 128);
    let x = tracked(rng, &[t, N, f], 1.0);
    let scale = 1.0 / (h as f32).sqrt();
    let mut dirs = Vec::new();
    for input in [f, f, 2 * h, 2 * h] {
        dirs.push([
            tracked(rng, &[4 * h, input], scale),
            tracked(rng, &[4 * h, h], scale),
            tracked(rng, &[4 * h], scale),
            tracked(rng, &[4 * h], scale),
        ]);
    }
    let layers = [
        LstmLayer {
            forward: weights(&dirs[0]),
            reverse: Some(weights(&dirs[1])),
        },
        LstmLayer {
            forward: weights(&dirs[2]),
            reverse: Some(weights(&dirs[3])),
        },
    ];
    let lengths: Vec<usize> = (0..N).map(|i| t - (i * 7 % 65) / 4).collect();
    b.row("bilstm x2 fwd", || {
        let mut tape = Tape::new();
        black_box(lstm(&mut tape, &x, &layers, &lengths).unwrap());
    });
    b.row(
        "bilstm x2 fwd+bwd",
        fwd_bwd(|tape| lstm(tape, &x, &layers, &lengths).unwrap()),
    );

    let logits = tracked(rng, &[t, N, CLASSES], 1.0);
    let targets: Vec<Vec<usize>> = (0..N)
        .map(|_| (0..3 + rng.below(8)).map(|_| 1 + rng.below(36)).collect())
        .collect();
    b.row(
        "log_softmax+ctc fwd+bwd",
        fwd_bwd(|tape| {
            let lp = ops::log_softmax(tape, &logits, 1.0).unwrap();
            ctc_loss(tape, &lp, &targets, &lengths, CtcOptions::default()).unwrap()
        }),
    );
}

/// The crnn-t step wired from ops (conv → bn → relu → pool ×4, sequence,
/// 2-layer BiLSTM, linear, log_softmax, CTC, backward).
fn ops_step_row(b: &Bench, rng: &mut Rng) {
    let (images, widths, targets) = batch(rng);
    let blocks = [
        (1, 32, Some((2, 2))),
        (32, 64, Some((2, 2))),
        (64, 128, None),
        (128, 128, Some((2, 1))),
    ];
    let convs: Vec<[Tensor; 3]> = blocks
        .iter()
        .map(|&(c, o, _)| {
            [
                tracked(rng, &[o, c, 3, 3], (2.0 / (9 * c) as f32).sqrt()),
                Tensor::ones(&[o]).unwrap().tracked(),
                Tensor::zeros(&[o]).unwrap().tracked(),
            ]
        })
        .collect();
    let h = 128;
    let scale = 1.0 / (h as f32).sqrt();
    let dirs: Vec<[Tensor; 4]> = [512, 512, 256, 256]
        .iter()
        .map(|&input| {
            [
                tracked(rng, &[4 * h, input], scale),
                tracked(rng, &[4 * h, h], scale),
                tracked(rng, &[4 * h], scale),
                tracked(rng, &[4 * h], scale),
            ]
        })
        .collect();
    let head = tracked(rng, &[CLASSES, 2 * h], 0.06);
    let head_b = tracked(rng, &[CLASSES], 0.06);
    let t = WIDTH / 4;
    let lengths: Vec<usize> = widths.iter().map(|w| (w / 4).max(1)).collect();
    let spec = Conv2dSpec::new((1, 1), (1, 1));
    b.row("crnn-t step (ops)", || {
        let mut tape = Tape::new();
        let mut x = images.clone();
        for (&(_, o, pool), [w, gamma, beta]) in blocks.iter().zip(&convs) {
            x = conv2d(&mut tape, &x, w, None, spec).unwrap();
            let mut stats = RunningStats::new(o);
            x = batchnorm2d(&mut tape, &x, gamma, beta, &mut stats, true).unwrap();
            x = ops::relu(&mut tape, &x).unwrap();
            if let Some(k) = pool {
                x = maxpool2d(&mut tape, &x, Pool2dSpec::new(k, k)).unwrap();
            }
        }
        let seq = ops::permute(&mut tape, &x, &[3, 0, 1, 2]).unwrap();
        let seq = ops::reshape(&mut tape, &seq, &[t, N, 512]).unwrap();
        let layers = [
            LstmLayer {
                forward: weights(&dirs[0]),
                reverse: Some(weights(&dirs[1])),
            },
            LstmLayer {
                forward: weights(&dirs[2]),
                reverse: Some(weights(&dirs[3])),
            },
        ];
        let r = lstm(&mut tape, &seq, &layers, &lengths).unwrap();
        let logits = ops::linear(&mut tape, &r, &head, Some(&head_b)).unwrap();
        let lp = ops::log_softmax(&mut tape, &logits, 1.0).unwrap();
        let loss = ctc_loss(&mut tape, &lp, &targets, &lengths, CtcOptions::default()).unwrap();
        black_box(tape.backward(&loss).unwrap());
    });
}

/// A whole model step as `train_step` does it: `Crnn::forward`, CTC,
/// backward and an SGD-momentum update. Prints a checksum of the first
/// step's loss and gradient norm so runs of different builds can be compared.
fn model_step_row(b: &Bench, rng: &mut Rng, preset: &str) {
    let name = format!("{preset} step (model)");
    if !b.filters.is_empty() && !b.filters.iter().any(|w| name.contains(w.as_str())) {
        return;
    }
    let (images, widths, targets) = batch(rng);
    let mut model = Crnn::new(CrnnConfig::preset(preset).unwrap(), &mut Rng::seed(0)).unwrap();
    let step = |model: &mut Crnn, opt: &mut Optimizer, rng: &mut Rng| -> (f32, f32) {
        let mut tape = Tape::new();
        let out = model
            .forward(&mut tape, &images, &widths, true, rng)
            .unwrap();
        let loss = ctc_objective(&mut tape, &out, &targets).unwrap();
        let grads = tape.backward(&loss).unwrap();
        drop(tape);
        let mut params: Vec<&mut Param> = model.params_mut().into_iter().map(|(_, p)| p).collect();
        let views: Vec<&Param> = params.iter().map(|p| &**p).collect();
        let norm = retort::optim::grad_norm(&views, &grads);
        opt.step(&mut params, &grads, 0.01).unwrap();
        (loss.item().unwrap(), norm)
    };
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.9)).unwrap();
    let (loss, norm) = step(&mut model.clone(), &mut opt, &mut Rng::seed(1));
    println!("{name}: first step loss {loss:.6} grad norm {norm:.6}");
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.9)).unwrap();
    let mut step_rng = Rng::seed(1);
    b.row(&name, || {
        black_box(step(&mut model, &mut opt, &mut step_rng));
    });
}

fn main() {
    // The same allocator setting as the `retort` binary.
    retort::keep_freed_memory();
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let reps = std::env::var("RETORT_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    // As in the `retort` binary, this thread is one of the pool's workers.
    let threads = std::env::var("RETORT_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    retort::set_threads_with_caller(threads).expect("thread count");
    println!(
        "retort train-step bench: N = {N}, {} threads, median of {reps}",
        rayon::current_num_threads()
    );
    let b = Bench { filters, reps };
    let mut rng = Rng::seed(42);
    conv_rows(&b, &mut rng);
    pool_bn_rows(&b, &mut rng);
    lstm_rows(&b, &mut rng);
    ops_step_row(&b, &mut rng);
    model_step_row(&b, &mut rng, "crnn-t");
    model_step_row(&b, &mut rng, "crnn-s");
}
