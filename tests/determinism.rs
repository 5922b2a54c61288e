//! The same inputs and the same thread count give bit-identical results,
//! forward and backward, through every parallel kernel of a CRNN step.

use retort::ops::batchnorm2d::{batchnorm2d, RunningStats};
use retort::ops::conv2d::{conv2d, Conv2dSpec};
use retort::ops::ctc::{ctc_loss, CtcOptions};
use retort::ops::lstm::{lstm, LstmLayer, LstmWeights};
use retort::ops::maxpool2d::{maxpool2d, Pool2dSpec};
use retort::{ops, Rng, Tape, Tensor};

fn random(rng: &mut Rng, dims: &[usize], scale: f32) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.normal() * scale).collect(), dims)
        .unwrap()
        .tracked()
}

/// One small CRNN-shaped training step; returns the loss and every gradient.
fn step() -> Vec<Vec<f32>> {
    let mut rng = Rng::seed(7);
    let (n, h, w, c, hid, k) = (24, 8, 48, 6, 5, 7);
    let x = random(&mut rng, &[n, 1, h, w], 1.0);
    let wc = random(&mut rng, &[c, 1, 3, 3], 0.3);
    let (gamma, beta) = (random(&mut rng, &[c], 0.1), random(&mut rng, &[c], 0.1));
    let f = c * h / 2;
    let lw: Vec<Tensor> = [[4 * hid, f], [4 * hid, hid], [4 * hid, 1], [4 * hid, 1]]
        .iter()
        .map(|d| {
            let dims: Vec<usize> = d.iter().copied().filter(|&v| v != 1).collect();
            random(&mut rng, &dims, 0.2)
        })
        .collect();
    let head = random(&mut rng, &[k, 2 * hid], 0.3);

    let mut tape = Tape::new();
    let y = conv2d(&mut tape, &x, &wc, None, Conv2dSpec::new((1, 1), (1, 1))).unwrap();
    let mut stats = RunningStats::new(c);
    let y = batchnorm2d(&mut tape, &y, &gamma, &beta, &mut stats, true).unwrap();
    let y = ops::relu(&mut tape, &y).unwrap();
    let y = maxpool2d(&mut tape, &y, Pool2dSpec::new((2, 2), (2, 2))).unwrap();
    let t = w / 2;
    let seq = ops::permute(&mut tape, &y, &[3, 0, 1, 2]).unwrap();
    let seq = ops::reshape(&mut tape, &seq, &[t, n, f]).unwrap();
    let dir = LstmWeights {
        w_ih: &lw[0],
        w_hh: &lw[1],
        b_ih: &lw[2],
        b_hh: &lw[3],
    };
    let lengths: Vec<usize> = (0..n).map(|i| t - i % 5).collect();
    let layer = LstmLayer {
        forward: dir,
        reverse: Some(dir),
    };
    let r = lstm(&mut tape, &seq, &[layer], &lengths).unwrap();
    let logits = ops::linear(&mut tape, &r, &head, None).unwrap();
    let lp = ops::log_softmax(&mut tape, &logits, 1.0).unwrap();
    let targets: Vec<Vec<usize>> = (0..n).map(|i| vec![1 + i % (k - 1), 2, 3]).collect();
    let loss = ctc_loss(&mut tape, &lp, &targets, &lengths, CtcOptions::default()).unwrap();
    let grads = tape.backward(&loss).unwrap();
    let mut out = vec![loss.to_vec(), stats.mean.to_vec(), stats.var.to_vec()];
    for p in [
        &x, &wc, &gamma, &beta, &lw[0], &lw[1], &lw[2], &lw[3], &head,
    ] {
        out.push(grads.get(p).unwrap().to_vec());
    }
    out
}

fn bits(values: &[Vec<f32>]) -> Vec<Vec<u32>> {
    values
        .iter()
        .map(|v| v.iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn same_thread_count_gives_bit_identical_steps() {
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let first = bits(&pool.install(step));
        let second = bits(&pool.install(step));
        assert_eq!(first, second, "{threads} threads");
    }
}
