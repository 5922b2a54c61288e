//! CTC loss (through log_softmax) against torch.nn.functional.ctc_loss
//! (tests/golden/make_golden.py; see tests/golden/README.md).

#[path = "golden/check.rs"]
mod check;
#[rustfmt::skip]
#[path = "golden/ctc.rs"]
mod data;

use check::{assert_close, assert_close_slice, leaf};
use data::*;
use retort::ops::ctc::{ctc_loss, CtcOptions};
use retort::ops::Reduction;
use retort::{ops, Tape, Tensor};

/// Splits flattened targets by their lengths.
fn split_targets(flat: &[usize], lengths: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    for &len in lengths {
        out.push(flat[at..at + len].to_vec());
        at += len;
    }
    assert_eq!(at, flat.len());
    out
}

fn options(reduction: Reduction, zero_infinity: bool) -> CtcOptions {
    CtcOptions {
        blank: 0,
        reduction,
        zero_infinity,
    }
}

/// The loss of `log_softmax(logits)` under `reduction`, on a fresh tape.
fn loss_of(
    logits: &Tensor,
    targets: &[Vec<usize>],
    input_lengths: &[usize],
    reduction: Reduction,
    zero_infinity: bool,
) -> (Tape, Tensor) {
    let mut tape = Tape::new();
    let log_probs = ops::log_softmax(&mut tape, logits, 1.0).expect("log_softmax");
    let loss = ctc_loss(
        &mut tape,
        &log_probs,
        targets,
        input_lengths,
        options(reduction, zero_infinity),
    )
    .expect("ctc_loss");
    (tape, loss)
}

#[test]
fn ctc_losses_match_pytorch() {
    let logits = leaf(&CTC_LOGITS, &CTC_LOGITS_SHAPE);
    let targets = split_targets(&CTC_TARGETS_FLAT, &CTC_TARGET_LENGTHS);
    let il = CTC_INPUT_LENGTHS.to_vec();

    let (_, none) = loss_of(&logits, &targets, &il, Reduction::None, false);
    assert_close(
        "ctc losses (reduction none)",
        &none,
        &CTC_LOSSES,
        &CTC_LOSSES_SHAPE,
    );

    let (_, sum) = loss_of(&logits, &targets, &il, Reduction::Sum, false);
    assert_eq!(sum.numel(), 1, "sum reduction gives one value");
    assert_close_slice("ctc loss (reduction sum)", sum.data(), &[CTC_SUM], &[]);

    let (_, mean) = loss_of(&logits, &targets, &il, Reduction::Mean, false);
    assert_eq!(mean.numel(), 1, "mean reduction gives one value");
    assert_close_slice(
        "ctc loss (reduction mean: per-sample loss / max(target_len, 1), then batch mean)",
        mean.data(),
        &[CTC_MEAN],
        &[],
    );
}

#[test]
fn ctc_mean_gradient_wrt_logits_matches_pytorch() {
    let logits = leaf(&CTC_LOGITS, &CTC_LOGITS_SHAPE);
    let targets = split_targets(&CTC_TARGETS_FLAT, &CTC_TARGET_LENGTHS);
    let il = CTC_INPUT_LENGTHS.to_vec();
    let (mut tape, mean) = loss_of(&logits, &targets, &il, Reduction::Mean, false);
    let grads = tape.backward(&mean).expect("backward");
    let g = grads.get(&logits).expect("no gradient for logits");
    assert_close(
        "ctc d(mean)/dlogits",
        g,
        &CTC_GRAD_LOGITS,
        &CTC_LOGITS_SHAPE,
    );
}

#[test]
fn ctc_infeasible_sample_is_inf_or_zero_like_pytorch() {
    let logits = leaf(&CTC_INF_LOGITS, &CTC_INF_LOGITS_SHAPE);
    let targets = split_targets(&CTC_INF_TARGETS_FLAT, &CTC_INF_TARGET_LENGTHS);
    let il = CTC_INF_INPUT_LENGTHS.to_vec();

    let (_, none) = loss_of(&logits, &targets, &il, Reduction::None, false);
    assert_close(
        "ctc infeasible losses (none, zero_infinity=false)",
        &none,
        &CTC_INF_LOSSES,
        &CTC_INF_LOSSES_SHAPE,
    );
    let (_, none0) = loss_of(&logits, &targets, &il, Reduction::None, true);
    assert_close(
        "ctc infeasible losses (none, zero_infinity=true)",
        &none0,
        &CTC_INF_LOSSES_ZERO_INF,
        &CTC_INF_LOSSES_ZERO_INF_SHAPE,
    );
    let (_, mean) = loss_of(&logits, &targets, &il, Reduction::Mean, false);
    assert_close_slice(
        "ctc infeasible mean (zero_infinity=false)",
        mean.data(),
        &[CTC_INF_MEAN],
        &[],
    );

    let (mut tape, mean0) = loss_of(&logits, &targets, &il, Reduction::Mean, true);
    assert_close_slice(
        "ctc infeasible mean (zero_infinity=true; the zeroed sample still counts in the batch mean)",
        mean0.data(),
        &[CTC_INF_MEAN_ZERO_INF],
        &[],
    );
    let grads = tape.backward(&mean0).expect("backward");
    let g = grads.get(&logits).expect("no gradient for logits");
    assert!(
        g.data().iter().all(|v| v.is_finite()),
        "zero_infinity=true gradient has non-finite values"
    );
    assert_close(
        "ctc infeasible d(mean, zero_infinity)/dlogits",
        g,
        &CTC_INF_GRAD_LOGITS_ZERO_INF,
        &CTC_INF_LOGITS_SHAPE,
    );
}
