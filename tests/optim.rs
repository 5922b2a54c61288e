//! Optimizers against hand-written f64 versions of the `torch.optim` update
//! formulas, learning-rate plans, gradient clipping and state round trips.

use retort::optim::{
    clip_grad_norm, grad_norm, LrPlan, LrSchedule, Optimizer, OptimizerConfig, OptimizerState,
};
use retort::{ops, Gradients, Param, Tape, Tensor};

// ---------------------------------------------------------------------------
// The problem: three parameters, loss = Σ_i ½ Σ a_i ⊙ (p_i - c_i)², so that
// the gradient of p_i is a_i ⊙ (p_i - c_i).

const SHAPES: [&[usize]; 3] = [&[2], &[3], &[1]];
const INIT: [&[f32]; 3] = [&[1.0, -2.0], &[0.5, 3.0, -1.5], &[4.0]];
const A: [&[f32]; 3] = [&[1.0, 3.0], &[0.5, 2.0, 1.5], &[4.0]];
const C: [&[f32]; 3] = [&[-1.0, 0.5], &[2.0, -1.0, 0.25], &[1.0]];

fn params() -> Vec<Param> {
    (0..3)
        .map(|i| Param::new(Tensor::from_slice(INIT[i], SHAPES[i]).unwrap()))
        .collect()
}

/// Gradients of the quadratic loss over the parameters in `used` only.
fn grads_of(params: &[Param], used: &[usize]) -> Gradients {
    let mut tape = Tape::new();
    let mut loss: Option<Tensor> = None;
    for &i in used {
        let p = params[i].tensor();
        let c = Tensor::from_slice(C[i], SHAPES[i]).unwrap();
        let a = Tensor::from_slice(A[i], SHAPES[i]).unwrap();
        let d = ops::sub(&mut tape, p, &c).unwrap();
        let sq = ops::square(&mut tape, &d).unwrap();
        let w = ops::mul(&mut tape, &sq, &a).unwrap();
        let s = ops::sum_all(&mut tape, &w).unwrap();
        let s = ops::scale(&mut tape, &s, 0.5).unwrap();
        loss = Some(match loss {
            None => s,
            Some(l) => ops::add(&mut tape, &l, &s).unwrap(),
        });
    }
    tape.backward(&loss.unwrap()).unwrap()
}

/// A learning rate that changes from step to step, to check that each step uses its own.
fn lr(step: usize) -> f32 {
    [0.1, 0.05, 0.08][step % 3]
}

fn run(config: OptimizerConfig, steps: usize) -> Vec<Vec<f32>> {
    let mut ps = params();
    let mut opt = Optimizer::new(config).unwrap();
    for s in 0..steps {
        let g = grads_of(&ps, &[0, 1, 2]);
        let mut refs: Vec<&mut Param> = ps.iter_mut().collect();
        opt.step(&mut refs, &g, lr(s)).unwrap();
    }
    assert_eq!(opt.steps_taken(), steps as u64);
    ps.iter().map(|p| p.tensor().to_vec()).collect()
}

fn flat_init() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let f = |x: [&[f32]; 3]| x.iter().flat_map(|v| v.iter().map(|&y| y as f64)).collect();
    (f(INIT), f(A), f(C))
}

fn flat(values: &[Vec<f32>]) -> Vec<f64> {
    values.iter().flatten().map(|&v| v as f64).collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, expected {w}"
        );
    }
}

/// `torch.optim.SGD` (dampening 0), written out in f64.
fn sgd_reference(steps: usize, momentum: f64, wd: f64, nesterov: bool) -> Vec<f64> {
    let (mut p, a, c) = flat_init();
    let mut buf: Option<Vec<f64>> = None;
    for s in 0..steps {
        let lr = lr(s) as f64;
        let d: Vec<f64> = (0..p.len())
            .map(|i| a[i] * (p[i] - c[i]) + wd * p[i])
            .collect();
        let step: Vec<f64> = if momentum != 0.0 {
            let b = match buf.take() {
                None => d.clone(),
                Some(b) => b.iter().zip(&d).map(|(b, d)| momentum * b + d).collect(),
            };
            let out = if nesterov {
                d.iter().zip(&b).map(|(d, b)| d + momentum * b).collect()
            } else {
                b.clone()
            };
            buf = Some(b);
            out
        } else {
            d
        };
        for i in 0..p.len() {
            p[i] -= lr * step[i];
        }
    }
    p
}

/// `torch.optim.Adam` (decoupled = false) and `torch.optim.AdamW` (true), in f64.
fn adam_reference(steps: usize, b1: f64, b2: f64, eps: f64, wd: f64, decoupled: bool) -> Vec<f64> {
    let (mut p, a, c) = flat_init();
    let mut m = vec![0.0; p.len()];
    let mut v = vec![0.0; p.len()];
    for s in 0..steps {
        let lr = lr(s) as f64;
        let t = (s + 1) as i32;
        for i in 0..p.len() {
            let mut g = a[i] * (p[i] - c[i]);
            if decoupled {
                p[i] *= 1.0 - lr * wd;
            } else {
                g += wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let m_hat = m[i] / (1.0 - b1.powi(t));
            let denom = v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
            p[i] -= lr * m_hat / denom;
        }
    }
    p
}

#[test]
fn sgd_with_momentum_and_weight_decay_follows_torch() {
    let config = OptimizerConfig::Sgd {
        momentum: 0.9,
        weight_decay: 0.01,
        nesterov: false,
    };
    for steps in 1..=10 {
        let got = flat(&run(config.clone(), steps));
        let want = sgd_reference(steps, 0.9, 0.01, false);
        assert_close(&got, &want, 1e-5, &format!("sgd, {steps} steps"));
    }
}

#[test]
fn sgd_nesterov_follows_torch() {
    let config = OptimizerConfig::Sgd {
        momentum: 0.8,
        weight_decay: 0.05,
        nesterov: true,
    };
    for steps in 1..=10 {
        let got = flat(&run(config.clone(), steps));
        let want = sgd_reference(steps, 0.8, 0.05, true);
        assert_close(&got, &want, 1e-5, &format!("nesterov, {steps} steps"));
    }
}

#[test]
fn plain_sgd_follows_torch() {
    let config = OptimizerConfig::Sgd {
        momentum: 0.0,
        weight_decay: 0.1,
        nesterov: false,
    };
    let got = flat(&run(config, 10));
    assert_close(&got, &sgd_reference(10, 0.0, 0.1, false), 1e-5, "sgd");
    // Plain SGD keeps no state.
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.0)).unwrap();
    let mut ps = params();
    let g = grads_of(&ps, &[0, 1, 2]);
    opt.step(&mut ps.iter_mut().collect::<Vec<_>>(), &g, 0.1)
        .unwrap();
    assert!(opt.state().buffers.is_empty());
}

#[test]
fn adam_follows_torch() {
    for steps in 1..=10 {
        let got = flat(&run(OptimizerConfig::adam(), steps));
        let want = adam_reference(steps, 0.9, 0.999, 1e-8, 0.0, false);
        assert_close(&got, &want, 1e-5, &format!("adam, {steps} steps"));
    }
    // L2 weight decay added to the gradient.
    let config = OptimizerConfig::Adam {
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-6,
        weight_decay: 0.1,
    };
    for steps in 1..=10 {
        let got = flat(&run(config.clone(), steps));
        let want = adam_reference(steps, 0.8, 0.99, 1e-6, 0.1, false);
        assert_close(&got, &want, 1e-5, &format!("adam + L2, {steps} steps"));
    }
}

#[test]
fn adamw_follows_torch() {
    let config = OptimizerConfig::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    for steps in 1..=10 {
        let got = flat(&run(config.clone(), steps));
        let want = adam_reference(steps, 0.9, 0.999, 1e-8, 0.1, true);
        assert_close(&got, &want, 1e-5, &format!("adamw, {steps} steps"));
    }
    let got = flat(&run(OptimizerConfig::adamw(), 10));
    let want = adam_reference(10, 0.9, 0.999, 1e-8, 0.01, true);
    assert_close(&got, &want, 1e-5, "adamw defaults");
}

/// Values printed by torch 2 (`torch.optim.*` on float32 tensors holding
/// the same problem, 10 steps with the same learning rates), pasted here.
#[test]
fn matches_numbers_printed_by_torch() {
    let cases: [(OptimizerConfig, [f64; 6]); 3] = [
        (
            OptimizerConfig::Sgd {
                momentum: 0.9,
                weight_decay: 0.01,
                nesterov: true,
            },
            TORCH_SGD_NESTEROV,
        ),
        (
            OptimizerConfig::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
            },
            TORCH_ADAM_L2,
        ),
        (OptimizerConfig::adamw(), TORCH_ADAMW),
    ];
    for (config, want) in cases {
        let got = flat(&run(config.clone(), 10));
        assert_close(&got, &want, 1e-5, &format!("{config:?} vs torch"));
    }
}

// Printed by torch 2.15.0 (float32, default single-tensor/foreach path):
// parameters p0[0..2], p1[0..3], p2[0] after 10 steps.
const TORCH_SGD_NESTEROV: [f64; 6] = [
    -1.7422791719436646,
    0.19406592845916748,
    2.1820228099823,
    -1.302572250366211,
    0.7050742506980896,
    1.2639822959899902,
];
const TORCH_ADAM_L2: [f64; 6] = [
    0.22401612997055054,
    -1.2204177379608154,
    1.268358826637268,
    2.2158946990966797,
    -0.7267305850982666,
    3.2182869911193848,
];
const TORCH_ADAMW: [f64; 6] = [
    0.21895475685596466,
    -1.2076648473739624,
    1.262722134590149,
    2.195232391357422,
    -0.7179537415504456,
    3.189959764480591,
];

#[test]
fn parameter_without_gradient_is_untouched_and_keeps_its_own_step_count() {
    let mut ps = params();
    let mut opt = Optimizer::new(OptimizerConfig::adam()).unwrap();
    // Three steps in which parameter 1 has no gradient.
    for s in 0..3 {
        let g = grads_of(&ps, &[0, 2]);
        assert!(ps[1].grad(&g).is_none());
        opt.step(&mut ps.iter_mut().collect::<Vec<_>>(), &g, lr(s))
            .unwrap();
    }
    assert_eq!(ps[1].tensor().to_vec(), INIT[1].to_vec());
    let state = opt.state();
    assert!(state
        .buffers
        .iter()
        .all(|(name, _)| !name.starts_with("1.")));
    assert!(state.buffers.iter().any(|(name, _)| name == "0.exp_avg"));
    // Then it joins: its first update is a first Adam step (bias correction
    // with t = 1), as torch keeps one step count per parameter.
    let g = grads_of(&ps, &[0, 1, 2]);
    let before: Vec<f64> = ps[1].tensor().data().iter().map(|&v| v as f64).collect();
    opt.step(&mut ps.iter_mut().collect::<Vec<_>>(), &g, 0.1)
        .unwrap();
    let after: Vec<f64> = ps[1].tensor().data().iter().map(|&v| v as f64).collect();
    for i in 0..3 {
        let grad = A[1][i] as f64 * (before[i] - C[1][i] as f64);
        // First Adam step: p - lr · sign(g) (up to eps).
        let want = before[i] - 0.1 * grad / (grad.abs() + 1e-8);
        assert!((after[i] - want).abs() < 1e-6, "{} vs {want}", after[i]);
    }
    let state = opt.state();
    let step1 = state.buffers.iter().find(|(n, _)| n == "1.step").unwrap();
    let step0 = state.buffers.iter().find(|(n, _)| n == "0.step").unwrap();
    assert_eq!((step0.1[0], step1.1[0]), (4.0, 1.0));
}

#[test]
fn number_of_parameters_must_not_change() {
    let mut ps = params();
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.9)).unwrap();
    let g = grads_of(&ps, &[0, 1, 2]);
    opt.step(&mut ps.iter_mut().collect::<Vec<_>>(), &g, 0.1)
        .unwrap();
    let before: Vec<Vec<f32>> = ps.iter().map(|p| p.tensor().to_vec()).collect();
    let mut two: Vec<&mut Param> = ps.iter_mut().take(2).collect();
    assert!(opt.step(&mut two, &g, 0.1).is_err());
    let after: Vec<Vec<f32>> = ps.iter().map(|p| p.tensor().to_vec()).collect();
    assert_eq!(before, after, "a refused step changes nothing");
    assert_eq!(opt.steps_taken(), 1);
}

#[test]
fn bad_learning_rates_are_refused() {
    let mut ps = params();
    let mut opt = Optimizer::new(OptimizerConfig::adam()).unwrap();
    let g = grads_of(&ps, &[0, 1, 2]);
    for lr in [-0.1, f32::NAN, f32::INFINITY] {
        assert!(opt
            .step(&mut ps.iter_mut().collect::<Vec<_>>(), &g, lr)
            .is_err());
    }
    assert_eq!(opt.steps_taken(), 0);
}

fn continue_run(opt: &mut Optimizer, ps: &mut [Param], from: usize, to: usize) {
    for s in from..to {
        let g = grads_of(ps, &[0, 1, 2]);
        opt.step(&mut ps.iter_mut().collect::<Vec<_>>(), &g, lr(s))
            .unwrap();
    }
}

#[test]
fn state_round_trip_continues_bit_for_bit() {
    let configs = [
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov: true,
        },
        OptimizerConfig::adam(),
        OptimizerConfig::adamw(),
    ];
    for config in configs {
        // Uninterrupted.
        let mut ps = params();
        let mut opt = Optimizer::new(config.clone()).unwrap();
        continue_run(&mut opt, &mut ps, 0, 10);
        let straight: Vec<Vec<u32>> = ps
            .iter()
            .map(|p| p.tensor().data().iter().map(|v| v.to_bits()).collect())
            .collect();

        // Interrupted after 4 steps: the state goes through JSON into a new optimizer.
        let mut ps = params();
        let mut opt = Optimizer::new(config.clone()).unwrap();
        continue_run(&mut opt, &mut ps, 0, 4);
        let json = serde_json::to_string(&opt.state()).unwrap();
        let saved: OptimizerState = serde_json::from_str(&json).unwrap();
        assert_eq!(saved, opt.state());
        let values: Vec<Vec<f32>> = ps.iter().map(|p| p.tensor().to_vec()).collect();
        drop(opt);
        let mut ps: Vec<Param> = values
            .iter()
            .zip(SHAPES)
            .map(|(v, s)| Param::new(Tensor::from_slice(v, s).unwrap()))
            .collect();
        let mut resumed = Optimizer::new(config.clone()).unwrap();
        resumed.load_state(saved).unwrap();
        assert_eq!(resumed.steps_taken(), 4);
        continue_run(&mut resumed, &mut ps, 4, 10);
        let again: Vec<Vec<u32>> = ps
            .iter()
            .map(|p| p.tensor().data().iter().map(|v| v.to_bits()).collect())
            .collect();
        assert_eq!(straight, again, "{config:?}");
        assert_eq!(resumed.steps_taken(), 10);
    }
}

#[test]
fn mismatched_states_are_refused() {
    let mut ps = params();
    let mut adam = Optimizer::new(OptimizerConfig::adam()).unwrap();
    continue_run(&mut adam, &mut ps, 0, 2);
    let adam_state = adam.state();

    // Adam buffers into SGD, and into SGD without momentum.
    let mut sgd = Optimizer::new(OptimizerConfig::sgd(0.9)).unwrap();
    assert!(sgd.load_state(adam_state.clone()).is_err());
    let mut plain = Optimizer::new(OptimizerConfig::sgd(0.0)).unwrap();
    assert!(plain.load_state(adam_state.clone()).is_err());

    let edit = |f: &dyn Fn(&mut OptimizerState)| {
        let mut s = adam_state.clone();
        f(&mut s);
        Optimizer::new(OptimizerConfig::adam())
            .unwrap()
            .load_state(s)
    };
    assert!(edit(&|_| {}).is_ok());
    // A missing buffer.
    assert!(edit(&|s| s.buffers.retain(|(n, _)| n != "1.exp_avg_sq")).is_err());
    // A missing step count.
    assert!(edit(&|s| s.buffers.retain(|(n, _)| n != "2.step")).is_err());
    // A duplicate.
    assert!(edit(&|s| {
        let b = s.buffers[0].clone();
        s.buffers.push(b)
    })
    .is_err());
    // Unknown names.
    assert!(edit(&|s| s.buffers.push(("0.momentum_buffer".into(), vec![0.0; 2]))).is_err());
    assert!(edit(&|s| s.buffers.push(("x.exp_avg".into(), vec![0.0; 2]))).is_err());
    assert!(edit(&|s| s.buffers.push(("exp_avg".into(), vec![0.0; 2]))).is_err());
    // Lengths that disagree, a step count that is not a count.
    assert!(edit(&|s| s.buffers[0].1.push(1.0)).is_err());
    assert!(edit(&|s| {
        let i = s.buffers.iter().position(|(n, _)| n == "0.step").unwrap();
        s.buffers[i].1 = vec![1.5];
    })
    .is_err());
    assert!(edit(&|s| {
        let i = s.buffers.iter().position(|(n, _)| n == "0.step").unwrap();
        s.buffers[i].1 = vec![3.0]; // more than the 2 steps taken
    })
    .is_err());

    // Buffers that do not fit the parameters are refused at the next step,
    // which then changes nothing.
    let mut s = adam_state.clone();
    for (name, values) in s.buffers.iter_mut() {
        if name.starts_with("0.") && !name.ends_with("step") {
            values.push(0.0);
        }
    }
    let mut opt = Optimizer::new(OptimizerConfig::adam()).unwrap();
    opt.load_state(s).unwrap();
    let g = grads_of(&ps, &[0, 1, 2]);
    let before: Vec<Vec<f32>> = ps.iter().map(|p| p.tensor().to_vec()).collect();
    assert!(opt
        .step(&mut ps.iter_mut().collect::<Vec<_>>(), &g, 0.1)
        .is_err());
    let after: Vec<Vec<f32>> = ps.iter().map(|p| p.tensor().to_vec()).collect();
    assert_eq!(before, after);
    // State for more parameters than given is refused too.
    let mut opt = Optimizer::new(OptimizerConfig::adam()).unwrap();
    opt.load_state(adam_state).unwrap();
    assert!(opt
        .step(&mut ps.iter_mut().take(2).collect::<Vec<_>>(), &g, 0.1)
        .is_err());
}

#[test]
fn bad_configs_are_rejected() {
    let sgd = |momentum: f32, weight_decay: f32, nesterov: bool| OptimizerConfig::Sgd {
        momentum,
        weight_decay,
        nesterov,
    };
    let adam = |beta1: f32, beta2: f32, eps: f32, weight_decay: f32| OptimizerConfig::Adam {
        beta1,
        beta2,
        eps,
        weight_decay,
    };
    let adamw = |beta1: f32, beta2: f32, eps: f32, weight_decay: f32| OptimizerConfig::AdamW {
        beta1,
        beta2,
        eps,
        weight_decay,
    };
    let good = [
        sgd(0.0, 0.0, false),
        sgd(0.9, 1e-4, true),
        OptimizerConfig::adam(),
        OptimizerConfig::adamw(),
        adam(0.0, 0.0, 1e-8, 0.0),
    ];
    for c in good {
        assert!(c.validate().is_ok(), "{c:?}");
        assert!(Optimizer::new(c).is_ok());
    }
    let bad = [
        sgd(1.0, 0.0, false),
        sgd(-0.1, 0.0, false),
        sgd(f32::NAN, 0.0, false),
        sgd(0.9, -0.1, false),
        sgd(0.9, f32::INFINITY, false),
        sgd(0.0, 0.0, true),
        adam(1.0, 0.999, 1e-8, 0.0),
        adam(0.9, 1.0, 1e-8, 0.0),
        adam(0.9, -0.5, 1e-8, 0.0),
        adam(0.9, 0.999, 0.0, 0.0),
        adam(0.9, 0.999, -1e-8, 0.0),
        adam(0.9, 0.999, f32::NAN, 0.0),
        adam(0.9, 0.999, 1e-8, -1.0),
        adamw(0.9, 0.999, 1e-8, f32::NAN),
        adamw(f32::NAN, 0.999, 1e-8, 0.01),
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
        assert!(Optimizer::new(c).is_err());
    }
}

#[test]
fn configs_in_json() {
    let parse = |s: &str| serde_json::from_str::<OptimizerConfig>(s);
    assert_eq!(
        parse(r#"{"kind": "sgd", "momentum": 0.9, "weight_decay": 0.0005, "nesterov": true}"#)
            .unwrap(),
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 0.0005,
            nesterov: true
        }
    );
    // Fields left out take the torch defaults.
    assert_eq!(
        parse(r#"{"kind": "adam"}"#).unwrap(),
        OptimizerConfig::adam()
    );
    assert_eq!(
        parse(r#"{"kind": "adamw"}"#).unwrap(),
        OptimizerConfig::adamw()
    );
    assert_eq!(
        parse(r#"{"kind": "adam_w"}"#).unwrap(),
        OptimizerConfig::adamw()
    );
    assert_eq!(
        parse(r#"{"kind": "sgd"}"#).unwrap(),
        OptimizerConfig::sgd(0.0)
    );
    assert!(parse(r#"{"kind": "adam", "lr": 0.1}"#).is_err());
    assert!(parse(r#"{"kind": "rmsprop"}"#).is_err());
    for c in [
        OptimizerConfig::sgd(0.9),
        OptimizerConfig::adam(),
        OptimizerConfig::adamw(),
    ] {
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(parse(&json).unwrap(), c);
    }
    assert!(serde_json::to_string(&OptimizerConfig::adamw())
        .unwrap()
        .contains(r#""kind":"adamw""#));
}

// ---------------------------------------------------------------------------
// Learning-rate plans.

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-7 + 1e-6 * b.abs()
}

#[test]
fn constant_plan() {
    let plan = LrPlan::constant(0.01, 100);
    plan.validate().unwrap();
    for s in [0, 1, 50, 99, 100, 1000] {
        assert_eq!(plan.lr_at(s), 0.01);
    }
    let warm = LrPlan {
        warmup_steps: 10,
        ..plan
    };
    warm.validate().unwrap();
    assert_eq!(warm.lr_at(0), 0.0);
    assert!(close(warm.lr_at(5), 0.005));
    assert_eq!(warm.lr_at(10), 0.01);
    assert_eq!(warm.lr_at(500), 0.01);
}

#[test]
fn warm_up_then_cosine_reaches_min_lr_at_total_steps() {
    let plan = LrPlan {
        base_lr: 1e-3,
        schedule: LrSchedule::Cosine { min_lr: 1e-5 },
        warmup_steps: 100,
        total_steps: 1100,
    };
    plan.validate().unwrap();
    // Linear warm-up from 0.
    assert_eq!(plan.lr_at(0), 0.0);
    assert!(close(plan.lr_at(25), 2.5e-4));
    assert!(close(plan.lr_at(50), 5e-4));
    for s in 1..100 {
        assert!(plan.lr_at(s) > plan.lr_at(s - 1));
    }
    // Peak at the end of the warm-up, halfway at the middle of the cosine, min_lr at the end.
    assert!(close(plan.lr_at(100), 1e-3));
    assert!(close(plan.lr_at(600), (1e-3 + 1e-5) / 2.0));
    assert!(close(plan.lr_at(1100), 1e-5));
    assert_eq!(plan.lr_at(1100), 1e-5);
    assert_eq!(plan.lr_at(5000), 1e-5);
    for s in 101..=1100 {
        assert!(plan.lr_at(s) <= plan.lr_at(s - 1), "step {s}");
        assert!(plan.lr_at(s) >= 1e-5);
    }
    // Without warm-up the cosine starts at base_lr.
    let plain = LrPlan {
        warmup_steps: 0,
        ..plan
    };
    assert_eq!(plain.lr_at(0), 1e-3);
    assert!(close(plain.lr_at(550), (1e-3 + 1e-5) / 2.0));
    assert_eq!(plain.lr_at(1100), 1e-5);
}

#[test]
fn step_decay() {
    let plan = LrPlan {
        base_lr: 0.1,
        schedule: LrSchedule::Step {
            every: 30,
            gamma: 0.1,
        },
        warmup_steps: 0,
        total_steps: 100,
    };
    plan.validate().unwrap();
    assert_eq!(plan.lr_at(0), 0.1);
    assert_eq!(plan.lr_at(29), 0.1);
    assert!(close(plan.lr_at(30), 0.01));
    assert!(close(plan.lr_at(59), 0.01));
    assert!(close(plan.lr_at(60), 0.001));
    assert!(close(plan.lr_at(95), 1e-4));
    // The decay counts steps after the warm-up.
    let warm = LrPlan {
        warmup_steps: 10,
        ..plan
    };
    assert!(close(warm.lr_at(5), 0.05));
    assert_eq!(warm.lr_at(10), 0.1);
    assert_eq!(warm.lr_at(39), 0.1);
    assert!(close(warm.lr_at(40), 0.01));
}

#[test]
fn bad_plans_are_rejected() {
    let good = LrPlan {
        base_lr: 0.1,
        schedule: LrSchedule::Cosine { min_lr: 0.0 },
        warmup_steps: 10,
        total_steps: 100,
    };
    good.validate().unwrap();
    let bad = [
        LrPlan {
            base_lr: 0.0,
            ..good.clone()
        },
        LrPlan {
            base_lr: f32::NAN,
            ..good.clone()
        },
        LrPlan {
            base_lr: -1.0,
            ..good.clone()
        },
        LrPlan {
            total_steps: 0,
            warmup_steps: 0,
            ..good.clone()
        },
        LrPlan {
            warmup_steps: 101,
            ..good.clone()
        },
        LrPlan {
            schedule: LrSchedule::Cosine { min_lr: 0.2 },
            ..good.clone()
        },
        LrPlan {
            schedule: LrSchedule::Cosine { min_lr: -0.01 },
            ..good.clone()
        },
        LrPlan {
            schedule: LrSchedule::Step {
                every: 0,
                gamma: 0.5,
            },
            ..good.clone()
        },
        LrPlan {
            schedule: LrSchedule::Step {
                every: 10,
                gamma: 0.0,
            },
            ..good.clone()
        },
    ];
    for p in bad {
        assert!(p.validate().is_err(), "{p:?}");
    }
}

#[test]
fn plans_in_json() {
    let plan: LrPlan = serde_json::from_str(
        r#"{"base_lr": 0.001, "schedule": {"kind": "cosine", "min_lr": 0.00001}, "total_steps": 500}"#,
    )
    .unwrap();
    assert_eq!(plan.warmup_steps, 0);
    assert_eq!(plan.schedule, LrSchedule::Cosine { min_lr: 1e-5 });
    let step: LrSchedule =
        serde_json::from_str(r#"{"kind": "step", "every": 5, "gamma": 0.5}"#).unwrap();
    assert_eq!(
        step,
        LrSchedule::Step {
            every: 5,
            gamma: 0.5
        }
    );
    let constant: LrSchedule = serde_json::from_str(r#"{"kind": "constant"}"#).unwrap();
    assert_eq!(constant, LrSchedule::Constant);
    assert!(serde_json::from_str::<LrPlan>(
        r#"{"base_lr": 0.1, "schedule": {"kind": "constant"}, "total_steps": 5, "epochs": 3}"#
    )
    .is_err());
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(serde_json::from_str::<LrPlan>(&json).unwrap(), plan);
}

// ---------------------------------------------------------------------------
// Clipping.

/// Gradients equal to `values[i]` for parameter `i` (loss = Σ p_i · values_i),
/// for the parameters with `Some` values only.
fn fixed_grads(ps: &[Param], values: &[Option<Vec<f32>>]) -> Gradients {
    let mut tape = Tape::new();
    let mut loss: Option<Tensor> = None;
    for (p, v) in ps.iter().zip(values) {
        let Some(v) = v else { continue };
        let w = Tensor::from_slice(v, p.dims()).unwrap();
        let prod = ops::mul(&mut tape, p.tensor(), &w).unwrap();
        let s = ops::sum_all(&mut tape, &prod).unwrap();
        loss = Some(match loss {
            None => s,
            Some(l) => ops::add(&mut tape, &l, &s).unwrap(),
        });
    }
    tape.backward(&loss.unwrap()).unwrap()
}

fn grad_values(ps: &[Param], g: &Gradients) -> Vec<Option<Vec<f32>>> {
    ps.iter().map(|p| p.grad(g).map(|t| t.to_vec())).collect()
}

#[test]
fn norm_is_global_over_all_parameters() {
    let ps = params();
    let g = fixed_grads(
        &ps,
        &[
            Some(vec![3.0, 4.0]),
            Some(vec![1.0, 2.0, 2.0]),
            Some(vec![-10.0]),
        ],
    );
    let refs: Vec<&Param> = ps.iter().collect();
    let want = (9.0f32 + 16.0 + 1.0 + 4.0 + 4.0 + 100.0).sqrt();
    assert!(close(grad_norm(&refs, &g), want));
    // Only the parameters given count; one listed twice counts once.
    assert!(close(grad_norm(&refs[..1], &g), 5.0));
    assert!(close(grad_norm(&[refs[0], refs[0]], &g), 5.0));
}

#[test]
fn clipping_scales_to_max_norm() {
    let ps = params();
    let values = [Some(vec![3.0, 4.0]), None, Some(vec![12.0])];
    let mut g = fixed_grads(&ps, &values);
    let refs: Vec<&Param> = ps.iter().collect();
    let norm = clip_grad_norm(&refs, &mut g, 1.0);
    assert!(close(norm, 13.0));
    let clipped = grad_norm(&refs, &g);
    assert!((clipped - 1.0).abs() < 1e-5, "{clipped}");
    // Every gradient scaled by the same factor; the one without a gradient still has none.
    let after = grad_values(&ps, &g);
    assert!(after[1].is_none());
    let a0 = after[0].as_ref().unwrap();
    let a2 = after[2].as_ref().unwrap();
    assert!(close(a0[0], 3.0 / 13.0) && close(a0[1], 4.0 / 13.0) && close(a2[0], 12.0 / 13.0));
}

#[test]
fn small_gradients_are_untouched() {
    let ps = params();
    let values = [
        Some(vec![0.3, -0.4]),
        Some(vec![0.1, 0.0, 0.2]),
        Some(vec![0.05]),
    ];
    let mut g = fixed_grads(&ps, &values);
    let refs: Vec<&Param> = ps.iter().collect();
    let before = grad_values(&ps, &g);
    let norm = clip_grad_norm(&refs, &mut g, 5.0);
    assert!(norm < 5.0);
    assert_eq!(grad_values(&ps, &g), before);
}

#[test]
fn non_finite_norm_is_reported_and_gradients_kept() {
    let ps = params();
    for bad in [f32::NAN, f32::INFINITY] {
        let values = [
            Some(vec![1.0, bad]),
            Some(vec![1.0, 2.0, 3.0]),
            Some(vec![100.0]),
        ];
        let mut g = fixed_grads(&ps, &values);
        let refs: Vec<&Param> = ps.iter().collect();
        let before = grad_values(&ps, &g);
        let norm = clip_grad_norm(&refs, &mut g, 1.0);
        assert!(!norm.is_finite());
        if bad.is_nan() {
            assert!(norm.is_nan());
        }
        let after = grad_values(&ps, &g);
        // Compare bit patterns (NaN != NaN).
        let bits = |v: &Vec<Option<Vec<f32>>>| -> Vec<Option<Vec<u32>>> {
            v.iter()
                .map(|o| o.as_ref().map(|x| x.iter().map(|f| f.to_bits()).collect()))
                .collect()
        };
        assert_eq!(bits(&after), bits(&before));
    }
}

#[test]
fn with_weight_decay_changes_only_the_decay() {
    use retort::optim::OptimizerConfig;
    let adamw = OptimizerConfig::adamw().with_weight_decay(0.5);
    match (OptimizerConfig::adamw(), adamw) {
        (
            OptimizerConfig::AdamW {
                beta1, beta2, eps, ..
            },
            OptimizerConfig::AdamW {
                beta1: b1,
                beta2: b2,
                eps: e,
                weight_decay,
            },
        ) => {
            assert_eq!((beta1, beta2, eps, weight_decay), (b1, b2, e, 0.5));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        OptimizerConfig::sgd(0.9).with_weight_decay(1e-4),
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 1e-4,
            nesterov: false
        }
    );
}
