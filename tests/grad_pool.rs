//! maxpool2d: gradient checks over random shapes with distinct values, a
//! naive reference for the forward pass, values worked out by hand, ties and
//! padding as PyTorch, and the errors on bad shapes.

mod common;

use common::{cases, check_gradients, Tol};
use proptest::prelude::*;
use retort::ops::maxpool2d::{maxpool2d, Pool2dSpec};
use retort::{ops, Error, Tape, Tensor};

/// Max pooling straight from the definition (padding is -inf).
fn naive_pool(x: &Tensor, spec: Pool2dSpec) -> Vec<f32> {
    let d = x.dims();
    let (planes, h, w) = (d[0] * d[1], d[2], d[3]);
    let ((kh, kw), (sh, sw), (ph, pw)) = (spec.kernel, spec.stride, spec.padding);
    let ho = (h + 2 * ph - kh) / sh + 1;
    let wo = (w + 2 * pw - kw) / sw + 1;
    let mut out = Vec::new();
    for p in 0..planes {
        for oh in 0..ho {
            for ow in 0..wo {
                let mut best = f32::NEG_INFINITY;
                for ki in 0..kh {
                    for kj in 0..kw {
                        let ih = (oh * sh + ki) as isize - ph as isize;
                        let iw = (ow * sw + kj) as isize - pw as isize;
                        if ih >= 0 && iw >= 0 && ih < h as isize && iw < w as isize {
                            best = best.max(x.data()[(p * h + ih as usize) * w + iw as usize]);
                        }
                    }
                }
                out.push(best);
            }
        }
    }
    out
}

/// A feasible pooling over an input of distinct values 0.1 apart (a random
/// permutation), so no two values in a window come within the
/// finite-difference step of each other.
fn pool_case() -> impl Strategy<Value = (Pool2dSpec, Tensor)> {
    (
        (1..=3usize, 1..=4usize, 1..=7usize, 1..=7usize),
        (
            1..=3usize,
            1..=3usize,
            1..=2usize,
            1..=2usize,
            0..=1usize,
            0..=1usize,
        ),
    )
        .prop_filter(
            "padding at most half the kernel, kernel within the padded input",
            |&((_, _, h, w), (kh, kw, _, _, ph, pw))| {
                ph <= kh / 2 && pw <= kw / 2 && h + 2 * ph >= kh && w + 2 * pw >= kw
            },
        )
        .prop_flat_map(|((n, c, h, w), (kh, kw, sh, sw, ph, pw))| {
            let len = n * c * h * w;
            let spec = Pool2dSpec {
                kernel: (kh, kw),
                stride: (sh, sw),
                padding: (ph, pw),
            };
            (
                Just(spec),
                Just((0..len).collect::<Vec<usize>>())
                    .prop_shuffle()
                    .prop_map(move |perm| {
                        let v = perm
                            .iter()
                            .map(|&p| (p as f32 - len as f32 / 2.0) * 0.1)
                            .collect();
                        Tensor::from_vec(v, &[n, c, h, w]).unwrap()
                    }),
            )
        })
}

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn maxpool2d_gradients_match_finite_differences((spec, x) in pool_case()) {
        let check = check_gradients(&[x], |tape, t| maxpool2d(tape, &t[0], spec), Tol::default());
        prop_assert!(check.is_ok(), "{spec:?}: {}", check.unwrap_err());
    }

    #[test]
    fn maxpool2d_forward_matches_the_definition((spec, x) in pool_case()) {
        let y = maxpool2d(&mut Tape::no_grad(), &x, spec).unwrap();
        prop_assert_eq!(y.data(), &naive_pool(&x, spec)[..]);
    }
}

fn t(values: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_slice(values, dims).unwrap()
}

/// The gradient of sum(maxpool2d(x)) with respect to x.
fn pool_grad(x: &Tensor, spec: Pool2dSpec) -> Vec<f32> {
    let x = x.detach().tracked();
    let mut tape = Tape::new();
    let y = maxpool2d(&mut tape, &x, spec).unwrap();
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    tape.backward(&loss).unwrap().get(&x).unwrap().to_vec()
}

#[rustfmt::skip]
const GRID: [f32; 16] = [
    1.0, 5.0, 2.0, 0.0,
    3.0, 4.0, 8.0, 6.0,
    9.0, 7.0, 1.0, 2.0,
    0.0, 8.0, 3.0, 4.0,
];

#[test]
fn maxpool2d_2x2_by_hand() {
    let x = t(&GRID, &[1, 1, 4, 4]);
    let spec = Pool2dSpec::new((2, 2), (2, 2));
    let y = maxpool2d(&mut Tape::new(), &x, spec).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_eq!(y.data(), &[5.0, 8.0, 9.0, 4.0]);
    #[rustfmt::skip]
    let want = [
        0.0, 1.0, 0.0, 0.0,
        0.0, 0.0, 1.0, 0.0,
        1.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 1.0,
    ];
    assert_eq!(pool_grad(&x, spec), want);
}

#[test]
fn maxpool2d_2x1_halves_the_height_only() {
    let x = t(&GRID, &[1, 1, 4, 4]);
    let spec = Pool2dSpec::new((2, 1), (2, 1));
    let y = maxpool2d(&mut Tape::new(), &x, spec).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 4]);
    assert_eq!(y.data(), &[3.0, 5.0, 8.0, 6.0, 9.0, 8.0, 3.0, 4.0]);
    #[rustfmt::skip]
    let want = [
        0.0, 1.0, 0.0, 0.0,
        1.0, 0.0, 1.0, 1.0,
        1.0, 0.0, 0.0, 0.0,
        0.0, 1.0, 1.0, 1.0,
    ];
    assert_eq!(pool_grad(&x, spec), want);
}

#[test]
fn overlapping_windows_add_their_gradients() {
    // A 2x2 window with stride 1: the 9 at (2, 0) is the maximum of two windows.
    let x = t(&GRID, &[1, 1, 4, 4]);
    let spec = Pool2dSpec::new((2, 2), (1, 1));
    let y = maxpool2d(&mut Tape::new(), &x, spec).unwrap();
    assert_eq!(y.data(), &[5.0, 8.0, 8.0, 9.0, 8.0, 8.0, 9.0, 8.0, 4.0]);
    let g = pool_grad(&x, spec);
    assert_eq!(g[8], 2.0);
    assert_eq!(g[6], 4.0);
    assert_eq!(g.iter().sum::<f32>(), 9.0);
}

#[test]
fn ties_send_the_gradient_to_the_first_maximum() {
    let x = t(&[2.0, 2.0, 2.0, 2.0, 1.0, 3.0, 3.0, 0.0], &[1, 2, 2, 2]);
    let spec = Pool2dSpec::new((2, 2), (2, 2));
    let y = maxpool2d(&mut Tape::new(), &x, spec).unwrap();
    assert_eq!(y.data(), &[2.0, 3.0]);
    assert_eq!(
        pool_grad(&x, spec),
        &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    );
}

#[test]
fn padding_counts_as_minus_infinity() {
    // All values negative: zero padding would win every border window.
    let x = t(&[-4.0, -3.0, -2.0, -1.0], &[1, 1, 2, 2]);
    let spec = Pool2dSpec {
        kernel: (3, 3),
        stride: (1, 1),
        padding: (1, 1),
    };
    let y = maxpool2d(&mut Tape::new(), &x, spec).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_eq!(y.data(), &[-1.0; 4]);
    assert_eq!(pool_grad(&x, spec), &[0.0, 0.0, 0.0, 4.0]);
}

#[test]
fn a_no_grad_tape_keeps_nothing() {
    let x = t(&GRID, &[1, 1, 4, 4]).tracked();
    let mut tape = Tape::no_grad();
    let y = maxpool2d(&mut tape, &x, Pool2dSpec::new((2, 2), (2, 2))).unwrap();
    assert!(!y.is_tracked());
    assert!(tape.is_empty());
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
    let x = Tensor::zeros(&[1, 2, 3, 4]).unwrap();
    // Not 4-D.
    let x3 = Tensor::zeros(&[2, 3, 4]).unwrap();
    let msg = shape_error(maxpool2d(&mut tape, &x3, Pool2dSpec::new((2, 2), (2, 2))));
    assert!(msg.contains("[2, 3, 4]"), "{msg}");
    // Kernel larger than the input.
    let msg = shape_error(maxpool2d(&mut tape, &x, Pool2dSpec::new((4, 2), (1, 1))));
    assert!(
        msg.contains("[1, 2, 3, 4]") && msg.contains("(4, 2)"),
        "{msg}"
    );
    // Zero stride or kernel.
    shape_error(maxpool2d(&mut tape, &x, Pool2dSpec::new((2, 2), (0, 1))));
    shape_error(maxpool2d(&mut tape, &x, Pool2dSpec::new((0, 2), (1, 1))));
    // Padding over half the kernel.
    let spec = Pool2dSpec {
        kernel: (2, 2),
        stride: (1, 1),
        padding: (2, 0),
    };
    shape_error(maxpool2d(&mut tape, &x, spec));
    // Empty planes.
    let x0 = Tensor::zeros(&[1, 2, 0, 4]).unwrap();
    shape_error(maxpool2d(&mut tape, &x0, Pool2dSpec::new((1, 1), (1, 1))));
}
