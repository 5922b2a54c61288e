//! Gradient checks for softmax/log-softmax with temperature and the losses:
//! cross-entropy with label smoothing, KL divergence and MSE. (CTC has its own file.)

mod common;

use common::{cases, check_gradients, tensor, Tol};
use proptest::prelude::*;
use retort::ops::Reduction;
use retort::{ops, Rng, Tape, Tensor};

fn reduction() -> impl Strategy<Value = Reduction> {
    prop_oneof![
        Just(Reduction::None),
        Just(Reduction::Sum),
        Just(Reduction::Mean)
    ]
}

fn rows_and_classes() -> impl Strategy<Value = Vec<usize>> {
    (proptest::collection::vec(1usize..4, 0..3), 1usize..7).prop_map(|(mut lead, k)| {
        lead.push(k);
        lead
    })
}

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn softmax_and_log_softmax_gradients(x in rows_and_classes().prop_flat_map(tensor), temp in 0.5f32..5.0) {
        check_gradients(std::slice::from_ref(&x), |t, v| ops::softmax(t, &v[0], temp), Tol::default())
            .map_err(TestCaseError::fail)?;
        check_gradients(&[x], |t, v| ops::log_softmax(t, &v[0], temp), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn cross_entropy_gradients(
        (x, targets) in rows_and_classes().prop_flat_map(|d| {
            let k = *d.last().unwrap();
            let rows = d.iter().product::<usize>() / k;
            (tensor(d), proptest::collection::vec(0..k, rows))
        }),
        smoothing in 0.0f32..0.5,
        red in reduction(),
    ) {
        check_gradients(&[x], |t, v| ops::cross_entropy(t, &v[0], &targets, smoothing, red), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn kl_div_gradients_to_both_sides(
        (q, p) in rows_and_classes().prop_flat_map(|d| (tensor(d.clone()), tensor(d))),
        red in reduction(),
    ) {
        check_gradients(&[q, p], |t, v| {
            let lq = ops::log_softmax(t, &v[0], 1.0)?;
            let lp = ops::log_softmax(t, &v[1], 1.0)?;
            ops::kl_div(t, &lq, &lp, red)
        }, Tol::default()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mse_gradients((a, b) in common::dims(4).prop_flat_map(|d| (tensor(d.clone()), tensor(d))), red in reduction()) {
        check_gradients(&[a, b], |t, v| ops::mse_loss(t, &v[0], &v[1], red), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn dropout_gradient_is_the_mask(x in common::dims(4).prop_flat_map(tensor), p in 0.0f32..0.9, seed in any::<u64>()) {
        check_gradients(&[x], |t, v| ops::dropout(t, &v[0], p, true, &mut Rng::seed(seed)), Tol::default())
            .map_err(TestCaseError::fail)?;
    }
}

#[test]
fn temperature_flattens_the_distribution() {
    let x = Tensor::from_vec(vec![0.0, 4.0], &[2]).unwrap();
    let mut t = Tape::no_grad();
    let sharp = ops::softmax(&mut t, &x, 1.0).unwrap();
    let soft = ops::softmax(&mut t, &x, 4.0).unwrap();
    let e = std::f32::consts::E;
    assert!((soft.data()[1] - e / (1.0 + e)).abs() < 1e-6);
    assert!(soft.data()[1] < sharp.data()[1]);
    assert!((sharp.data().iter().sum::<f32>() - 1.0).abs() < 1e-6);
}

#[test]
fn log_softmax_is_stable_for_large_logits() {
    let x = Tensor::from_vec(vec![1000.0, 0.0, -1000.0], &[3]).unwrap();
    let y = ops::log_softmax(&mut Tape::no_grad(), &x, 1.0).unwrap();
    assert!(y.data().iter().all(|v| !v.is_nan()));
    assert_eq!(y.data()[0], 0.0);
}

#[test]
fn cross_entropy_with_smoothing_matches_the_formula() {
    // logits [0, ln 3]: p = [1/4, 3/4]; target 1, ε = 0.2, K = 2.
    let x = Tensor::from_vec(vec![0.0, 3f32.ln()], &[1, 2]).unwrap();
    let loss = ops::cross_entropy(&mut Tape::no_grad(), &x, &[1], 0.2, Reduction::Mean).unwrap();
    let expect = -(0.8 * 0.75f32.ln()) - 0.1 * (0.25f32.ln() + 0.75f32.ln());
    assert!((loss.item().unwrap() - expect).abs() < 1e-6);
}

#[test]
fn kl_of_a_distribution_with_itself_is_zero_and_positive_otherwise() {
    let mut t = Tape::no_grad();
    let a = ops::log_softmax(
        &mut t,
        &Tensor::from_vec(vec![0.1, 0.7, -0.3], &[1, 3]).unwrap(),
        1.0,
    )
    .unwrap();
    let b = ops::log_softmax(
        &mut t,
        &Tensor::from_vec(vec![1.0, -0.7, 0.3], &[1, 3]).unwrap(),
        1.0,
    )
    .unwrap();
    assert!(
        ops::kl_div(&mut t, &a, &a, Reduction::Sum)
            .unwrap()
            .item()
            .unwrap()
            .abs()
            < 1e-7
    );
    assert!(
        ops::kl_div(&mut t, &a, &b, Reduction::Sum)
            .unwrap()
            .item()
            .unwrap()
            > 0.0
    );
}

#[test]
fn dropout_is_identity_in_evaluation_and_keeps_the_mean_in_training() {
    let x = Tensor::ones(&[10_000]).unwrap();
    let mut t = Tape::no_grad();
    let eval = ops::dropout(&mut t, &x, 0.3, false, &mut Rng::seed(1)).unwrap();
    assert_eq!(eval.data(), x.data());
    let train = ops::dropout(&mut t, &x, 0.3, true, &mut Rng::seed(1)).unwrap();
    let zeros = train.data().iter().filter(|&&v| v == 0.0).count();
    assert!((2700..3300).contains(&zeros), "{zeros} zeros");
    let mean = train.data().iter().sum::<f32>() / 10_000.0;
    assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
    assert!(ops::dropout(&mut t, &x, 1.5, true, &mut Rng::seed(1)).is_err());
}

#[test]
fn losses_refuse_bad_arguments() {
    let mut t = Tape::no_grad();
    let x = Tensor::zeros(&[2, 3]).unwrap();
    assert!(ops::cross_entropy(&mut t, &x, &[0], 0.0, Reduction::Mean).is_err());
    assert!(ops::cross_entropy(&mut t, &x, &[0, 3], 0.0, Reduction::Mean).is_err());
    assert!(ops::softmax(&mut t, &x, 0.0).is_err());
    assert!(ops::softmax(&mut t, &x, -1.0).is_err());
    assert!(ops::mse_loss(
        &mut t,
        &x,
        &Tensor::zeros(&[3, 2]).unwrap(),
        Reduction::Mean
    )
    .is_err());
    assert!(ops::kl_div(
        &mut t,
        &x,
        &Tensor::zeros(&[2, 2]).unwrap(),
        Reduction::Mean
    )
    .is_err());
}
