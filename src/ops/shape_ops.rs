//! Differentiable changes of layout: reshape, permute, concat, slice, flip
//! and the length-aware reversal of padded sequences.

use crate::autograd::Tape;
use crate::cpu::layout::{around_axis, inverse_permutation, permute as permute_kernel};
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// The same values with another shape of equal element count. A view on
/// every device: the output shares the input's storage (a GPU buffer
/// included), and the gradient is the output gradient viewed back.
pub fn reshape(tape: &mut Tape, x: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let y = x.reshaped(dims)?;
    let in_dims = x.dims().to_vec();
    Ok(tape.record("reshape", y, &[x], move |g, _| {
        Ok(vec![Some(g.reshaped(&in_dims)?)])
    }))
}

/// Reorders axes: output axis i is input axis `perm[i]`.
pub fn permute(tape: &mut Tape, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let rank = x.rank();
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(Error::invalid(
            "permute",
            format!(
                "{perm:?} is not a permutation of the {rank} axes of {:?}",
                x.shape()
            ),
        ));
    }
    let out_dims: Vec<usize> = perm.iter().map(|&p| x.dims()[p]).collect();
    let out_shape = Shape::new(&out_dims)?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("permute", &[x])? {
        return gpu::permute(tape, &dev, x, perm, out_shape);
    }
    let y = Tensor::from_shape_vec(out_shape, permute_kernel(x.data(), x.shape(), perm));
    let inv = inverse_permutation(perm);
    let in_shape = *x.shape();
    Ok(tape.record("permute", y, &[x], move |g, _| {
        Ok(vec![Some(Tensor::from_shape_vec(
            in_shape,
            permute_kernel(g.data(), g.shape(), &inv),
        ))])
    }))
}

/// Joins tensors along `axis`; all other dimensions must agree.
pub fn concat(tape: &mut Tape, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| Error::invalid("concat", "no tensors to join"))?;
    first.shape().check_axis("concat", axis)?;
    let mut out_dims = first.dims().to_vec();
    out_dims[axis] = 0;
    for x in xs {
        let same_rest = x.rank() == first.rank()
            && (0..first.rank()).all(|i| i == axis || x.dims()[i] == first.dims()[i]);
        if !same_rest {
            return Err(Error::shape(
                "concat",
                format!(
                    "{:?} does not match {:?} outside axis {axis}",
                    x.shape(),
                    first.shape()
                ),
            ));
        }
        out_dims[axis] += x.dims()[axis];
    }
    let out_shape = Shape::new(&out_dims)?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("concat", xs)? {
        return gpu::concat(tape, &dev, xs, axis, out_shape);
    }
    let (outer, _, inner) = around_axis(&out_shape, axis);
    let sizes: Vec<usize> = xs.iter().map(|x| x.dims()[axis]).collect();
    let mut values = Vec::with_capacity(out_shape.numel());
    for o in 0..outer {
        for (x, &n) in xs.iter().zip(&sizes) {
            values.extend_from_slice(&x.data()[o * n * inner..(o + 1) * n * inner]);
        }
    }
    let y = Tensor::from_shape_vec(out_shape, values);
    let shapes: Vec<Shape> = xs.iter().map(|x| *x.shape()).collect();
    let total = out_dims[axis];
    Ok(tape.record("concat", y, xs, move |g, needs| {
        let gd = g.data();
        let mut offset = 0;
        let mut grads = Vec::with_capacity(shapes.len());
        for (shape, (&n, &need)) in shapes.iter().zip(sizes.iter().zip(needs)) {
            grads.push(need.then(|| {
                let mut part = Vec::with_capacity(shape.numel());
                for o in 0..outer {
                    let start = (o * total + offset) * inner;
                    part.extend_from_slice(&gd[start..start + n * inner]);
                }
                Tensor::from_shape_vec(*shape, part)
            }));
            offset += n;
        }
        Ok(grads)
    }))
}

/// Elements `start..end` along `axis`.
pub fn slice(tape: &mut Tape, x: &Tensor, axis: usize, start: usize, end: usize) -> Result<Tensor> {
    x.shape().check_axis("slice", axis)?;
    let n = x.dims()[axis];
    if start > end || end > n {
        return Err(Error::invalid(
            "slice",
            format!("range {start}..{end} outside axis {axis} of size {n}"),
        ));
    }
    let mut out_dims = x.dims().to_vec();
    out_dims[axis] = end - start;
    let out_shape = Shape::new(&out_dims)?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("slice", &[x])? {
        return gpu::slice(tape, &dev, x, axis, (start, end), out_shape);
    }
    let (outer, _, inner) = around_axis(x.shape(), axis);
    let mut values = Vec::with_capacity(out_shape.numel());
    for o in 0..outer {
        values.extend_from_slice(&x.data()[(o * n + start) * inner..(o * n + end) * inner]);
    }
    let y = Tensor::from_shape_vec(out_shape, values);
    let in_shape = *x.shape();
    Ok(tape.record("slice", y, &[x], move |g, _| {
        let mut grad = vec![0.0; in_shape.numel()];
        let w = (end - start) * inner;
        for o in 0..outer {
            grad[(o * n + start) * inner..(o * n + end) * inner]
                .copy_from_slice(&g.data()[o * w..(o + 1) * w]);
        }
        Ok(vec![Some(Tensor::from_shape_vec(in_shape, grad))])
    }))
}

/// Reverses the order of elements along `axis`.
pub fn flip(tape: &mut Tape, x: &Tensor, axis: usize) -> Result<Tensor> {
    x.shape().check_axis("flip", axis)?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("flip", &[x])? {
        return gpu::flip(tape, &dev, x, axis);
    }
    let (outer, n, inner) = around_axis(x.shape(), axis);
    let lengths = vec![n; 1];
    let flip_all = move |data: &[f32]| reverse_blocks(data, outer, n, inner, 1, &lengths);
    let y = Tensor::from_shape_vec(*x.shape(), flip_all(x.data()));
    let shape = *x.shape();
    Ok(tape.record("flip", y, &[x], move |g, _| {
        Ok(vec![Some(Tensor::from_shape_vec(
            shape,
            flip_all(g.data()),
        ))])
    }))
}

/// Reverses each sequence of a padded (T, N, …) batch in time within its own
/// length: step t of sample n moves to `lengths[n] - 1 - t`; padding stays in place.
pub fn reverse_sequences(tape: &mut Tape, x: &Tensor, lengths: &[usize]) -> Result<Tensor> {
    if x.rank() < 2 {
        return Err(Error::shape(
            "reverse_sequences",
            format!("expected (T, N, …), got {:?}", x.shape()),
        ));
    }
    let (t, n) = (x.dims()[0], x.dims()[1]);
    if lengths.len() != n || lengths.iter().any(|&l| l > t) {
        return Err(Error::invalid(
            "reverse_sequences",
            format!("lengths {lengths:?} do not fit {n} sequences of at most {t} steps"),
        ));
    }
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("reverse_sequences", &[x])? {
        return gpu::reverse_sequences(tape, &dev, x, lengths);
    }
    let inner = x.numel() / (t * n).max(1);
    let lengths = lengths.to_vec();
    let run = move |data: &[f32]| reverse_blocks(data, 1, t, inner, n, &lengths);
    let y = Tensor::from_shape_vec(*x.shape(), run(x.data()));
    let shape = *x.shape();
    Ok(tape.record("reverse_sequences", y, &[x], move |g, _| {
        Ok(vec![Some(Tensor::from_shape_vec(shape, run(g.data())))])
    }))
}

/// Data laid out as (outer, steps, groups, inner): within each outer block,
/// group j's first `lengths[j % lengths.len()]` steps are reversed.
fn reverse_blocks(
    data: &[f32],
    outer: usize,
    steps: usize,
    inner: usize,
    groups: usize,
    lengths: &[usize],
) -> Vec<f32> {
    let row = groups * inner;
    let mut out = data.to_vec();
    for o in 0..outer {
        let block = o * steps * row;
        for j in 0..groups {
            let len = lengths[j % lengths.len()];
            for s in 0..len {
                let src = block + s * row + j * inner;
                let dst = block + (len - 1 - s) * row + j * inner;
                out[dst..dst + inner].copy_from_slice(&data[src..src + inner]);
            }
        }
    }
    out
}

#[cfg(feature = "cuda")]
mod gpu {
    use crate::autograd::Tape;
    use crate::cpu::layout::inverse_permutation;
    use crate::cuda::{layout as kernels, CudaDevice};
    use crate::error::Result;
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    pub(super) fn permute(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        x: &Tensor,
        perm: &[usize],
        out: Shape,
    ) -> Result<Tensor> {
        const OP: &str = "permute";
        let y = kernels::permute(dev, x.cuda_buffer(OP)?, x.shape(), perm)?;
        let y = Tensor::from_cuda(out, dev, y);
        let inv = inverse_permutation(perm);
        let (in_shape, dev) = (*x.shape(), dev.clone());
        Ok(tape.record(OP, y, &[x], move |g, _| {
            let grad = kernels::permute(&dev, g.cuda_buffer(OP)?, &out, &inv)?;
            Ok(vec![Some(Tensor::from_cuda(in_shape, &dev, grad))])
        }))
    }

    pub(super) fn concat(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        xs: &[&Tensor],
        axis: usize,
        out: Shape,
    ) -> Result<Tensor> {
        const OP: &str = "concat";
        let parts = xs
            .iter()
            .map(|x| Ok((x.cuda_buffer(OP)?, x.shape())))
            .collect::<Result<Vec<_>>>()?;
        let y = Tensor::from_cuda(out, dev, kernels::concat(dev, &parts, axis)?);
        let shapes: Vec<Shape> = xs.iter().map(|x| *x.shape()).collect();
        let dev = dev.clone();
        Ok(tape.record(OP, y, xs, move |g, needs| {
            let gb = g.cuda_buffer(OP)?;
            let mut offset = 0;
            let mut grads = Vec::with_capacity(shapes.len());
            for (shape, &need) in shapes.iter().zip(needs) {
                let n = shape.dim(axis);
                grads.push(if need {
                    let part = kernels::slice(&dev, gb, &out, axis, offset, offset + n)?;
                    Some(Tensor::from_cuda(*shape, &dev, part))
                } else {
                    None
                });
                offset += n;
            }
            Ok(grads)
        }))
    }

    pub(super) fn slice(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        x: &Tensor,
        axis: usize,
        (start, end): (usize, usize),
        out: Shape,
    ) -> Result<Tensor> {
        const OP: &str = "slice";
        let y = kernels::slice(dev, x.cuda_buffer(OP)?, x.shape(), axis, start, end)?;
        let y = Tensor::from_cuda(out, dev, y);
        let (in_shape, dev) = (*x.shape(), dev.clone());
        Ok(tape.record(OP, y, &[x], move |g, _| {
            let grad =
                kernels::slice_backward(&dev, g.cuda_buffer(OP)?, &in_shape, axis, start, end)?;
            Ok(vec![Some(Tensor::from_cuda(in_shape, &dev, grad))])
        }))
    }

    pub(super) fn flip(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        x: &Tensor,
        axis: usize,
    ) -> Result<Tensor> {
        const OP: &str = "flip";
        let shape = *x.shape();
        let y = kernels::flip(dev, x.cuda_buffer(OP)?, &shape, axis)?;
        let y = Tensor::from_cuda(shape, dev, y);
        let dev = dev.clone();
        Ok(tape.record(OP, y, &[x], move |g, _| {
            let grad = kernels::flip(&dev, g.cuda_buffer(OP)?, &shape, axis)?;
            Ok(vec![Some(Tensor::from_cuda(shape, &dev, grad))])
        }))
    }

    pub(super) fn reverse_sequences(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        x: &Tensor,
        lengths: &[usize],
    ) -> Result<Tensor> {
        const OP: &str = "reverse_sequences";
        let shape = *x.shape();
        let y = kernels::reverse_sequences(dev, x.cuda_buffer(OP)?, &shape, lengths)?;
        let y = Tensor::from_cuda(shape, dev, y);
        let (lengths, dev) = (lengths.to_vec(), dev.clone());
        Ok(tape.record(OP, y, &[x], move |g, _| {
            let grad = kernels::reverse_sequences(&dev, g.cuda_buffer(OP)?, &shape, &lengths)?;
            Ok(vec![Some(Tensor::from_cuda(shape, &dev, grad))])
        }))
    }
}
