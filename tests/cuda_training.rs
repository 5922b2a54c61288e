//! The whole model on the GPU: CRNN training steps, every distillation loss,
//! evaluation and checkpoints give what the CPU gives (to float rounding),
//! and a repeated training step takes no new device memory. Without a GPU
//! each test prints that it was skipped and why; with `RETORT_REQUIRE_GPU=1`
//! it fails instead.
#![cfg(feature = "cuda")]

#[path = "common/gpu.rs"]
mod gpu_common;
use gpu_common::{assert_close, gpu};

use retort::data::batch::Batch;
use retort::data::charset::Charset;
use retort::distill::{
    attention_transfer, coral, fsp_loss, hint_loss, mk_mmd, sequence_kd, similarity_preserving,
    soft_kd, tolerant_gap, Adaptor,
};
use retort::nn::{Crnn, CrnnConfig};
use retort::optim::{Optimizer, OptimizerConfig};
use retort::train::{recognize_batch, train_step};
use retort::{Device, Rng, Tape, Tensor};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

const GPU: Device = Device::Cuda(0);

/// Held by every test of this file for its whole run. Tensors on
/// `Device::Cuda(0)` all use the one shared device and its caching
/// allocator, so a test running beside another would take buffers from
/// (or add buffers to) the cache it measures
/// (`a_repeated_training_step_takes_no_new_device_memory`).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A test that failed while holding the lock leaves nothing to repair.
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn batch(rng: &mut Rng, n: usize, w: usize) -> Batch {
    let images: Vec<f32> = (0..n * 32 * w).map(|_| rng.range(-1.0, 1.0)).collect();
    Batch {
        images: Tensor::from_vec(images, &[n, 1, 32, w]).unwrap(),
        widths: (0..n).map(|i| w - 8 * (i % 3)).collect(),
        targets: (0..n)
            .map(|i| (0..3 + i % 4).map(|j| 1 + (i * 7 + j * 3) % 36).collect())
            .collect(),
        labels: vec![String::new(); n],
        paths: (0..n).map(|i| PathBuf::from(format!("{i}.png"))).collect(),
    }
}

fn model(preset: &str, seed: u64) -> Crnn {
    Crnn::new(CrnnConfig::preset(preset).unwrap(), &mut Rng::seed(seed)).unwrap()
}

fn state(model: &Crnn) -> Vec<(String, Vec<f32>)> {
    model
        .state_dict()
        .into_iter()
        .map(|(name, t)| (name, t.try_to_vec().unwrap()))
        .collect()
}

fn same_steps(preset: &str, optimizer: OptimizerConfig, steps: usize) {
    let mut rng = Rng::seed(7);
    let b = batch(&mut rng, 6, 64);
    let mut cpu_model = model(preset, 1);
    let mut gpu_model = model(preset, 1);
    gpu_model.to_device(GPU).unwrap();
    assert_eq!(gpu_model.device(), GPU);
    let mut cpu_opt = Optimizer::new(optimizer.clone()).unwrap();
    let mut gpu_opt = Optimizer::new(optimizer).unwrap();
    let (mut cpu_rng, mut gpu_rng) = (Rng::seed(9), Rng::seed(9));
    for step in 0..steps {
        let c = train_step(
            &mut cpu_model,
            &mut cpu_opt,
            &b,
            1e-2,
            Some(5.0),
            &mut cpu_rng,
        )
        .unwrap();
        let g = train_step(
            &mut gpu_model,
            &mut gpu_opt,
            &b,
            1e-2,
            Some(5.0),
            &mut gpu_rng,
        )
        .unwrap();
        assert!(!c.skipped && !g.skipped, "step {step}");
        assert_close(
            &format!("{preset} loss, step {step}"),
            &[g.loss],
            &[c.loss],
            1e-3,
        );
        assert_close(
            &format!("{preset} gradient norm, step {step}"),
            &[g.grad_norm],
            &[c.grad_norm],
            2e-3,
        );
    }
    for ((name, g), (_, c)) in state(&gpu_model).iter().zip(state(&cpu_model)) {
        assert_close(&format!("{preset} {name} after {steps} steps"), g, &c, 2e-3);
    }
}

#[test]
fn crnn_training_steps_with_sgd_match_the_cpu() {
    let _serial = one_at_a_time();
    if gpu("crnn_training_steps_with_sgd_match_the_cpu").is_none() {
        return;
    }
    same_steps("crnn-s", OptimizerConfig::sgd(0.9), 3);
    same_steps("crnn-t", OptimizerConfig::sgd(0.9), 2);
}

#[test]
fn a_crnn_training_step_with_adam_matches_the_cpu() {
    let _serial = one_at_a_time();
    if gpu("a_crnn_training_step_with_adam_matches_the_cpu").is_none() {
        return;
    }
    // One step. Adam's first update of a value is lr·g / (|g| + eps): with
    // the default eps of 1e-8, a gradient value that cancels to ~1e-8 (its
    // rounding differs between the CPU and the GPU) can step by +lr on one
    // and -lr on the other, far outside any tolerance, and a model of tens
    // of thousands of values is likely to hold one. With eps 1e-3 an error
    // in a gradient value moves its step by at most lr/eps times itself,
    // while gradients well above eps still take Adam's sign-like steps.
    let adam = OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-3,
        weight_decay: 0.0,
    };
    same_steps("crnn-s", adam, 1);
}

#[test]
fn a_repeated_training_step_takes_no_new_device_memory() {
    let _serial = one_at_a_time();
    let Some(dev) = gpu("a_repeated_training_step_takes_no_new_device_memory") else {
        return;
    };
    let mut rng = Rng::seed(3);
    let b = batch(&mut rng, 8, 64);
    let mut m = model("crnn-s", 2);
    m.to_device(GPU).unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::adam()).unwrap();
    for _ in 0..2 {
        train_step(&mut m, &mut opt, &b, 1e-3, Some(5.0), &mut rng).unwrap();
    }
    dev.synchronize().unwrap();
    let before = dev.pool_stats().device_allocations;
    for _ in 0..3 {
        train_step(&mut m, &mut opt, &b, 1e-3, Some(5.0), &mut rng).unwrap();
    }
    dev.synchronize().unwrap();
    assert_eq!(
        dev.pool_stats().device_allocations,
        before,
        "{:?}",
        dev.pool_stats()
    );
}

#[test]
fn evaluation_reads_the_same_text_and_checkpoints_hold_the_same_values() {
    let _serial = one_at_a_time();
    if gpu("evaluation_reads_the_same_text_and_checkpoints_hold_the_same_values").is_none() {
        return;
    }
    let mut rng = Rng::seed(5);
    let b = batch(&mut rng, 5, 96);
    let mut cpu_model = model("crnn-s", 4);
    let mut gpu_model = model("crnn-s", 4);
    gpu_model.to_device(GPU).unwrap();
    let charset = Charset::default_alnum();
    let cpu_read = recognize_batch(&mut cpu_model, &b, &charset, 1).unwrap();
    let gpu_read = recognize_batch(&mut gpu_model, &b, &charset, 1).unwrap();

    // Greedy decoding takes each real frame's best class. An untrained
    // model's two best logits can lie closer than CPU and GPU rounding
    // apart, and then the texts may rightly differ: a sample's text is
    // compared only when every real frame's best class leads the runner-up
    // by more than twice the largest logit difference seen (which settles
    // its argmax on both devices); each clear frame's argmax must agree.
    let logits = |m: &mut Crnn| {
        let out = m
            .forward(
                &mut Tape::no_grad(),
                &b.images,
                &b.widths,
                false,
                &mut Rng::seed(0),
            )
            .unwrap();
        let dims = out.logits.dims().to_vec();
        (out.logits.try_to_vec().unwrap(), dims, out.lengths)
    };
    let (cl, dims, lengths) = logits(&mut cpu_model);
    let (gl, gdims, glengths) = logits(&mut gpu_model);
    assert_eq!(
        (&gdims, &glengths),
        (&dims, &lengths),
        "logit shape and lengths"
    );
    assert_close("evaluation logits", &gl, &cl, 1e-3);
    let margin = 2.0
        * gl.iter()
            .zip(&cl)
            .map(|(g, c)| (g - c).abs())
            .fold(0.0f32, f32::max);
    let (n, k) = (dims[1], dims[2]);
    let best_two = |row: &[f32]| {
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        (order[0], row[order[0]] - row[order[1]])
    };
    let mut compared = 0;
    for (i, (g, c)) in gpu_read.iter().zip(&cpu_read).enumerate() {
        let mut clear = true;
        for t in 0..lengths[i] {
            let at = (t * n + i) * k;
            let (cb, gap) = best_two(&cl[at..at + k]);
            if gap > margin {
                let (gb, _) = best_two(&gl[at..at + k]);
                assert_eq!(gb, cb, "sample {i}, frame {t}: best class (lead {gap})");
            } else {
                clear = false;
            }
        }
        if clear {
            assert_eq!(g.text, c.text, "sample {i}");
            compared += 1;
        } else {
            eprintln!(
                "sample {i}: a frame's two best classes are within rounding; text not compared"
            );
        }
    }
    assert!(compared > 0, "no sample was clear of near ties");
    let dir = std::env::temp_dir().join(format!("retort-cuda-ck-{}", std::process::id()));
    retort::checkpoint::save(&dir, &gpu_model, charset.symbols()).unwrap();
    let loaded = retort::checkpoint::load(&dir).unwrap().model;
    for ((name, g), (_, c)) in state(&loaded).iter().zip(state(&cpu_model)) {
        assert_eq!(g, &c, "{name}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn rand(rng: &mut Rng, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.range(-1.5, 1.5)).collect(), dims).unwrap()
}

/// `loss` on CPU copies and on GPU copies of `inputs` (the first `tracked`
/// of them tracked): the values and the gradients of the tracked inputs agree.
fn same_loss(
    what: &str,
    inputs: &[Tensor],
    tracked: usize,
    rtol: f32,
    loss: impl Fn(&mut Tape, &[Tensor]) -> retort::Result<Tensor>,
) {
    let run = |device: Device| {
        let xs: Vec<Tensor> = inputs
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let x = x.to_device(device).unwrap().detach();
                if i < tracked {
                    x.tracked()
                } else {
                    x
                }
            })
            .collect();
        let mut tape = Tape::new();
        let l = loss(&mut tape, &xs).unwrap();
        assert_eq!(l.device(), device, "{what}: loss device");
        let value = l.try_to_vec().unwrap();
        let grads = tape.backward(&l).unwrap();
        let g: Vec<Vec<f32>> = xs[..tracked]
            .iter()
            .map(|x| grads.get(x).unwrap().try_to_vec().unwrap())
            .collect();
        (value, g)
    };
    let (cv, cg) = run(Device::Cpu);
    let (gv, gg) = run(GPU);
    assert_close(&format!("{what} value"), &gv, &cv, rtol);
    for (i, (g, c)) in gg.iter().zip(&cg).enumerate() {
        assert_close(&format!("{what} gradient {i}"), g, c, rtol);
    }
}

#[test]
fn every_distillation_loss_matches_the_cpu() {
    let _serial = one_at_a_time();
    if gpu("every_distillation_loss_matches_the_cpu").is_none() {
        return;
    }
    let mut rng = Rng::seed(11);
    let lengths = vec![7, 5, 3];
    let (s, t) = (rand(&mut rng, &[7, 3, 11]), rand(&mut rng, &[7, 3, 11]));
    same_loss("soft_kd", &[s.clone(), t.clone()], 1, 1e-4, |tape, x| {
        soft_kd(tape, &x[0], &x[1], &lengths, 4.0)
    });
    let t_short = rand(&mut rng, &[5, 3, 11]);
    same_loss("sequence_kd", &[s.clone(), t_short], 1, 1e-3, |tape, x| {
        sequence_kd(tape, &x[0], &x[1], &lengths, &[5, 4, 2], 2.0)
    });
    same_loss(
        "tolerant_gap",
        std::slice::from_ref(&s),
        1,
        1e-4,
        |tape, x| tolerant_gap(tape, &x[0], &lengths, 3),
    );
    let (fs, ft) = (rand(&mut rng, &[3, 4, 2, 6]), rand(&mut rng, &[3, 4, 2, 6]));
    same_loss(
        "attention_transfer",
        &[fs.clone(), ft.clone()],
        1,
        1e-4,
        |tape, x| attention_transfer(tape, &x[0], &x[1], 2.0),
    );
    same_loss(
        "similarity_preserving",
        &[fs.clone(), ft.clone()],
        1,
        1e-4,
        |tape, x| similarity_preserving(tape, &x[0], &x[1]),
    );
    let (fs2, ft2) = (rand(&mut rng, &[3, 5, 2, 6]), rand(&mut rng, &[3, 5, 2, 6]));
    same_loss(
        "fsp_loss",
        &[fs.clone(), fs2, ft.clone(), ft2],
        2,
        1e-4,
        |tape, x| fsp_loss(tape, (&x[0], &x[1]), (&x[2], &x[3])),
    );
    let ft8 = rand(&mut rng, &[3, 8, 2, 6]);
    let inputs = vec![fs.clone(), ft8];
    same_loss("hint_loss", &inputs, 1, 1e-4, |tape, x| {
        let mut a = Adaptor::for_map(4, 8, &mut Rng::seed(1)).unwrap();
        for (_, p) in a.params_mut() {
            p.move_to(x[0].device()).unwrap();
        }
        hint_loss(tape, &a, &x[0], &x[1])
    });
    let (src, dst) = (rand(&mut rng, &[6, 5]), rand(&mut rng, &[8, 5]));
    same_loss("coral", &[src.clone(), dst.clone()], 1, 1e-4, |tape, x| {
        coral(tape, &x[0], &x[1])
    });
    same_loss("mk_mmd", &[src, dst], 1, 1e-4, |tape, x| {
        mk_mmd(tape, &x[0], &x[1], 3)
    });
}
