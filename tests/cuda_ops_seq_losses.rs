//! The GPU paths of the sequence ops and the losses, through the public ops
//! API: each op runs on CPU tensors and on copies moved to `cuda:0`, then a
//! scalar loss (the output times a fixed random weight, summed) is
//! differentiated on both; outputs and every input gradient must agree to
//! 1e-4 relative (1e-3 for CTC and the LSTM), and the GPU results must stay
//! on the GPU. Without a GPU each test prints that it was skipped and why;
//! with `RETORT_REQUIRE_GPU=1` it fails instead.
//!
//! "Relative" is per value with a floor at the root mean square of the
//! reference, so values that cancel to near 0 are held to the tensor's scale.
#![cfg(feature = "cuda")]

#[path = "common/gpu.rs"]
mod gpu_common;
use gpu_common::{assert_close, gpu, values};

use retort::ops::bilstm::bilstm_layer;
use retort::ops::ctc::{ctc_loss, CtcOptions};
use retort::ops::lstm::{lstm, lstm_direction, LstmLayer, LstmWeights};
use retort::ops::{self, Reduction};
use retort::tensor::Device;
use retort::{Rng, Tape, Tensor};

const GPU: Device = Device::Cuda(0);

/// A CPU tensor of uniform values in [lo, hi).
fn tensor(rng: &mut Rng, dims: &[usize], lo: f32, hi: f32) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(values(rng, n, lo, hi), dims).unwrap()
}

/// Log-probabilities: a log-softmax over the last axis of random logits.
fn log_probs(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let k = *dims.last().unwrap();
    let logits = values(rng, dims.iter().product(), -3.0, 3.0);
    Tensor::from_vec(retort::cpu::softmax::log_softmax(&logits, k, 1.0), dims).unwrap()
}

/// What one run on one device gives: the op's output and the gradient of
/// every tracked input (`None` for the others), as host values.
struct Run {
    output: Vec<f32>,
    grads: Vec<Option<Vec<f32>>>,
}

/// Runs `f` on copies of `inputs` placed on `device` (those flagged in
/// `tracked` made tracked leaves), then Σ output · weight (a random weight
/// from `seed`, the same on both devices) and the backward pass. Checks that
/// the output and the gradients are on `device`.
fn run_on(
    device: Device,
    inputs: &[Tensor],
    tracked: &[bool],
    seed: u64,
    f: &dyn Fn(&mut Tape, &[Tensor]) -> retort::Result<Tensor>,
) -> Run {
    let ts: Vec<Tensor> = inputs
        .iter()
        .zip(tracked)
        .map(|(t, &track)| {
            let t = t.to_device(device).unwrap();
            if track {
                t.tracked()
            } else {
                t
            }
        })
        .collect();
    let mut tape = Tape::new();
    let y = f(&mut tape, &ts).unwrap();
    assert_eq!(y.device(), device, "the output is on {device}");
    let mut rng = Rng::seed(seed);
    let weight = tensor(&mut rng, y.dims(), 0.5, 1.5)
        .to_device(device)
        .unwrap();
    let weighted = ops::mul(&mut tape, &y, &weight).unwrap();
    let loss = ops::sum_all(&mut tape, &weighted).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let grads = ts
        .iter()
        .zip(tracked)
        .map(|(t, &track)| {
            let g = grads.get(t);
            assert_eq!(g.is_some(), track, "a gradient exactly for tracked inputs");
            g.map(|g| {
                assert_eq!(g.device(), device, "the gradient is on {device}");
                assert_eq!(g.dims(), t.dims(), "the gradient has its input's shape");
                g.try_to_vec().unwrap()
            })
        })
        .collect();
    Run {
        output: y.try_to_vec().unwrap(),
        grads,
    }
}

/// Runs `f` on the CPU and on the GPU and compares outputs and gradients to `rtol`.
fn compare(
    what: &str,
    inputs: &[Tensor],
    tracked: &[bool],
    rtol: f32,
    f: &dyn Fn(&mut Tape, &[Tensor]) -> retort::Result<Tensor>,
) {
    let seed = 1000 + what.len() as u64;
    let cpu = run_on(Device::Cpu, inputs, tracked, seed, f);
    let gpu = run_on(GPU, inputs, tracked, seed, f);
    assert_close(&format!("{what}: output"), &gpu.output, &cpu.output, rtol);
    for (i, (g, c)) in gpu.grads.iter().zip(&cpu.grads).enumerate() {
        match (g, c) {
            (Some(g), Some(c)) => assert_close(&format!("{what}: gradient {i}"), g, c, rtol),
            (None, None) => {}
            _ => panic!("{what}: gradient {i} on one device only"),
        }
    }
}

/// Random weights of one LSTM direction, `[w_ih, w_hh, b_ih, b_hh]`.
fn lstm_weights(rng: &mut Rng, f: usize, h: usize) -> Vec<Tensor> {
    vec![
        tensor(rng, &[4 * h, f], -0.5, 0.5),
        tensor(rng, &[4 * h, h], -0.5, 0.5),
        tensor(rng, &[4 * h], -0.5, 0.5),
        tensor(rng, &[4 * h], -0.5, 0.5),
    ]
}

/// The direction whose four tensors start at `w[0]`.
fn dir(w: &[Tensor]) -> LstmWeights<'_> {
    LstmWeights {
        w_ih: &w[0],
        w_hh: &w[1],
        b_ih: &w[2],
        b_hh: &w[3],
    }
}

#[test]
fn lstm_direction_matches_the_cpu() {
    let Some(_dev) = gpu("lstm_direction") else {
        return;
    };
    let mut rng = Rng::seed(31);
    let (t, n, f, h) = (7, 4, 5, 6);
    let mut inputs = vec![tensor(&mut rng, &[t, n, f], -1.0, 1.0)];
    inputs.extend(lstm_weights(&mut rng, f, h));
    // Ragged lengths: full, short, empty, one step.
    let lengths = [7, 3, 0, 1];
    let all = [true; 5];
    // Only some inputs tracked: no dx, one bias only.
    let some = [false, true, false, false, true];
    for reverse in [false, true] {
        for (tracked, which) in [(&all, "all tracked"), (&some, "some tracked")] {
            compare(
                &format!("lstm_direction reverse {reverse}, {which}"),
                &inputs,
                tracked,
                1e-3,
                &|tape, ts| lstm_direction(tape, &ts[0], dir(&ts[1..5]), &lengths, reverse),
            );
        }
    }
    // No tracked input: the forward pass alone, nothing recorded.
    let x = inputs[0].to_device(GPU).unwrap();
    let w: Vec<Tensor> = inputs[1..]
        .iter()
        .map(|t| t.to_device(GPU).unwrap())
        .collect();
    let mut tape = Tape::no_grad();
    let y = lstm_direction(&mut tape, &x, dir(&w), &lengths, true).unwrap();
    assert_eq!(y.device(), GPU);
    let mut tape = Tape::no_grad();
    let wc = &inputs[1..];
    let y_cpu = lstm_direction(&mut tape, &inputs[0], dir(wc), &lengths, true).unwrap();
    assert_close(
        "lstm_direction without a tape",
        &y.try_to_vec().unwrap(),
        &y_cpu.to_vec(),
        1e-3,
    );
}

#[test]
fn bilstm_layer_matches_the_cpu() {
    let Some(_dev) = gpu("bilstm_layer") else {
        return;
    };
    let mut rng = Rng::seed(32);
    let (t, n, f, h) = (6, 3, 4, 5);
    let mut inputs = vec![tensor(&mut rng, &[t, n, f], -1.0, 1.0)];
    inputs.extend(lstm_weights(&mut rng, f, h));
    inputs.extend(lstm_weights(&mut rng, f, h));
    let lengths = [6, 2, 4];
    let all = [true; 9];
    // x untracked, the forward direction's w_hh and b_ih, the reverse one's w_ih and b_hh.
    let some = [false, false, true, true, false, true, false, false, true];
    // Only x tracked: the input gradient is the sum of both directions'.
    let only_x = [true, false, false, false, false, false, false, false, false];
    for (tracked, which) in [(&all, "all"), (&some, "some"), (&only_x, "only x")] {
        compare(
            &format!("bilstm_layer, {which} tracked"),
            &inputs,
            tracked,
            1e-3,
            &|tape, ts| bilstm_layer(tape, &ts[0], dir(&ts[1..5]), dir(&ts[5..9]), &lengths),
        );
    }
}

#[test]
fn stacked_lstm_matches_the_cpu() {
    let Some(_dev) = gpu("lstm") else { return };
    let mut rng = Rng::seed(33);
    let (t, n, f, h1, h2) = (5, 3, 4, 3, 4);
    let mut inputs = vec![tensor(&mut rng, &[t, n, f], -1.0, 1.0)];
    // A bidirectional layer (F -> 2·H1), then a unidirectional one (2·H1 -> H2).
    inputs.extend(lstm_weights(&mut rng, f, h1));
    inputs.extend(lstm_weights(&mut rng, f, h1));
    inputs.extend(lstm_weights(&mut rng, 2 * h1, h2));
    let lengths = [5, 1, 3];
    compare("lstm", &inputs, &[true; 13], 1e-3, &|tape, ts| {
        let layers = [
            LstmLayer {
                forward: dir(&ts[1..5]),
                reverse: Some(dir(&ts[5..9])),
            },
            LstmLayer {
                forward: dir(&ts[9..13]),
                reverse: None,
            },
        ];
        lstm(tape, &ts[0], &layers, &lengths)
    });
}

#[test]
fn ctc_loss_matches_the_cpu() {
    let Some(_dev) = gpu("ctc_loss") else { return };
    let mut rng = Rng::seed(34);
    let (t, n, c) = (10, 6, 6);
    let lp = log_probs(&mut rng, &[t, n, c]);
    // Feasible, repeated labels, empty, infeasible (9 labels in 6 frames),
    // one frame, repeats needing blanks.
    let targets: Vec<Vec<usize>> = vec![
        vec![1, 2, 3],
        vec![1, 1],
        vec![],
        vec![2, 3, 2, 3, 4, 5, 1, 2, 3],
        vec![5],
        vec![3, 3, 3],
    ];
    let lengths = [10, 5, 7, 6, 1, 10];
    for blank in [0, 5] {
        // Blank 5 makes label 5 invalid: use the targets without it.
        let targets: Vec<Vec<usize>> = targets
            .iter()
            .map(|tg| tg.iter().map(|&l| if l == blank { 4 } else { l }).collect())
            .collect();
        for zero_infinity in [false, true] {
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let opts = CtcOptions {
                    blank,
                    reduction,
                    zero_infinity,
                };
                compare(
                    &format!("ctc_loss {opts:?}"),
                    std::slice::from_ref(&lp),
                    &[true],
                    1e-3,
                    &|tape, ts| ctc_loss(tape, &ts[0], &targets, &lengths, opts),
                );
            }
        }
    }
}

#[test]
fn cross_entropy_matches_the_cpu() {
    let Some(_dev) = gpu("cross_entropy") else {
        return;
    };
    let mut rng = Rng::seed(35);
    let (a, b, k) = (3, 4, 7);
    let logits = tensor(&mut rng, &[a, b, k], -3.0, 3.0);
    let targets: Vec<usize> = (0..a * b).map(|_| rng.below(k)).collect();
    for eps in [0.0, 0.1] {
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            compare(
                &format!("cross_entropy eps {eps} {reduction:?}"),
                std::slice::from_ref(&logits),
                &[true],
                1e-4,
                &|tape, ts| ops::cross_entropy(tape, &ts[0], &targets, eps, reduction),
            );
        }
    }
}

#[test]
fn kl_div_matches_the_cpu() {
    let Some(_dev) = gpu("kl_div") else { return };
    let mut rng = Rng::seed(36);
    let dims = [2, 5, 6];
    let lq = log_probs(&mut rng, &dims);
    let mut lp = log_probs(&mut rng, &dims).to_vec();
    lp[0] = f32::NEG_INFINITY; // p = 0: the term and its gradients are 0
    let lp = Tensor::from_vec(lp, &dims).unwrap();
    let inputs = [lq, lp];
    for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
        for tracked in [[true, true], [true, false], [false, true]] {
            compare(
                &format!("kl_div {reduction:?} tracked {tracked:?}"),
                &inputs,
                &tracked,
                1e-4,
                &|tape, ts| ops::kl_div(tape, &ts[0], &ts[1], reduction),
            );
        }
    }
}

#[test]
fn mse_loss_matches_the_cpu() {
    let Some(_dev) = gpu("mse_loss") else { return };
    let mut rng = Rng::seed(37);
    let dims = [3, 4, 5];
    let inputs = [
        tensor(&mut rng, &dims, -2.0, 2.0),
        tensor(&mut rng, &dims, -2.0, 2.0),
    ];
    for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
        for tracked in [[true, true], [true, false], [false, true]] {
            compare(
                &format!("mse_loss {reduction:?} tracked {tracked:?}"),
                &inputs,
                &tracked,
                1e-4,
                &|tape, ts| ops::mse_loss(tape, &ts[0], &ts[1], reduction),
            );
        }
    }
}
