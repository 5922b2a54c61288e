//! Criterion benchmarks of the CPU kernels at the reference shapes of
//! `reference-models.md` (N = 32, 1 x 32 x 128 images, K = 37) and of the
//! three timed steps, with throughputs: FLOPs for the kernels (criterion's
//! `elem/s` is then FLOP/s), lattice cells or values for CTC and the KD
//! loss, images for the steps.
//!
//! ```text
//! cargo bench --bench kernels                    # everything, ~3 minutes
//! cargo bench --bench kernels -- gemm            # criterion's filter: one group
//! RETORT_BENCH_THREADS=2 cargo bench --bench kernels
//! RETORT_BENCH_QUICK=1 cargo bench --bench kernels -- --list
//! ```
//!
//! The worker threads default to 1, so kernel rates compare with the
//! one-core peak printed first (an FMA loop, `retort::cpu::peak`). The GEMM
//! group times this crate's `gemm` and `matrixmultiply::sgemm` on the same
//! operands side by side. After criterion's report a summary prints each
//! GEMM shape in GFLOP/s and as a share of the peak, measured again in the
//! same rounds as the products.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use retort::cpu::conv2d::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, conv2d_forward_tapwise, im2col,
    ConvGeom,
};
use retort::cpu::conv_weight_grad;
use retort::cpu::gemm::{gemm, gemm_packed, MatRef};
use retort::cpu::lstm::{lstm_backward, lstm_forward, LstmDims, LstmNeeds, LstmParams};
use retort::cpu::panel_gemm::{gemm_prepacked, PackedB};
use retort::cpu::peak::{self, Peak};
use retort::cpu::small_gemm::Kernel;
use retort::cpu::winograd::{self, conv2d_winograd};
use retort::distill::soft_kd;
use retort::ops::ctc::{ctc_loss, CtcOptions};
use retort::{ops, Rng, Tape, Tensor};
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const N: usize = 32;
const T: usize = 32;
const K: usize = 37;

fn values(rng: &mut Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.range(-scale, scale)).collect()
}

/// One GEMM shape: `c (m x n) = a (m x k) · b (k x n)`, `b` stored
/// transposed (`x·Wᵀ` with W row-major) when `bt`. With `packed_every`,
/// retort's product reads `b` from panels packed once for that many
/// products, as an LSTM's steps read their recurrent weight (the packing
/// is timed with them).
struct GemmShape {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    bt: bool,
    packed_every: Option<usize>,
}

/// The products of one `crnn-t` training step at N = 32 (conv: per sample,
/// im2col `W (o x c·9) · col (c·9 x H·W)`; LSTM layer 1: the input
/// projection of all steps, one step's `h·W_hhᵀ` and its backward
/// `dGates·W_hh`, both from `W_hh` packed once for the 31 steps), and the batch-1
/// `crnn-s` ones: the LSTM input projection both as a tracked layer computes
/// it (`W_ih` stored `4H x F`, read transposed) and as inference does, from
/// the transpose kept for frozen weights (`ops::frozen_weights`); and the
/// input projection of `crnn-t`'s second LSTM layer as a frozen teacher
/// runs it in a distill-step.
const GEMMS: [GemmShape; 13] = [
    GemmShape {
        name: "crnn-t conv b1",
        m: 32,
        k: 9,
        n: 4096,
        bt: false,
        packed_every: None,
    },
    GemmShape {
        name: "crnn-t conv b2",
        m: 64,
        k: 288,
        n: 1024,
        bt: false,
        packed_every: None,
    },
    GemmShape {
        name: "crnn-t conv b3",
        m: 128,
        k: 576,
        n: 256,
        bt: false,
        packed_every: None,
    },
    GemmShape {
        name: "crnn-t conv b4",
        m: 128,
        k: 1152,
        n: 256,
        bt: false,
        packed_every: None,
    },
    GemmShape {
        name: "crnn-t lstm1 input (T·N rows)",
        m: T * N,
        k: 512,
        n: 512,
        bt: true,
        packed_every: None,
    },
    GemmShape {
        name: "crnn-t lstm2 input, kept W_ihᵀ",
        m: T * N,
        k: 256,
        n: 512,
        bt: false,
        packed_every: None,
    },
    GemmShape {
        name: "crnn-t lstm step, h·W_hhᵀ",
        m: N,
        k: 128,
        n: 512,
        bt: true,
        packed_every: Some(T - 1),
    },
    GemmShape {
        name: "crnn-t lstm step back, dG·W_hh",
        m: N,
        k: 512,
        n: 128,
        bt: false,
        packed_every: Some(T - 1),
    },
    GemmShape {
        name: "crnn-s conv b2 batch 1",
        m: 16,
        k: 72,
        n: 1024,
        bt: false,
        packed_every: None,
    },
    GemmShape {
        name: "crnn-s conv b4 batch 1",
        m: 32,
        k: 288,
        n: 256,
        bt: false,
        packed_every: None,
    },
    GemmShape {
        name: "crnn-s lstm input batch 1",
        m: T,
        k: 128,
        n: 192,
        bt: true,
        packed_every: None,
    },
    GemmShape {
        name: "crnn-s lstm input b1, kept W_ihᵀ",
        m: T,
        k: 128,
        n: 192,
        bt: false,
        packed_every: None,
    },
    GemmShape {
        name: "crnn-s lstm step batch 1",
        m: 1,
        k: 48,
        n: 192,
        bt: false,
        packed_every: None,
    },
];

impl GemmShape {
    fn flops(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }

    /// Operands: a, b (stored as the shape says) and c.
    fn operands(&self, rng: &mut Rng) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (
            values(rng, self.m * self.k, 1.0),
            values(rng, self.k * self.n, 1.0),
            vec![0.0; self.m * self.n],
        )
    }

    fn views<'a>(&self, a: &'a [f32], b: &'a [f32]) -> (MatRef<'a>, MatRef<'a>) {
        let am = MatRef::row_major(a, self.m, self.k);
        let bm = if self.bt {
            MatRef::row_major(b, self.n, self.k).t()
        } else {
            MatRef::row_major(b, self.k, self.n)
        };
        (am, bm)
    }
}

/// retort's product for the shape: [`gemm`], or with `packed_every` the
/// product from panels, packed again every that many calls.
fn retort_product<'a>(s: &GemmShape, a: MatRef<'a>, b: MatRef<'a>) -> impl FnMut(&mut [f32]) + 'a {
    let every = s.packed_every.filter(|_| Kernel::best().is_some());
    let pack = move || Kernel::best().map(|kernel| PackedB::new(kernel, b));
    let mut packed = every.and_then(|_| pack());
    let mut calls = 0;
    move |c: &mut [f32]| match (&packed, every) {
        (Some(panels), Some(every)) => {
            gemm_prepacked(1.0, a, panels, 0.0, c);
            calls += 1;
            if calls % every == 0 {
                packed = pack();
            }
        }
        _ => gemm(1.0, a, b, 0.0, c),
    }
}

fn matrixmultiply_sgemm(a: MatRef, b: MatRef, c: &mut [f32]) {
    retort::cpu::gemm::gemm_packed(1.0, a, b, 0.0, c);
}

fn bench_gemm(c: &mut Criterion) {
    let mut rng = Rng::seed(1);
    let mut group = c.benchmark_group("gemm");
    for s in &GEMMS {
        let (a, b, mut out) = s.operands(&mut rng);
        let (am, bm) = s.views(&a, &b);
        group.throughput(Throughput::Elements(s.flops()));
        let mut ours = retort_product(s, am, bm);
        group.bench_function(BenchmarkId::new("retort", s.name), |bench| {
            bench.iter(|| ours(black_box(&mut out)))
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", s.name), |bench| {
            bench.iter(|| matrixmultiply_sgemm(am, bm, black_box(&mut out)))
        });
    }
    group.finish();
}

/// Input channels, output channels, height, width of a convolution.
type ConvShape = (usize, usize, usize, usize);

/// A `crnn-t` conv block's convolution at N = 32.
const CONVS: [(&str, ConvShape); 3] = [
    ("crnn-t b1", (1, 32, 32, 128)),
    ("crnn-t b2", (32, 64, 16, 64)),
    ("crnn-t b4", (128, 128, 8, 32)),
];

fn bench_conv(c: &mut Criterion) {
    let mut rng = Rng::seed(2);
    let mut group = c.benchmark_group("conv2d");
    for (name, (ch, o, h, w)) in CONVS {
        let g = ConvGeom::new((ch, h, w), (3, 3), (1, 1), (1, 1)).expect("geometry");
        let x = values(&mut rng, N * g.in_len(), 1.0);
        let wt = values(&mut rng, o * g.col_rows(), 0.2);
        let mut y = vec![0.0; N * o * g.col_cols()];
        let flops = 2 * (N * o * g.col_rows() * g.col_cols()) as u64;
        group.throughput(Throughput::Elements(flops));
        group.bench_function(BenchmarkId::new("forward", name), |bench| {
            bench.iter(|| conv2d_forward(&x, &g, &wt, o, None, black_box(&mut y)))
        });
        // Winograd F(2x2, 3x3), what F(4x4) replaces where it applies (b2
        // and b4 forward, at any batch size since the sixth session).
        if winograd::applies(&g, N) {
            group.bench_function(BenchmarkId::new("forward F(2x2)", name), |bench| {
                bench.iter(|| conv2d_winograd(&x, &g, &wt, o, None, black_box(&mut y)))
            });
        }
        // Tap by tap (the direct or im2col path, im2col's bits), what the
        // Winograd paths replace on b2 and b4.
        group.bench_function(BenchmarkId::new("forward tap by tap", name), |bench| {
            bench.iter(|| conv2d_forward_tapwise(&x, &g, &wt, o, None, black_box(&mut y)))
        });
        // What the direct (implicit im2col) path replaces, for comparison:
        // an explicit im2col matrix and matrixmultiply per sample.
        let mut col = vec![0.0; g.col_rows() * g.col_cols()];
        let out = o * g.col_cols();
        group.bench_function(
            BenchmarkId::new("forward im2col+matrixmultiply", name),
            |bench| {
                bench.iter(|| {
                    for (i, yi) in y.chunks_mut(out).enumerate() {
                        im2col(&x[i * g.in_len()..(i + 1) * g.in_len()], &g, &mut col);
                        gemm_packed(
                            1.0,
                            MatRef::row_major(&wt, o, g.col_rows()),
                            MatRef::row_major(&col, g.col_rows(), g.col_cols()),
                            0.0,
                            black_box(&mut *yi),
                        );
                    }
                })
            },
        );
        let dy = values(&mut rng, y.len(), 1.0);
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; wt.len()];
        // The image gradient of the first layer is never needed.
        let needs_dx = ch > 1;
        group.throughput(Throughput::Elements(if needs_dx {
            2 * flops
        } else {
            flops
        }));
        group.bench_function(BenchmarkId::new("backward", name), |bench| {
            bench.iter(|| {
                if needs_dx {
                    conv2d_backward_input(&dy, &g, &wt, o, black_box(&mut dx));
                }
                conv2d_backward_weight(&dy, &x, &g, o, black_box(&mut dw));
            })
        });
        // The weight gradient alone, and what its im2col-free path
        // replaces: im2col and matrixmultiply's `dy·colᵀ` per sample.
        group.throughput(Throughput::Elements(flops));
        group.bench_function(BenchmarkId::new("backward weight", name), |bench| {
            bench.iter(|| conv2d_backward_weight(&dy, &x, &g, o, black_box(&mut dw)))
        });
        // F(2x2), what F(4x4) replaces where both apply (b2 and b4, since
        // the thirteenth session).
        if winograd::weight_grad_applies(&g, o, N) {
            group.bench_function(BenchmarkId::new("backward weight F(2x2)", name), |bench| {
                bench.iter(|| winograd::weight_grad_winograd(&dy, &x, &g, o, black_box(&mut dw)))
            });
        }
        if conv_weight_grad::applies(&g) {
            // The im2col-free tap-by-tap path that Winograd replaces on b2 and b4.
            let mut dwt = vec![0.0; dw.len()];
            group.bench_function(
                BenchmarkId::new("backward weight tap by tap", name),
                |bench| {
                    bench.iter(|| {
                        conv_weight_grad::weight_grad_t(&dy, &x, &g, o, black_box(&mut dwt))
                    })
                },
            );
        }
        group.bench_function(
            BenchmarkId::new("backward weight im2col+matrixmultiply", name),
            |bench| {
                bench.iter(|| {
                    for (i, xi) in x.chunks_exact(g.in_len()).enumerate() {
                        im2col(xi, &g, &mut col);
                        gemm_packed(
                            1.0,
                            MatRef::row_major(&dy[i * out..(i + 1) * out], o, g.col_cols()),
                            MatRef::row_major(&col, g.col_rows(), g.col_cols()).t(),
                            if i == 0 { 0.0 } else { 1.0 },
                            black_box(&mut dw),
                        );
                    }
                })
            },
        );
    }
    group.finish();
}

/// `crnn-s`'s thin evaluation blocks (conv, BatchNorm, ReLU, 2x2 pool)
/// for a line and for a batch: the one-pass block beside the separate ops
/// it replaces (the same bits).
fn bench_eval_blocks(c: &mut Criterion) {
    use ops::batchnorm2d::RunningStats;
    use ops::conv2d::{conv2d_bn_relu_eval, conv_block_eval, Conv2dSpec};
    use ops::maxpool2d::{maxpool2d, Pool2dSpec};
    let mut rng = Rng::seed(5);
    let mut tensor = |dims: &[usize], scale: f32| {
        let n = dims.iter().product();
        Tensor::from_vec(values(&mut rng, n, scale), dims).expect("dims")
    };
    let (spec, pool) = (
        Conv2dSpec::new((1, 1), (1, 1)),
        Pool2dSpec::new((2, 2), (2, 2)),
    );
    let mut group = c.benchmark_group("eval block");
    for (name, (ch, o, h, w)) in [
        ("crnn-s b1", (1, 8, 32, 128)),
        ("crnn-s b2", (8, 16, 16, 64)),
    ] {
        let (wt, gamma, beta) = (
            tensor(&[o, ch, 3, 3], 0.3),
            tensor(&[o], 1.0),
            tensor(&[o], 0.1),
        );
        let stats = RunningStats::new(o);
        for n in [1, N] {
            let x = tensor(&[n, ch, h, w], 1.0);
            let id = format!("{name} batch {n}");
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new("one pass", &id), |bench| {
                bench.iter(|| {
                    let mut tape = Tape::no_grad();
                    let y = conv_block_eval(
                        &mut tape,
                        &x,
                        &wt,
                        None,
                        spec,
                        &gamma,
                        &beta,
                        &stats,
                        Some(pool),
                    );
                    black_box(y.expect("block"))
                })
            });
            group.bench_function(BenchmarkId::new("separate ops", &id), |bench| {
                bench.iter(|| {
                    let mut tape = Tape::no_grad();
                    let y =
                        conv2d_bn_relu_eval(&mut tape, &x, &wt, None, spec, &gamma, &beta, &stats)
                            .expect("block");
                    black_box(maxpool2d(&mut tape, &y, pool).expect("pool"))
                })
            });
        }
    }
    group.finish();
}

fn bench_lstm(c: &mut Criterion) {
    // crnn-t layer 1: input 512, hidden 128, both directions, T = N = 32.
    let (f, h) = (512, 128);
    let mut rng = Rng::seed(3);
    let x = values(&mut rng, T * N * f, 1.0);
    let scale = 1.0 / (h as f32).sqrt();
    let dirs: Vec<[Vec<f32>; 4]> = (0..2)
        .map(|_| {
            [
                values(&mut rng, 4 * h * f, scale),
                values(&mut rng, 4 * h * h, scale),
                values(&mut rng, 4 * h, scale),
                values(&mut rng, 4 * h, scale),
            ]
        })
        .collect();
    fn params(d: &[Vec<f32>; 4]) -> LstmParams<'_> {
        LstmParams {
            w_ih: &d[0],
            w_hh: &d[1],
            b_ih: &d[2],
            b_hh: &d[3],
        }
    }
    let dims = LstmDims {
        steps: T,
        batch: N,
        input: f,
        hidden: h,
    };
    let lengths = vec![T; N];
    let flops = 2 * 2 * (T * N * 4 * h * (f + h)) as u64;
    let mut group = c.benchmark_group("lstm");
    group.throughput(Throughput::Elements(flops));
    group.bench_function("crnn-t layer 1 bidirectional forward", |bench| {
        bench.iter(|| {
            for (k, d) in dirs.iter().enumerate() {
                black_box(lstm_forward(&x, params(d), dims, &lengths, k == 1, false));
            }
        })
    });
    let caches: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(k, d)| lstm_forward(&x, params(d), dims, &lengths, k == 1, true))
        .collect();
    let dy = values(&mut rng, T * N * h, 1.0);
    let needs = LstmNeeds {
        x: true,
        w_ih: true,
        w_hh: true,
        bias: true,
    };
    group.throughput(Throughput::Elements(2 * flops));
    group.bench_function("crnn-t layer 1 bidirectional backward", |bench| {
        bench.iter(|| {
            for (k, (d, (_, cache))) in dirs.iter().zip(&caches).enumerate() {
                let cache = cache.as_ref().expect("saved");
                black_box(lstm_backward(
                    &dy,
                    &x,
                    params(d),
                    dims,
                    &lengths,
                    k == 1,
                    cache,
                    needs,
                ));
            }
        })
    });
    group.finish();
}

fn bench_losses(c: &mut Criterion) {
    let mut rng = Rng::seed(4);
    let logits = Tensor::from_vec(values(&mut rng, T * N * K, 3.0), &[T, N, K])
        .expect("logits")
        .tracked();
    let teacher = Tensor::from_vec(values(&mut rng, T * N * K, 3.0), &[T, N, K]).expect("teacher");
    let targets: Vec<Vec<usize>> = (0..N)
        .map(|_| {
            (0..8 + rng.below(3))
                .map(|_| 1 + rng.below(K - 1))
                .collect()
        })
        .collect();
    let lengths = vec![T; N];
    let mut group = c.benchmark_group("loss");
    // Lattice cells: T x (2L + 1) per sample.
    let cells: usize = targets.iter().map(|t| T * (2 * t.len() + 1)).sum();
    group.throughput(Throughput::Elements(cells as u64));
    group.bench_function("log_softmax + ctc forward+backward", |bench| {
        bench.iter(|| {
            let mut tape = Tape::new();
            let lp = ops::log_softmax(&mut tape, &logits, 1.0).expect("log_softmax");
            let loss =
                ctc_loss(&mut tape, &lp, &targets, &lengths, CtcOptions::default()).expect("ctc");
            black_box(tape.backward(&loss).expect("backward"))
        })
    });
    group.throughput(Throughput::Elements((T * N * K) as u64));
    group.bench_function("soft_kd T=4 forward+backward", |bench| {
        bench.iter(|| {
            let mut tape = Tape::new();
            let loss = soft_kd(&mut tape, &logits, &teacher, &lengths, 4.0).expect("soft_kd");
            black_box(tape.backward(&loss).expect("backward"))
        })
    });
    group.finish();
}

// The three timed steps of reference-models.md, built exactly as `retort
// bench` builds them.
use retort::cli::bench::{distill_step, infer_step, train_step, Step};

fn bench_steps(c: &mut Criterion) {
    let mut rng = Rng::seed(42);
    let mut group = c.benchmark_group("step");
    type Build = fn(usize, &mut Rng) -> retort::Result<Step>;
    let steps: [(&str, usize, Build); 4] = [
        ("train-step crnn-t", N, train_step),
        ("distill-step", N, distill_step),
        ("infer crnn-s", 1, infer_step),
        ("infer crnn-s", N, infer_step),
    ];
    for (name, n, build) in steps {
        let mut step = build(n, &mut rng).expect("step");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new(name, format!("batch {n}")), |bench| {
            bench.iter(|| step().expect("step"))
        });
    }
    group.finish();
}

/// The one-thread peak, measured once.
fn peaks() -> &'static [Peak] {
    static PEAKS: OnceLock<Vec<Peak>> = OnceLock::new();
    PEAKS.get_or_init(|| peak::measure(1, 0.005, 40))
}

/// Seconds per call of one timed batch of calls.
fn batch_time(f: &mut impl FnMut(), reps: usize) -> f64 {
    let t0 = Instant::now();
    for _ in 0..reps {
        f();
    }
    t0.elapsed().as_secs_f64() / reps as f64
}

/// A copy of `values` starting `offset` bytes after a cache line: the
/// buffer and the index of the copy's first value in it.
fn placed(values: &[f32], offset: usize) -> (Vec<f32>, usize) {
    let mut buf = vec![0.0f32; values.len() + 32];
    let to_line = buf.as_ptr().align_offset(64);
    let start = to_line + offset / 4;
    buf[start..start + values.len()].copy_from_slice(values);
    (buf, start)
}

/// GFLOP/s of each GEMM shape, retort and matrixmultiply, and their share
/// of the peak. The clock of this shared machine moves by tens of percent
/// within minutes, so each shape gets 7 rounds of: a short peak loop, then
/// a batch of calls of each product; each column is its best round, read
/// against the best peak of the same rounds. The operands sit on cache
/// lines (as the kept weights and the kernels' scratch buffers do); a
/// third column times retort on the same values 16 bytes off (as `malloc`
/// may place a tensor), where a 64-byte load of a row spans two lines.
fn gemm_summary() {
    if peaks().is_empty() {
        println!("gemm summary: no FMA peak loop for this CPU");
        return;
    }
    println!(
        "\nGEMM summary, 1 thread, best of 7 rounds, each round a peak loop ({} FMAs, 1 core) then the products (each column first in turn)",
        peaks()[0].isa
    );
    println!(
        "{:<32} {:>12} {:>16} {:>16} {:>16} {:>7} {:>7}",
        "shape", "m x k x n", "retort", "matrixmultiply", "retort 16 B off", "ratio", "peak"
    );
    let mut rng = Rng::seed(1);
    for s in &GEMMS {
        let (a, b, out) = s.operands(&mut rng);
        let [(a0, ia0), (b0, ib0), (a16, ia16), (b16, ib16)] =
            [(&a, 0), (&b, 0), (&a, 16), (&b, 16)].map(|(v, off)| placed(v, off));
        let (mut c0, ic0) = placed(&out, 0);
        let (mut c16, ic16) = placed(&out, 16);
        let mut c_theirs = c0.clone();
        let (am, bm) = s.views(&a0[ia0..], &b0[ib0..]);
        let (am16, bm16) = s.views(&a16[ia16..], &b16[ib16..]);
        let mut product = retort_product(s, am, bm);
        let mut ours = || product(black_box(&mut c0[ic0..]));
        let mut theirs = || matrixmultiply_sgemm(am, bm, black_box(&mut c_theirs[ic0..]));
        let mut product_off = retort_product(s, am16, bm16);
        let mut ours_off = || product_off(black_box(&mut c16[ic16..]));
        let reps = (2e8 / s.flops() as f64).clamp(1.0, 10_000.0) as usize;
        ours();
        let mut peak = 0.0f64;
        let mut best = [f64::MAX; 3];
        for round in 0..7 {
            peak = peak.max(peak::measure(1, 0.002, 3)[0].gflops);
            // Each column first in turn, so that none always runs right
            // after the peak loop (two columns that run the same code, as
            // on the shapes `gemm` leaves to matrixmultiply, then differ
            // by the host's noise only).
            for column in (0..3).map(|c| (c + round) % 3) {
                let t = match column {
                    0 => batch_time(&mut ours, reps),
                    1 => batch_time(&mut theirs, reps),
                    _ => batch_time(&mut ours_off, reps),
                };
                best[column] = best[column].min(t);
            }
        }
        let cell = |t: f64| {
            let gf = s.flops() as f64 / t / 1e9;
            format!("{gf:.1} GF {:.1}%", 100.0 * gf / peak)
        };
        println!(
            "{:<32} {:>12} {:>16} {:>16} {:>16} {:>6.2}x {:>7.1}",
            s.name,
            format!("{}x{}x{}", s.m, s.k, s.n),
            cell(best[0]),
            cell(best[1]),
            cell(best[2]),
            best[1] / best[0],
            peak
        );
    }
}

fn config() -> Criterion {
    let quick = std::env::var_os("RETORT_BENCH_QUICK").is_some();
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(if quick { 100 } else { 500 }))
        .measurement_time(Duration::from_millis(if quick { 300 } else { 1500 }))
        .configure_from_args()
}

criterion_group! {
    name = kernels;
    config = config();
    targets = bench_gemm, bench_conv, bench_eval_blocks, bench_lstm, bench_losses, bench_steps
}

fn main() {
    // The same allocator setting as the `retort` binary.
    retort::keep_freed_memory();
    let threads = std::env::var("RETORT_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // As in the `retort` binary, this thread is one of the pool's workers.
    retort::set_threads_with_caller(Some(threads)).expect("thread count");
    // `cargo test --benches` runs this with --bench absent: list nothing slow.
    let listing = std::env::args().any(|a| a == "--list");
    if !listing {
        for p in peaks() {
            println!(
                "FP32 peak: {:.1} GFLOP/s on 1 core ({} FMA loop); {} worker thread(s)",
                p.gflops, p.isa, threads
            );
        }
    }
    kernels();
    Criterion::default().configure_from_args().final_summary();
    if !listing && std::env::args().any(|a| a == "--bench") {
        gemm_summary();
    }
}
