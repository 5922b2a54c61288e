//! Matrix products: `matmul` (2-D and batched 3-D) and `linear` (x·Wᵀ + b,
//! as torch.nn.Linear).

use crate::autograd::Tape;
use crate::cpu::gemm::{gemm, gemm_par, MatRef};
use crate::error::{Error, Result};
use crate::ops::frozen_weights;
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
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("matmul", &[a, b])? {
        return gpu::matmul(tape, &dev, a, b, (batch, m, k, n), out_shape);
    }
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
    #[cfg(feature = "cuda")]
    {
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        if let Some(dev) = crate::tensor::cuda_device_of("linear", &inputs)? {
            return gpu::linear(tape, &dev, x, weight, bias, rows, out_shape);
        }
    }
    let mut y = match bias {
        Some(b) => b.data().repeat(rows),
        None => vec![0.0; rows * out_f],
    };
    let xm = MatRef::row_major(x.data(), rows, in_f);
    if tape.wants_grad(&[weight]) {
        let wm = MatRef::row_major(weight.data(), out_f, in_f);
        gemm_par(1.0, xm, wm.t(), 1.0, &mut y);
    } else {
        // A frozen layer reads its kept Wᵀ (the same values as the copy
        // the product would make).
        let wt = frozen_weights::transposed(weight, out_f, in_f);
        gemm_par(1.0, xm, MatRef::row_major(&wt, in_f, out_f), 1.0, &mut y);
    }
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

#[cfg(feature = "cuda")]
mod gpu {
    use crate::autograd::Tape;
    use crate::cuda::elementwise::repeat_row;
    use crate::cuda::gemm::{gemm, gemm_strided_batched, GpuMat};
    use crate::cuda::reduce::reduce_sum_to;
    use crate::cuda::{CudaDevice, DeviceBuffer};
    use crate::error::Result;
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    /// An output buffer of `len` values for a product with inner size `k`
    /// and beta 0: uninitialised, except zeros when `k` is 0 (the product
    /// then writes nothing the caller can count on).
    fn product_buffer(dev: &CudaDevice, len: usize, k: usize) -> Result<DeviceBuffer<f32>> {
        if k == 0 {
            dev.zeros(len)
        } else {
            dev.alloc(len)
        }
    }

    /// `batch` products of (m, k)·(k, n), the operands and the output packed
    /// one matrix after another.
    pub(super) fn matmul(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        a: &Tensor,
        b: &Tensor,
        (batch, m, k, n): (usize, usize, usize, usize),
        out: Shape,
    ) -> Result<Tensor> {
        const OP: &str = "matmul";
        let mut c = product_buffer(dev, batch * m * n, k)?;
        gemm_strided_batched(
            dev,
            1.0,
            (GpuMat::row_major(a.cuda_buffer(OP)?, m, k), m * k),
            (GpuMat::row_major(b.cuda_buffer(OP)?, k, n), k * n),
            0.0,
            (&mut c, 0, m * n),
            batch,
        )?;
        let y = Tensor::from_cuda(out, dev, c);
        let (a2, b2, dev) = (a.clone(), b.clone(), dev.clone());
        Ok(tape.record(OP, y, &[a, b], move |g, needs| {
            let gm = GpuMat::row_major(g.cuda_buffer(OP)?, m, n);
            let ga = if needs[0] {
                // dA_i = G_i · B_iᵀ
                let mut ga = product_buffer(&dev, batch * m * k, n)?;
                gemm_strided_batched(
                    &dev,
                    1.0,
                    (gm, m * n),
                    (GpuMat::row_major(b2.cuda_buffer(OP)?, k, n).t(), k * n),
                    0.0,
                    (&mut ga, 0, m * k),
                    batch,
                )?;
                Some(Tensor::from_cuda(*a2.shape(), &dev, ga))
            } else {
                None
            };
            let gb = if needs[1] {
                // dB_i = A_iᵀ · G_i
                let mut gb = product_buffer(&dev, batch * k * n, m)?;
                gemm_strided_batched(
                    &dev,
                    1.0,
                    (GpuMat::row_major(a2.cuda_buffer(OP)?, m, k).t(), m * k),
                    (gm, m * n),
                    0.0,
                    (&mut gb, 0, k * n),
                    batch,
                )?;
                Some(Tensor::from_cuda(*b2.shape(), &dev, gb))
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }

    /// `x · weightᵀ + bias` over `rows` rows of `x`; the bias gradient is
    /// the column sums of the output gradient.
    pub(super) fn linear(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        rows: usize,
        out: Shape,
    ) -> Result<Tensor> {
        const OP: &str = "linear";
        let (out_f, in_f) = (weight.dims()[0], weight.dims()[1]);
        let xm = GpuMat::row_major(x.cuda_buffer(OP)?, rows, in_f);
        let wm = GpuMat::row_major(weight.cuda_buffer(OP)?, out_f, in_f);
        let (mut y, beta) = match bias {
            Some(b) => (repeat_row(dev, b.cuda_buffer(OP)?, rows)?, 1.0),
            None => (product_buffer(dev, rows * out_f, in_f)?, 0.0),
        };
        gemm(dev, 1.0, xm, wm.t(), beta, &mut y)?;
        let y = Tensor::from_cuda(out, dev, y);
        let (x2, w2, dev) = (x.clone(), weight.clone(), dev.clone());
        let bias_shape = bias.map(|b| *b.shape());
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        Ok(tape.record(OP, y, &inputs, move |g, needs| {
            let gb = g.cuda_buffer(OP)?;
            let gm = GpuMat::row_major(gb, rows, out_f);
            let gx = if needs[0] {
                // dX = G · W
                let mut gx = product_buffer(&dev, rows * in_f, out_f)?;
                let wm = GpuMat::row_major(w2.cuda_buffer(OP)?, out_f, in_f);
                gemm(&dev, 1.0, gm, wm, 0.0, &mut gx)?;
                Some(Tensor::from_cuda(*x2.shape(), &dev, gx))
            } else {
                None
            };
            let gw = if needs[1] {
                // dW = Gᵀ · X
                let mut gw = product_buffer(&dev, out_f * in_f, rows)?;
                let xm = GpuMat::row_major(x2.cuda_buffer(OP)?, rows, in_f);
                gemm(&dev, 1.0, gm.t(), xm, 0.0, &mut gw)?;
                Some(Tensor::from_cuda(*w2.shape(), &dev, gw))
            } else {
                None
            };
            let mut grads = vec![gx, gw];
            if let Some(bias_shape) = bias_shape {
                grads.push(if needs[2] {
                    let sums = reduce_sum_to(
                        &dev,
                        gb,
                        &Shape::new(&[rows, out_f])?,
                        &Shape::new(&[1, out_f])?,
                    )?;
                    Some(Tensor::from_cuda(bias_shape, &dev, sums))
                } else {
                    None
                });
            }
            Ok(grads)
        }))
    }
}
