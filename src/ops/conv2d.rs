//! 2-D convolution, as `torch.nn.functional.conv2d` (no dilation, no groups).
//!
//! Forward: im2col + GEMM per sample, samples in parallel. Backward: the
//! input gradient is `col2im(Wᵀ · dY)`, the weight gradient `Σ dY · colᵀ`
//! over the im2col matrices rebuilt from the saved input, the bias gradient
//! the sum of `dY`.

use crate::autograd::Tape;
use crate::cpu::conv2d::{
    conv2d_backward_bias, conv2d_backward_input, conv2d_backward_weight, conv2d_forward, ConvGeom,
};
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

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
    let mut y = vec![0.0f32; out_shape.numel()];
    conv2d_forward(
        x.data(),
        &g,
        weight.data(),
        o,
        bias.map(|b| b.data()),
        &mut y,
    );
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
