//! Gradient checks for reductions and layout ops: sum, mean, reshape,
//! permute, concat, slice, flip and the reversal of padded sequences.

mod common;

use common::{cases, check_gradients, tensor, Tol};
use proptest::prelude::*;
use retort::{ops, Tape, Tensor};

fn tensor_and_axes() -> impl Strategy<Value = (Tensor, Vec<usize>, bool)> {
    common::dims(4).prop_flat_map(|d| {
        let rank = d.len();
        (
            tensor(d),
            proptest::sample::subsequence((0..rank).collect::<Vec<_>>(), 0..=rank),
            any::<bool>(),
        )
    })
}

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn sum_and_mean_gradients((x, axes, keep) in tensor_and_axes()) {
        check_gradients(std::slice::from_ref(&x), |t, v| ops::sum(t, &v[0], &axes, keep), Tol::default())
            .map_err(TestCaseError::fail)?;
        check_gradients(&[x], |t, v| ops::mean(t, &v[0], &axes, keep), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn permute_and_reshape_gradients(
        (x, perm) in common::dims(4).prop_flat_map(|d| {
            let r = d.len();
            (tensor(d), Just((0..r).collect::<Vec<_>>()).prop_shuffle())
        })
    ) {
        check_gradients(std::slice::from_ref(&x), |t, v| ops::permute(t, &v[0], &perm), Tol::default())
            .map_err(TestCaseError::fail)?;
        let n = x.numel();
        check_gradients(&[x], |t, v| {
            let flat = ops::reshape(t, &v[0], &[n])?;
            ops::square(t, &flat)
        }, Tol::default()).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn concat_slice_flip_gradients(
        (a, b, axis) in common::dims(3).prop_flat_map(|d| {
            let r = d.len();
            (Just(d), 0..r, 1usize..4)
        }).prop_flat_map(|(d, axis, extra)| {
            let mut d2 = d.clone();
            d2[axis] = extra;
            (tensor(d), tensor(d2), Just(axis))
        })
    ) {
        check_gradients(&[a.clone(), b.clone()], |t, v| {
            let c = ops::concat(t, &[&v[0], &v[1]], axis)?;
            ops::square(t, &c)
        }, Tol::default()).map_err(TestCaseError::fail)?;
        let n = a.dims()[axis];
        check_gradients(std::slice::from_ref(&a), |t, v| ops::slice(t, &v[0], axis, n / 2, n), Tol::default())
            .map_err(TestCaseError::fail)?;
        check_gradients(&[a], |t, v| ops::flip(t, &v[0], axis), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn reverse_sequences_gradients(
        (x, lengths) in (1usize..5, 1usize..4, 1usize..3).prop_flat_map(|(t, n, f)| {
            (tensor(vec![t, n, f]), proptest::collection::vec(0..=t, n))
        })
    ) {
        check_gradients(&[x], |t, v| {
            let r = ops::reverse_sequences(t, &v[0], &lengths)?;
            ops::square(t, &r)
        }, Tol::default()).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn permute_moves_axes_as_pytorch() {
    let x = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
    let y = ops::permute(&mut Tape::new(), &x, &[1, 0]).unwrap();
    assert_eq!(y.dims(), &[3, 2]);
    assert_eq!(y.data(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
}

#[test]
fn reverse_sequences_keeps_padding_in_place() {
    // T = 3, N = 2, F = 1; sample 0 has length 3, sample 1 length 2.
    let x = Tensor::from_vec(vec![1.0, 10.0, 2.0, 20.0, 3.0, 99.0], &[3, 2, 1]).unwrap();
    let y = ops::reverse_sequences(&mut Tape::new(), &x, &[3, 2]).unwrap();
    assert_eq!(y.data(), &[3.0, 20.0, 2.0, 10.0, 1.0, 99.0]);
}

#[test]
fn concat_then_slice_recovers_the_parts() {
    let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let b = Tensor::from_vec(vec![5.0, 6.0], &[2, 1]).unwrap();
    let mut tape = Tape::new();
    let c = ops::concat(&mut tape, &[&a, &b], 1).unwrap();
    assert_eq!(c.data(), &[1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
    let back = ops::slice(&mut tape, &c, 1, 2, 3).unwrap();
    assert_eq!(back.data(), b.data());
}

#[test]
fn bad_layout_arguments_are_errors() {
    let x = Tensor::zeros(&[2, 3]).unwrap();
    let mut tape = Tape::new();
    assert!(ops::permute(&mut tape, &x, &[0, 0]).is_err());
    assert!(ops::reshape(&mut tape, &x, &[4]).is_err());
    assert!(ops::slice(&mut tape, &x, 1, 2, 5).is_err());
    assert!(ops::sum(&mut tape, &x, &[2], false).is_err());
    assert!(ops::sum(&mut tape, &x, &[1, 1], false).is_err());
    assert!(ops::reverse_sequences(&mut tape, &x, &[1, 1]).is_err());
    assert!(Tensor::zeros(&[1, 1, 1, 1, 1]).is_err());
}
