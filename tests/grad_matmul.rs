//! Gradient checks for matmul (2-D and batched) and linear.

mod common;

use common::{cases, check_gradients, tensor, Tol};
use proptest::prelude::*;
use retort::{ops, Tape, Tensor};

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn matmul_2d_gradients(
        (a, b) in (1usize..6, 1usize..6, 1usize..6)
            .prop_flat_map(|(m, k, n)| (tensor(vec![m, k]), tensor(vec![k, n])))
    ) {
        check_gradients(&[a, b], |t, v| ops::matmul(t, &v[0], &v[1]), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn batched_matmul_gradients(
        (a, b) in (1usize..4, 1usize..5, 1usize..5, 1usize..5)
            .prop_flat_map(|(bt, m, k, n)| (tensor(vec![bt, m, k]), tensor(vec![bt, k, n])))
    ) {
        check_gradients(&[a, b], |t, v| ops::matmul(t, &v[0], &v[1]), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn linear_gradients(
        (x, w, b) in (proptest::collection::vec(1usize..4, 0..3), 1usize..6, 1usize..6)
            .prop_flat_map(|(lead, i, o)| {
                let mut xd = lead;
                xd.push(i);
                (tensor(xd), tensor(vec![o, i]), tensor(vec![o]))
            })
    ) {
        check_gradients(&[x.clone(), w.clone(), b], |t, v| ops::linear(t, &v[0], &v[1], Some(&v[2])), Tol::default())
            .map_err(TestCaseError::fail)?;
        check_gradients(&[x, w], |t, v| ops::linear(t, &v[0], &v[1], None), Tol::default())
            .map_err(TestCaseError::fail)?;
    }
}

#[test]
fn linear_is_x_times_weight_transposed_plus_bias() {
    let x = Tensor::from_vec(vec![1.0, 2.0], &[1, 2]).unwrap();
    let w = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]).unwrap();
    let b = Tensor::from_vec(vec![0.5, 0.5, 0.5], &[3]).unwrap();
    let y = ops::linear(&mut Tape::new(), &x, &w, Some(&b)).unwrap();
    assert_eq!(y.data(), &[1.5, 2.5, 3.5]);
}

#[test]
fn large_linear_matches_a_naive_product() {
    // Large enough that the rows are split across threads.
    let (rows, i, o) = (200, 17, 9);
    let x: Vec<f32> = (0..rows * i).map(|v| ((v * 7) % 13) as f32 - 6.0).collect();
    let w: Vec<f32> = (0..o * i).map(|v| ((v * 5) % 11) as f32 - 5.0).collect();
    let y = ops::linear(
        &mut Tape::new(),
        &Tensor::from_vec(x.clone(), &[rows, i]).unwrap(),
        &Tensor::from_vec(w.clone(), &[o, i]).unwrap(),
        None,
    )
    .unwrap();
    for r in 0..rows {
        for c in 0..o {
            let expect: f32 = (0..i).map(|k| x[r * i + k] * w[c * i + k]).sum();
            assert_eq!(y.data()[r * o + c], expect);
        }
    }
}

#[test]
fn mismatched_products_are_errors() {
    let mut tape = Tape::new();
    let a = Tensor::zeros(&[2, 3]).unwrap();
    assert!(ops::matmul(&mut tape, &a, &Tensor::zeros(&[2, 3]).unwrap()).is_err());
    assert!(ops::linear(&mut tape, &a, &Tensor::zeros(&[4, 2]).unwrap(), None).is_err());
    let w = Tensor::zeros(&[4, 3]).unwrap();
    assert!(ops::linear(&mut tape, &a, &w, Some(&Tensor::zeros(&[3]).unwrap())).is_err());
}
