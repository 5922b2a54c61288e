//! CTC loss properties: feasible pairs give finite non-negative losses,
//! infeasible ones +inf (or exactly 0 loss and gradient with zero_infinity,
//! leaving the rest of the batch untouched); gradient rows sum to -1; bad
//! arguments are errors, not panics.

mod common;

use proptest::prelude::*;
use retort::ops::ctc::{ctc_loss, CtcOptions};
use retort::ops::{self, Reduction};
use retort::{Rng, Tape, Tensor};

/// Frames the target needs, counted independently of the crate: one per
/// label, plus a blank between each pair of equal neighbours.
fn needed(target: &[usize]) -> usize {
    let mut frames = 0;
    for (i, &l) in target.iter().enumerate() {
        frames += 1;
        if i > 0 && target[i - 1] == l {
            frames += 1;
        }
    }
    frames
}

/// Row-wise log-softmax of random logits: valid log-probabilities, f32.
fn random_log_probs(rng: &mut Rng, t: usize, n: usize, c: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(t * n * c);
    for _ in 0..t * n {
        let row: Vec<f64> = (0..c).map(|_| rng.range(-3.0, 3.0) as f64).collect();
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        out.extend(row.iter().map(|x| (x - lse) as f32));
    }
    out
}

/// A batch with labels from a small alphabet (so repeats like [1, 1] are
/// common) and any input length in 0..=T: some samples are infeasible.
#[derive(Clone, Debug)]
struct Batch {
    t: usize,
    n: usize,
    c: usize,
    log_probs: Vec<f32>,
    targets: Vec<Vec<usize>>,
    input_lengths: Vec<usize>,
}

fn batch_strategy() -> impl Strategy<Value = Batch> {
    (1..=10usize, 1..=5usize, 2..=5usize, any::<u64>()).prop_map(|(t, n, c, seed)| {
        let mut rng = Rng::seed(seed);
        let log_probs = random_log_probs(&mut rng, t, n, c);
        // Blank 0; labels from at most two classes to make repeats likely.
        let alphabet = (c - 1).min(2);
        let targets = (0..n)
            .map(|_| {
                let s = rng.below(7);
                (0..s).map(|_| 1 + rng.below(alphabet)).collect()
            })
            .collect();
        let input_lengths = (0..n).map(|_| rng.below(t + 1)).collect();
        Batch {
            t,
            n,
            c,
            log_probs,
            targets,
            input_lengths,
        }
    })
}

fn none(zero_infinity: bool) -> CtcOptions {
    CtcOptions {
        blank: 0,
        reduction: Reduction::None,
        zero_infinity,
    }
}

/// Per-sample losses and the gradient of their sum with respect to the log-probabilities.
fn losses_and_grad(
    log_probs: &[f32],
    dims: [usize; 3],
    targets: &[Vec<usize>],
    input_lengths: &[usize],
    opts: CtcOptions,
) -> (Vec<f32>, Vec<f32>) {
    let lp = Tensor::from_vec(log_probs.to_vec(), &dims)
        .unwrap()
        .tracked();
    let mut tape = Tape::new();
    let loss = ctc_loss(&mut tape, &lp, targets, input_lengths, opts).unwrap();
    let total = ops::sum_all(&mut tape, &loss).unwrap();
    let grads = tape.backward(&total).unwrap();
    (loss.to_vec(), grads.get(&lp).unwrap().to_vec())
}

/// Column `n` of a (T, N, C) buffer as a (T, 1, C) buffer.
fn column(data: &[f32], [t, n_all, c]: [usize; 3], n: usize) -> Vec<f32> {
    (0..t)
        .flat_map(|ti| data[(ti * n_all + n) * c..(ti * n_all + n + 1) * c].to_vec())
        .collect()
}

proptest! {
    #![proptest_config(common::cases(128))]

    /// Feasible pairs: finite, non-negative loss. Infeasible: +inf, with a
    /// zero (not NaN) gradient.
    #[test]
    fn feasible_finite_infeasible_infinite(b in batch_strategy()) {
        let dims = [b.t, b.n, b.c];
        let (losses, grad) = losses_and_grad(&b.log_probs, dims, &b.targets, &b.input_lengths, none(false));
        for (n, &loss) in losses.iter().enumerate() {
            let (target, len) = (&b.targets[n], b.input_lengths[n]);
            if needed(target) <= len {
                prop_assert!(loss.is_finite() && loss >= 0.0,
                    "feasible {target:?} in {len} frames: loss {loss}");
            } else {
                prop_assert_eq!(loss, f32::INFINITY, "infeasible {:?} in {} frames", target, len);
                prop_assert!(column(&grad, dims, n).iter().all(|&g| g == 0.0));
            }
        }
        prop_assert!(grad.iter().all(|g| g.is_finite()));
    }

    /// zero_infinity: infeasible samples get exactly 0 loss and gradient; the
    /// others are exactly what they are alone in a batch of one.
    #[test]
    fn zero_infinity_isolates_infeasible_samples(b in batch_strategy()) {
        let dims = [b.t, b.n, b.c];
        let (losses, grad) = losses_and_grad(&b.log_probs, dims, &b.targets, &b.input_lengths, none(true));
        for (n, &loss) in losses.iter().enumerate() {
            let (target, len) = (&b.targets[n], b.input_lengths[n]);
            let col = column(&grad, dims, n);
            if needed(target) > len {
                prop_assert_eq!(loss, 0.0);
                prop_assert!(col.iter().all(|&g| g == 0.0), "infeasible sample {} has gradient {:?}", n, col);
            } else {
                let alone = column(&b.log_probs, dims, n);
                let (l1, g1) = losses_and_grad(&alone, [b.t, 1, b.c], &b.targets[n..=n], &[len], none(true));
                prop_assert_eq!(loss, l1[0]);
                prop_assert_eq!(col, g1);
            }
        }
    }

    /// For any log-probabilities (normalised or not), each frame's gradient
    /// row of a feasible sample sums to -1 (the state occupancies sum to one);
    /// frames past the input length have zero gradient.
    #[test]
    fn gradient_rows_sum_to_minus_one(b in batch_strategy(), shift in -2.0f32..2.0) {
        let dims = [b.t, b.n, b.c];
        let lp: Vec<f32> = b.log_probs.iter().map(|v| v + shift).collect();
        let (_, grad) = losses_and_grad(&lp, dims, &b.targets, &b.input_lengths, none(true));
        for n in 0..b.n {
            let col = column(&grad, dims, n);
            let feasible = needed(&b.targets[n]) <= b.input_lengths[n];
            for (t, row) in col.chunks_exact(b.c).enumerate() {
                let s: f64 = row.iter().map(|&g| g as f64).sum();
                if feasible && t < b.input_lengths[n] {
                    prop_assert!((s + 1.0).abs() < 1e-4, "sample {n} frame {t}: row sums to {s}");
                    prop_assert!(row.iter().all(|&g| g <= 0.0));
                } else {
                    prop_assert_eq!(s, 0.0);
                }
            }
        }
    }
}

#[test]
fn repeated_labels_need_a_blank_between() {
    let mut rng = Rng::seed(3);
    let c = 3;
    for (target, len, feasible) in [
        (vec![1, 1], 2, false),
        (vec![1, 1], 3, true),
        (vec![1, 2], 2, true),
        (vec![1, 2], 1, false),
        (vec![2, 2, 2], 4, false),
        (vec![2, 2, 2], 5, true),
        (vec![], 0, true),
        (vec![1], 0, false),
    ] {
        let t = len.max(1);
        let lp = random_log_probs(&mut rng, t, 1, c);
        for zero_infinity in [false, true] {
            let (loss, grad) = losses_and_grad(
                &lp,
                [t, 1, c],
                std::slice::from_ref(&target),
                &[len],
                none(zero_infinity),
            );
            let l = loss[0];
            match (feasible, zero_infinity) {
                (true, _) => assert!(l.is_finite() && l >= 0.0, "{target:?}/{len}: {l}"),
                (false, false) => assert_eq!(l, f32::INFINITY, "{target:?}/{len}"),
                (false, true) => assert_eq!(l, 0.0, "{target:?}/{len}"),
            }
            if !feasible {
                assert!(grad.iter().all(|&g| g == 0.0));
            }
        }
    }
}

#[test]
fn empty_target_with_no_frames_has_zero_loss() {
    let lp = vec![-0.5f32, -1.0, -2.0];
    let (loss, grad) = losses_and_grad(&lp, [1, 1, 3], &[vec![]], &[0], none(false));
    assert_eq!(loss, vec![0.0]);
    assert!(grad.iter().all(|&g| g == 0.0));
}

#[test]
fn zero_infinity_mean_counts_zeroed_samples() {
    // Sample 0 is infeasible ([1, 1] in 2 frames), sample 1 feasible.
    let mut rng = Rng::seed(11);
    let lp = random_log_probs(&mut rng, 2, 2, 3);
    let lp_t = Tensor::from_vec(lp.clone(), &[2, 2, 3]).unwrap();
    let targets = [vec![1, 1], vec![2]];
    let (per, _) = losses_and_grad(&lp, [2, 2, 3], &targets, &[2, 2], none(true));
    let mut tape = Tape::no_grad();
    let mean = ctc_loss(
        &mut tape,
        &lp_t,
        &targets,
        &[2, 2],
        CtcOptions {
            zero_infinity: true,
            ..CtcOptions::default()
        },
    )
    .unwrap()
    .item()
    .unwrap();
    assert_eq!(per[0], 0.0);
    assert!((mean - per[1] / 2.0).abs() < 1e-6);
}

#[test]
fn defaults_are_pytorch_defaults() {
    let o = CtcOptions::default();
    assert_eq!(o.blank, 0);
    assert_eq!(o.reduction, Reduction::Mean);
    assert!(!o.zero_infinity);
}

#[test]
fn bad_arguments_are_errors() {
    let lp = Tensor::from_vec(vec![-1.0; 3 * 2 * 4], &[3, 2, 4]).unwrap();
    let ok_targets = vec![vec![1], vec![2, 3]];
    let mut tape = Tape::no_grad();
    let opts = CtcOptions::default();
    let mut call = |lp: &Tensor, targets: &[Vec<usize>], lens: &[usize], opts: CtcOptions| {
        ctc_loss(&mut tape, lp, targets, lens, opts)
    };
    assert!(call(&lp, &ok_targets, &[3, 2], opts).is_ok());
    // Wrong rank.
    let flat = Tensor::from_vec(vec![-1.0; 24], &[6, 4]).unwrap();
    assert!(call(&flat, &ok_targets, &[3, 2], opts).is_err());
    // Counts that disagree with N.
    assert!(call(&lp, &ok_targets[..1], &[3, 2], opts).is_err());
    assert!(call(&lp, &ok_targets, &[3], opts).is_err());
    // Input length above T.
    assert!(call(&lp, &ok_targets, &[4, 2], opts).is_err());
    // Label >= C, label == blank.
    assert!(call(&lp, &[vec![4], vec![1]], &[3, 2], opts).is_err());
    assert!(call(&lp, &[vec![0], vec![1]], &[3, 2], opts).is_err());
    // Blank >= C; a nonzero blank makes 0 a valid label.
    let blank = |b| CtcOptions { blank: b, ..opts };
    assert!(call(&lp, &ok_targets, &[3, 2], blank(4)).is_err());
    assert!(call(&lp, &[vec![0], vec![1]], &[3, 2], blank(3)).is_ok());
    assert!(call(&lp, &[vec![3], vec![1]], &[3, 2], blank(3)).is_err());
    // Mean over an empty batch.
    let empty = Tensor::from_vec(vec![], &[3, 0, 4]).unwrap();
    assert!(call(&empty, &[], &[], opts).is_err());
    let sum = CtcOptions {
        reduction: Reduction::Sum,
        ..opts
    };
    assert_eq!(call(&empty, &[], &[], sum).unwrap().item().unwrap(), 0.0);
}
