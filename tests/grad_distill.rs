//! Gradient checks and spec tests for the distillation losses in
//! `retort::distill`: soft and sequence-level KD, FitNets hints with their
//! adaptors, attention transfer, FSP, similarity preserving, MK-MMD and CORAL.

mod common;

use common::{away_from_zero, cases, check_gradients, tensor, Tol};
use proptest::prelude::*;
use retort::distill::{self, Adaptor};
use retort::{Rng, Tape, Tensor};

fn no_grad() -> Tape {
    Tape::no_grad()
}

fn value(r: retort::Result<Tensor>) -> f32 {
    r.expect("loss").item().expect("scalar")
}

fn random(dims: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::seed(seed);
    let n: usize = dims.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.range(-2.0, 2.0)).collect(), dims).unwrap()
}

/// (T, N, K) logits for student and teacher and lengths <= T, at least one real frame.
fn kd_case() -> impl Strategy<Value = (Tensor, Tensor, Vec<usize>)> {
    (1usize..4, 1usize..4, 2usize..5).prop_flat_map(|(t, n, k)| {
        (
            tensor(vec![t, n, k]),
            tensor(vec![t, n, k]),
            proptest::collection::vec(0..=t, n),
        )
            .prop_map(move |(s, te, mut lengths)| {
                if lengths.iter().all(|&l| l == 0) {
                    lengths[0] = t;
                }
                (s, te, lengths)
            })
    })
}

/// Student (Ts, N, K) and teacher (Tt, N, K) logits with lengths in 1..=T.
fn seq_kd_case() -> impl Strategy<Value = (Tensor, Tensor, Vec<usize>, Vec<usize>)> {
    (1usize..4, 1usize..4, 1usize..3, 2usize..5).prop_flat_map(|(ts, tt, n, k)| {
        (
            tensor(vec![ts, n, k]),
            tensor(vec![tt, n, k]),
            proptest::collection::vec(1..=ts, n),
            proptest::collection::vec(1..=tt, n),
        )
    })
}

/// A finite-difference check of the adaptor's parameters for the hint loss.
fn check_adaptor_params(
    adaptor: &Adaptor,
    student: &Tensor,
    teacher: &Tensor,
) -> Result<(), String> {
    let mut tape = Tape::new();
    let loss =
        distill::hint_loss(&mut tape, adaptor, student, teacher).map_err(|e| e.to_string())?;
    let grads = tape.backward(&loss).map_err(|e| e.to_string())?;
    let tol = Tol::default();
    for (pi, (name, param)) in adaptor.params().into_iter().enumerate() {
        let analytic = param
            .grad(&grads)
            .ok_or_else(|| format!("no gradient for {name}"))?
            .to_vec();
        for (j, &a) in analytic.iter().enumerate() {
            let eval = |delta: f32| -> Result<f64, String> {
                let mut moved = adaptor.clone();
                let mut params = moved.params_mut();
                params[pi].1.values_mut()[j] += delta;
                drop(params);
                let l = distill::hint_loss(&mut no_grad(), &moved, student, teacher)
                    .map_err(|e| e.to_string())?;
                Ok(l.item().map_err(|e| e.to_string())? as f64)
            };
            let numeric = (eval(tol.step as f32)? - eval(-tol.step as f32)?) / (2.0 * tol.step);
            let a = a as f64;
            let bound = tol.atol + tol.rtol * a.abs().max(numeric.abs());
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            let bad = !((a - numeric).abs() <= bound);
            if bad {
                return Err(format!(
                    "{name}[{j}]: analytic {a:.6} vs numeric {numeric:.6}"
                ));
            }
        }
    }
    Ok(())
}

// The normalising losses (attention transfer, similarity preserving) divide
// by a row norm; their features are drawn away from zero so that no row is so
// small that a finite-difference step of 1e-2 leaves the linear regime.
proptest! {
    #![proptest_config(cases(12))]

    #[test]
    fn soft_kd_gradients_to_student_and_teacher((s, t, lengths) in kd_case(), temp in 0.5f32..4.0) {
        check_gradients(&[s, t], |tape, v| distill::soft_kd(tape, &v[0], &v[1], &lengths, temp), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn sequence_kd_gradients_to_student_and_teacher((s, t, ls, lt) in seq_kd_case(), temp in 0.5f32..4.0) {
        check_gradients(&[s, t], |tape, v| distill::sequence_kd(tape, &v[0], &v[1], &ls, &lt, temp), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn map_hint_gradients_to_student_and_adaptor(
        (s, t) in (1usize..3, 1usize..4, 1usize..4, 1usize..3, 1usize..4).prop_flat_map(|(n, cs, ct, h, w)| {
            (tensor(vec![n, cs, h, w]), tensor(vec![n, ct, h, w]))
        }),
        seed in any::<u64>(),
    ) {
        let adaptor = Adaptor::for_map(s.dims()[1], t.dims()[1], &mut Rng::seed(seed)).unwrap();
        check_gradients(&[s.clone(), t.clone()], |tape, v| distill::hint_loss(tape, &adaptor, &v[0], &v[1]), Tol::default())
            .map_err(TestCaseError::fail)?;
        check_adaptor_params(&adaptor, &s, &t).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn sequence_hint_gradients_to_student_and_adaptor(
        (s, t) in (1usize..4, 1usize..3, 1usize..4, 1usize..4).prop_flat_map(|(len, n, fs, ft)| {
            (tensor(vec![len, n, fs]), tensor(vec![len, n, ft]))
        }),
        seed in any::<u64>(),
    ) {
        let adaptor = Adaptor::for_sequence(s.dims()[2], t.dims()[2], &mut Rng::seed(seed)).unwrap();
        check_gradients(&[s.clone(), t.clone()], |tape, v| distill::hint_loss(tape, &adaptor, &v[0], &v[1]), Tol::default())
            .map_err(TestCaseError::fail)?;
        check_adaptor_params(&adaptor, &s, &t).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn attention_transfer_gradients(
        (s, t) in (1usize..3, 1usize..4, 1usize..4, 1usize..3, 2usize..4).prop_flat_map(|(n, cs, ct, h, w)| {
            (away_from_zero(vec![n, cs, h, w], 0.5), away_from_zero(vec![n, ct, h, w], 0.5))
        }),
    ) {
        check_gradients(&[s, t], |tape, v| distill::attention_transfer(tape, &v[0], &v[1], 2.0), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn fsp_gradients(
        (s1, s2, t1, t2) in (1usize..3, 1usize..4, 1usize..4, 1usize..3, 1usize..4, 1usize..3, 1usize..3)
            .prop_flat_map(|(n, c1, c2, h, w, ht, wt)| {
                (tensor(vec![n, c1, h, w]), tensor(vec![n, c2, h, w]), tensor(vec![n, c1, ht, wt]), tensor(vec![n, c2, ht, wt]))
            }),
    ) {
        check_gradients(&[s1, s2, t1, t2], |tape, v| distill::fsp_loss(tape, (&v[0], &v[1]), (&v[2], &v[3])), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn similarity_preserving_gradients(
        (s, t) in (2usize..4, 1usize..3, 1usize..4, 1usize..3, 1usize..3).prop_flat_map(|(n, cs, ct, h, len)| {
            (away_from_zero(vec![n, cs, h, 2], 0.5), away_from_zero(vec![len, n, ct], 0.5))
        }),
    ) {
        check_gradients(&[s, t], |tape, v| distill::similarity_preserving(tape, &v[0], &v[1]), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mk_mmd_gradients_to_both_domains(
        (s, t) in (1usize..4, 1usize..4, 1usize..4).prop_flat_map(|(b, b2, d)| (tensor(vec![b, d]), tensor(vec![b2, d]))),
        kernels in 1usize..6,
        base in 1.0f32..4.0,
    ) {
        // The base bandwidth is a constant of the loss (mk_mmd detaches it), so
        // the check holds it fixed. It is drawn rather than taken from the data:
        // a data-derived base can be tiny for close points, and then the
        // narrowest kernel bends faster than a finite-difference step of 1e-2
        // resolves (the analytic gradient is right there, central differences
        // are not).
        check_gradients(&[s, t], |tape, v| distill::mk_mmd_with_bandwidth(tape, &v[0], &v[1], kernels, base), Tol::default())
            .map_err(TestCaseError::fail)?;
    }

    #[test]
    fn coral_gradients_to_both_domains(
        (s, t) in (2usize..5, 2usize..5, 1usize..4).prop_flat_map(|(b, b2, d)| (tensor(vec![b, d]), tensor(vec![b2, d]))),
    ) {
        check_gradients(&[s, t], |tape, v| distill::coral(tape, &v[0], &v[1]), Tol::default())
            .map_err(TestCaseError::fail)?;
    }
}

#[test]
fn every_loss_is_zero_for_equal_inputs_and_positive_otherwise() {
    let mut tape = no_grad();
    let tape = &mut tape;
    let (a, b) = (random(&[3, 2, 5], 1), random(&[3, 2, 5], 2));
    let lengths = [3, 2];
    assert!(value(distill::soft_kd(tape, &a, &a, &lengths, 2.0)).abs() < 1e-6);
    assert!(value(distill::soft_kd(tape, &a, &b, &lengths, 2.0)) > 1e-4);
    let a2 = random(&[4, 2, 5], 3);
    assert!(value(distill::sequence_kd(tape, &a, &a, &lengths, &lengths, 2.0)).abs() < 1e-6);
    assert!(value(distill::sequence_kd(tape, &a, &a2, &lengths, &[4, 1], 2.0)) > 1e-6);

    let (m, n) = (random(&[2, 3, 4, 5], 4), random(&[2, 3, 4, 5], 5));
    assert!(value(distill::attention_transfer(tape, &m, &m, 2.0)).abs() < 1e-6);
    assert!(value(distill::attention_transfer(tape, &m, &n, 2.0)) > 1e-6);
    let (m2, n2) = (random(&[2, 6, 4, 5], 6), random(&[2, 6, 4, 5], 7));
    assert!(value(distill::fsp_loss(tape, (&m, &m2), (&m, &m2))).abs() < 1e-6);
    assert!(value(distill::fsp_loss(tape, (&m, &m2), (&n, &n2))) > 1e-6);
    assert!(value(distill::similarity_preserving(tape, &m, &m)).abs() < 1e-6);
    assert!(value(distill::similarity_preserving(tape, &m, &n)) > 1e-6);

    let (x, y) = (random(&[6, 4], 8), random(&[5, 4], 9));
    let y_shifted = Tensor::from_vec(y.data().iter().map(|v| v + 1.0).collect(), &[5, 4]).unwrap();
    assert!(value(distill::mk_mmd(tape, &x, &x, 5)).abs() < 1e-6);
    assert!(value(distill::mk_mmd(tape, &x, &y_shifted, 5)) > 1e-3);
    assert!(value(distill::coral(tape, &x, &x)).abs() < 1e-6);
    assert!(value(distill::coral(tape, &x, &y)) > 1e-6);
}

#[test]
fn soft_kd_ignores_padded_frames() {
    let (s, t) = (random(&[4, 2, 3], 10), random(&[4, 2, 3], 11));
    let lengths = [2, 3];
    let base = value(distill::soft_kd(&mut no_grad(), &s, &t, &lengths, 2.0));
    let mut s2 = s.to_vec();
    let mut t2 = t.to_vec();
    for (ti, ni) in [(2, 0), (3, 0), (3, 1)] {
        for k in 0..3 {
            let i = (ti * 2 + ni) * 3 + k;
            s2[i] = 50.0 * (k as f32 - 1.0);
            t2[i] = -7.0 * k as f32;
        }
    }
    let (s2, t2) = (
        Tensor::from_vec(s2, &[4, 2, 3]).unwrap(),
        Tensor::from_vec(t2, &[4, 2, 3]).unwrap(),
    );
    let changed = value(distill::soft_kd(&mut no_grad(), &s2, &t2, &lengths, 2.0));
    assert_eq!(base, changed);
    // And no gradient reaches a padded frame.
    let st = s.detach().tracked();
    let mut tape = Tape::new();
    let loss = distill::soft_kd(&mut tape, &st, &t, &lengths, 2.0).unwrap();
    let g = tape.backward(&loss).unwrap();
    let g = g.get(&st).unwrap().to_vec();
    assert!(g[(3 * 2 + 1) * 3..].iter().all(|&v| v == 0.0));
    assert!(g[..3].iter().any(|&v| v != 0.0));
}

#[test]
fn soft_kd_matches_the_hand_value_and_scales_with_t_squared() {
    // One frame, two classes: student logits [0, 0], teacher [0, ln 3 · T].
    // softmax(teacher / T) = [1/4, 3/4], softmax(student / T) = [1/2, 1/2];
    // KL = 1/4 ln(1/2) + 3/4 ln(3/2), and the loss is KL · T².
    let kl = 0.25 * 0.5f32.ln() + 0.75 * 1.5f32.ln();
    for temp in [1.0f32, 2.0, 4.0] {
        let s = Tensor::from_vec(vec![0.0, 0.0], &[1, 1, 2]).unwrap();
        let t = Tensor::from_vec(vec![0.0, 3f32.ln() * temp], &[1, 1, 2]).unwrap();
        let loss = value(distill::soft_kd(&mut no_grad(), &s, &t, &[1], temp));
        assert!(
            (loss - kl * temp * temp).abs() < 1e-5,
            "T = {temp}: {loss} vs {}",
            kl * temp * temp
        );
    }
    // Sequence-level KD of one frame is the frame-level loss.
    let s = random(&[1, 2, 4], 12);
    let t = random(&[1, 2, 4], 13);
    let frame = value(distill::soft_kd(&mut no_grad(), &s, &t, &[1, 1], 3.0));
    let seq = value(distill::sequence_kd(
        &mut no_grad(),
        &s,
        &t,
        &[1, 1],
        &[1, 1],
        3.0,
    ));
    assert!((frame - seq).abs() < 1e-5);
}

#[test]
fn adaptors_map_crnn_s_widths_to_crnn_t() {
    let mut rng = Rng::seed(7);
    let b4 = Adaptor::for_map(32, 128, &mut rng).unwrap();
    let params: Vec<(String, Vec<usize>)> = b4
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.dims().to_vec()))
        .collect();
    assert_eq!(
        params,
        vec![
            ("weight".into(), vec![128, 32, 1, 1]),
            ("bias".into(), vec![128])
        ]
    );
    let y = b4
        .forward(&mut no_grad(), &random(&[2, 32, 1, 6], 14))
        .unwrap();
    assert_eq!(y.dims(), &[2, 128, 1, 6]);

    let rnn = Adaptor::for_sequence(96, 256, &mut rng).unwrap();
    let params: Vec<(String, Vec<usize>)> = rnn
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.dims().to_vec()))
        .collect();
    assert_eq!(
        params,
        vec![("weight".into(), vec![256, 96]), ("bias".into(), vec![256])]
    );
    let y = rnn
        .forward(&mut no_grad(), &random(&[5, 2, 96], 15))
        .unwrap();
    assert_eq!(y.dims(), &[5, 2, 256]);
    let loss = distill::hint_loss(
        &mut no_grad(),
        &rnn,
        &random(&[5, 2, 96], 16),
        &random(&[5, 2, 256], 17),
    );
    assert!(value(loss) > 0.0);

    // Mismatched spatial sizes: an error naming both shapes.
    let err = distill::hint_loss(
        &mut no_grad(),
        &b4,
        &random(&[2, 32, 1, 6], 18),
        &random(&[2, 128, 1, 5], 19),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("[2, 32, 1, 6]") && err.contains("[2, 128, 1, 5]"),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let mut t = no_grad();
    let t = &mut t;
    let a = random(&[3, 2, 5], 20);
    let empty = Tensor::zeros(&[3, 0, 5]).unwrap();
    assert!(distill::soft_kd(t, &a, &a, &[3, 3], 0.0).is_err());
    assert!(distill::soft_kd(t, &a, &a, &[3, 3], -1.0).is_err());
    assert!(distill::soft_kd(t, &a, &a, &[3, 3], f32::NAN).is_err());
    assert!(distill::soft_kd(t, &a, &a, &[3], 1.0).is_err());
    assert!(distill::soft_kd(t, &a, &a, &[4, 1], 1.0).is_err());
    assert!(distill::soft_kd(t, &a, &a, &[0, 0], 1.0).is_err());
    assert!(distill::soft_kd(t, &a, &random(&[3, 2, 4], 21), &[3, 3], 1.0).is_err());
    assert!(distill::soft_kd(t, &empty, &empty, &[], 1.0).is_err());
    assert!(distill::sequence_kd(t, &a, &a, &[3, 0], &[3, 3], 1.0).is_err());
    assert!(distill::sequence_kd(t, &a, &random(&[3, 1, 5], 22), &[3, 3], &[3], 1.0).is_err());
    assert!(distill::sequence_kd(t, &a, &a, &[3, 3], &[3, 3], 0.0).is_err());
    assert!(distill::sequence_kd(t, &empty, &empty, &[], &[], 1.0).is_err());

    let m = random(&[2, 3, 4, 5], 23);
    let other = random(&[2, 3, 4, 4], 24);
    assert!(distill::attention_transfer(t, &m, &other, 2.0).is_err());
    assert!(distill::attention_transfer(t, &m, &m, 0.0).is_err());
    assert!(distill::attention_transfer(
        t,
        &Tensor::zeros(&[0, 3, 4, 5]).unwrap(),
        &Tensor::zeros(&[0, 3, 4, 5]).unwrap(),
        2.0
    )
    .is_err());
    assert!(distill::fsp_matrix(t, &m, &other).is_err());
    assert!(distill::fsp_loss(t, (&m, &m), (&random(&[2, 4, 4, 5], 25), &m)).is_err());
    assert!(distill::similarity_preserving(t, &m, &random(&[3, 3, 4, 5], 26)).is_err());
    assert!(distill::similarity_preserving(
        t,
        &Tensor::zeros(&[0, 4]).unwrap(),
        &Tensor::zeros(&[0, 4]).unwrap()
    )
    .is_err());

    let (x, y) = (random(&[4, 3], 27), random(&[4, 2], 28));
    assert!(distill::mk_mmd(t, &x, &y, 3).is_err());
    assert!(distill::mk_mmd(t, &x, &x, 0).is_err());
    assert!(distill::mk_mmd(t, &Tensor::zeros(&[0, 3]).unwrap(), &x, 3).is_err());
    assert!(distill::coral(t, &x, &y).is_err());
    assert!(distill::coral(t, &random(&[1, 3], 29), &x).is_err());

    let mut rng = Rng::seed(1);
    assert!(Adaptor::for_map(0, 4, &mut rng).is_err());
    let seq = Adaptor::for_sequence(3, 4, &mut rng).unwrap();
    assert!(seq.forward(t, &m).is_err());
    assert!(distill::hint_loss(t, &seq, &random(&[2, 1, 3], 30), &random(&[3, 1, 4], 31)).is_err());
}

#[test]
fn mk_mmd_uses_the_mean_pairwise_distance_as_base_bandwidth() {
    let (x, y) = (random(&[4, 3], 32), random(&[3, 3], 33));
    let base = distill::mean_pairwise_sq_distance(&x, &y).unwrap();
    let a = value(distill::mk_mmd(&mut no_grad(), &x, &y, 5));
    let b = value(distill::mk_mmd_with_bandwidth(
        &mut no_grad(),
        &x,
        &y,
        5,
        base,
    ));
    assert_eq!(a, b);
    // One Gaussian kernel at bandwidth 1 between two single points: 2 − 2·exp(−‖x − y‖²).
    let p = Tensor::from_vec(vec![0.0, 0.0], &[1, 2]).unwrap();
    let q = Tensor::from_vec(vec![1.0, 1.0], &[1, 2]).unwrap();
    let v = value(distill::mk_mmd_with_bandwidth(
        &mut no_grad(),
        &p,
        &q,
        1,
        1.0,
    ));
    assert!((v - (2.0 - 2.0 * (-2.0f32).exp())).abs() < 1e-6);
}

#[test]
fn coral_matches_the_formula_for_a_small_case() {
    // Source rows (0,0), (2,0): covariance [[2, 0], [0, 0]]; target rows
    // (0,0), (0,2): [[0, 0], [0, 2]]. ‖ΔC‖²_F = 8, d = 2: 8 / 16 = 0.5.
    let s = Tensor::from_vec(vec![0.0, 0.0, 2.0, 0.0], &[2, 2]).unwrap();
    let t = Tensor::from_vec(vec![0.0, 0.0, 0.0, 2.0], &[2, 2]).unwrap();
    assert!((value(distill::coral(&mut no_grad(), &s, &t)) - 0.5).abs() < 1e-6);
}

/// (T, N, K) logits whose values are all at least 0.1 apart (ranks spaced by
/// 0.3, jitter below ±0.1), so that no finite-difference step of 1e-2
/// changes a frame's ranking; lengths <= T with at least one real frame; and
/// k in 1..K.
fn tolerant_case() -> impl Strategy<Value = (Tensor, Vec<usize>, usize)> {
    (1usize..4, 1usize..4, 2usize..7).prop_flat_map(|(t, n, k)| {
        (
            tensor(vec![t, n, k]),
            proptest::collection::vec(0..=t, n),
            1..k,
        )
            .prop_map(move |(x, mut lengths, secondary)| {
                if lengths.iter().all(|&l| l == 0) {
                    lengths[0] = t;
                }
                let v = x.data();
                let mut order: Vec<usize> = (0..v.len()).collect();
                order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
                let mut spaced = vec![0.0f32; v.len()];
                for (rank, &i) in order.iter().enumerate() {
                    spaced[i] = 0.3 * rank as f32 - 2.0 + 0.05 * v[i];
                }
                let x = Tensor::from_vec(spaced, x.dims()).unwrap();
                (x, lengths, secondary)
            })
    })
}

proptest! {
    #![proptest_config(cases(16))]

    #[test]
    fn tolerant_gap_gradients((x, lengths, secondary) in tolerant_case()) {
        check_gradients(&[x], |tape, v| distill::tolerant_gap(tape, &v[0], &lengths, secondary), Tol::default())
            .map_err(TestCaseError::fail)?;
    }
}

#[test]
fn tolerant_gap_matches_the_hand_value() {
    // One frame [1, 5, 3, 4, 0]: top 5, then 4, 3, 1, 0.
    let x = Tensor::from_vec(vec![1.0, 5.0, 3.0, 4.0, 0.0], &[1, 1, 5]).unwrap();
    for (k, want) in [(1, 5.0 - 4.0), (2, 5.0 - 3.5), (4, 5.0 - 2.0)] {
        let got = value(distill::tolerant_gap(&mut no_grad(), &x, &[1], k));
        assert!((got - want).abs() < 1e-6, "k = {k}: {got} vs {want}");
    }

    // T = 2, N = 2, K = 3, lengths [2, 1]: frames (0, 0), (1, 0), (0, 1) are
    // real, (1, 1) is padding (huge values that must change nothing).
    // (0,0) [0, 3, 1]: 3 - 1 = 2; (0,1) [2, 2, -1]: tie, 2 - 2 = 0;
    // (1,0) [-1, -4, 0.5]: 0.5 - (-1) = 1.5. Mean over 3 frames: 3.5 / 3.
    let values = vec![
        0.0, 3.0, 1.0, /* (0,1) */ 2.0, 2.0, -1.0, /* (1,0) */ -1.0, -4.0, 0.5,
        /* (1,1) pad */ 1e6, -1e6, 7.0,
    ];
    let x = Tensor::from_vec(values, &[2, 2, 3]).unwrap();
    let got = value(distill::tolerant_gap(&mut no_grad(), &x, &[2, 1], 1));
    assert!((got - 3.5 / 3.0).abs() < 1e-6, "{got}");

    // The gradient is the constant mask over the frame count: +1 on the top
    // class, -1/k on the next k (ties to the lowest index), 0 on padding.
    let xt = x.detach().tracked();
    let mut tape = Tape::new();
    let loss = distill::tolerant_gap(&mut tape, &xt, &[2, 1], 1).unwrap();
    let g = tape.backward(&loss).unwrap().get(&xt).unwrap().to_vec();
    let third = 1.0 / 3.0;
    let want = [
        0.0, third, -third, /* tie: index 0 tops, index 1 is second */ third, -third, 0.0,
        -third, 0.0, third, 0.0, 0.0, 0.0,
    ];
    for (i, (a, b)) in g.iter().zip(want).enumerate() {
        assert!((a - b).abs() < 1e-6, "element {i}: {a} vs {b}");
    }

    // A one-hot-like frame has a large gap, a flat frame none: the term pushes
    // a teacher towards keeping secondary scores.
    let peaked = Tensor::from_vec(vec![10.0, 0.0, 0.0, 0.0], &[1, 1, 4]).unwrap();
    let flat = Tensor::from_vec(vec![1.0, 1.0, 1.0, 0.0], &[1, 1, 4]).unwrap();
    let k = distill::TOLERANT_DEFAULT_SECONDARY;
    assert!((1..37).contains(&k));
    assert_eq!(
        value(distill::tolerant_gap(&mut no_grad(), &peaked, &[1], k)),
        10.0
    );
    assert_eq!(
        value(distill::tolerant_gap(&mut no_grad(), &flat, &[1], k)),
        0.0
    );
}

#[test]
fn tolerant_gap_refuses_bad_inputs() {
    let mut t = no_grad();
    let t = &mut t;
    let x = random(&[3, 2, 5], 40);
    assert!(distill::tolerant_gap(t, &x, &[3, 1], 2).is_ok());
    let err = |r: retort::Result<Tensor>| r.unwrap_err().to_string();
    assert!(err(distill::tolerant_gap(t, &random(&[6, 5], 41), &[3, 3], 2)).contains("(T, N, K)"));
    assert!(distill::tolerant_gap(t, &Tensor::zeros(&[3, 0, 5]).unwrap(), &[], 2).is_err());
    assert!(distill::tolerant_gap(t, &x, &[3], 2).is_err());
    assert!(err(distill::tolerant_gap(t, &x, &[4, 1], 2)).contains("exceeds"));
    assert!(err(distill::tolerant_gap(t, &x, &[0, 0], 2)).contains("length 0"));
    assert!(err(distill::tolerant_gap(t, &x, &[3, 1], 0)).contains("k = 0"));
    assert!(err(distill::tolerant_gap(t, &x, &[3, 1], 5)).contains("k = 5"));
    let mut v = x.to_vec();
    v[(2 * 2) * 5 + 3] = f32::NAN; // frame 2 of sample 0: real
    let nan = Tensor::from_vec(v, &[3, 2, 5]).unwrap();
    assert!(err(distill::tolerant_gap(t, &nan, &[3, 1], 2)).contains("NaN"));
}
