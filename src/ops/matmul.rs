//! Matrix products: `matmul` (2-D and batched 3-D) and `linear` (x·Wᵀ + b,
//! as torch.nn.Linear).

use crate::autograd::Tape;
use crate::cpu::gemm::{gemm, gemm_par, MatRef};
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};
use rayon::prelude::*;

/// `a · b` for (M, K)·(K, N), or batched (B, M, K)·(B, K, N).
pub fn matmul(tape: &mut Tape, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (batch, m, k, n) = match (a.dims(), b.dims()) {
        ([m, k], [k2, n]) if k == k2 => (1, *m, *k, *n),
        ([ba, m, k], [bb, k2, n]) if ba == bb && k == k2 => (*ba, *m, *k, *n),
        _ => {
            return Err(Error::shape(
                "matmul",
                format!(
                    "cannot multiply {:?} by {:?} (expected (M,K)·(K,N) or (B,M,K)·(B,K,N))",
                    a.shape(),
                    b.shape()
                ),
            ))
        }
    };
    let out_shape = if a.rank() == 2 {
        Shape::new(&[m, n])?
    } else {
        Shape::new(&[batch, m, n])?
    };
    let mut c = vec![0.0; batch * m * n];
    batched(&mut c, m * n, batch, |i, out| {
        let am = MatRef::row_major(&a.data()[i * m * k..(i + 1) * m * k], m, k);
        let bm = MatRef::row_major(&b.data()[i * k * n..(i + 1) * k * n], k, n);
        gemm(1.0, am, bm, 0.0, out);
    });
    let y = Tensor::from_shape_vec(out_shape, c);
    let (a2, b2) = (a.clone(), b.clone());
    Ok(tape.record("matmul", y, &[a, b], move |g, needs| {
        let gd = g.data();
        let ga = needs[0].then(|| {
            let mut ga = vec![0.0; batch * m * k];
            batched(&mut ga, m * k, batch, |i, out| {
                let gm = MatRef::row_major(&gd[i * m * n..(i + 1) * m * n], m, n);
                let bm = MatRef::row_major(&b2.data()[i * k * n..(i + 1) * k * n], k, n);
                gemm(1.0, gm, bm.t(), 0.0, out);
            });
            Tensor::from_shape_vec(*a2.shape(), ga)
        });
        let gb = needs[1].then(|| {
            let mut gb = vec![0.0; batch * k * n];
            batched(&mut gb, k * n, batch, |i, out| {
                let am = MatRef::row_major(&a2.data()[i * m * k..(i + 1) * m * k], m, k);
                let gm = MatRef::row_major(&gd[i * m * n..(i + 1) * m * n], m, n);
                gemm(1.0, am.t(), gm, 0.0, out);
            });
            Tensor::from_shape_vec(*b2.shape(), gb)
        });
        Ok(vec![ga, gb])
    }))
}

/// Runs `f(i, block_i)` for each of `batch` output blocks of `block` values, in parallel.
fn batched(out: &mut [f32], block: usize, batch: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if block == 0 {
        return;
    }
    if batch == 1 {
        f(0, out);
    } else {
        out.par_chunks_mut(block)
            .enumerate()
            .for_each(|(i, o)| f(i, o));
    }
}

/// `x · weightᵀ + bias` over the last axis of `x` (…, in), with `weight`
/// (out, in) and an optional `bias` (out), as torch.nn.Linear.
pub fn linear(
    tape: &mut Tape,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    weight.expect_rank("linear", "weight", 2)?;
    let (out_f, in_f) = (weight.dims()[0], weight.dims()[1]);
    if x.rank() == 0 || *x.dims().last().unwrap_or(&0) != in_f {
        return Err(Error::shape(
            "linear",
            format!(
                "input {:?} does not end in {in_f} features for weight {:?}",
                x.shape(),
                weight.shape()
            ),
        ));
    }
    if let Some(b) = bias {
        b.expect_dims("linear", "bias", &[out_f])?;
    }
    let rows = x.numel() / in_f.max(1);
    let mut out_dims = x.dims().to_vec();
    let last = out_dims.len() - 1;
    out_dims[last] = out_f;
    let out_shape = Shape::new(&out_dims)?;
    let mut y = match bias {
        Some(b) => b.data().repeat(rows),
        None => vec![0.0; rows * out_f],
    };
    let xm = MatRef::row_major(x.data(), rows, in_f);
    let wm = MatRef::row_major(weight.data(), out_f, in_f);
    gemm_par(1.0, xm, wm.t(), 1.0, &mut y);
    let y = Tensor::from_shape_vec(out_shape, y);
    let (x2, w2) = (x.clone(), weight.clone());
    let bias_shape = bias.map(|b| *b.shape());
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    Ok(tape.record("linear", y, &inputs, move |g, needs| {
        let gm = MatRef::row_major(g.data(), rows, out_f);
        let gx = needs[0].then(|| {
            let mut gx = vec![0.0; rows * in_f];
            gemm_par(
                1.0,
                gm,
                MatRef::row_major(w2.data(), out_f, in_f),
                0.0,
                &mut gx,
            );
            Tensor::from_shape_vec(*x2.shape(), gx)
        });
        let gw = needs[1].then(|| {
            let mut gw = vec![0.0; out_f * in_f];
            gemm(
                1.0,
                gm.t(),
                MatRef::row_major(x2.data(), rows, in_f),
                0.0,
                &mut gw,
            );
            Tensor::from_shape_vec(*w2.shape(), gw)
        });
        let mut grads = vec![gx, gw];
        if let Some(bias_shape) = bias_shape {
            grads.push(needs[2].then(|| {
                let mut gb = vec![0.0; out_f];
                for row in g.data().chunks_exact(out_f) {
                    gb.iter_mut().zip(row).for_each(|(b, v)| *b += v);
                }
                Tensor::from_shape_vec(bias_shape, gb)
            }));
        }
        Ok(grads)
    }))
}
