//! The GPU paths of the convolution-block ops (`conv2d`,
//! `conv2d_bn_relu_eval`, `batchnorm2d`, `maxpool2d`, `dropout`) against
//! their CPU paths, through the public ops API: outputs, the gradients of
//! Σ output · w for a fixed random w, and the updated running statistics, to
//! 1e-4 relative. Without a GPU each test prints that it was skipped and
//! why; with `RETORT_REQUIRE_GPU=1` it fails instead.
//!
//! "Relative" is per value with a floor at the root mean square of the
//! reference, so values that cancel to near 0 are held to the tensor's scale.
#![cfg(feature = "cuda")]

#[path = "common/gpu.rs"]
mod gpu_common;
use gpu_common::{assert_close, gpu, values, Input};

use retort::ops::{self, batchnorm2d::RunningStats, conv2d::Conv2dSpec, maxpool2d::Pool2dSpec};
use retort::tensor::Device;
use retort::{Error, Rng, Tape, Tensor};

const GPU: Device = Device::Cuda(0);
const RTOL: f32 = 1e-4;

fn input(rng: &mut Rng, dims: &[usize], (lo, hi): (f32, f32), tracked: bool) -> Input {
    Input {
        values: values(rng, dims.iter().product(), lo, hi),
        dims: dims.to_vec(),
        tracked,
    }
}

/// What one run of an op gave: the output's values and device, and each
/// input's gradient (values and device) when it has one.
struct Run {
    y: Vec<f32>,
    y_device: Device,
    grads: Vec<Option<(Vec<f32>, Device)>>,
}

/// Runs `f` on `inputs` placed on `device` (tracked leaves where asked),
/// then the loss Σ output · `upstream` and its backward pass, on a
/// recording tape.
fn run_on(
    device: Device,
    inputs: &[Input],
    upstream: &[f32],
    f: impl FnOnce(&mut Tape, &[Tensor]) -> retort::Result<Tensor>,
) -> Run {
    let ts: Vec<Tensor> = inputs.iter().map(|i| i.on(device)).collect();
    let mut tape = Tape::new();
    let y = f(&mut tape, &ts).unwrap();
    let w = Tensor::from_vec(upstream.to_vec(), y.dims())
        .unwrap()
        .to_device(device)
        .unwrap();
    let weighted = ops::mul(&mut tape, &y, &w).unwrap();
    let loss = ops::sum_all(&mut tape, &weighted).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let grads = ts
        .iter()
        .map(|t| grads.get(t).map(|g| (g.try_to_vec().unwrap(), g.device())))
        .collect();
    Run {
        y: y.try_to_vec().unwrap(),
        y_device: y.device(),
        grads,
    }
}

/// Runs `f` on the CPU and on the GPU and compares outputs and gradients;
/// `f` gets the device it runs on (for tensors it makes itself).
fn compare(
    what: &str,
    inputs: &[Input],
    upstream: &[f32],
    f: impl Fn(Device, &mut Tape, &[Tensor]) -> retort::Result<Tensor>,
) {
    let cpu = run_on(Device::Cpu, inputs, upstream, |tape, t| {
        f(Device::Cpu, tape, t)
    });
    let gpu = run_on(GPU, inputs, upstream, |tape, t| f(GPU, tape, t));
    assert_eq!(cpu.y_device, Device::Cpu, "{what}: CPU output device");
    assert_eq!(gpu.y_device, GPU, "{what}: GPU output device");
    assert_close(&format!("{what}: output"), &gpu.y, &cpu.y, RTOL);
    for (i, (g, c)) in gpu.grads.iter().zip(&cpu.grads).enumerate() {
        match (g, c) {
            (Some((g, gd)), Some((c, _))) => {
                assert_eq!(*gd, GPU, "{what}: gradient of input {i} device");
                assert_close(&format!("{what}: gradient of input {i}"), g, c, RTOL);
            }
            (None, None) => {}
            _ => panic!(
                "{what}: input {i} has a gradient on one device only (gpu {}, cpu {})",
                g.is_some(),
                c.is_some()
            ),
        }
        assert_eq!(
            c.is_some(),
            inputs[i].tracked,
            "{what}: input {i} has a gradient iff it is tracked"
        );
    }
}

fn host(t: &Tensor) -> Vec<f32> {
    t.try_to_vec().unwrap()
}

#[test]
fn conv2d_matches_the_cpu() {
    if gpu("conv2d").is_none() {
        return;
    }
    let mut rng = Rng::seed(11);
    // (n, c, h, w), (o, kh, kw), stride, padding, (bias, x tracked, weight tracked)
    type Case = (
        [usize; 4],
        (usize, usize, usize),
        (usize, usize),
        (usize, usize),
        (bool, bool, bool),
    );
    let cases: [Case; 6] = [
        ([2, 3, 8, 10], (4, 3, 3), (1, 1), (1, 1), (true, true, true)),
        ([2, 3, 9, 11], (5, 3, 2), (2, 1), (1, 0), (true, true, true)),
        ([3, 4, 6, 7], (6, 1, 1), (1, 1), (0, 0), (false, true, true)),
        ([1, 2, 7, 7], (3, 3, 3), (2, 2), (0, 0), (true, false, true)),
        ([2, 2, 5, 6], (3, 3, 3), (1, 1), (1, 1), (true, true, false)),
        (
            [2, 1, 12, 5],
            (8, 3, 3),
            (1, 1),
            (1, 1),
            (false, true, true),
        ),
    ];
    for (i, (xd, (o, kh, kw), stride, padding, (with_bias, x_tracked, w_tracked))) in
        cases.into_iter().enumerate()
    {
        let c = xd[1];
        let spec = Conv2dSpec::new(stride, padding);
        let mut inputs = vec![
            input(&mut rng, &xd, (-1.0, 1.0), x_tracked),
            input(&mut rng, &[o, c, kh, kw], (-0.5, 0.5), w_tracked),
        ];
        if with_bias {
            inputs.push(input(&mut rng, &[o], (-0.3, 0.3), true));
        }
        let ho = (xd[2] + 2 * padding.0 - kh) / stride.0 + 1;
        let wo = (xd[3] + 2 * padding.1 - kw) / stride.1 + 1;
        let upstream = values(&mut rng, xd[0] * o * ho * wo, -1.0, 1.0);
        compare(
            &format!("conv2d case {i}"),
            &inputs,
            &upstream,
            |_, tape, t| ops::conv2d::conv2d(tape, &t[0], &t[1], t.get(2), spec),
        );
    }
}

/// Running statistics of `c` channels with random values, on `device`.
fn random_stats(rng: &mut Rng, c: usize) -> (Vec<f32>, Vec<f32>) {
    (values(rng, c, -0.2, 0.2), values(rng, c, 0.5, 2.0))
}

fn stats_on(device: Device, (mean, var): &(Vec<f32>, Vec<f32>)) -> RunningStats {
    let c = mean.len();
    let mut stats = RunningStats::new(c);
    stats.mean = Tensor::from_slice(mean, &[c])
        .unwrap()
        .to_device(device)
        .unwrap();
    stats.var = Tensor::from_slice(var, &[c])
        .unwrap()
        .to_device(device)
        .unwrap();
    stats
}

#[test]
fn conv2d_bn_relu_eval_matches_the_cpu() {
    if gpu("conv2d_bn_relu_eval").is_none() {
        return;
    }
    let mut rng = Rng::seed(12);
    let spec = Conv2dSpec::new((1, 1), (1, 1));
    for (i, (c, o, with_bias)) in [(1, 8, false), (8, 16, true), (3, 5, true)]
        .into_iter()
        .enumerate()
    {
        let x = values(&mut rng, 2 * c * 8 * 20, -1.0, 1.0);
        let w = values(&mut rng, o * c * 9, -0.5, 0.5);
        let b = values(&mut rng, o, -0.3, 0.3);
        let gamma = values(&mut rng, o, 0.5, 1.5);
        let beta = values(&mut rng, o, -0.3, 0.3);
        let stats = random_stats(&mut rng, o);

        // Untracked, on a no-grad tape: the fused pass.
        let fused = |device: Device| {
            let on = |v: &[f32], d: &[usize]| {
                Tensor::from_slice(v, d).unwrap().to_device(device).unwrap()
            };
            let bias = with_bias.then(|| on(&b, &[o]));
            let y = ops::conv2d::conv2d_bn_relu_eval(
                &mut Tape::no_grad(),
                &on(&x, &[2, c, 8, 20]),
                &on(&w, &[o, c, 3, 3]),
                bias.as_ref(),
                spec,
                &on(&gamma, &[o]),
                &on(&beta, &[o]),
                &stats_on(device, &stats),
            )
            .unwrap();
            assert_eq!(y.device(), device, "case {i}: fused output device");
            host(&y)
        };
        assert_close(
            &format!("conv2d_bn_relu_eval case {i}: fused output"),
            &fused(GPU),
            &fused(Device::Cpu),
            RTOL,
        );

        // Tracked: recorded as conv2d, batchnorm2d (eval) and relu.
        let mut inputs = vec![
            Input {
                values: x.clone(),
                dims: vec![2, c, 8, 20],
                tracked: true,
            },
            Input {
                values: w.clone(),
                dims: vec![o, c, 3, 3],
                tracked: true,
            },
            Input {
                values: gamma.clone(),
                dims: vec![o],
                tracked: true,
            },
            Input {
                values: beta.clone(),
                dims: vec![o],
                tracked: true,
            },
        ];
        if with_bias {
            inputs.push(Input {
                values: b.clone(),
                dims: vec![o],
                tracked: true,
            });
        }
        let upstream = values(&mut rng, 2 * o * 8 * 20, -1.0, 1.0);
        compare(
            &format!("conv2d_bn_relu_eval case {i}: recorded"),
            &inputs,
            &upstream,
            |device, tape, t| {
                ops::conv2d::conv2d_bn_relu_eval(
                    tape,
                    &t[0],
                    &t[1],
                    t.get(4),
                    spec,
                    &t[2],
                    &t[3],
                    &stats_on(device, &stats),
                )
            },
        );
    }
}

#[test]
fn batchnorm2d_matches_the_cpu_in_training_and_evaluation() {
    if gpu("batchnorm2d").is_none() {
        return;
    }
    let mut rng = Rng::seed(13);
    for (i, (xd, training)) in [
        ([4, 3, 5, 6], true),
        ([2, 8, 7, 9], true),
        ([3, 1, 1, 2], true),
        ([4, 3, 5, 6], false),
        ([2, 8, 7, 9], false),
    ]
    .into_iter()
    .enumerate()
    {
        let c = xd[1];
        let inputs = [
            input(&mut rng, &xd, (-2.0, 3.0), true),
            input(&mut rng, &[c], (0.5, 1.5), true),
            input(&mut rng, &[c], (-0.3, 0.3), true),
        ];
        let initial = random_stats(&mut rng, c);
        let upstream = values(&mut rng, xd.iter().product(), -1.0, 1.0);
        let what = format!("batchnorm2d case {i} (training {training})");
        let mut cpu_stats = stats_on(Device::Cpu, &initial);
        let mut gpu_stats = stats_on(GPU, &initial);
        let gpu_ids = (gpu_stats.mean.id(), gpu_stats.var.id());
        let cpu = run_on(Device::Cpu, &inputs, &upstream, |tape, t| {
            ops::batchnorm2d::batchnorm2d(tape, &t[0], &t[1], &t[2], &mut cpu_stats, training)
        });
        let gpu = run_on(GPU, &inputs, &upstream, |tape, t| {
            ops::batchnorm2d::batchnorm2d(tape, &t[0], &t[1], &t[2], &mut gpu_stats, training)
        });
        assert_eq!(gpu.y_device, GPU, "{what}: output device");
        assert_close(&format!("{what}: output"), &gpu.y, &cpu.y, RTOL);
        for (k, name) in ["x", "gamma", "beta"].into_iter().enumerate() {
            let (g, gd) = gpu.grads[k].as_ref().expect("a GPU gradient");
            let (c, _) = cpu.grads[k].as_ref().expect("a CPU gradient");
            assert_eq!(*gd, GPU, "{what}: gradient of {name} device");
            assert_close(&format!("{what}: gradient of {name}"), g, c, RTOL);
        }
        for (name, g, c) in [
            ("running mean", &gpu_stats.mean, &cpu_stats.mean),
            ("running var", &gpu_stats.var, &cpu_stats.var),
        ] {
            assert_eq!(g.device(), GPU, "{what}: {name} stays on the GPU");
            assert_close(&format!("{what}: {name}"), &host(g), &host(c), RTOL);
        }
        assert_eq!(
            (gpu_stats.mean.id(), gpu_stats.var.id()),
            gpu_ids,
            "{what}: the running statistics keep their identities"
        );
        if !training {
            assert_eq!(host(&gpu_stats.mean), initial.0, "{what}: mean unchanged");
            assert_eq!(host(&gpu_stats.var), initial.1, "{what}: var unchanged");
        }
    }
}

#[test]
fn batchnorm2d_with_running_statistics_on_another_device_is_an_error() {
    if gpu("batchnorm2d devices").is_none() {
        return;
    }
    let mut rng = Rng::seed(14);
    let x = Tensor::from_vec(values(&mut rng, 2 * 3 * 4 * 4, -1.0, 1.0), &[2, 3, 4, 4])
        .unwrap()
        .to_device(GPU)
        .unwrap();
    let gamma = Tensor::ones(&[3]).unwrap().to_device(GPU).unwrap();
    let beta = Tensor::zeros(&[3]).unwrap().to_device(GPU).unwrap();
    for training in [true, false] {
        let mut stats = RunningStats::new(3);
        let err = ops::batchnorm2d::batchnorm2d(
            &mut Tape::new(),
            &x,
            &gamma,
            &beta,
            &mut stats,
            training,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Device(m) if m.contains("batchnorm2d")),
            "training {training}: {err}"
        );
        assert_eq!(
            stats.mean.device(),
            Device::Cpu,
            "the stats were left alone"
        );
    }
    let w = Tensor::ones(&[3, 3, 1, 1]).unwrap().to_device(GPU).unwrap();
    let err = ops::conv2d::conv2d_bn_relu_eval(
        &mut Tape::no_grad(),
        &x,
        &w,
        None,
        Conv2dSpec::default(),
        &gamma,
        &beta,
        &RunningStats::new(3),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Device(m) if m.contains("conv2d_bn_relu_eval")),
        "{err}"
    );
}

#[test]
fn maxpool2d_matches_the_cpu() {
    if gpu("maxpool2d").is_none() {
        return;
    }
    let mut rng = Rng::seed(15);
    let cases: [(&[usize], Pool2dSpec); 5] = [
        (&[2, 3, 8, 10], Pool2dSpec::new((2, 2), (2, 2))),
        (&[2, 3, 8, 10], Pool2dSpec::new((2, 1), (2, 1))),
        (&[1, 4, 9, 7], Pool2dSpec::new((3, 3), (2, 2))),
        (
            &[2, 2, 7, 9],
            Pool2dSpec {
                kernel: (3, 3),
                stride: (2, 1),
                padding: (1, 1),
            },
        ),
        (&[3, 2, 5, 5], Pool2dSpec::new((2, 2), (1, 1))),
    ];
    for (i, (xd, spec)) in cases.into_iter().enumerate() {
        let inputs = [input(&mut rng, xd, (-2.0, 2.0), true)];
        let (k, s, p) = (spec.kernel, spec.stride, spec.padding);
        let ho = (xd[2] + 2 * p.0 - k.0) / s.0 + 1;
        let wo = (xd[3] + 2 * p.1 - k.1) / s.1 + 1;
        let upstream = values(&mut rng, xd[0] * xd[1] * ho * wo, -1.0, 1.0);
        compare(
            &format!("maxpool2d case {i}"),
            &inputs,
            &upstream,
            |_, tape, t| ops::maxpool2d::maxpool2d(tape, &t[0], spec),
        );
    }
    // Without a gradient nothing is saved, and the values are the same.
    let x = values(&mut rng, 2 * 3 * 6 * 6, -1.0, 1.0);
    let pool = |device: Device| {
        let x = Tensor::from_slice(&x, &[2, 3, 6, 6])
            .unwrap()
            .to_device(device)
            .unwrap();
        let y =
            ops::maxpool2d::maxpool2d(&mut Tape::no_grad(), &x, Pool2dSpec::new((2, 2), (2, 2)))
                .unwrap();
        assert_eq!(y.device(), device);
        host(&y)
    };
    assert_eq!(pool(GPU), pool(Device::Cpu), "maxpool2d untracked");
}

#[test]
fn dropout_matches_the_cpu() {
    if gpu("dropout").is_none() {
        return;
    }
    let mut rng = Rng::seed(16);
    for (i, (dims, p)) in [
        (vec![4, 3, 5, 6], 0.3),
        (vec![7, 33], 0.5),
        (vec![2, 8], 1.0),
        (vec![3, 9], 0.0),
    ]
    .into_iter()
    .enumerate()
    {
        let inputs = [input(&mut rng, &dims, (-2.0, 2.0), true)];
        let upstream = values(&mut rng, dims.iter().product(), -1.0, 1.0);
        let seed = 100 + i as u64;
        compare(
            &format!("dropout case {i} (p {p})"),
            &inputs,
            &upstream,
            |_, tape, t| ops::dropout(tape, &t[0], p, true, &mut Rng::seed(seed)),
        );
    }
}
