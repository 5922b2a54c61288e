//! Gradient checks for the elementwise ops: binary with broadcasting, and unary.

mod common;

use common::{away_from_zero, cases, check_gradients, tensor, tensor_in, Tol};
use proptest::prelude::*;
use retort::{ops, Tape, Tensor};

type UnaryOp = fn(&mut Tape, &Tensor) -> retort::Result<Tensor>;

/// A full shape and a bias-like shape that broadcasts to it (some axes set to 1,
/// some leading axes dropped).
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (
        common::dims(4),
        proptest::collection::vec(any::<bool>(), 4),
        0usize..4,
    )
        .prop_map(|(full, ones, drop)| {
            let mut small: Vec<usize> = full
                .iter()
                .zip(&ones)
                .map(|(&d, &one)| if one { 1 } else { d })
                .collect();
            let drop = drop.min(small.len() - 1);
            small.drain(..drop);
            (full, small)
        })
}

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn add_sub_mul_broadcast_gradients(
        ((a, b), swap) in broadcast_pair().prop_flat_map(|(f, s)| ((tensor(f), tensor(s)), any::<bool>()))
    ) {
        let (a, b) = if swap { (b, a) } else { (a, b) };
        for op in [ops::add, ops::sub, ops::mul] {
            check_gradients(&[a.clone(), b.clone()], |t, x| op(t, &x[0], &x[1]), Tol::default())
                .map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn div_broadcast_gradients(
        (a, b) in broadcast_pair().prop_flat_map(|(f, s)| (tensor(f), tensor_in(s, 0.5, 2.0)))
    ) {
        check_gradients(&[a, b], |t, x| ops::div(t, &x[0], &x[1]), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn smooth_unary_gradients(x in common::dims(4).prop_flat_map(tensor), s in -3.0f32..3.0) {
        let smooth: [(&str, UnaryOp); 5] = [
            ("exp", ops::exp), ("sigmoid", ops::sigmoid), ("tanh", ops::tanh),
            ("square", ops::square), ("neg", ops::neg),
        ];
        for (name, op) in smooth {
            check_gradients(std::slice::from_ref(&x), |t, v| op(t, &v[0]), Tol::default())
                .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        }
        check_gradients(std::slice::from_ref(&x), |t, v| ops::scale(t, &v[0], s), Tol::default())
            .map_err(TestCaseError::fail)?;
        check_gradients(&[x], |t, v| ops::add_scalar(t, &v[0], s), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn positive_domain_gradients(x in common::dims(4).prop_flat_map(|d| tensor_in(d, 0.3, 3.0)), p in 0.5f32..3.0) {
        check_gradients(std::slice::from_ref(&x), |t, v| ops::log(t, &v[0]), Tol::default()).map_err(TestCaseError::fail)?;
        check_gradients(std::slice::from_ref(&x), |t, v| ops::sqrt(t, &v[0]), Tol::default()).map_err(TestCaseError::fail)?;
        check_gradients(&[x], |t, v| ops::pow(t, &v[0], p), Tol::default()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn kinked_unary_gradients_away_from_the_kink(x in common::dims(4).prop_flat_map(|d| away_from_zero(d, 0.05))) {
        check_gradients(std::slice::from_ref(&x), |t, v| ops::relu(t, &v[0]), Tol::default()).map_err(TestCaseError::fail)?;
        check_gradients(&[x], |t, v| ops::abs(t, &v[0]), Tol::default()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mul_const_passes_gradient_through_the_mask(
        (x, m) in common::dims(4).prop_flat_map(|d| (tensor(d.clone()), tensor(d)))
    ) {
        check_gradients(&[x], |t, v| ops::mul_const(t, &v[0], &m), Tol::default()).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn bias_broadcast_over_channels_sums_the_gradient() {
    let x = Tensor::zeros(&[2, 3, 2, 2]).unwrap().tracked();
    let b = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3, 1, 1])
        .unwrap()
        .tracked();
    let mut tape = Tape::new();
    let y = ops::add(&mut tape, &x, &b).unwrap();
    assert_eq!(y.dims(), &[2, 3, 2, 2]);
    assert_eq!(&y.data()[..8], &[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(grads.get(&b).unwrap().data(), &[8.0, 8.0, 8.0]);
}

#[test]
fn shapes_that_do_not_broadcast_are_an_error() {
    let a = Tensor::zeros(&[2, 3]).unwrap();
    let b = Tensor::zeros(&[4]).unwrap();
    let err = ops::add(&mut Tape::new(), &a, &b).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4]"), "{err}");
}

#[test]
fn relu_gradient_at_zero_is_zero_as_pytorch() {
    let x = Tensor::from_vec(vec![-1.0, 0.0, 2.0], &[3])
        .unwrap()
        .tracked();
    let mut tape = Tape::new();
    let y = ops::relu(&mut tape, &x).unwrap();
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    let g = tape.backward(&loss).unwrap();
    assert_eq!(g.get(&x).unwrap().data(), &[0.0, 0.0, 1.0]);
}
