//! conv2d and batchnorm2d against PyTorch golden values
//! (tests/golden/make_golden.py; see tests/golden/README.md).

#[path = "golden/check.rs"]
mod check;
#[rustfmt::skip]
#[path = "golden/conv_bn.rs"]
mod data;

use check::{assert_close, leaf, tensor};
use data::*;
use retort::ops::batchnorm2d::{batchnorm2d, RunningStats};
use retort::ops::conv2d::{conv2d, Conv2dSpec};
use retort::{ops, Tape, Tensor};

/// `sum(out * r)`, the scalar whose gradients the golden files hold.
fn project(tape: &mut Tape, out: &Tensor, r: &[f32], r_dims: &[usize]) -> Tensor {
    let r = tensor(r, r_dims);
    let prod = ops::mul(tape, out, &r).expect("mul");
    ops::sum_all(tape, &prod).expect("sum_all")
}

#[test]
fn conv2d_stride1_pad1_bias_matches_pytorch() {
    let mut tape = Tape::new();
    let x = leaf(&CONV1_X, &CONV1_X_SHAPE);
    let w = leaf(&CONV1_W, &CONV1_W_SHAPE);
    let b = leaf(&CONV1_B, &CONV1_B_SHAPE);
    let spec = Conv2dSpec::new(
        (CONV1_STRIDE[0], CONV1_STRIDE[1]),
        (CONV1_PADDING[0], CONV1_PADDING[1]),
    );
    let out = conv2d(&mut tape, &x, &w, Some(&b), spec).expect("conv2d");
    assert_close("conv1 out", &out, &CONV1_OUT, &CONV1_OUT_SHAPE);

    let loss = project(&mut tape, &out, &CONV1_R, &CONV1_R_SHAPE);
    let grads = tape.backward(&loss).expect("backward");
    let gx = grads.get(&x).expect("no gradient for x");
    let gw = grads.get(&w).expect("no gradient for weight");
    let gb = grads.get(&b).expect("no gradient for bias");
    assert_close("conv1 d/dx", gx, &CONV1_GRAD_X, &CONV1_X_SHAPE);
    assert_close("conv1 d/dweight", gw, &CONV1_GRAD_W, &CONV1_W_SHAPE);
    assert_close("conv1 d/dbias", gb, &CONV1_GRAD_B, &CONV1_B_SHAPE);
}

#[test]
fn conv2d_stride21_pad01_no_bias_matches_pytorch() {
    let mut tape = Tape::new();
    let x = leaf(&CONV2_X, &CONV2_X_SHAPE);
    let w = leaf(&CONV2_W, &CONV2_W_SHAPE);
    let spec = Conv2dSpec::new(
        (CONV2_STRIDE[0], CONV2_STRIDE[1]),
        (CONV2_PADDING[0], CONV2_PADDING[1]),
    );
    let out = conv2d(&mut tape, &x, &w, None, spec).expect("conv2d");
    assert_close("conv2 out", &out, &CONV2_OUT, &CONV2_OUT_SHAPE);

    let loss = project(&mut tape, &out, &CONV2_R, &CONV2_R_SHAPE);
    let grads = tape.backward(&loss).expect("backward");
    let gx = grads.get(&x).expect("no gradient for x");
    let gw = grads.get(&w).expect("no gradient for weight");
    assert_close("conv2 d/dx", gx, &CONV2_GRAD_X, &CONV2_X_SHAPE);
    assert_close("conv2 d/dweight", gw, &CONV2_GRAD_W, &CONV2_W_SHAPE);
}

fn bn_stats() -> RunningStats {
    let channels = BN_GAMMA_SHAPE[0];
    let stats = RunningStats::new(channels);
    // the golden values use PyTorch's defaults; the op's defaults must be the same
    assert!(
        (stats.momentum as f64 - BN_MOMENTUM as f64).abs() < 1e-9,
        "RunningStats::new momentum is not 0.1"
    );
    assert!(
        (stats.eps as f64 - BN_EPS as f64).abs() < 1e-12,
        "RunningStats::new eps is not 1e-5"
    );
    assert_close(
        "initial running mean",
        &stats.mean,
        &vec![0.0; channels],
        &[channels],
    );
    assert_close(
        "initial running var",
        &stats.var,
        &vec![1.0; channels],
        &[channels],
    );
    stats
}

#[test]
fn batchnorm2d_training_matches_pytorch() {
    let mut tape = Tape::new();
    let x = leaf(&BN_X, &BN_X_SHAPE);
    let gamma = leaf(&BN_GAMMA, &BN_GAMMA_SHAPE);
    let beta = leaf(&BN_BETA, &BN_BETA_SHAPE);
    let mut stats = bn_stats();
    let out = batchnorm2d(&mut tape, &x, &gamma, &beta, &mut stats, true).expect("batchnorm2d");
    assert_close("bn train out", &out, &BN_TRAIN_OUT, &BN_TRAIN_OUT_SHAPE);
    assert_close(
        "bn running mean after one step",
        &stats.mean,
        &BN_TRAIN_RUNNING_MEAN,
        &BN_TRAIN_RUNNING_MEAN_SHAPE,
    );
    assert_close(
        "bn running var after one step (unbiased batch variance)",
        &stats.var,
        &BN_TRAIN_RUNNING_VAR,
        &BN_TRAIN_RUNNING_VAR_SHAPE,
    );

    let loss = project(&mut tape, &out, &BN_TRAIN_R, &BN_TRAIN_R_SHAPE);
    let grads = tape.backward(&loss).expect("backward");
    let gx = grads.get(&x).expect("no gradient for x");
    let gg = grads.get(&gamma).expect("no gradient for gamma");
    let gb = grads.get(&beta).expect("no gradient for beta");
    assert_close("bn train d/dx", gx, &BN_TRAIN_GRAD_X, &BN_X_SHAPE);
    assert_close(
        "bn train d/dgamma",
        gg,
        &BN_TRAIN_GRAD_GAMMA,
        &BN_GAMMA_SHAPE,
    );
    assert_close("bn train d/dbeta", gb, &BN_TRAIN_GRAD_BETA, &BN_BETA_SHAPE);
}

#[test]
fn batchnorm2d_eval_matches_pytorch() {
    let mut tape = Tape::new();
    let x = leaf(&BN_X, &BN_X_SHAPE);
    let gamma = leaf(&BN_GAMMA, &BN_GAMMA_SHAPE);
    let beta = leaf(&BN_BETA, &BN_BETA_SHAPE);
    let mut stats = bn_stats();
    stats.mean = tensor(&BN_EVAL_MEAN, &BN_EVAL_MEAN_SHAPE);
    stats.var = tensor(&BN_EVAL_VAR, &BN_EVAL_VAR_SHAPE);
    let out = batchnorm2d(&mut tape, &x, &gamma, &beta, &mut stats, false).expect("batchnorm2d");
    assert_close("bn eval out", &out, &BN_EVAL_OUT, &BN_EVAL_OUT_SHAPE);
    // evaluation leaves the running statistics alone
    assert_close(
        "bn eval running mean",
        &stats.mean,
        &BN_EVAL_MEAN,
        &BN_EVAL_MEAN_SHAPE,
    );
    assert_close(
        "bn eval running var",
        &stats.var,
        &BN_EVAL_VAR,
        &BN_EVAL_VAR_SHAPE,
    );

    let loss = project(&mut tape, &out, &BN_EVAL_R, &BN_EVAL_R_SHAPE);
    let grads = tape.backward(&loss).expect("backward");
    let gx = grads.get(&x).expect("no gradient for x");
    let gg = grads.get(&gamma).expect("no gradient for gamma");
    let gb = grads.get(&beta).expect("no gradient for beta");
    assert_close("bn eval d/dx", gx, &BN_EVAL_GRAD_X, &BN_X_SHAPE);
    assert_close("bn eval d/dgamma", gg, &BN_EVAL_GRAD_GAMMA, &BN_GAMMA_SHAPE);
    assert_close("bn eval d/dbeta", gb, &BN_EVAL_GRAD_BETA, &BN_BETA_SHAPE);
}
