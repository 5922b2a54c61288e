//! 2-D convolution, as `torch.nn.functional.conv2d` (no dilation, no groups).
//!
//! Forward: im2col + GEMM per sample, samples in parallel. Backward: the
//! input gradient is `col2im(Wᵀ · dY)`, the weight gradient `Σ dY · colᵀ`
//! over the im2col matrices rebuilt from the saved input, the bias gradient
//! the sum of `dY`.

use crate::autograd::Tape;
use crate::cpu::batchnorm2d::{batchnorm2d_relu_inplace, ChannelAffine};
use crate::cpu::conv2d::{
    conv2d_backward_bias, conv2d_backward_input, conv2d_backward_weight,
    conv2d_forward_tapwise_slots, ConvGeom,
};
use crate::cpu::thin_block;
use crate::cpu::uninit::vec_written_by;
use crate::cpu::{winograd, winograd4};
use crate::error::{Error, Result};
use crate::ops::batchnorm2d::{batchnorm2d_relu, expect_stats_on_input_device, RunningStats};
use crate::ops::frozen_weights;
use crate::ops::maxpool2d::{maxpool2d, Pool2dSpec};
use crate::tensor::{Device, Shape, Tensor};
use std::mem::MaybeUninit;

/// Stride and zero padding of a convolution, (height, width) each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dSpec {
    /// Step between windows, (vertical, horizontal); both must be non-zero.
    pub stride: (usize, usize),
    /// Zeros added on each side, (top and bottom, left and right).
    pub padding: (usize, usize),
}

impl Default for Conv2dSpec {
    /// Stride 1, no padding, as PyTorch's defaults.
    fn default() -> Self {
        Conv2dSpec {
            stride: (1, 1),
            padding: (0, 0),
        }
    }
}

impl Conv2dSpec {
    /// A spec from its stride and padding.
    pub fn new(stride: (usize, usize), padding: (usize, usize)) -> Self {
        Conv2dSpec { stride, padding }
    }
}

/// The geometry of `conv2d` on inputs of these shapes, or an error naming them.
fn geometry(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: Conv2dSpec,
) -> Result<ConvGeom> {
    const OP: &str = "conv2d";
    x.expect_rank(OP, "input", 4)?;
    weight.expect_rank(OP, "weight", 4)?;
    let (xd, wd) = (x.dims(), weight.dims());
    if spec.stride.0 == 0 || spec.stride.1 == 0 {
        return Err(Error::invalid(
            OP,
            format!("stride {:?} must be non-zero", spec.stride),
        ));
    }
    if xd[1..].contains(&0) || wd.contains(&0) {
        return Err(Error::shape(
            OP,
            format!(
                "input {:?} and weight {:?} must have non-zero channel and spatial sizes",
                x.shape(),
                weight.shape()
            ),
        ));
    }
    if xd[1] != wd[1] {
        return Err(Error::shape(
            OP,
            format!(
                "input {:?} has {} channels, weight {:?} expects {}",
                x.shape(),
                xd[1],
                weight.shape(),
                wd[1]
            ),
        ));
    }
    if let Some(b) = bias {
        if b.dims() != [wd[0]] {
            return Err(Error::shape(
                OP,
                format!(
                    "bias has shape {:?}, expected [{}] for weight {:?}",
                    b.shape(),
                    wd[0],
                    weight.shape()
                ),
            ));
        }
    }
    ConvGeom::new(
        (xd[1], xd[2], xd[3]),
        (wd[2], wd[3]),
        spec.stride,
        spec.padding,
    )
    .ok_or_else(|| {
        Error::shape(
            OP,
            format!(
                "kernel {}x{} of weight {:?} is larger than input {:?} padded by {:?}",
                wd[2],
                wd[3],
                weight.shape(),
                x.shape(),
                spec.padding
            ),
        )
    })
}

/// The convolution's `len` output values on the CPU. A 3x3 layer runs
/// Winograd F(4x4, 3x3) where it applies ([`winograd4::applies`]),
/// else F(2x2, 3x3) ([`winograd::applies_frozen`]), each on a
/// weight transform kept from call to call when the weight is `frozen` (no
/// gradient wanted: `ops::frozen_weights`), else transformed for the call:
/// the same values either way, so that the evaluation block, the separate
/// ops and a recorded forward pass give the same bits.
///
/// With `relu_affine` (an evaluation BatchNorm's map, then a ReLU), the
/// Winograd paths apply it in their output transform and this says true;
/// the other paths say false and leave it to the caller.
fn forward_values(
    x: &Tensor,
    g: &ConvGeom,
    weight: &Tensor,
    bias: Option<&Tensor>,
    frozen: bool,
    relu_affine: Option<ChannelAffine>,
    len: usize,
) -> (Vec<f32>, bool) {
    let (n, o) = (x.dims()[0], weight.dims()[0]);
    let bias = bias.map(|b| b.data());
    if winograd4::applies(g, n, o) {
        let pooled = |u: &[f32], y: &mut [MaybeUninit<f32>]| {
            let none = winograd4::Pool::None;
            winograd4::conv2d_winograd4_pooled(x.data(), g, u, o, bias, relu_affine, none, y)
        };
        // SAFETY: F(4x4) writes every value of its output.
        let y = unsafe {
            if frozen {
                let u = frozen_weights::winograd4_weight(weight, o, g.c);
                vec_written_by(len, |y| pooled(&u, y))
            } else {
                let u = winograd4::transform_weight(weight.data(), o, g.c);
                vec_written_by(len, |y| pooled(&u, y))
            }
        };
        return (y, relu_affine.is_some());
    }
    if !(winograd::applies_frozen(g, n) || winograd::applies(g, n)) {
        let tapwise = |y: &mut [MaybeUninit<f32>]| {
            conv2d_forward_tapwise_slots(x.data(), g, weight.data(), o, bias, y)
        };
        // SAFETY: the tapwise convolution writes every value of its output.
        return (unsafe { vec_written_by(len, tapwise) }, false);
    }
    let mut y = vec![0.0f32; len];
    let winograd_with = |u: &[f32], y: &mut [f32]| {
        winograd::conv2d_winograd_then(x.data(), g, u, o, bias, relu_affine, y);
        relu_affine.is_some()
    };
    let fused = if winograd::applies_frozen(g, n) && frozen {
        winograd_with(&frozen_weights::winograd_weight(weight, o, g.c), &mut y)
    } else {
        winograd_with(&winograd::transform_weight(weight.data(), o, g.c), &mut y)
    };
    (y, fused)
}

/// Convolves `x` (N, C, H, W) with `weight` (O, C, kh, kw) and adds `bias`
/// (O) to each output channel, giving (N, O, Ho, Wo) with
/// `Ho = (H + 2 pad_h - kh) / stride_h + 1` (likewise `Wo`), as
/// `torch.nn.functional.conv2d`. Errors on mismatched shapes, a zero stride
/// or a kernel larger than the padded input.
pub fn conv2d(
    tape: &mut Tape,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: Conv2dSpec,
) -> Result<Tensor> {
    let g = geometry(x, weight, bias, spec)?;
    let n = x.dims()[0];
    let o = weight.dims()[0];
    let out_shape = Shape::new(&[n, o, g.ho, g.wo])?;
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    // The weight gradient rebuilds the im2col matrices from the input.
    let keep_input = tape.wants_grad(&inputs) && weight.is_tracked();
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("conv2d", &inputs)? {
        return gpu::conv2d(tape, &dev, &inputs, g, out_shape, keep_input);
    }
    let frozen = !tape.wants_grad(&[weight]);
    let (y, _) = forward_values(x, &g, weight, bias, frozen, None, out_shape.numel());
    let y = Tensor::from_shape_vec(out_shape, y);
    let saved_input = keep_input.then(|| x.detach());
    let (x_shape, w) = (*x.shape(), weight.clone());
    let bias_shape = bias.map(|b| *b.shape());
    Ok(tape.record("conv2d", y, &inputs, move |dy, needs| {
        let dy = dy.data();
        let dx = needs[0].then(|| {
            let mut dx = vec![0.0f32; x_shape.numel()];
            conv2d_backward_input(dy, &g, w.data(), o, &mut dx);
            Tensor::from_shape_vec(x_shape, dx)
        });
        let dw = match (needs[1], &saved_input) {
            (true, Some(input)) => {
                let mut dw = vec![0.0f32; w.numel()];
                conv2d_backward_weight(dy, input.data(), &g, o, &mut dw);
                Some(Tensor::from_shape_vec(*w.shape(), dw))
            }
            (true, None) => {
                return Err(Error::Autograd(
                    "conv2d backward: the weight needs a gradient but its input was not saved"
                        .into(),
                ))
            }
            (false, _) => None,
        };
        let mut grads = vec![dx, dw];
        if let Some(bias_shape) = bias_shape {
            grads.push(needs[2].then(|| {
                let mut db = vec![0.0f32; o];
                conv2d_backward_bias(dy, o, g.col_cols(), &mut db);
                Tensor::from_shape_vec(bias_shape, db)
            }));
        }
        Ok(grads)
    }))
}

/// `relu(batchnorm2d(conv2d(x, weight, bias, spec), gamma, beta, stats,
/// training = false))`: a conv block in evaluation mode, as one pass over
/// the output when nothing needs a gradient.
///
/// When the tape records and an input is tracked, this is conv2d and
/// [`batchnorm2d_relu`] (the same bits as the three ops), recorded as usual. Otherwise (inference on a no-grad tape,
/// or untracked tensors) the BatchNorm's running-statistics affine map and
/// the ReLU run in place on the convolution's output, without the two
/// intermediate tensors; the values are bit for bit those of the three ops
/// (through a 3x3 layer on an AVX2 or AVX-512 CPU both run the same Winograd
/// algorithm, the block on a weight transform kept from call to call:
/// `ops::frozen_weights`).
/// `stats` is only read. Errors as the three ops.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_bn_relu_eval(
    tape: &mut Tape,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: Conv2dSpec,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &RunningStats,
) -> Result<Tensor> {
    let mut inputs = vec![x, weight, gamma, beta];
    inputs.extend(bias);
    if tape.wants_grad(&inputs) {
        let y = conv2d(tape, x, weight, bias, spec)?;
        return batchnorm2d_relu(tape, &y, gamma, beta, &mut stats.clone(), false);
    }
    let (g, out_shape) = eval_block_geometry(x, weight, bias, spec, gamma, beta, stats)?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("conv2d_bn_relu_eval", &inputs)? {
        return gpu::conv2d_bn_relu_eval(&dev, &inputs, g, out_shape, stats);
    }
    let o = weight.dims()[0];
    let (rstd, scale) = eval_scales(stats, gamma);
    let affine = ChannelAffine {
        mean: stats.mean.data(),
        scale: &scale,
        beta: beta.data(),
    };
    let len = out_shape.numel();
    let (mut y, fused) = forward_values(x, &g, weight, bias, true, Some(affine), len);
    if !fused {
        batchnorm2d_relu_inplace(
            &mut y,
            o,
            g.ho * g.wo,
            stats.mean.data(),
            &rstd,
            gamma.data(),
            beta.data(),
        );
    }
    Ok(Tensor::from_shape_vec(out_shape, y))
}

/// The convolution's geometry and output shape for an evaluation block,
/// after checking the BatchNorm's operands against it.
#[allow(clippy::too_many_arguments)]
fn eval_block_geometry(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: Conv2dSpec,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &RunningStats,
) -> Result<(ConvGeom, Shape)> {
    let g = geometry(x, weight, bias, spec)?;
    let (n, o) = (x.dims()[0], weight.dims()[0]);
    let out_shape = Shape::new(&[n, o, g.ho, g.wo])?;
    for (what, t) in [
        ("gamma", gamma),
        ("beta", beta),
        ("running mean", &stats.mean),
        ("running var", &stats.var),
    ] {
        if t.dims() != [o] {
            return Err(Error::shape(
                "batchnorm2d",
                format!(
                    "{what} has shape {:?}, expected [{o}] for input {:?}",
                    t.shape(),
                    out_shape
                ),
            ));
        }
    }
    if stats.eps.is_nan() || stats.eps < 0.0 {
        return Err(Error::invalid(
            "batchnorm2d",
            format!("eps {} must be non-negative", stats.eps),
        ));
    }
    expect_stats_on_input_device("conv2d_bn_relu_eval", x, stats)?;
    Ok((g, out_shape))
}

/// `rstd = 1 / sqrt(var + eps)` per channel, as batchnorm2d's evaluation
/// mode, and the affine map's `scale = rstd * gamma`.
fn eval_scales(stats: &RunningStats, gamma: &Tensor) -> (Vec<f32>, Vec<f32>) {
    let eps = stats.eps as f64;
    let rstd: Vec<f32> = stats
        .var
        .data()
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    let scale = rstd.iter().zip(gamma.data()).map(|(r, g)| r * g).collect();
    (rstd, scale)
}

/// An evaluation-mode CRNN block: [`conv2d_bn_relu_eval`], then with
/// `pool` a [`maxpool2d`]; recorded as those ops when a gradient is wanted.
/// Otherwise, on an AVX2 or AVX-512 CPU, a block without bias and with a
/// 2x2 or 2x1 pool of equal stride runs in one pass, with the same bits: a layer
/// that Winograd F(4x4, 3x3) takes ([`winograd4::applies`]) pools each
/// output tile in its output transform;
/// else a thin block (at most 8 input channels, 3x3, stride 1, padding 1,
/// a 2x2 pool, even sizes) runs [`crate::cpu::thin_block`].
/// Errors as the ops.
#[allow(clippy::too_many_arguments)]
pub fn conv_block_eval(
    tape: &mut Tape,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    spec: Conv2dSpec,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &RunningStats,
    pool: Option<Pool2dSpec>,
) -> Result<Tensor> {
    let fused = bias.is_none()
        && pool.is_some()
        && [x, weight, gamma, beta]
            .iter()
            .all(|t| t.device() == Device::Cpu)
        && !tape.wants_grad(&[x, weight, gamma, beta]);
    if fused {
        let (g, _) = eval_block_geometry(x, weight, bias, spec, gamma, beta, stats)?;
        let (n, o) = (x.dims()[0], weight.dims()[0]);
        let winograd_pool = match pool.map(|p| (p.kernel, p.stride, p.padding)) {
            Some(((2, 2), (2, 2), (0, 0))) => Some(winograd4::Pool::Both),
            Some(((2, 1), (2, 1), (0, 0))) => Some(winograd4::Pool::Rows),
            _ => None,
        };
        let winograd_pool = winograd_pool.filter(|_| winograd4::applies(&g, n, o));
        let thin = pool == Some(Pool2dSpec::new((2, 2), (2, 2))) && thin_block::applies(&g);
        if winograd_pool.is_some() || thin {
            let (_, scale) = eval_scales(stats, gamma);
            let affine = ChannelAffine {
                mean: stats.mean.data(),
                scale: &scale,
                beta: beta.data(),
            };
            let (ph, pw) = winograd_pool.map_or((g.ho / 2, g.wo / 2), |p| p.plane(g.ho, g.wo));
            let out_shape = Shape::new(&[n, o, ph, pw])?;
            let fill = |y: &mut [MaybeUninit<f32>]| match winograd_pool {
                Some(p) => {
                    let u = frozen_weights::winograd4_weight(weight, o, g.c);
                    winograd4::conv2d_winograd4_pooled(
                        x.data(),
                        &g,
                        &u,
                        o,
                        None,
                        Some(affine),
                        p,
                        y,
                    )
                }
                None => thin_block::thin_block_eval(x.data(), &g, weight.data(), o, affine, y),
            };
            // SAFETY: both kernels write every value of their output.
            let y = unsafe { vec_written_by(out_shape.numel(), fill) };
            return Ok(Tensor::from_shape_vec(out_shape, y));
        }
    }
    let y = conv2d_bn_relu_eval(tape, x, weight, bias, spec, gamma, beta, stats)?;
    match pool {
        Some(p) => maxpool2d(tape, &y, p),
        None => Ok(y),
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::RunningStats;
    use crate::autograd::Tape;
    use crate::cpu::conv2d::ConvGeom;
    use crate::cuda::{batchnorm, conv as kernels, CudaDevice};
    use crate::error::{Error, Result};
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    /// The convolution of `inputs` (x, weight and an optional bias) on `dev`.
    fn forward(
        op: &'static str,
        dev: &Arc<CudaDevice>,
        inputs: &[&Tensor],
        g: &ConvGeom,
        out_shape: Shape,
    ) -> Result<crate::cuda::DeviceBuffer<f32>> {
        let (x, weight) = (inputs[0], inputs[1]);
        let bias = inputs.get(2).map(|b| b.cuda_buffer(op)).transpose()?;
        let mut y = dev.alloc(out_shape.numel())?;
        kernels::conv2d_forward(
            dev,
            x.cuda_buffer(op)?,
            g,
            weight.cuda_buffer(op)?,
            weight.dims()[0],
            bias,
            &mut y,
        )?;
        Ok(y)
    }

    /// `super::conv2d` on a GPU, forward and backward; `inputs` are x,
    /// weight and the optional bias.
    pub(super) fn conv2d(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        inputs: &[&Tensor],
        g: ConvGeom,
        out_shape: Shape,
        keep_input: bool,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        let y = forward(OP, dev, inputs, &g, out_shape)?;
        let y = Tensor::from_cuda(out_shape, dev, y);
        let (x, w) = (inputs[0], inputs[1].clone());
        let o = w.dims()[0];
        let saved_input = keep_input.then(|| x.detach());
        let x_shape = *x.shape();
        let bias_shape = inputs.get(2).map(|b| *b.shape());
        let dev = dev.clone();
        Ok(tape.record(OP, y, inputs, move |dy, needs| {
            let dy = dy.cuda_buffer(OP)?;
            let dx = if needs[0] {
                let mut dx = dev.alloc(x_shape.numel())?;
                kernels::conv2d_backward_input(&dev, dy, &g, w.cuda_buffer(OP)?, o, &mut dx)?;
                Some(Tensor::from_cuda(x_shape, &dev, dx))
            } else {
                None
            };
            let dw =
                match (needs[1], &saved_input) {
                    (true, Some(input)) => {
                        let mut dw = dev.alloc(w.numel())?;
                        kernels::conv2d_backward_weight(
                            &dev,
                            dy,
                            input.cuda_buffer(OP)?,
                            &g,
                            o,
                            &mut dw,
                        )?;
                        Some(Tensor::from_cuda(*w.shape(), &dev, dw))
                    }
                    (true, None) => return Err(Error::Autograd(
                        "conv2d backward: the weight needs a gradient but its input was not saved"
                            .into(),
                    )),
                    (false, _) => None,
                };
            let mut grads = vec![dx, dw];
            if let Some(bias_shape) = bias_shape {
                grads.push(if needs[2] {
                    let mut db = dev.alloc(o)?;
                    kernels::conv2d_backward_bias(&dev, dy, o, g.col_cols(), &mut db)?;
                    Some(Tensor::from_cuda(bias_shape, &dev, db))
                } else {
                    None
                });
            }
            Ok(grads)
        }))
    }

    /// The untracked fused evaluation block of `super::conv2d_bn_relu_eval`
    /// on a GPU: the convolution, then the running statistics' affine map
    /// and the ReLU in place on its output. `inputs` are x, weight, gamma,
    /// beta and the optional bias.
    pub(super) fn conv2d_bn_relu_eval(
        dev: &Arc<CudaDevice>,
        inputs: &[&Tensor],
        g: ConvGeom,
        out_shape: Shape,
        stats: &RunningStats,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d_bn_relu_eval";
        let (x, weight, gamma, beta) = (inputs[0], inputs[1], inputs[2], inputs[3]);
        let conv_inputs: Vec<&Tensor> = [x, weight]
            .into_iter()
            .chain(inputs.get(4).copied())
            .collect();
        let mut y = forward(OP, dev, &conv_inputs, &g, out_shape)?;
        let s = batchnorm::running_stats(
            dev,
            stats.mean.cuda_buffer(OP)?,
            stats.var.cuda_buffer(OP)?,
            stats.eps,
        )?;
        batchnorm::batchnorm2d_relu_inplace(
            dev,
            &mut y,
            weight.dims()[0],
            g.ho * g.wo,
            &s,
            gamma.cuda_buffer(OP)?,
            beta.cuda_buffer(OP)?,
        )?;
        Ok(Tensor::from_cuda(out_shape, dev, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::batchnorm2d::batchnorm2d;
    use crate::ops::relu;
    use crate::rng::Rng;

    /// The fused evaluation block gives the bits of conv2d, batchnorm2d
    /// (running statistics) and relu (also where both run Winograd: c 16 ->
    /// 32 on 80 tiles, the block on a kept weight transform; on 640 tiles,
    /// transformed per call; the BatchNorm and ReLU in the block's output
    /// transform), with a 2x2 pool the bits of maxpool2d after them (the
    /// one-pass thin blocks among them), and records conv2d and
    /// batchnorm2d_relu when a gradient is wanted.
    #[test]
    fn fused_eval_block_matches_the_three_ops() {
        let mut rng = Rng::seed(9);
        let mut t = |dims: &[usize], lo: f32, hi: f32| {
            let n = dims.iter().product();
            Tensor::from_vec((0..n).map(|_| rng.range(lo, hi)).collect(), dims).unwrap()
        };
        let spec = Conv2dSpec::new((1, 1), (1, 1));
        let (both, rows) = (
            Pool2dSpec::new((2, 2), (2, 2)),
            Pool2dSpec::new((2, 1), (2, 1)),
        );
        // Thin blocks, F(2x2) and direct convolutions, and (on AVX2 and
        // AVX-512) F(4x4) with each pool in its output transform.
        for (n, c, o, h, wd, pool) in [
            (2, 1, 8, 8, 20, both),
            (2, 8, 16, 8, 20, both),
            (2, 16, 32, 8, 20, both),
            (4, 16, 32, 16, 40, both),
            (1, 8, 16, 16, 64, both),
            (1, 32, 32, 8, 32, rows),
            (3, 16, 32, 8, 32, both),
        ] {
            let x = t(&[n, c, h, wd], -1.0, 1.0);
            let w = t(&[o, c, 3, 3], -0.5, 0.5);
            let (gamma, beta) = (t(&[o], 0.5, 1.5), t(&[o], -0.3, 0.3));
            let mut stats = RunningStats::new(o);
            stats.mean = t(&[o], -0.2, 0.2);
            stats.var = t(&[o], 0.5, 2.0);
            let mut tape = Tape::no_grad();
            let fused =
                conv2d_bn_relu_eval(&mut tape, &x, &w, None, spec, &gamma, &beta, &stats).unwrap();
            let y = conv2d(&mut tape, &x, &w, None, spec).unwrap();
            let y = batchnorm2d(&mut tape, &y, &gamma, &beta, &mut stats.clone(), false).unwrap();
            let y = relu(&mut tape, &y).unwrap();
            let bits = |v: &Tensor| v.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(fused.dims(), y.dims());
            assert_eq!(bits(&fused), bits(&y), "c {c} o {o}");
            let block = conv_block_eval(
                &mut tape,
                &x,
                &w,
                None,
                spec,
                &gamma,
                &beta,
                &stats,
                Some(pool),
            )
            .unwrap();
            let pooled = maxpool2d(&mut tape, &y, pool).unwrap();
            assert_eq!(bits(&block), bits(&pooled), "c {c} o {o}, pooled");

            let mut tape = Tape::new();
            let wt = w.tracked();
            let rec =
                conv2d_bn_relu_eval(&mut tape, &x, &wt, None, spec, &gamma, &beta, &stats).unwrap();
            assert!(rec.is_tracked());
            assert_eq!(bits(&rec), bits(&y));
        }
    }
}
