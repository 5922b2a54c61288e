//! The GPU paths of the reduction, layout, softmax and matrix-product ops
//! against their CPU paths, through the public ops API: each op runs on CPU
//! tensors and on copies moved to `Device::Cuda(0)`, followed by a scalar
//! loss (Σ output · a fixed random weight) and `Tape::backward`; outputs and
//! input gradients must agree to 1e-4 relative and stay on the GPU.
//! Without a GPU each test prints that it was skipped and why; with
//! `RETORT_REQUIRE_GPU=1` it fails instead.
#![cfg(feature = "cuda")]

#[path = "common/gpu.rs"]
mod gpu_common;
use gpu_common::{assert_close, gpu, values, Input};

use retort::ops;
use retort::tensor::Device;
use retort::{Rng, Tape, Tensor};

const GPU: Device = Device::Cuda(0);

fn input(rng: &mut Rng, dims: &[usize]) -> Input {
    input_in(rng, dims, -1.0, 1.0)
}

/// A tracked input of values in `lo..hi`.
fn input_in(rng: &mut Rng, dims: &[usize], lo: f32, hi: f32) -> Input {
    let n = dims.iter().product();
    Input {
        values: values(rng, n, lo, hi),
        dims: dims.to_vec(),
        tracked: true,
    }
}

fn constant(rng: &mut Rng, dims: &[usize]) -> Input {
    Input {
        tracked: false,
        ..input(rng, dims)
    }
}

/// What one run of an op gave: the output (values, dims, device) and, per
/// input, its gradient (values and device) when it has one.
struct Run {
    out: Vec<f32>,
    dims: Vec<usize>,
    device: Device,
    grads: Vec<Option<(Vec<f32>, Device)>>,
}

/// Runs `f` on `inputs` placed on `device`, then the loss Σ output · w (w
/// random from `seed`, of the output's shape, on `device`) and the backward pass.
fn run(
    device: Device,
    inputs: &[Input],
    seed: u64,
    f: &dyn Fn(&mut Tape, &[Tensor]) -> retort::Result<Tensor>,
) -> Run {
    let ts: Vec<Tensor> = inputs.iter().map(|i| i.on(device)).collect();
    let mut tape = Tape::new();
    let y = f(&mut tape, &ts).unwrap();
    let w = values(&mut Rng::seed(seed), y.numel(), -1.0, 1.0);
    let w = Tensor::from_vec(w, y.dims())
        .unwrap()
        .to_device(device)
        .unwrap();
    let weighted = ops::mul(&mut tape, &y, &w).unwrap();
    let loss = ops::sum_all(&mut tape, &weighted).unwrap();
    assert_eq!(loss.device(), device, "loss device");
    let grads = tape.backward(&loss).unwrap();
    Run {
        out: y.try_to_vec().unwrap(),
        dims: y.dims().to_vec(),
        device: y.device(),
        grads: ts
            .iter()
            .map(|t| grads.get(t).map(|g| (g.try_to_vec().unwrap(), g.device())))
            .collect(),
    }
}

/// Runs `f` on the CPU and on the GPU and checks that the outputs and the
/// gradients of the tracked inputs agree to 1e-4 and that the GPU run's
/// stay on the GPU.
fn check(what: &str, inputs: &[Input], f: impl Fn(&mut Tape, &[Tensor]) -> retort::Result<Tensor>) {
    let seed = what
        .bytes()
        .fold(17u64, |h, b| h.wrapping_mul(31) ^ b as u64);
    let cpu = run(Device::Cpu, inputs, seed, &f);
    let gpu = run(GPU, inputs, seed, &f);
    assert_eq!(cpu.device, Device::Cpu, "{what}: cpu output device");
    assert_eq!(gpu.device, GPU, "{what}: output device");
    assert_eq!(gpu.dims, cpu.dims, "{what}: output dims");
    assert_close(&format!("{what}: output"), &gpu.out, &cpu.out, 1e-4);
    for (i, (input, (g, c))) in inputs
        .iter()
        .zip(gpu.grads.iter().zip(&cpu.grads))
        .enumerate()
    {
        match (g, c) {
            (Some((g, gd)), Some((c, _))) => {
                assert_eq!(*gd, GPU, "{what}: gradient {i} device");
                assert_close(&format!("{what}: gradient {i}"), g, c, 1e-4);
            }
            (None, None) => assert!(!input.tracked, "{what}: tracked input {i} has no gradient"),
            _ => panic!(
                "{what}: gradient {i} present on one device only (gpu {}, cpu {})",
                g.is_some(),
                c.is_some()
            ),
        }
    }
}

#[test]
fn sums_and_means_over_axes_match_the_cpu() {
    let Some(_dev) = gpu("sums and means") else {
        return;
    };
    let mut rng = Rng::seed(21);
    let cases: [(&[usize], &[usize], bool); 9] = [
        (&[2, 3, 4, 5], &[1, 3], false),
        (&[2, 3, 4, 5], &[0, 2], true),
        (&[2, 3, 4, 5], &[3], false),
        (&[2, 3, 4, 5], &[], false),
        (&[2, 3, 4, 5], &[0, 1, 2, 3], true),
        (&[3, 1000], &[1], true),
        (&[3, 1000], &[0], false),
        (&[6, 1, 7], &[1], false),
        (&[5], &[0], false),
    ];
    for (dims, axes, keepdim) in cases {
        // Long sums of positive values: the CPU sums in order, the GPU in a
        // tree, and values of both signs could cancel to near 0.
        let x = [input_in(&mut rng, dims, 0.0, 1.0)];
        check(
            &format!("sum {dims:?} over {axes:?} keepdim {keepdim}"),
            &x,
            |tape, t| ops::sum(tape, &t[0], axes, keepdim),
        );
        check(
            &format!("mean {dims:?} over {axes:?} keepdim {keepdim}"),
            &x,
            |tape, t| ops::mean(tape, &t[0], axes, keepdim),
        );
    }
    for dims in [&[7][..], &[3, 4], &[2, 3, 4, 5], &[4, 2500]] {
        let x = [input_in(&mut rng, dims, 0.0, 1.0)];
        check(&format!("sum_all {dims:?}"), &x, |tape, t| {
            ops::sum_all(tape, &t[0])
        });
        check(&format!("mean_all {dims:?}"), &x, |tape, t| {
            ops::mean_all(tape, &t[0])
        });
    }
    // A scalar input: nothing to sum over.
    let x = [input(&mut rng, &[])];
    check("sum_all of a scalar", &x, |tape, t| {
        ops::sum_all(tape, &t[0])
    });
    // Reductions composed: the gradient of one flows into another.
    let x = [input(&mut rng, &[4, 3, 5])];
    check("mean of a sum", &x, |tape, t| {
        let s = ops::sum(tape, &t[0], &[2], true)?;
        ops::mean(tape, &s, &[0], false)
    });
}

#[test]
fn reshape_permute_concat_slice_flip_and_reversal_match_the_cpu() {
    let Some(_dev) = gpu("layout ops") else {
        return;
    };
    let mut rng = Rng::seed(22);

    let x = [input(&mut rng, &[2, 3, 4])];
    check("reshape", &x, |tape, t| ops::reshape(tape, &t[0], &[6, 4]));
    check("reshape then permute", &x, |tape, t| {
        let r = ops::reshape(tape, &t[0], &[4, 6])?;
        ops::permute(tape, &r, &[1, 0])
    });

    let perms: [(&[usize], &[usize]); 6] = [
        (&[2, 3, 4, 5], &[0, 2, 1, 3]),
        (&[2, 3, 4, 5], &[3, 2, 1, 0]),
        (&[2, 3, 4, 5], &[1, 0, 2, 3]),
        (&[3, 4, 5], &[2, 0, 1]),
        (&[6, 7], &[1, 0]),
        (&[6, 7], &[0, 1]),
    ];
    for (dims, perm) in perms {
        let x = [input(&mut rng, dims)];
        check(&format!("permute {dims:?} by {perm:?}"), &x, |tape, t| {
            ops::permute(tape, &t[0], perm)
        });
    }

    let xs = [
        input(&mut rng, &[2, 3, 4]),
        input(&mut rng, &[2, 5, 4]),
        input(&mut rng, &[2, 1, 4]),
    ];
    check("concat along axis 1", &xs, |tape, t| {
        ops::concat(tape, &[&t[0], &t[1], &t[2]], 1)
    });
    let xs = [
        input(&mut rng, &[3, 4]),
        constant(&mut rng, &[2, 4]),
        input(&mut rng, &[1, 4]),
    ];
    check(
        "concat along axis 0, one input untracked",
        &xs,
        |tape, t| ops::concat(tape, &[&t[0], &t[1], &t[2]], 0),
    );
    let xs = [
        input(&mut rng, &[2, 3, 2, 2]),
        input(&mut rng, &[2, 3, 2, 3]),
    ];
    check("concat along the last axis", &xs, |tape, t| {
        ops::concat(tape, &[&t[0], &t[1]], 3)
    });

    let x = [input(&mut rng, &[2, 3, 5])];
    for (axis, start, end) in [(2, 1, 3), (0, 1, 2), (1, 0, 3), (1, 2, 3), (2, 0, 5)] {
        check(
            &format!("slice axis {axis} {start}..{end}"),
            &x,
            |tape, t| ops::slice(tape, &t[0], axis, start, end),
        );
    }
    for axis in 0..3 {
        check(&format!("flip axis {axis}"), &x, |tape, t| {
            ops::flip(tape, &t[0], axis)
        });
    }

    let x = [input(&mut rng, &[5, 3, 2])];
    for lengths in [[5, 2, 0], [5, 5, 5], [1, 3, 4]] {
        check(&format!("reverse_sequences {lengths:?}"), &x, |tape, t| {
            ops::reverse_sequences(tape, &t[0], &lengths)
        });
    }
    let x = [input(&mut rng, &[4, 2])];
    check("reverse_sequences (T, N)", &x, |tape, t| {
        ops::reverse_sequences(tape, &t[0], &[3, 4])
    });
}

#[test]
fn softmax_and_log_softmax_ops_match_the_cpu() {
    let Some(_dev) = gpu("softmax ops") else {
        return;
    };
    let mut rng = Rng::seed(23);
    for k in [1, 5, 37, 300] {
        for temperature in [1.0, 4.0] {
            let x = [input_in(&mut rng, &[7, k], -5.0, 5.0)];
            check(&format!("softmax k {k} T {temperature}"), &x, |tape, t| {
                ops::softmax(tape, &t[0], temperature)
            });
            check(
                &format!("log_softmax k {k} T {temperature}"),
                &x,
                |tape, t| ops::log_softmax(tape, &t[0], temperature),
            );
        }
    }
    let x = [input(&mut rng, &[2, 3, 10])];
    check("softmax (T, N, C)", &x, |tape, t| {
        ops::softmax(tape, &t[0], 2.0)
    });
    check("log_softmax (T, N, C)", &x, |tape, t| {
        ops::log_softmax(tape, &t[0], 2.0)
    });
}

#[test]
fn matmul_and_linear_match_the_cpu() {
    let Some(_dev) = gpu("matmul and linear") else {
        return;
    };
    let mut rng = Rng::seed(24);
    for (m, k, n) in [(1, 1, 1), (3, 5, 7), (64, 33, 17), (2, 300, 3)] {
        let ab = [input(&mut rng, &[m, k]), input(&mut rng, &[k, n])];
        check(&format!("matmul {m}x{k}x{n}"), &ab, |tape, t| {
            ops::matmul(tape, &t[0], &t[1])
        });
    }
    for (batch, m, k, n) in [(4, 6, 5, 3), (3, 1, 7, 2), (2, 17, 9, 11)] {
        let ab = [
            input(&mut rng, &[batch, m, k]),
            input(&mut rng, &[batch, k, n]),
        ];
        check(
            &format!("batched matmul {batch}x{m}x{k}x{n}"),
            &ab,
            |tape, t| ops::matmul(tape, &t[0], &t[1]),
        );
    }
    let ab = [input(&mut rng, &[5, 4]), constant(&mut rng, &[4, 6])];
    check("matmul, right operand untracked", &ab, |tape, t| {
        ops::matmul(tape, &t[0], &t[1])
    });
    let ab = [constant(&mut rng, &[2, 5, 4]), input(&mut rng, &[2, 4, 6])];
    check("batched matmul, left operand untracked", &ab, |tape, t| {
        ops::matmul(tape, &t[0], &t[1])
    });

    let shapes: [(&[usize], usize); 4] = [
        (&[2, 3, 8], 6),
        (&[5, 8], 6),
        (&[1, 4], 3),
        (&[2, 2, 3, 40], 33),
    ];
    for (x_dims, out_f) in shapes {
        let in_f = *x_dims.last().unwrap();
        let with_bias = [
            input(&mut rng, x_dims),
            input(&mut rng, &[out_f, in_f]),
            input(&mut rng, &[out_f]),
        ];
        check(
            &format!("linear {x_dims:?} to {out_f} with bias"),
            &with_bias,
            |tape, t| ops::linear(tape, &t[0], &t[1], Some(&t[2])),
        );
        check(
            &format!("linear {x_dims:?} to {out_f}"),
            &with_bias[..2],
            |tape, t| ops::linear(tape, &t[0], &t[1], None),
        );
    }
    let frozen = [
        constant(&mut rng, &[3, 5]),
        constant(&mut rng, &[4, 5]),
        input(&mut rng, &[4]),
    ];
    check("linear, only the bias tracked", &frozen, |tape, t| {
        ops::linear(tape, &t[0], &t[1], Some(&t[2]))
    });

    // Inputs on different devices are an error, not a silent copy.
    let a = Tensor::from_vec(values(&mut rng, 6, -1.0, 1.0), &[2, 3]).unwrap();
    let b = Tensor::from_vec(values(&mut rng, 12, -1.0, 1.0), &[3, 4])
        .unwrap()
        .to_device(GPU)
        .unwrap();
    assert!(ops::matmul(&mut Tape::new(), &a, &b).is_err());
    let w = Tensor::from_vec(values(&mut rng, 12, -1.0, 1.0), &[4, 3]).unwrap();
    let bias = Tensor::from_vec(values(&mut rng, 4, -1.0, 1.0), &[4])
        .unwrap()
        .to_device(GPU)
        .unwrap();
    assert!(ops::linear(&mut Tape::new(), &a, &w, Some(&bias)).is_err());
}
