//! LSTM: gradient checks of one direction and of a stacked bidirectional
//! network, and the behaviour the spec promises (torch.nn.LSTM gate order,
//! packed-sequence padding semantics, shape errors).

mod common;

use common::{cases, check_gradients, tensor_in, Tol};
use proptest::prelude::*;
use retort::ops::lstm::{lstm, lstm_direction, LstmLayer, LstmWeights};
use retort::{ops, Gradients, Rng, Tape, Tensor};

/// The four tensors of one direction, owned.
#[derive(Clone)]
struct Dir {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
}

impl Dir {
    fn random(rng: &mut Rng, features: usize, hidden: usize) -> Dir {
        Dir {
            w_ih: random(rng, &[4 * hidden, features], 0.5),
            w_hh: random(rng, &[4 * hidden, hidden], 0.5),
            b_ih: random(rng, &[4 * hidden], 0.5),
            b_hh: random(rng, &[4 * hidden], 0.5),
        }
    }

    fn weights(&self) -> LstmWeights<'_> {
        LstmWeights {
            w_ih: &self.w_ih,
            w_hh: &self.w_hh,
            b_ih: &self.b_ih,
            b_hh: &self.b_hh,
        }
    }

    fn tensors(&self) -> [&Tensor; 4] {
        [&self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh]
    }
}

/// A stacked bidirectional LSTM's weights: (forward, reverse) per layer.
fn bidirectional(rng: &mut Rng, features: usize, hidden: usize, layers: usize) -> Vec<(Dir, Dir)> {
    (0..layers)
        .map(|k| {
            let f = if k == 0 { features } else { 2 * hidden };
            (Dir::random(rng, f, hidden), Dir::random(rng, f, hidden))
        })
        .collect()
}

fn layers_of(dirs: &[(Dir, Dir)]) -> Vec<LstmLayer<'_>> {
    dirs.iter()
        .map(|(f, r)| LstmLayer {
            forward: f.weights(),
            reverse: Some(r.weights()),
        })
        .collect()
}

fn random(rng: &mut Rng, dims: &[usize], scale: f32) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.range(-scale, scale)).collect(), dims).unwrap()
}

/// Sample `j` of a (T, N, F) batch, its first `len` steps, as (len, 1, F).
fn sample(x: &Tensor, j: usize, len: usize) -> Tensor {
    let [_, n, f] = *x.dims() else { panic!() };
    let mut v = Vec::with_capacity(len * f);
    for t in 0..len {
        let row = t * n + j;
        v.extend_from_slice(&x.data()[row * f..(row + 1) * f]);
    }
    Tensor::from_vec(v, &[len, 1, f]).unwrap()
}

/// Row (t, j) of a (T, N, W) tensor.
fn row(y: &Tensor, t: usize, j: usize) -> &[f32] {
    let [_, n, w] = *y.dims() else { panic!() };
    &y.data()[(t * n + j) * w..(t * n + j + 1) * w]
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol,
            "{what}: element {k}: {x} vs {y} (tolerance {tol})"
        );
    }
}

/// Each sample's output in the batch equals the output of running it alone
/// with T = its length, and padded rows are exactly zero.
fn assert_batch_matches_samples(
    x: &Tensor,
    lengths: &[usize],
    run: impl Fn(&mut Tape, &Tensor, &[usize]) -> Tensor,
) {
    let [t_len, _, _] = *x.dims() else { panic!() };
    let y = run(&mut Tape::no_grad(), x, lengths);
    for (j, &len) in lengths.iter().enumerate() {
        if len > 0 {
            let alone = run(&mut Tape::no_grad(), &sample(x, j, len), &[len]);
            for t in 0..len {
                assert_close(row(&y, t, j), row(&alone, t, 0), 1e-6, "batch vs alone");
            }
        }
        for t in len..t_len {
            assert!(
                row(&y, t, j).iter().all(|&v| v == 0.0),
                "padding row t={t} of sample {j} (length {len}) is not zero: {:?}",
                row(&y, t, j)
            );
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Strategy: (x, direction weights, lengths) for T 1..=5, N 1..=3, F 1..=4, H 1..=4.
fn direction_case() -> impl Strategy<Value = (Tensor, [Tensor; 4], Vec<usize>)> {
    (1..=5usize, 1..=3usize, 1..=4usize, 1..=4usize).prop_flat_map(|(t, n, f, h)| {
        (
            tensor_in(vec![t, n, f], -1.0, 1.0),
            [
                tensor_in(vec![4 * h, f], -0.5, 0.5),
                tensor_in(vec![4 * h, h], -0.5, 0.5),
                tensor_in(vec![4 * h], -0.5, 0.5),
                tensor_in(vec![4 * h], -0.5, 0.5),
            ],
            proptest::collection::vec(1..=t, n),
        )
    })
}

fn check_direction(x: Tensor, w: [Tensor; 4], lengths: Vec<usize>, reverse: bool) {
    let [w_ih, w_hh, b_ih, b_hh] = w;
    let inputs = [x, w_ih, w_hh, b_ih, b_hh];
    let result = check_gradients(
        &inputs,
        |tape, v| {
            let weights = LstmWeights {
                w_ih: &v[1],
                w_hh: &v[2],
                b_ih: &v[3],
                b_hh: &v[4],
            };
            lstm_direction(tape, &v[0], weights, &lengths, reverse)
        },
        Tol::default(),
    );
    if let Err(e) = result {
        panic!("lengths {lengths:?}, reverse {reverse}: {e}");
    }
}

proptest! {
    #![proptest_config(cases(14))]

    #[test]
    fn direction_forward_gradients((x, w, lengths) in direction_case()) {
        check_direction(x, w, lengths, false);
    }

    #[test]
    fn direction_reverse_gradients((x, w, lengths) in direction_case()) {
        check_direction(x, w, lengths, true);
    }
}

proptest! {
    #![proptest_config(cases(8))]

    /// Two bidirectional layers, w.r.t. x and weights of both layers and directions.
    #[test]
    fn stacked_bidirectional_gradients(
        (t, n, f, h, seed) in (1..=4usize, 1..=3usize, 1..=3usize, 1..=3usize, any::<u64>()),
        lengths_seed in any::<u64>(),
    ) {
        let mut rng = Rng::seed(seed);
        let dirs = bidirectional(&mut rng, f, h, 2);
        let x = random(&mut rng, &[t, n, f], 1.0);
        let mut lr = Rng::seed(lengths_seed);
        let lengths: Vec<usize> = (0..n).map(|_| 1 + lr.below(t)).collect();
        let inputs = [
            x,
            dirs[0].0.w_ih.clone(),
            dirs[0].1.w_hh.clone(),
            dirs[1].1.b_ih.clone(),
            dirs[1].0.w_hh.clone(),
            dirs[1].1.w_ih.clone(),
        ];
        let result = check_gradients(
            &inputs,
            |tape, v| {
                let mut d = dirs.clone();
                d[0].0.w_ih = v[1].clone();
                d[0].1.w_hh = v[2].clone();
                d[1].1.b_ih = v[3].clone();
                d[1].0.w_hh = v[4].clone();
                d[1].1.w_ih = v[5].clone();
                lstm(tape, &v[0], &layers_of(&d), &lengths)
            },
            Tol::default(),
        );
        prop_assert!(result.is_ok(), "lengths {:?}: {}", lengths, result.unwrap_err());
    }
}

#[test]
fn single_step_matches_the_formula() {
    // T = 1, N = 1, F = 2, H = 1: rows of w_ih are the gates i, f, g, o.
    let x = [0.7f32, -0.3];
    let w_ih = [0.5f32, -0.2, 0.1, 0.4, -0.6, 0.3, 0.25, -0.45];
    let w_hh = [0.9f32, -0.8, 0.7, -0.6]; // irrelevant: h_0 = 0
    let b_ih = [0.1f32, -0.1, 0.2, 0.05];
    let b_hh = [-0.05f32, 0.3, -0.1, 0.15];
    let pre: Vec<f64> = (0..4)
        .map(|k| {
            w_ih[2 * k] as f64 * x[0] as f64
                + w_ih[2 * k + 1] as f64 * x[1] as f64
                + b_ih[k] as f64
                + b_hh[k] as f64
        })
        .collect();
    let (i, f, g, o) = (
        sigmoid(pre[0]),
        sigmoid(pre[1]),
        pre[2].tanh(),
        sigmoid(pre[3]),
    );
    let c = f * 0.0 + i * g;
    let h = o * c.tanh();

    let t = |v: &[f32], d: &[usize]| Tensor::from_slice(v, d).unwrap();
    let (w_ih, w_hh, b_ih, b_hh) = (
        t(&w_ih, &[4, 2]),
        t(&w_hh, &[4, 1]),
        t(&b_ih, &[4]),
        t(&b_hh, &[4]),
    );
    let weights = LstmWeights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        b_ih: &b_ih,
        b_hh: &b_hh,
    };
    let x = t(&x, &[1, 1, 2]);
    for reverse in [false, true] {
        let y = lstm_direction(&mut Tape::no_grad(), &x, weights, &[1], reverse).unwrap();
        assert_eq!(y.dims(), &[1, 1, 1]);
        assert!(
            (y.data()[0] as f64 - h).abs() < 1e-6,
            "reverse {reverse}: {} vs {h}",
            y.data()[0]
        );
    }
}

#[test]
fn two_steps_match_the_formula() {
    // T = 2, N = 1, F = 1, H = 1: the second step uses w_hh in gate order i, f, g, o,
    // and the reverse direction reads x[1] first.
    let xs = [0.8f64, -0.5];
    let w_ih = [0.5f64, -0.4, 0.3, 0.6];
    let w_hh = [0.7f64, -0.3, 0.9, -0.5];
    let b = [0.1f64, 0.2, -0.1, 0.05];
    let cell = |x: f64, h: f64, c: f64| {
        let pre: Vec<f64> = (0..4).map(|k| w_ih[k] * x + w_hh[k] * h + b[k]).collect();
        let (i, f, g, o) = (
            sigmoid(pre[0]),
            sigmoid(pre[1]),
            pre[2].tanh(),
            sigmoid(pre[3]),
        );
        let c = f * c + i * g;
        (o * c.tanh(), c)
    };
    let (h1, c1) = cell(xs[0], 0.0, 0.0);
    let (h2, _) = cell(xs[1], h1, c1);
    let (r1, rc1) = cell(xs[1], 0.0, 0.0);
    let (r0, _) = cell(xs[0], r1, rc1);

    let t = |v: &[f64], d: &[usize]| {
        Tensor::from_vec(v.iter().map(|&a| a as f32).collect(), d).unwrap()
    };
    let (w_ih, w_hh, b_ih, b_hh) = (
        t(&w_ih, &[4, 1]),
        t(&w_hh, &[4, 1]),
        t(&b, &[4]),
        t(&[0.0; 4], &[4]),
    );
    let weights = LstmWeights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        b_ih: &b_ih,
        b_hh: &b_hh,
    };
    let x = t(&xs, &[2, 1, 1]);
    let fwd = lstm_direction(&mut Tape::no_grad(), &x, weights, &[2], false).unwrap();
    let rev = lstm_direction(&mut Tape::no_grad(), &x, weights, &[2], true).unwrap();
    assert_close(fwd.data(), &[h1 as f32, h2 as f32], 1e-6, "forward");
    assert_close(rev.data(), &[r0 as f32, r1 as f32], 1e-6, "reverse");
}

#[test]
fn padding_does_not_leak_in_one_direction() {
    let mut rng = Rng::seed(11);
    let (f, h) = (3, 4);
    let dir = Dir::random(&mut rng, f, h);
    let x = random(&mut rng, &[6, 4, f], 1.0);
    let lengths = [6, 3, 1, 4];
    for reverse in [false, true] {
        assert_batch_matches_samples(&x, &lengths, |tape, x, l| {
            lstm_direction(tape, x, dir.weights(), l, reverse).unwrap()
        });
    }
}

#[test]
fn padding_does_not_leak_in_a_stacked_bidirectional_lstm() {
    let mut rng = Rng::seed(12);
    let (f, h) = (3, 4);
    let dirs = bidirectional(&mut rng, f, h, 2);
    let x = random(&mut rng, &[5, 3, f], 1.0);
    let lengths = [2, 5, 3];
    let y = lstm(&mut Tape::no_grad(), &x, &layers_of(&dirs), &lengths).unwrap();
    assert_eq!(y.dims(), &[5, 3, 2 * h]);
    assert_batch_matches_samples(&x, &lengths, |tape, x, l| {
        lstm(tape, x, &layers_of(&dirs), l).unwrap()
    });
}

/// Output and gradients (of Σ r·y w.r.t. x and the first layer's weights).
fn run_with_grads(x: &Tensor, dirs: &[(Dir, Dir)], lengths: &[usize]) -> (Tensor, Vec<Tensor>) {
    let x = x.detach().tracked();
    let tracked: Vec<(Dir, Dir)> = dirs
        .iter()
        .map(|(f, r)| {
            let tr = |d: &Dir| Dir {
                w_ih: d.w_ih.detach().tracked(),
                w_hh: d.w_hh.detach().tracked(),
                b_ih: d.b_ih.detach().tracked(),
                b_hh: d.b_hh.detach().tracked(),
            };
            (tr(f), tr(r))
        })
        .collect();
    let mut tape = Tape::new();
    let y = lstm(&mut tape, &x, &layers_of(&tracked), lengths).unwrap();
    let mut rng = Rng::seed(99);
    let r = random(&mut rng, y.dims(), 1.0);
    let weighted = ops::mul(&mut tape, &y, &r).unwrap();
    let loss = ops::sum_all(&mut tape, &weighted).unwrap();
    let grads: Gradients = tape.backward(&loss).unwrap();
    let mut out = vec![grads.get(&x).unwrap().clone()];
    for (f, r) in &tracked {
        for t in f.tensors().into_iter().chain(r.tensors()) {
            out.push(grads.get(t).expect("every weight gets a gradient").clone());
        }
    }
    (y, out)
}

#[test]
fn padded_values_change_neither_outputs_nor_gradients() {
    let mut rng = Rng::seed(13);
    let (t_len, n, f, h) = (5, 3, 2, 3);
    let dirs = bidirectional(&mut rng, f, h, 2);
    let lengths = [3, 5, 1];
    let clean = random(&mut rng, &[t_len, n, f], 1.0);
    let mut noisy_values = clean.to_vec();
    let mut clean_values = clean.to_vec();
    for (j, &len) in lengths.iter().enumerate() {
        for t in len..t_len {
            let row = t * n + j;
            for k in 0..f {
                noisy_values[row * f + k] = rng.range(-50.0, 50.0);
                clean_values[row * f + k] = 0.0;
            }
        }
    }
    let clean = Tensor::from_vec(clean_values, &[t_len, n, f]).unwrap();
    let noisy = Tensor::from_vec(noisy_values, &[t_len, n, f]).unwrap();
    let (y0, g0) = run_with_grads(&clean, &dirs, &lengths);
    let (y1, g1) = run_with_grads(&noisy, &dirs, &lengths);
    assert_eq!(y0.to_vec(), y1.to_vec(), "outputs differ");
    for (k, (a, b)) in g0.iter().zip(&g1).enumerate() {
        assert_eq!(a.to_vec(), b.to_vec(), "gradient {k} differs");
    }
    // The gradient of x is zero on padding.
    for (j, &len) in lengths.iter().enumerate() {
        for t in len..t_len {
            assert!(row(&g1[0], t, j).iter().all(|&v| v == 0.0));
        }
    }
}

#[test]
fn zero_length_sample_outputs_zero_and_gets_no_gradient() {
    let mut rng = Rng::seed(14);
    let dirs = bidirectional(&mut rng, 2, 3, 1);
    let x = random(&mut rng, &[4, 2, 2], 1.0);
    let lengths = [0, 4];
    let (y, g) = run_with_grads(&x, &dirs, &lengths);
    for t in 0..4 {
        assert!(row(&y, t, 0).iter().all(|&v| v == 0.0));
        assert!(row(&g[0], t, 0).iter().all(|&v| v == 0.0));
    }
    let (y, _) = run_with_grads(&x, &dirs, &[0, 0]);
    assert!(y.data().iter().all(|&v| v == 0.0));
}

#[test]
fn no_grad_tape_gives_the_same_untracked_output() {
    let mut rng = Rng::seed(15);
    let dir = Dir::random(&mut rng, 3, 2);
    let x = random(&mut rng, &[4, 2, 3], 1.0);
    let no_grad = lstm_direction(&mut Tape::no_grad(), &x, dir.weights(), &[4, 2], true).unwrap();
    assert!(!no_grad.is_tracked());
    let xt = x.detach().tracked();
    let mut tape = Tape::new();
    let y = lstm_direction(&mut tape, &xt, dir.weights(), &[4, 2], true).unwrap();
    assert!(y.is_tracked());
    assert_eq!(tape.len(), 1, "one direction is one op");
    assert_eq!(y.to_vec(), no_grad.to_vec());
}

#[test]
fn shape_errors_are_errors() {
    let mut rng = Rng::seed(16);
    let (f, h) = (3, 2);
    let dir = Dir::random(&mut rng, f, h);
    let x = random(&mut rng, &[4, 2, f], 1.0);
    let tape = &mut Tape::no_grad();
    let err = |r: retort::Result<Tensor>| r.expect_err("should be an error").to_string();

    // x of the wrong rank, wrong F.
    let x2 = random(&mut rng, &[4, f], 1.0);
    println!(
        "{}",
        err(lstm_direction(tape, &x2, dir.weights(), &[4, 4], false))
    );
    let xf = random(&mut rng, &[4, 2, f + 1], 1.0);
    let e = err(lstm_direction(tape, &xf, dir.weights(), &[4, 4], false));
    assert!(e.contains("w_ih") && e.contains("[8, 3]"), "{e}");
    // Lengths: wrong count, longer than T.
    let e = err(lstm_direction(tape, &x, dir.weights(), &[4], false));
    assert!(e.contains("1 lengths") && e.contains("2 sequences"), "{e}");
    let e = err(lstm_direction(tape, &x, dir.weights(), &[4, 5], true));
    assert!(e.contains("length 5"), "{e}");
    // Inconsistent weights.
    let bad = |mutate: &dyn Fn(&mut Dir)| {
        let mut d = dir.clone();
        mutate(&mut d);
        err(lstm_direction(
            &mut Tape::no_grad(),
            &x,
            d.weights(),
            &[4, 4],
            false,
        ))
    };
    let e = bad(&|d| d.w_hh = random(&mut Rng::seed(1), &[8, 3], 1.0));
    assert!(e.contains("w_hh"), "{e}");
    let e = bad(&|d| d.b_ih = random(&mut Rng::seed(1), &[7], 1.0));
    assert!(e.contains("b_ih"), "{e}");
    let e = bad(&|d| d.b_hh = random(&mut Rng::seed(1), &[8, 1], 1.0));
    assert!(e.contains("b_hh"), "{e}");
    let e = bad(&|d| d.w_ih = random(&mut Rng::seed(1), &[6, f], 1.0));
    assert!(e.contains("4H"), "{e}");
    let e = bad(&|d| d.w_ih = random(&mut Rng::seed(1), &[8 * f], 1.0));
    assert!(e.contains("w_ih"), "{e}");

    // Stacked: no layers, a second layer that expects the wrong width,
    // directions with different hidden sizes.
    let e = err(lstm(tape, &x, &[], &[4, 4]));
    assert!(e.contains("no layers"), "{e}");
    let dirs = bidirectional(&mut rng, f, h, 2);
    let mut layers = layers_of(&dirs);
    layers[1].reverse = Some(dir.weights()); // expects F = 3, gets 2H = 4
    let e = err(lstm(tape, &x, &layers, &[4, 4]));
    assert!(e.contains("layer 1") && e.contains("w_ih"), "{e}");
    let other = Dir::random(&mut rng, f, h + 1);
    let layers = [LstmLayer {
        forward: dir.weights(),
        reverse: Some(other.weights()),
    }];
    let e = err(lstm(tape, &x, &layers, &[4, 4]));
    assert!(e.contains("hidden size"), "{e}");
    let layers = [LstmLayer {
        forward: dir.weights(),
        reverse: None,
    }];
    let e = err(lstm(tape, &x, &layers, &[4, 9]));
    assert!(e.contains("length 9"), "{e}");
    // A unidirectional layer is fine.
    let y = lstm(tape, &x, &layers, &[4, 1]).unwrap();
    assert_eq!(y.dims(), &[4, 2, h]);
}
