//! 2-D max pooling, as `torch.nn.functional.max_pool2d` with
//! `ceil_mode=False` and no dilation.
//!
//! Forward keeps the index of each window's maximum; backward routes each
//! output gradient to that one input.

use crate::autograd::Tape;
use crate::cpu::conv2d::ConvGeom;
use crate::cpu::maxpool2d::{maxpool2d_backward, maxpool2d_forward};
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// Window size, stride and padding of a max pooling, (height, width) each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dSpec {
    /// Window size, (height, width); both non-zero.
    pub kernel: (usize, usize),
    /// Step between windows, (vertical, horizontal); both non-zero.
    pub stride: (usize, usize),
    /// `-inf` padding on each side; at most half the window, as PyTorch.
    pub padding: (usize, usize),
}

impl Pool2dSpec {
    /// A pooling with this window and stride and no padding; e.g.
    /// `Pool2dSpec::new((2, 1), (2, 1))` halves the height only.
    pub fn new(kernel: (usize, usize), stride: (usize, usize)) -> Self {
        Pool2dSpec {
            kernel,
            stride,
            padding: (0, 0),
        }
    }
}

/// The window geometry of `maxpool2d` on `x`, or an error naming the shapes.
fn geometry(x: &Tensor, spec: Pool2dSpec) -> Result<ConvGeom> {
    const OP: &str = "maxpool2d";
    x.expect_feature_maps(OP, "input")?;
    let d = x.dims();
    let (k, s, p) = (spec.kernel, spec.stride, spec.padding);
    if k.0 == 0 || k.1 == 0 || s.0 == 0 || s.1 == 0 {
        return Err(Error::invalid(
            OP,
            format!("kernel {k:?} and stride {s:?} must be non-zero"),
        ));
    }
    if p.0 > k.0 / 2 || p.1 > k.1 / 2 {
        return Err(Error::invalid(
            OP,
            format!("padding {p:?} must be at most half of kernel {k:?}"),
        ));
    }
    if d[2] * d[3] > u32::MAX as usize {
        return Err(Error::shape(
            OP,
            format!("input {:?} has planes too large to index", x.shape()),
        ));
    }
    ConvGeom::new((d[1], d[2], d[3]), k, s, p).ok_or_else(|| {
        Error::shape(
            OP,
            format!(
                "kernel {k:?} is larger than input {:?} padded by {p:?}",
                x.shape()
            ),
        )
    })
}

/// Max pooling of `x` (N, C, H, W) into (N, C, Ho, Wo) with
/// `Ho = (H + 2 pad_h - kh) / stride_h + 1` (likewise `Wo`), as
/// `torch.nn.functional.max_pool2d` with `ceil_mode=False`. Padding counts
/// as `-inf`. The gradient flows only to each window's maximum (the first
/// one in row-major order on ties, as PyTorch). Errors on a non-4-D input,
/// a zero kernel or stride, padding over half the kernel, or a kernel larger
/// than the padded input.
pub fn maxpool2d(tape: &mut Tape, x: &Tensor, spec: Pool2dSpec) -> Result<Tensor> {
    let g = geometry(x, spec)?;
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let out_shape = Shape::new(&[n, c, g.ho, g.wo])?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("maxpool2d", &[x])? {
        return gpu::maxpool2d(tape, &dev, x, g, out_shape);
    }
    let mut y = vec![0.0f32; out_shape.numel()];
    let mut argmax = tape.wants_grad(&[x]).then(|| vec![0u32; out_shape.numel()]);
    maxpool2d_forward(x.data(), &g, &mut y, argmax.as_deref_mut());
    let y = Tensor::from_shape_vec(out_shape, y);
    let x_shape = *x.shape();
    Ok(tape.record("maxpool2d", y, &[x], move |dy, _needs| {
        let Some(argmax) = argmax else {
            return Err(Error::Autograd(
                "maxpool2d backward: no argmax indices were saved".into(),
            ));
        };
        let dx = maxpool2d_backward(dy.data(), &argmax, &g, x_shape.numel() / (g.h * g.w));
        Ok(vec![Some(Tensor::from_shape_vec(x_shape, dx))])
    }))
}

#[cfg(feature = "cuda")]
mod gpu {
    use crate::autograd::Tape;
    use crate::cpu::conv2d::ConvGeom;
    use crate::cuda::{maxpool as kernels, CudaDevice};
    use crate::error::{Error, Result};
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    const OP: &str = "maxpool2d";

    /// `super::maxpool2d` on a GPU: the argmax indices stay on the device
    /// for the backward pass.
    pub(super) fn maxpool2d(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        x: &Tensor,
        g: ConvGeom,
        out_shape: Shape,
    ) -> Result<Tensor> {
        let mut y = dev.alloc(out_shape.numel())?;
        let mut argmax = if tape.wants_grad(&[x]) {
            Some(dev.alloc::<u32>(out_shape.numel())?)
        } else {
            None
        };
        kernels::maxpool2d_forward(dev, x.cuda_buffer(OP)?, &g, &mut y, argmax.as_mut())?;
        let y = Tensor::from_cuda(out_shape, dev, y);
        let (x_shape, dev) = (*x.shape(), dev.clone());
        Ok(tape.record(OP, y, &[x], move |dy, _needs| {
            let Some(argmax) = argmax else {
                return Err(Error::Autograd(
                    "maxpool2d backward: no argmax indices were saved".into(),
                ));
            };
            let planes = x_shape.numel() / (g.h * g.w);
            let dx = kernels::maxpool2d_backward(&dev, dy.cuda_buffer(OP)?, &argmax, &g, planes)?;
            Ok(vec![Some(Tensor::from_cuda(x_shape, &dev, dx))])
        }))
    }
}
