//! One bidirectional LSTM layer as one recorded op: the forward and the
//! reverse direction run side by side on the thread pool (`rayon::join`),
//! forward pass and backward pass alike (on a GPU, one after the other on
//! the device's stream), and the output is their concatenation on the
//! feature axis, (T, N, 2H).
//!
//! The values are those of two [`lstm_direction`](super::lstm::lstm_direction)
//! ops and a `concat`: each direction runs the same kernel on the same
//! inputs, and the input gradient is the sum of the two directions' (one
//! addition, as the tape's accumulation does).

use super::lstm::{
    grad_tensors, kept_transposes, kept_views, needs_of, params_of, sequence_dims, LstmWeights,
};
use crate::autograd::Tape;
use crate::cpu::lstm::{bilstm_forward_kept, lstm_backward, LstmDims};
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// Both directions of one layer over the padded batch `x` (T, N, F) from
/// zero states; returns (T, N, 2H): forward hidden states, then reverse
/// ones. Shapes and lengths are checked as by `lstm_direction`, and both
/// directions must have the same hidden size.
pub fn bilstm_layer(
    tape: &mut Tape,
    x: &Tensor,
    forward: LstmWeights,
    reverse: LstmWeights,
    lengths: &[usize],
) -> Result<Tensor> {
    const OP: &str = "lstm";
    let (t, n, f) = sequence_dims(OP, x, lengths)?;
    let h = forward.hidden_size(OP, f)?;
    let hr = reverse.hidden_size(OP, f)?;
    if hr != h {
        return Err(Error::shape(
            OP,
            format!("forward hidden size {h} but reverse hidden size {hr}"),
        ));
    }
    let dims = LstmDims {
        steps: t,
        batch: n,
        input: f,
        hidden: h,
    };
    let weights = |w: LstmWeights| {
        [
            w.w_ih.clone(),
            w.w_hh.clone(),
            w.b_ih.clone(),
            w.b_hh.clone(),
        ]
    };
    let (wf, wr) = (weights(forward), weights(reverse));
    let mut inputs = vec![x];
    inputs.extend(refs(&wf));
    inputs.extend(refs(&wr));
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of(OP, &inputs)? {
        return gpu::bilstm_layer(tape, &dev, &inputs, dims, lengths);
    }
    let save = tape.wants_grad(&inputs);
    let (kept_f, kept_r) = (
        kept_transposes(tape, [&wf[0], &wf[1]]),
        kept_transposes(tape, [&wr[0], &wr[1]]),
    );
    let (y, [cf, cr]) = bilstm_forward_kept(
        x.data(),
        [params_of(refs(&wf)), params_of(refs(&wr))],
        [kept_views(&kept_f), kept_views(&kept_r)],
        dims,
        lengths,
        save,
    );
    let y = Tensor::from_shape_vec(Shape::new(&[t, n, 2 * h])?, y);
    let (Some(cf), Some(cr)) = (cf, cr) else {
        return Ok(y);
    };
    let lengths = lengths.to_vec();
    let saved: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
    Ok(tape.record(OP, y, &inputs, move |g, needs| {
        let (gf, gr) = split(g.data(), h);
        let (x, wf, wr) = (&saved[0], &saved[1..5], &saved[5..9]);
        let direction = |w: &[Tensor], dy: &[f32], cache, reverse: bool, needs: &[bool]| {
            let p = params_of([&w[0], &w[1], &w[2], &w[3]]);
            lstm_backward(
                dy,
                x.data(),
                p,
                dims,
                &lengths,
                reverse,
                cache,
                needs_of(needs),
            )
        };
        let (need_f, need_r) = (
            [needs[0], needs[1], needs[2], needs[3], needs[4]],
            [needs[0], needs[5], needs[6], needs[7], needs[8]],
        );
        let (df, dr) = rayon::join(
            || direction(wf, &gf, &cf, false, &need_f),
            || direction(wr, &gr, &cr, true, &need_r),
        );
        let with_x = |w: &[Tensor]| with_input(x, w);
        let mut of_f = grad_tensors(df, &need_f, &with_x(wf));
        let of_r = grad_tensors(dr, &need_r, &with_x(wr));
        let dx = match (of_f[0].take(), &of_r[0]) {
            (Some(a), Some(b)) => {
                let sum = a.data().iter().zip(b.data()).map(|(a, b)| a + b).collect();
                Some(Tensor::from_shape_vec(*x.shape(), sum))
            }
            (a, b) => a.or_else(|| b.clone()),
        };
        let mut out = vec![dx];
        out.extend(of_f.into_iter().skip(1));
        out.extend(of_r.into_iter().skip(1));
        Ok(out)
    }))
}

/// The four tensors of one direction, borrowed.
fn refs(w: &[Tensor; 4]) -> [&Tensor; 4] {
    [&w[0], &w[1], &w[2], &w[3]]
}

/// The two halves of every `2h`-wide row of `g`.
fn split(g: &[f32], h: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut a, mut b) = (
        Vec::with_capacity(g.len() / 2),
        Vec::with_capacity(g.len() / 2),
    );
    for row in g.chunks_exact(2 * h) {
        a.extend_from_slice(&row[..h]);
        b.extend_from_slice(&row[h..]);
    }
    (a, b)
}

/// The GPU path: both directions one after the other on the device's
/// stream, their outputs joined on the feature axis.
/// The input `x` and a direction's four weights, in the order of the op's inputs.
fn with_input(x: &Tensor, w: &[Tensor]) -> [Tensor; 5] {
    [
        x.clone(),
        w[0].clone(),
        w[1].clone(),
        w[2].clone(),
        w[3].clone(),
    ]
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::super::lstm::gpu::{grad_tensors, params_of};
    use super::super::lstm::needs_of;
    use crate::autograd::Tape;
    use crate::cpu::lstm::LstmDims;
    use crate::cuda::elementwise::{binary_forward, Binary};
    use crate::cuda::layout::{concat, slice};
    use crate::cuda::lstm::{lstm_backward, lstm_forward};
    use crate::cuda::CudaDevice;
    use crate::error::Result;
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    const OP: &str = "lstm";

    /// One direction's four weight tensors, from `w` (at least four).
    fn four(w: &[Tensor]) -> [&Tensor; 4] {
        [&w[0], &w[1], &w[2], &w[3]]
    }

    /// `bilstm_layer` on a GPU, shapes already checked; `inputs` are x,
    /// then the forward direction's four weights, then the reverse one's.
    pub(super) fn bilstm_layer(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        inputs: &[&Tensor],
        dims: LstmDims,
        lengths: &[usize],
    ) -> Result<Tensor> {
        let save = tape.wants_grad(inputs);
        let saved: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
        let (t, n, h) = (dims.steps, dims.batch, dims.hidden);
        let half = Shape::new(&[t, n, h])?;
        let full = Shape::new(&[t, n, 2 * h])?;
        let xb = saved[0].cuda_buffer(OP)?;
        let run = |w: &[Tensor], reverse: bool| {
            lstm_forward(dev, xb, params_of(four(w))?, dims, lengths, reverse, save)
        };
        let (yf, cf) = run(&saved[1..5], false)?;
        let (yr, cr) = run(&saved[5..9], true)?;
        let y = concat(dev, &[(&yf, &half), (&yr, &half)], 2)?;
        let y = Tensor::from_cuda(full, dev, y);
        let (Some(cf), Some(cr)) = (cf, cr) else {
            return Ok(y);
        };
        let (lengths, dev) = (lengths.to_vec(), dev.clone());
        Ok(tape.record(OP, y, inputs, move |g, needs| {
            let gb = g.cuda_buffer(OP)?;
            let (gf, gr) = (
                slice(&dev, gb, &full, 2, 0, h)?,
                slice(&dev, gb, &full, 2, h, 2 * h)?,
            );
            let (x, wf, wr) = (&saved[0], &saved[1..5], &saved[5..9]);
            let (need_f, need_r) = (
                [needs[0], needs[1], needs[2], needs[3], needs[4]],
                [needs[0], needs[5], needs[6], needs[7], needs[8]],
            );
            let xb = x.cuda_buffer(OP)?;
            let df = lstm_backward(
                &dev,
                &gf,
                xb,
                params_of(four(wf))?,
                dims,
                &lengths,
                false,
                &cf,
                needs_of(&need_f),
            )?;
            let dr = lstm_backward(
                &dev,
                &gr,
                xb,
                params_of(four(wr))?,
                dims,
                &lengths,
                true,
                &cr,
                needs_of(&need_r),
            )?;
            let with_x = |w: &[Tensor]| super::with_input(x, w);
            let mut of_f = grad_tensors(&dev, df, &need_f, &with_x(wf))?;
            let mut of_r = grad_tensors(&dev, dr, &need_r, &with_x(wr))?;
            let dx = match (of_f[0].take(), of_r[0].take()) {
                (Some(a), Some(b)) => {
                    let shape = *x.shape();
                    let sum = binary_forward(
                        &dev,
                        Binary::Add,
                        a.cuda_buffer(OP)?,
                        &shape,
                        b.cuda_buffer(OP)?,
                        &shape,
                        &shape,
                    )?;
                    Some(Tensor::from_cuda(shape, &dev, sum))
                }
                (a, b) => a.or(b),
            };
            let mut out = vec![dx];
            out.extend(of_f.into_iter().skip(1));
            out.extend(of_r.into_iter().skip(1));
            Ok(out)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{concat, lstm::lstm_direction, mul, sum_all};
    use crate::rng::Rng;

    fn tensor(rng: &mut Rng, dims: &[usize]) -> Tensor {
        let n = dims.iter().product();
        Tensor::from_vec((0..n).map(|_| rng.range(-1.0, 1.0)).collect(), dims).unwrap()
    }

    /// The layer gives the bits of two `lstm_direction` ops and a concat,
    /// in its output and in every gradient, with ragged lengths.
    #[test]
    fn matches_two_directions_and_concat_bit_for_bit() {
        let mut rng = Rng::seed(21);
        let (t, n, f, h) = (5, 3, 4, 6);
        let x = tensor(&mut rng, &[t, n, f]).tracked();
        let w: Vec<Tensor> = [[4 * h, f], [4 * h, h], [4 * h, 1], [4 * h, 1]]
            .iter()
            .cycle()
            .take(8)
            .map(|d| {
                let dims: Vec<usize> = d.iter().copied().filter(|&v| v != 1).collect();
                tensor(&mut rng, &dims).tracked()
            })
            .collect();
        let dir = |k: usize| LstmWeights {
            w_ih: &w[4 * k],
            w_hh: &w[4 * k + 1],
            b_ih: &w[4 * k + 2],
            b_hh: &w[4 * k + 3],
        };
        let lengths = [5, 2, 4];
        let probe = tensor(&mut rng, &[t, n, 2 * h]);
        let run = |both: bool| {
            let mut tape = Tape::new();
            let y = if both {
                bilstm_layer(&mut tape, &x, dir(0), dir(1), &lengths).unwrap()
            } else {
                let a = lstm_direction(&mut tape, &x, dir(0), &lengths, false).unwrap();
                let b = lstm_direction(&mut tape, &x, dir(1), &lengths, true).unwrap();
                concat(&mut tape, &[&a, &b], 2).unwrap()
            };
            let weighted = mul(&mut tape, &y, &probe).unwrap();
            let loss = sum_all(&mut tape, &weighted).unwrap();
            let grads = tape.backward(&loss).unwrap();
            let mut out = vec![y.to_vec()];
            for p in std::iter::once(&x).chain(&w) {
                out.push(grads.get(p).unwrap().to_vec());
            }
            out
        };
        let bits = |v: Vec<Vec<f32>>| -> Vec<Vec<u32>> {
            v.iter()
                .map(|t| t.iter().map(|x| x.to_bits()).collect())
                .collect()
        };
        assert_eq!(bits(run(true)), bits(run(false)));
    }
}
