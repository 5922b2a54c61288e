//! conv2d: gradient checks over random shapes, a naive reference for the
//! forward pass, values worked out by hand, the CRNN stage shapes and the
//! errors on bad shapes.

mod common;

use common::{cases, check_gradients, tensor, Tol};
use proptest::prelude::*;
use retort::ops::conv2d::{conv2d, Conv2dSpec};
use retort::ops::maxpool2d::{maxpool2d, Pool2dSpec};
use retort::{ops, Error, Rng, Tape, Tensor};

/// Direct convolution in f64, straight from the definition.
fn naive_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, spec: Conv2dSpec) -> Vec<f64> {
    let (xd, wd) = (x.dims(), w.dims());
    let (n, c, h, wi) = (xd[0], xd[1], xd[2], xd[3]);
    let (o, kh, kw) = (wd[0], wd[2], wd[3]);
    let ((sh, sw), (ph, pw)) = (spec.stride, spec.padding);
    let ho = (h + 2 * ph - kh) / sh + 1;
    let wo = (wi + 2 * pw - kw) / sw + 1;
    let (xv, wv) = (x.data(), w.data());
    let mut out = Vec::with_capacity(n * o * ho * wo);
    for s in 0..n {
        for oc in 0..o {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut acc = b.map_or(0.0, |b| b.data()[oc] as f64);
                    for ic in 0..c {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let ih = (oh * sh + ki) as isize - ph as isize;
                                let iw = (ow * sw + kj) as isize - pw as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wi as isize {
                                    continue;
                                }
                                let xi = ((s * c + ic) * h + ih as usize) * wi + iw as usize;
                                let wi_ = ((oc * c + ic) * kh + ki) * kw + kj;
                                acc += xv[xi] as f64 * wv[wi_] as f64;
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    out
}

/// A feasible convolution: spec, input, weight and bias of random small shapes.
fn conv_case() -> impl Strategy<Value = (Conv2dSpec, Tensor, Tensor, Tensor)> {
    (
        (1..=3usize, 1..=4usize, 1..=7usize, 1..=7usize, 1..=4usize),
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
            "kernel must fit the padded input",
            |&((_, _, h, w, _), (kh, kw, _, _, ph, pw))| h + 2 * ph >= kh && w + 2 * pw >= kw,
        )
        .prop_flat_map(|((n, c, h, w, o), (kh, kw, sh, sw, ph, pw))| {
            (
                Just(Conv2dSpec::new((sh, sw), (ph, pw))),
                tensor(vec![n, c, h, w]),
                tensor(vec![o, c, kh, kw]),
                tensor(vec![o]),
            )
        })
}

/// `y` is the convolution of `x` by `w` plus `b` within the Winograd
/// algorithms' rounding: 1e-5 of the sum of the magnitudes of an output's
/// terms (the convolution of the magnitudes; F(4x4, 3x3) keeps within it,
/// F(2x2) within 8e-6).
fn assert_within_winograd_rounding(
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    spec: Conv2dSpec,
) {
    let abs = |t: &Tensor| {
        Tensor::from_vec(t.data().iter().map(|v| v.abs()).collect(), t.dims()).unwrap()
    };
    let scale = naive_conv(&abs(x), &abs(w), Some(&abs(b)), spec);
    for (i, (&got, want)) in y
        .data()
        .iter()
        .zip(naive_conv(x, w, Some(b), spec))
        .enumerate()
    {
        let err = (got as f64 - want).abs();
        assert!(
            err <= 1e-5 * (1.0 + scale[i]),
            "element {i}: got {got}, want {want}"
        );
    }
}

/// A Winograd-sized convolution: its forward pass within the Winograd
/// rounding ([`assert_within_winograd_rounding`]), then the gradients of
/// the convolution it computes against finite differences. The
/// convolution is linear in each operand, so a large step costs no
/// truncation error, and it keeps the f32 rounding of the ~60K summed
/// outputs (about 4e-3 in a difference quotient over 1e-2) below the
/// tolerance.
fn winograd_conv2d_holds(spec: Conv2dSpec, x: Tensor, w: Tensor, b: Tensor) -> Result<(), String> {
    let y = conv2d(&mut Tape::no_grad(), &x, &w, Some(&b), spec).unwrap();
    assert_within_winograd_rounding(&y, &x, &w, &b, spec);
    check_gradients(
        &[x, w, b],
        |tape, t| conv2d(tape, &t[0], &t[1], Some(&t[2]), spec),
        Tol {
            max_checks: 16,
            step: 0.25,
            ..Tol::default()
        },
    )
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}"
        );
    }
}

proptest! {
    #![proptest_config(cases(24))]

    #[test]
    fn conv2d_gradients_match_finite_differences((spec, x, w, b) in conv_case()) {
        let check = check_gradients(
            &[x, w, b],
            |tape, t| conv2d(tape, &t[0], &t[1], Some(&t[2]), spec),
            Tol::default(),
        );
        prop_assert!(check.is_ok(), "{spec:?}: {}", check.unwrap_err());
    }

    #[test]
    fn conv2d_without_bias_gradients_match((spec, x, w, _b) in conv_case()) {
        let check = check_gradients(
            &[x, w],
            |tape, t| conv2d(tape, &t[0], &t[1], None, spec),
            Tol::default(),
        );
        prop_assert!(check.is_ok(), "{spec:?}: {}", check.unwrap_err());
    }

    #[test]
    fn conv2d_forward_matches_direct_convolution((spec, x, w, b) in conv_case()) {
        let y = conv2d(&mut Tape::no_grad(), &x, &w, Some(&b), spec).unwrap();
        assert_close(y.data(), &naive_conv(&x, &w, Some(&b), spec), 1e-5);
    }
}

/// 3x3 stride-1 convolutions large enough (channels, tiles) for the
/// Winograd path of the CPU engine, where the CPU has AVX-512.
fn winograd_case() -> impl Strategy<Value = (Conv2dSpec, Tensor, Tensor, Tensor)> {
    (
        32..=34usize,
        8..=10usize,
        32..=38usize,
        32..=34usize,
        1..=2usize,
    )
        .prop_flat_map(|(c, h, w, o, pad)| {
            (
                Just(Conv2dSpec::new((1, 1), (pad, pad))),
                tensor(vec![4, c, h, w]),
                tensor(vec![o, c, 3, 3]),
                tensor(vec![o]),
            )
        })
}

/// 3x3 stride-1 padding-1 convolutions in the shapes that Winograd
/// F(4x4, 3x3) takes on an AVX-512 CPU: 1-5 samples, at least 8
/// input channels, output channels a multiple of 16, heights a multiple of
/// 4, rows of 8 tiles (width 32, even rows of tiles) or of 16.
fn winograd4_case() -> impl Strategy<Value = (Conv2dSpec, Tensor, Tensor, Tensor)> {
    (
        1..=5usize,
        8..=20usize,
        prop_oneof![
            Just((8usize, 32usize)),
            Just((16, 32)),
            Just((4, 64)),
            Just((12, 64))
        ],
        1..=2usize,
    )
        .prop_flat_map(|(n, c, (h, w), o16)| {
            (
                Just(Conv2dSpec::new((1, 1), (1, 1))),
                tensor(vec![n, c, h, w]),
                tensor(vec![16 * o16, c, 3, 3]),
                tensor(vec![16 * o16]),
            )
        })
}

proptest! {
    #![proptest_config(cases(4))]

    /// The F(4x4, 3x3) forward pass (up to its rounding) and the gradients
    /// of the convolution it computes (the weight gradient through F(4x4)
    /// too from 512 kernels: 16 or more channels into 32).
    #[test]
    fn winograd4_conv2d_matches_direct_and_finite_differences((spec, x, w, b) in winograd4_case()) {
        let check = winograd_conv2d_holds(spec, x, w, b);
        prop_assert!(check.is_ok(), "{spec:?}: {}", check.unwrap_err());
    }
}

proptest! {
    #![proptest_config(cases(3))]

    /// The Winograd forward pass, input gradient and weight gradient: the
    /// convolution up to rounding, and gradients that match finite
    /// differences.
    #[test]
    fn winograd_sized_conv2d_matches_direct_and_finite_differences((spec, x, w, b) in winograd_case()) {
        // F(2x2), or F(4x4) where it applies (32 outputs, rows of 8 tiles).
        let check = winograd_conv2d_holds(spec, x, w, b);
        prop_assert!(check.is_ok(), "{spec:?}: {}", check.unwrap_err());
    }
}

proptest! {
    #![proptest_config(cases(12))]

    /// A 1x1 conv with stride 1 and no padding skips im2col: check it on its own.
    #[test]
    fn pointwise_conv2d_gradients_match(
        (x, w, b) in (1..=3usize, 1..=4usize, 1..=5usize, 1..=5usize, 1..=4usize)
            .prop_flat_map(|(n, c, h, wd, o)| (
                tensor(vec![n, c, h, wd]),
                tensor(vec![o, c, 1, 1]),
                tensor(vec![o]),
            ))
    ) {
        let spec = Conv2dSpec::default();
        let y = conv2d(&mut Tape::no_grad(), &x, &w, Some(&b), spec).unwrap();
        assert_close(y.data(), &naive_conv(&x, &w, Some(&b), spec), 1e-5);
        let check = check_gradients(
            &[x, w, b],
            |tape, t| conv2d(tape, &t[0], &t[1], Some(&t[2]), spec),
            Tol::default(),
        );
        prop_assert!(check.is_ok(), "{}", check.unwrap_err());
    }
}

fn t(values: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_slice(values, dims).unwrap()
}

fn iota(n: usize) -> Vec<f32> {
    (1..=n).map(|v| v as f32).collect()
}

#[test]
fn conv2d_of_a_tiny_input_matches_hand_computed_values() {
    // y[i][j] = x[i][j] - x[i+1][j+1] + 0.5, and x[i][j] = 3i + j + 1.
    let x = t(&iota(9), &[1, 1, 3, 3]);
    let w = t(&[1.0, 0.0, 0.0, -1.0], &[1, 1, 2, 2]);
    let b = t(&[0.5], &[1]);
    let y = conv2d(&mut Tape::new(), &x, &w, Some(&b), Conv2dSpec::default()).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_eq!(y.data(), &[-3.5; 4]);
}

#[test]
fn conv2d_with_padding_and_stride_matches_hand_computed_values() {
    // A 3x3 box sum with padding 1 and stride 2 over 1..9 samples the four corners.
    let x = t(&iota(9), &[1, 1, 3, 3]);
    let w = t(&[1.0; 9], &[1, 1, 3, 3]);
    let y = conv2d(
        &mut Tape::new(),
        &x,
        &w,
        None,
        Conv2dSpec::new((2, 2), (1, 1)),
    )
    .unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_eq!(y.data(), &[12.0, 16.0, 24.0, 28.0]);
}

#[test]
fn pointwise_conv2d_mixes_channels_by_hand() {
    // out0 = in0 + in1, out1 = 2 in0 - in1 + 1.
    let x = t(&iota(8), &[1, 2, 2, 2]);
    let w = t(&[1.0, 1.0, 2.0, -1.0], &[2, 2, 1, 1]);
    let b = t(&[0.0, 1.0], &[2]);
    let y = conv2d(&mut Tape::new(), &x, &w, Some(&b), Conv2dSpec::default()).unwrap();
    assert_eq!(y.dims(), &[1, 2, 2, 2]);
    assert_eq!(y.data(), &[6.0, 8.0, 10.0, 12.0, -2.0, -1.0, 0.0, 1.0]);
}

#[test]
fn conv2d_gradients_by_hand() {
    // Loss = sum(y) for a 2x2 kernel over a 3x3 input: dW[k] is the sum of the
    // inputs that kernel tap k sees, dX[p] counts the taps covering p times the
    // weights, db counts the outputs.
    let x = t(&iota(9), &[1, 1, 3, 3]).tracked();
    let w = t(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]).tracked();
    let b = t(&[0.0], &[1]).tracked();
    let mut tape = Tape::new();
    let y = conv2d(&mut tape, &x, &w, Some(&b), Conv2dSpec::default()).unwrap();
    let loss = ops::sum_all(&mut tape, &y).unwrap();
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(grads.get(&w).unwrap().data(), &[12.0, 16.0, 24.0, 28.0]);
    assert_eq!(
        grads.get(&x).unwrap().data(),
        &[1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]
    );
    assert_eq!(grads.get(&b).unwrap().data(), &[4.0]);
}

/// Runs the four convolution stages of a CRNN on a (n, 1, 32, 128) batch and
/// returns the shape after each stage.
fn crnn_stage_shapes(n: usize, widths: [usize; 4]) -> Vec<Vec<usize>> {
    let mut tape = Tape::no_grad();
    let mut x = Tensor::zeros(&[n, 1, 32, 128]).unwrap();
    let pools = [
        Some(Pool2dSpec::new((2, 2), (2, 2))),
        Some(Pool2dSpec::new((2, 2), (2, 2))),
        None,
        Some(Pool2dSpec::new((2, 1), (2, 1))),
    ];
    let mut shapes = Vec::new();
    let mut c_in = 1;
    for (&c_out, pool) in widths.iter().zip(pools) {
        let w = Tensor::full(&[c_out, c_in, 3, 3], 0.01).unwrap();
        x = conv2d(&mut tape, &x, &w, None, Conv2dSpec::new((1, 1), (1, 1))).unwrap();
        if let Some(p) = pool {
            x = maxpool2d(&mut tape, &x, p).unwrap();
        }
        shapes.push(x.dims().to_vec());
        c_in = c_out;
    }
    shapes
}

#[test]
fn crnn_t_stages_have_the_reference_shapes() {
    assert_eq!(
        crnn_stage_shapes(2, [32, 64, 128, 128]),
        vec![
            vec![2, 32, 16, 64],
            vec![2, 64, 8, 32],
            vec![2, 128, 8, 32],
            vec![2, 128, 4, 32],
        ]
    );
}

#[test]
fn crnn_s_stages_have_the_reference_shapes() {
    assert_eq!(
        crnn_stage_shapes(1, [8, 16, 32, 32]),
        vec![
            vec![1, 8, 16, 64],
            vec![1, 16, 8, 32],
            vec![1, 32, 8, 32],
            vec![1, 32, 4, 32],
        ]
    );
}

fn random(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.range(-1.0, 1.0)).collect(), dims).unwrap()
}

fn weight_grad(x: &Tensor, w: &Tensor, dy: &Tensor, spec: Conv2dSpec) -> (Vec<f32>, Vec<f32>) {
    let (x, w) = (x.detach().tracked(), w.detach().tracked());
    let mut tape = Tape::new();
    let y = conv2d(&mut tape, &x, &w, None, spec).unwrap();
    let weighted = ops::mul(&mut tape, &y, dy).unwrap();
    let loss = ops::sum_all(&mut tape, &weighted).unwrap();
    let grads = tape.backward(&loss).unwrap();
    (
        grads.get(&w).unwrap().to_vec(),
        grads.get(&x).unwrap().to_vec(),
    )
}

#[test]
fn weight_gradient_over_a_large_batch_is_exact_and_deterministic() {
    // 37 samples: the weight gradient is summed over several chunks of the batch.
    let mut rng = Rng::seed(7);
    let spec = Conv2dSpec::new((2, 1), (1, 0));
    let (n, c, h, wd, o) = (37, 3, 6, 5, 4);
    let x = random(&mut rng, &[n, c, h, wd]);
    let w = random(&mut rng, &[o, c, 3, 2]);
    let probe = conv2d(&mut Tape::no_grad(), &x, &w, None, spec).unwrap();
    let dy = random(&mut rng, probe.dims());
    let (dw, _) = weight_grad(&x, &w, &dy, spec);
    // dW[oc, ic, ki, kj] = Σ dy[s, oc, oh, ow] * x[s, ic, oh*2 + ki - 1, ow + kj].
    let (ho, wo) = (probe.dims()[2], probe.dims()[3]);
    let mut want = vec![0.0f64; o * c * 3 * 2];
    for s in 0..n {
        for oc in 0..o {
            for ic in 0..c {
                for ki in 0..3 {
                    for kj in 0..2 {
                        for oh in 0..ho {
                            for ow in 0..wo {
                                let ih = (oh * 2 + ki) as isize - 1;
                                let iw = ow + kj;
                                if ih < 0 || ih >= h as isize || iw >= wd {
                                    continue;
                                }
                                let xv = x.data()[((s * c + ic) * h + ih as usize) * wd + iw];
                                let g = dy.data()[((s * o + oc) * ho + oh) * wo + ow];
                                want[((oc * c + ic) * 3 + ki) * 2 + kj] += xv as f64 * g as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_close(&dw, &want, 1e-4);
    let (dw2, _) = weight_grad(&x, &w, &dy, spec);
    assert_eq!(
        dw.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        dw2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "two runs must give bit-identical weight gradients"
    );
}

#[test]
fn only_the_tracked_operands_get_gradients() {
    let mut rng = Rng::seed(3);
    let x = random(&mut rng, &[2, 2, 4, 4]);
    let w = random(&mut rng, &[3, 2, 3, 3]);
    for pointwise in [false, true] {
        let w = if pointwise {
            random(&mut rng, &[3, 2, 1, 1])
        } else {
            w.clone()
        };
        // Only the weight is tracked: its gradient needs the saved im2col (or the input).
        let wt = w.detach().tracked();
        let mut tape = Tape::new();
        let y = conv2d(&mut tape, &x, &wt, None, Conv2dSpec::default()).unwrap();
        let loss = ops::sum_all(&mut tape, &y).unwrap();
        let grads = tape.backward(&loss).unwrap();
        assert_eq!(grads.get(&wt).unwrap().dims(), w.dims());
        assert!(grads.get(&x).is_none());
        // Only the input is tracked.
        let xt = x.detach().tracked();
        let mut tape = Tape::new();
        let y = conv2d(&mut tape, &xt, &w, None, Conv2dSpec::default()).unwrap();
        let loss = ops::sum_all(&mut tape, &y).unwrap();
        let grads = tape.backward(&loss).unwrap();
        assert_eq!(grads.get(&xt).unwrap().dims(), x.dims());
    }
    // A no-grad tape records nothing.
    let mut tape = Tape::no_grad();
    let y = conv2d(
        &mut tape,
        &x.tracked(),
        &w.tracked(),
        None,
        Conv2dSpec::default(),
    )
    .unwrap();
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
    let x = Tensor::zeros(&[1, 2, 4, 4]).unwrap();
    let w = Tensor::zeros(&[3, 2, 3, 3]).unwrap();
    let d = Conv2dSpec::default();
    // Channel mismatch.
    let w1 = Tensor::zeros(&[3, 1, 3, 3]).unwrap();
    let msg = shape_error(conv2d(&mut tape, &x, &w1, None, d));
    assert!(
        msg.contains("[1, 2, 4, 4]") && msg.contains("[3, 1, 3, 3]"),
        "{msg}"
    );
    // Input not 4-D.
    let x3 = Tensor::zeros(&[2, 4, 4]).unwrap();
    let msg = shape_error(conv2d(&mut tape, &x3, &w, None, d));
    assert!(msg.contains("[2, 4, 4]"), "{msg}");
    // Weight not 4-D.
    let w3 = Tensor::zeros(&[3, 2, 3]).unwrap();
    shape_error(conv2d(&mut tape, &x, &w3, None, d));
    // Bias of the wrong length.
    let b = Tensor::zeros(&[2]).unwrap();
    let msg = shape_error(conv2d(&mut tape, &x, &w, Some(&b), d));
    assert!(msg.contains("[2]"), "{msg}");
    // Zero stride.
    shape_error(conv2d(
        &mut tape,
        &x,
        &w,
        None,
        Conv2dSpec::new((0, 1), (0, 0)),
    ));
    shape_error(conv2d(
        &mut tape,
        &x,
        &w,
        None,
        Conv2dSpec::new((1, 0), (0, 0)),
    ));
    // Kernel larger than the padded input.
    let w5 = Tensor::zeros(&[3, 2, 7, 3]).unwrap();
    let msg = shape_error(conv2d(
        &mut tape,
        &x,
        &w5,
        None,
        Conv2dSpec::new((1, 1), (1, 1)),
    ));
    assert!(
        msg.contains("[3, 2, 7, 3]") && msg.contains("[1, 2, 4, 4]"),
        "{msg}"
    );
    // Zero channels.
    let x0 = Tensor::zeros(&[1, 0, 4, 4]).unwrap();
    let w0 = Tensor::zeros(&[3, 0, 3, 3]).unwrap();
    shape_error(conv2d(&mut tape, &x0, &w0, None, d));
}
