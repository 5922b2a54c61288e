//! CTC loss: hand-computed values, a brute-force reference over all
//! alignments, and finite-difference gradient checks (against the
//! log-probabilities directly, and against logits through a log-softmax).

mod common;

use common::{check_gradients, Tol};
use proptest::prelude::*;
use retort::ops::ctc::{ctc_loss, CtcOptions};
use retort::ops::{self, Reduction};
use retort::{Rng, Tape, Tensor};

/// One random CTC problem: log-probabilities (T, N, C) and feasible labels.
#[derive(Clone, Debug)]
struct Problem {
    t: usize,
    n: usize,
    c: usize,
    blank: usize,
    log_probs: Vec<f32>,
    targets: Vec<Vec<usize>>,
    input_lengths: Vec<usize>,
}

/// Row-wise log-softmax over the last axis, in f64, rounded to f32.
fn log_softmax_rows(logits: &[f64], c: usize) -> Vec<f32> {
    logits
        .chunks_exact(c)
        .flat_map(|row| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            row.iter().map(move |x| (x - lse) as f32)
        })
        .collect()
}

/// Frames the target needs: its labels plus a blank between equal neighbours.
fn needed(target: &[usize]) -> usize {
    target.len() + target.windows(2).filter(|w| w[0] == w[1]).count()
}

/// A random problem whose every sample is feasible. Labels are drawn from
/// the non-blank classes, so with C = 2 every target of length >= 2 repeats.
fn problem(t: usize, n: usize, c: usize, blank: usize, max_s: usize, seed: u64) -> Problem {
    let mut rng = Rng::seed(seed);
    let logits: Vec<f64> = (0..t * n * c)
        .map(|_| rng.range(-2.0, 2.0) as f64)
        .collect();
    let log_probs = log_softmax_rows(&logits, c);
    let labels: Vec<usize> = (0..c).filter(|&k| k != blank).collect();
    let mut targets = Vec::new();
    let mut input_lengths = Vec::new();
    for _ in 0..n {
        let s = rng.below(max_s + 1);
        let mut target: Vec<usize> = (0..s).map(|_| labels[rng.below(labels.len())]).collect();
        while needed(&target) > t {
            target.pop();
        }
        let lo = needed(&target);
        input_lengths.push(lo + rng.below(t - lo + 1));
        targets.push(target);
    }
    Problem {
        t,
        n,
        c,
        blank,
        log_probs,
        targets,
        input_lengths,
    }
}

fn problem_strategy(max_t: usize, max_c: usize) -> impl Strategy<Value = Problem> {
    (1..=max_t, 1..=3usize, 2..=max_c, any::<u64>(), any::<u64>())
        .prop_map(|(t, n, c, b, seed)| problem(t, n, c, (b % c as u64) as usize, 3, seed))
}

fn reduction_strategy() -> impl Strategy<Value = Reduction> {
    prop_oneof![
        Just(Reduction::None),
        Just(Reduction::Sum),
        Just(Reduction::Mean)
    ]
}

fn opts(blank: usize, reduction: Reduction) -> CtcOptions {
    CtcOptions {
        blank,
        reduction,
        zero_infinity: false,
    }
}

/// Per-sample losses (reduction None) on a no-grad tape.
fn losses(p: &Problem) -> Vec<f32> {
    let lp = Tensor::from_vec(p.log_probs.clone(), &[p.t, p.n, p.c]).unwrap();
    let mut tape = Tape::no_grad();
    ctc_loss(
        &mut tape,
        &lp,
        &p.targets,
        &p.input_lengths,
        opts(p.blank, Reduction::None),
    )
    .unwrap()
    .to_vec()
}

/// `-ln p(target)` by enumerating all C^len alignments of sample `n` in f64:
/// collapse repeats, drop blanks, sum the probabilities of those equal to the target.
fn brute_force_loss(p: &Problem, n: usize) -> f64 {
    let len = p.input_lengths[n];
    let lp = |t: usize, k: usize| p.log_probs[(t * p.n + n) * p.c + k] as f64;
    let mut total = 0.0f64;
    let mut path = vec![0usize; len];
    for code in 0..p.c.pow(len as u32) {
        let mut rest = code;
        for slot in path.iter_mut() {
            *slot = rest % p.c;
            rest /= p.c;
        }
        let mut collapsed = Vec::new();
        let mut prev = None;
        for &k in &path {
            if Some(k) != prev && k != p.blank {
                collapsed.push(k);
            }
            prev = Some(k);
        }
        if collapsed == p.targets[n] {
            total += path
                .iter()
                .enumerate()
                .map(|(t, &k)| lp(t, k))
                .sum::<f64>()
                .exp();
        }
    }
    -total.ln()
}

#[test]
fn one_frame_one_label_is_minus_its_log_prob() {
    // T = 1, N = 1, C = 2, target [1]: the only alignment is "1".
    let lp_vals = log_softmax_rows(&[0.3, -0.4], 2);
    let lp = Tensor::from_vec(lp_vals.clone(), &[1, 1, 2]).unwrap();
    let mut tape = Tape::no_grad();
    let loss = ctc_loss(&mut tape, &lp, &[vec![1]], &[1], opts(0, Reduction::None)).unwrap();
    assert_eq!(loss.dims(), &[1]);
    assert!((loss.data()[0] as f64 + lp_vals[1] as f64).abs() < 1e-6);
}

#[test]
fn two_frames_one_label_sums_three_alignments() {
    // T = 2, target [1]: alignments "1b", "b1", "11".
    let lp_vals = log_softmax_rows(&[0.5, -0.2, 1.1, 0.7], 2);
    let p = |t: usize, k: usize| (lp_vals[t * 2 + k] as f64).exp();
    let expected = -(p(0, 1) * p(1, 0) + p(0, 0) * p(1, 1) + p(0, 1) * p(1, 1)).ln();
    let lp = Tensor::from_vec(lp_vals.clone(), &[2, 1, 2]).unwrap();
    for (reduction, want) in [
        (Reduction::None, expected),
        (Reduction::Sum, expected),
        // Mean: divided by the target length 1, mean over a batch of 1.
        (Reduction::Mean, expected),
    ] {
        let mut tape = Tape::no_grad();
        let loss = ctc_loss(&mut tape, &lp, &[vec![1]], &[2], opts(0, reduction)).unwrap();
        let got = loss.data()[0] as f64;
        assert!((got - want).abs() < 1e-6, "{reduction:?}: {got} vs {want}");
    }
}

#[test]
fn empty_target_is_minus_the_blank_log_probs() {
    let lp_vals = log_softmax_rows(&[0.5, -0.2, 0.1, 1.1, 0.7, -1.0, 0.0, 0.3, 0.9], 3);
    let lp = Tensor::from_vec(lp_vals.clone(), &[3, 1, 3]).unwrap();
    let blank = 2;
    let expected: f64 = -(0..3).map(|t| lp_vals[t * 3 + blank] as f64).sum::<f64>();
    let mut tape = Tape::no_grad();
    let loss = ctc_loss(
        &mut tape,
        &lp,
        &[vec![]],
        &[3],
        opts(blank, Reduction::Mean),
    )
    .unwrap();
    assert_eq!(loss.dims(), &[] as &[usize]);
    assert!((loss.data()[0] as f64 - expected).abs() < 1e-6);
}

#[test]
fn mean_divides_by_target_length_then_averages() {
    let p = problem(6, 3, 4, 0, 3, 7);
    let per = losses(&p);
    let lp = Tensor::from_vec(p.log_probs.clone(), &[p.t, p.n, p.c]).unwrap();
    let mut tape = Tape::no_grad();
    let mean = ctc_loss(
        &mut tape,
        &lp,
        &p.targets,
        &p.input_lengths,
        opts(0, Reduction::Mean),
    )
    .unwrap()
    .item()
    .unwrap() as f64;
    let sum = ctc_loss(
        &mut tape,
        &lp,
        &p.targets,
        &p.input_lengths,
        opts(0, Reduction::Sum),
    )
    .unwrap()
    .item()
    .unwrap() as f64;
    let want_mean = per
        .iter()
        .zip(&p.targets)
        .map(|(&l, t)| l as f64 / t.len().max(1) as f64)
        .sum::<f64>()
        / p.n as f64;
    let want_sum: f64 = per.iter().map(|&l| l as f64).sum();
    assert!((mean - want_mean).abs() <= 1e-5 * want_mean.abs().max(1.0));
    assert!((sum - want_sum).abs() <= 1e-5 * want_sum.abs().max(1.0));
}

proptest! {
    #![proptest_config(common::cases(64))]

    /// The recursions agree with summing every alignment, for T <= 5, C <= 4.
    #[test]
    fn loss_matches_brute_force(p in problem_strategy(5, 4)) {
        let got = losses(&p);
        for (n, &g) in got.iter().enumerate() {
            let want = brute_force_loss(&p, n);
            let g = g as f64;
            prop_assert!(
                (g - want).abs() <= 1e-4 * want.abs().max(1e-3),
                "sample {n} target {:?} len {}: {g} vs brute force {want}",
                p.targets[n], p.input_lengths[n]
            );
        }
    }

    /// Gradient with respect to the log-probabilities themselves. This is
    /// valid because the backward is the true derivative (not PyTorch's
    /// log-softmax-folded form): perturbing one entry is a legitimate input.
    /// Losses are O(10) and f32, so the default step 1e-2 keeps the rounding
    /// error of the difference quotient near 1e-4, well inside atol 2e-3.
    #[test]
    fn gradient_wrt_log_probs(p in problem_strategy(8, 5), reduction in reduction_strategy()) {
        let lp = Tensor::from_vec(p.log_probs.clone(), &[p.t, p.n, p.c]).unwrap();
        let (targets, lengths, o) = (p.targets.clone(), p.input_lengths.clone(), opts(p.blank, reduction));
        let result = check_gradients(
            &[lp],
            |tape, x| ctc_loss(tape, &x[0], &targets, &lengths, o),
            Tol { max_checks: 64, ..Tol::default() },
        );
        prop_assert!(result.is_ok(), "{:?} {:?}: {}", reduction, p, result.unwrap_err());
    }
}

/// Log-softmax over the last axis, composed from existing differentiable ops.
fn log_softmax(tape: &mut Tape, x: &Tensor) -> retort::Result<Tensor> {
    let e = ops::exp(tape, x)?;
    let s = ops::sum(tape, &e, &[2], true)?;
    let l = ops::log(tape, &s)?;
    ops::sub(tape, x, &l)
}

proptest! {
    #![proptest_config(common::cases(24))]

    /// The whole chain a model uses: logits -> log-softmax -> CTC.
    #[test]
    fn gradient_wrt_logits_through_log_softmax(
        p in problem_strategy(6, 4),
        reduction in reduction_strategy(),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::seed(seed);
        let logits: Vec<f32> = (0..p.t * p.n * p.c).map(|_| rng.range(-2.0, 2.0)).collect();
        let x = Tensor::from_vec(logits, &[p.t, p.n, p.c]).unwrap();
        let (targets, lengths, o) = (p.targets.clone(), p.input_lengths.clone(), opts(p.blank, reduction));
        let result = check_gradients(
            &[x],
            |tape, x| {
                let lp = log_softmax(tape, &x[0])?;
                ctc_loss(tape, &lp, &targets, &lengths, o)
            },
            Tol::default(),
        );
        prop_assert!(result.is_ok(), "{:?} {:?}: {}", reduction, p, result.unwrap_err());
    }
}
