//! batchnorm2d: gradient checks in training and evaluation mode over random
//! shapes, running statistics and outputs worked out by hand as PyTorch
//! computes them, and the errors on bad shapes; batchnorm2d_relu: gradient
//! checks away from the ReLU's kink, and the bits of batchnorm2d then relu.

mod common;

use common::{cases, check_gradients, tensor, tensor_in, Tol};
use proptest::prelude::*;
use retort::ops::batchnorm2d::{batchnorm2d, batchnorm2d_relu, RunningStats};
use retort::{ops, Error, Tape, Tensor};

/// The smallest biased variance over the channels of `x` (N, C, H, W).
fn min_channel_var(x: &Tensor) -> f64 {
    let d = x.dims();
    let (c, plane) = (d[1], d[2] * d[3]);
    (0..c)
        .map(|ch| {
            let v: Vec<f64> = x
                .data()
                .chunks_exact(c * plane)
                .flat_map(|s| &s[ch * plane..(ch + 1) * plane])
                .map(|&v| v as f64)
                .collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Input, gamma and beta of random small shapes with at least two values per channel.
fn bn_case() -> impl Strategy<Value = (Tensor, Tensor, Tensor)> {
    (1..=3usize, 1..=4usize, 1..=7usize, 1..=7usize)
        .prop_filter("training needs two values per channel", |&(n, _, h, w)| {
            n * h * w >= 2
        })
        .prop_flat_map(|(n, c, h, w)| (tensor(vec![n, c, h, w]), tensor(vec![c]), tensor(vec![c])))
}

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn training_gradients_match_finite_differences((x, gamma, beta) in bn_case()) {
        // A channel of nearly equal values makes 1/std huge and the
        // finite differences meaningless: keep the spread sensible.
        prop_assume!(min_channel_var(&x) >= 0.25);
        let c = gamma.numel();
        let check = check_gradients(
            &[x, gamma, beta],
            |tape, t| batchnorm2d(tape, &t[0], &t[1], &t[2], &mut RunningStats::new(c), true),
            Tol::default(),
        );
        prop_assert!(check.is_ok(), "{}", check.unwrap_err());
    }

    #[test]
    fn eval_gradients_match_finite_differences(
        ((x, gamma, beta), mean, var) in bn_case().prop_flat_map(|(x, g, b)| {
            let c = g.numel();
            (Just((x, g, b)), tensor_in(vec![c], -1.0, 1.0), tensor_in(vec![c], 0.5, 2.0))
        })
    ) {
        let c = gamma.numel();
        let stats = RunningStats { mean, var, momentum: 0.1, eps: 1e-5 };
        let check = check_gradients(
            &[x, gamma, beta],
            |tape, t| {
                let mut s = stats.clone();
                batchnorm2d(tape, &t[0], &t[1], &t[2], &mut s, false)
            },
            Tol::default(),
        );
        prop_assert!(check.is_ok(), "{}", check.unwrap_err());
        prop_assert_eq!(c, stats.mean.numel());
    }
}

/// Small inputs (the ReLU's kink must miss every value) with gamma and beta.
fn small_bn_case() -> impl Strategy<Value = (Tensor, Tensor, Tensor)> {
    (1..=2usize, 1..=2usize, 1..=3usize, 1..=3usize)
        .prop_filter("training needs two values per channel", |&(n, _, h, w)| {
            n * h * w >= 2
        })
        .prop_flat_map(|(n, c, h, w)| (tensor(vec![n, c, h, w]), tensor(vec![c]), tensor(vec![c])))
}

/// The smallest |value| of the BatchNorm's output, the ReLU's input.
fn closest_to_the_kink(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &RunningStats,
    training: bool,
) -> f32 {
    let mut s = stats.clone();
    let z = batchnorm2d(&mut Tape::new(), x, gamma, beta, &mut s, training).unwrap();
    z.data().iter().fold(f32::INFINITY, |m, v| m.min(v.abs()))
}

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn fused_relu_gradients_match_finite_differences(
        ((x, gamma, beta), mean, var, training) in small_bn_case().prop_flat_map(|(x, g, b)| {
            let c = g.numel();
            (Just((x, g, b)), tensor_in(vec![c], -1.0, 1.0), tensor_in(vec![c], 0.5, 2.0), any::<bool>())
        })
    ) {
        prop_assume!(!training || min_channel_var(&x) >= 0.25);
        let stats = RunningStats { mean, var, momentum: 0.1, eps: 1e-5 };
        // A finite-difference step of 1e-2 moves the ReLU's input by at most
        // ~0.04 here: keep every value 0.1 from the kink.
        prop_assume!(closest_to_the_kink(&x, &gamma, &beta, &stats, training) >= 0.1);
        let check = check_gradients(
            &[x, gamma, beta],
            |tape, t| batchnorm2d_relu(tape, &t[0], &t[1], &t[2], &mut stats.clone(), training),
            Tol::default(),
        );
        prop_assert!(check.is_ok(), "{}", check.unwrap_err());
    }
}

/// The fused op gives the bits of batchnorm2d then relu: outputs, running
/// statistics and the gradients of x, gamma and beta, in training and in
/// evaluation, on shapes large enough for the vector and parallel paths.
#[test]
fn fused_relu_matches_batchnorm_then_relu_bit_for_bit() {
    let mut rng = retort::Rng::seed(17);
    let mut values =
        |n: usize, lo: f32, hi: f32| -> Vec<f32> { (0..n).map(|_| rng.range(lo, hi)).collect() };
    for (n, c, h, w) in [(2, 3, 5, 7), (4, 8, 16, 33), (1, 2, 1, 2)] {
        let len = n * c * h * w;
        let x = Tensor::from_vec(values(len, -2.0, 2.0), &[n, c, h, w]).unwrap();
        let gamma = Tensor::from_vec(values(c, -1.5, 1.5), &[c]).unwrap();
        let beta = Tensor::from_vec(values(c, -0.5, 0.5), &[c]).unwrap();
        let weights = Tensor::from_vec(values(len, -1.0, 1.0), &[n, c, h, w]).unwrap();
        let start = RunningStats {
            mean: Tensor::from_vec(values(c, -1.0, 1.0), &[c]).unwrap(),
            var: Tensor::from_vec(values(c, 0.5, 2.0), &[c]).unwrap(),
            momentum: 0.1,
            eps: 1e-5,
        };
        for training in [true, false] {
            let run = |fused: bool| {
                let (x, g, b) = (
                    x.detach().tracked(),
                    gamma.detach().tracked(),
                    beta.detach().tracked(),
                );
                let mut stats = start.clone();
                let mut tape = Tape::new();
                let y = if fused {
                    batchnorm2d_relu(&mut tape, &x, &g, &b, &mut stats, training).unwrap()
                } else {
                    let z = batchnorm2d(&mut tape, &x, &g, &b, &mut stats, training).unwrap();
                    ops::relu(&mut tape, &z).unwrap()
                };
                let weighted = ops::mul(&mut tape, &y, &weights).unwrap();
                let loss = ops::sum_all(&mut tape, &weighted).unwrap();
                let grads = tape.backward(&loss).unwrap();
                let mut out = vec![y.to_vec(), stats.mean.to_vec(), stats.var.to_vec()];
                for t in [&x, &g, &b] {
                    out.push(grads.get(t).unwrap().to_vec());
                }
                out
            };
            let bits = |v: Vec<Vec<f32>>| -> Vec<Vec<u32>> {
                v.into_iter()
                    .map(|t| t.iter().map(|x| x.to_bits()).collect())
                    .collect()
            };
            assert_eq!(
                bits(run(true)),
                bits(run(false)),
                "{n}x{c}x{h}x{w} training {training}"
            );
        }
    }
}

fn t(values: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_slice(values, dims).unwrap()
}

fn assert_close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}"
        );
    }
}

/// Two samples, two channels, 1x2 planes.
/// Channel 0 holds 1, 3 | 5, 7: mean 4, biased var 5, unbiased 20/3.
/// Channel 1 holds 0, 0 | 2, -2: mean 0, biased var 2, unbiased 8/3.
fn batch() -> Tensor {
    t(&[1.0, 3.0, 0.0, 0.0, 5.0, 7.0, 2.0, -2.0], &[2, 2, 1, 2])
}

#[test]
fn new_running_stats_are_pytorch_defaults() {
    let s = RunningStats::new(3);
    assert_eq!(s.mean.data(), &[0.0; 3]);
    assert_eq!(s.var.data(), &[1.0; 3]);
    assert_eq!((s.momentum, s.eps), (0.1, 1e-5));
}

#[test]
fn training_normalises_with_batch_statistics_and_updates_running_ones() {
    let x = batch();
    let gamma = t(&[2.0, 1.0], &[2]);
    let beta = t(&[0.5, -1.0], &[2]);
    let mut stats = RunningStats::new(2);
    let y = batchnorm2d(&mut Tape::new(), &x, &gamma, &beta, &mut stats, true).unwrap();
    let (s0, s1) = ((5.0f64 + 1e-5).sqrt(), (2.0f64 + 1e-5).sqrt());
    let want = [
        -3.0 / s0 * 2.0 + 0.5,
        -1.0 / s0 * 2.0 + 0.5,
        0.0 / s1 - 1.0,
        0.0 / s1 - 1.0,
        1.0 / s0 * 2.0 + 0.5,
        3.0 / s0 * 2.0 + 0.5,
        2.0 / s1 - 1.0,
        -2.0 / s1 - 1.0,
    ];
    assert_close(y.data(), &want);
    // running = 0.9 * running + 0.1 * batch, with the unbiased variance.
    assert_close(stats.mean.data(), &[0.4, 0.0]);
    assert_close(
        stats.var.data(),
        &[0.9 + 0.1 * 20.0 / 3.0, 0.9 + 0.1 * 8.0 / 3.0],
    );
    // A second step on the same batch, on a no-grad tape, still updates them.
    batchnorm2d(&mut Tape::no_grad(), &x, &gamma, &beta, &mut stats, true).unwrap();
    assert_close(stats.mean.data(), &[0.9 * 0.4 + 0.4, 0.0]);
    assert_close(
        stats.var.data(),
        &[
            0.9 * (0.9 + 0.1 * 20.0 / 3.0) + 0.1 * 20.0 / 3.0,
            0.9 * (0.9 + 0.1 * 8.0 / 3.0) + 0.1 * 8.0 / 3.0,
        ],
    );
}

#[test]
fn running_stats_keep_their_identity_when_updated() {
    let mut stats = RunningStats::new(2);
    let (mean_id, var_id) = (stats.mean.id(), stats.var.id());
    let (g, b) = (Tensor::ones(&[2]).unwrap(), Tensor::zeros(&[2]).unwrap());
    batchnorm2d(&mut Tape::new(), &batch(), &g, &b, &mut stats, true).unwrap();
    assert_eq!((stats.mean.id(), stats.var.id()), (mean_id, var_id));
}

#[test]
fn eval_mode_uses_running_statistics_and_leaves_them_alone() {
    let x = batch();
    let gamma = t(&[2.0, 1.0], &[2]);
    let beta = t(&[0.5, -1.0], &[2]);
    let mut stats = RunningStats {
        mean: t(&[1.0, -1.0], &[2]),
        var: t(&[4.0, 0.25], &[2]),
        momentum: 0.1,
        eps: 1e-5,
    };
    let xt = x.detach().tracked();
    let mut tape = Tape::new();
    let y = batchnorm2d(&mut tape, &xt, &gamma, &beta, &mut stats, false).unwrap();
    let (s0, s1) = ((4.0f64 + 1e-5).sqrt(), (0.25f64 + 1e-5).sqrt());
    let want: Vec<f64> = x
        .data()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let v = v as f64;
            if (i / 2) % 2 == 0 {
                (v - 1.0) / s0 * 2.0 + 0.5
            } else {
                (v + 1.0) / s1 - 1.0
            }
        })
        .collect();
    assert_close(y.data(), &want);
    assert_eq!(stats.mean.data(), &[1.0, -1.0]);
    assert_eq!(stats.var.data(), &[4.0, 0.25]);
    // The backward of an affine map: dx = gamma / sqrt(var + eps).
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let (a, b) = (2.0 / s0, 1.0 / s1);
    assert_close(grads.get(&xt).unwrap().data(), &[a, a, b, b, a, a, b, b]);
}

#[test]
fn training_gradient_of_a_plain_sum_vanishes_for_the_input() {
    // Σ y = Σ beta + gamma * Σ xhat, and Σ xhat = 0 for any x: dx = 0, dbeta = count.
    let x = batch().tracked();
    let gamma = t(&[2.0, 1.0], &[2]).tracked();
    let beta = t(&[0.5, -1.0], &[2]).tracked();
    let mut tape = Tape::new();
    let y = batchnorm2d(
        &mut tape,
        &x,
        &gamma,
        &beta,
        &mut RunningStats::new(2),
        true,
    )
    .unwrap();
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    let grads = tape.backward(&loss).unwrap();
    for v in grads.get(&x).unwrap().data() {
        assert!(v.abs() < 1e-5, "{v}");
    }
    assert_eq!(grads.get(&beta).unwrap().data(), &[4.0, 4.0]);
    for v in grads.get(&gamma).unwrap().data() {
        assert!(v.abs() < 1e-5, "{v}");
    }
}

fn shape_error(r: retort::Result<Tensor>) -> String {
    match r {
        Err(e @ (Error::Shape { .. } | Error::InvalidArgument { .. })) => e.to_string(),
        other => panic!("expected a shape or argument error, got {other:?}"),
    }
}

#[test]
fn bad_shapes_are_errors_that_name_them() {
    let mut tape = Tape::new();
    let x = Tensor::zeros(&[2, 3, 4, 4]).unwrap();
    let c3 = Tensor::ones(&[3]).unwrap();
    let c2 = Tensor::ones(&[2]).unwrap();
    let mut stats = RunningStats::new(3);
    // Gamma or beta of the wrong length.
    let msg = shape_error(batchnorm2d(&mut tape, &x, &c2, &c3, &mut stats, true));
    assert!(msg.contains("[2]") && msg.contains("[2, 3, 4, 4]"), "{msg}");
    shape_error(batchnorm2d(&mut tape, &x, &c3, &c2, &mut stats, false));
    // Running statistics for another channel count.
    let mut stats2 = RunningStats::new(2);
    shape_error(batchnorm2d(&mut tape, &x, &c3, &c3, &mut stats2, true));
    // Not 4-D.
    let x3 = Tensor::zeros(&[3, 4, 4]).unwrap();
    let msg = shape_error(batchnorm2d(&mut tape, &x3, &c3, &c3, &mut stats, true));
    assert!(msg.contains("[3, 4, 4]"), "{msg}");
    // One value per channel cannot be normalised in training, but can in evaluation.
    let x1 = Tensor::zeros(&[1, 3, 1, 1]).unwrap();
    let msg = shape_error(batchnorm2d(&mut tape, &x1, &c3, &c3, &mut stats, true));
    assert!(msg.contains("[1, 3, 1, 1]"), "{msg}");
    assert!(batchnorm2d(&mut tape, &x1, &c3, &c3, &mut stats, false).is_ok());
    // Failed calls left the statistics untouched.
    assert_eq!(stats.mean.data(), &[0.0; 3]);
    assert_eq!(stats.var.data(), &[1.0; 3]);
}
