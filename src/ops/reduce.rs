//! Sums and means over chosen axes.

use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::tensor::{expand, reduce_sum_to, Shape, Tensor};

/// The shapes of a reduction over `axes`: with the axes kept as size 1, and as returned.
fn reduced_shapes(
    op: &'static str,
    x: &Tensor,
    axes: &[usize],
    keepdim: bool,
) -> Result<(Shape, Shape)> {
    let mut kept = x.dims().to_vec();
    let mut seen = [false; 4];
    for &a in axes {
        x.shape().check_axis(op, a)?;
        if seen[a] {
            return Err(Error::invalid(op, format!("axis {a} given twice")));
        }
        seen[a] = true;
        kept[a] = 1;
    }
    let kept_shape = Shape::new(&kept)?;
    let out: Vec<usize> = if keepdim {
        kept
    } else {
        x.dims()
            .iter()
            .enumerate()
            .filter(|(i, _)| !seen[*i])
            .map(|(_, &d)| d)
            .collect()
    };
    Ok((kept_shape, Shape::new(&out)?))
}

fn reduce(
    tape: &mut Tape,
    op: &'static str,
    x: &Tensor,
    axes: &[usize],
    keepdim: bool,
    factor: f32,
) -> Result<Tensor> {
    let (kept, out_shape) = reduced_shapes(op, x, axes, keepdim)?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of(op, &[x])? {
        return gpu::reduce(tape, &dev, op, x, kept, out_shape, factor);
    }
    let mut values = reduce_sum_to(x.data(), x.shape(), &kept);
    if factor != 1.0 {
        values.iter_mut().for_each(|v| *v *= factor);
    }
    let y = Tensor::from_shape_vec(out_shape, values);
    let in_shape = *x.shape();
    Ok(tape.record(op, y, &[x], move |g, _| {
        let mut grad = expand(g.data(), &kept, &in_shape);
        if factor != 1.0 {
            grad.iter_mut().for_each(|v| *v *= factor);
        }
        Ok(vec![Some(Tensor::from_shape_vec(in_shape, grad))])
    }))
}

/// Sum over `axes`; with `keepdim` the summed axes stay as size 1.
pub fn sum(tape: &mut Tape, x: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    reduce(tape, "sum", x, axes, keepdim, 1.0)
}

/// Mean over `axes`; with `keepdim` the averaged axes stay as size 1.
pub fn mean(tape: &mut Tape, x: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    let count: usize = axes
        .iter()
        .map(|&a| x.dims().get(a).copied().unwrap_or(1))
        .product();
    if count == 0 {
        return Err(Error::invalid("mean", "mean over an empty axis"));
    }
    reduce(tape, "mean", x, axes, keepdim, 1.0 / count as f32)
}

/// Sum of every element, as a scalar.
pub fn sum_all(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    let axes: Vec<usize> = (0..x.rank()).collect();
    sum(tape, x, &axes, false)
}

/// Mean of every element, as a scalar.
pub fn mean_all(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    let axes: Vec<usize> = (0..x.rank()).collect();
    mean(tape, x, &axes, false)
}

#[cfg(feature = "cuda")]
mod gpu {
    use crate::autograd::Tape;
    use crate::cuda::elementwise::{expand, unary_in_place, Unary};
    use crate::cuda::reduce::reduce_sum_to;
    use crate::cuda::CudaDevice;
    use crate::error::Result;
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    /// The sum of `x` down to `kept` (the reduced axes as size 1), times
    /// `factor`, returned as `out`; the gradient is the output gradient
    /// broadcast back to the input's shape, times `factor`.
    pub(super) fn reduce(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        op: &'static str,
        x: &Tensor,
        kept: Shape,
        out: Shape,
        factor: f32,
    ) -> Result<Tensor> {
        let in_shape = *x.shape();
        let mut y = reduce_sum_to(dev, x.cuda_buffer(op)?, &in_shape, &kept)?;
        if factor != 1.0 {
            unary_in_place(dev, Unary::Scale(factor), &mut y)?;
        }
        let y = Tensor::from_cuda(out, dev, y);
        let dev = dev.clone();
        Ok(tape.record(op, y, &[x], move |g, _| {
            // `g` has the output's shape, whose values are laid out as `kept`.
            let mut grad = expand(&dev, g.cuda_buffer(op)?, &kept, &in_shape)?;
            if factor != 1.0 {
                unary_in_place(&dev, Unary::Scale(factor), &mut grad)?;
            }
            Ok(vec![Some(Tensor::from_cuda(in_shape, &dev, grad))])
        }))
    }
}
