//! Elementwise add, sub, mul and div with broadcasting (NumPy rules, right
//! aligned). The gradient of a broadcast operand is summed back to its shape.

use crate::autograd::Tape;
use crate::cpu::elementwise::zip_broadcast;
use crate::error::Result;
use crate::tensor::{broadcast_shapes, reduce_sum_to, Shape, Tensor};

#[derive(Clone, Copy)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

impl Binary {
    fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
        }
    }

    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
        }
    }
}

/// `a + b`, broadcasting.
pub fn add(tape: &mut Tape, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(tape, Binary::Add, a, b)
}

/// `a - b`, broadcasting.
pub fn sub(tape: &mut Tape, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(tape, Binary::Sub, a, b)
}

/// `a * b` elementwise, broadcasting.
pub fn mul(tape: &mut Tape, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(tape, Binary::Mul, a, b)
}

/// `a / b` elementwise, broadcasting.
pub fn div(tape: &mut Tape, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(tape, Binary::Div, a, b)
}

fn binary(tape: &mut Tape, op: Binary, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out_shape = broadcast_shapes(op.name(), a.shape(), b.shape())?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of(op.name(), &[a, b])? {
        return gpu::binary(tape, &dev, op, a, b, out_shape);
    }
    let values = zip_broadcast(
        a.data(),
        a.shape(),
        b.data(),
        b.shape(),
        &out_shape,
        |x, y| op.apply(x, y),
    );
    let out = Tensor::from_shape_vec(out_shape, values);
    let (a2, b2) = (a.clone(), b.clone());
    Ok(tape.record(op.name(), out, &[a, b], move |g, needs| {
        let (ga, gb) = binary_backward(op, &a2, &b2, g, &out_shape, needs);
        Ok(vec![ga, gb])
    }))
}

fn binary_backward(
    op: Binary,
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
    out: &Shape,
    needs: &[bool],
) -> (Option<Tensor>, Option<Tensor>) {
    let (ad, bd, gd) = (a.data(), b.data(), g.data());
    let reduce =
        |full: Vec<f32>, to: &Shape| Tensor::from_shape_vec(*to, reduce_sum_to(&full, out, to));
    let ga = needs[0].then(|| {
        let full = match op {
            Binary::Add | Binary::Sub => gd.to_vec(),
            Binary::Mul => zip_broadcast(gd, out, bd, b.shape(), out, |g, y| g * y),
            Binary::Div => zip_broadcast(gd, out, bd, b.shape(), out, |g, y| g / y),
        };
        reduce(full, a.shape())
    });
    let gb = needs[1].then(|| {
        let full = match op {
            Binary::Add => gd.to_vec(),
            Binary::Sub => gd.iter().map(|g| -g).collect(),
            Binary::Mul => zip_broadcast(gd, out, ad, a.shape(), out, |g, x| g * x),
            Binary::Div => {
                let quot = zip_broadcast(ad, a.shape(), bd, b.shape(), out, |x, y| x / (y * y));
                gd.iter().zip(&quot).map(|(g, q)| -g * q).collect()
            }
        };
        reduce(full, b.shape())
    });
    (ga, gb)
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::Binary;
    use crate::autograd::Tape;
    use crate::cuda::{elementwise as kernels, CudaDevice};
    use crate::error::Result;
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    fn code(op: Binary) -> kernels::Binary {
        match op {
            Binary::Add => kernels::Binary::Add,
            Binary::Sub => kernels::Binary::Sub,
            Binary::Mul => kernels::Binary::Mul,
            Binary::Div => kernels::Binary::Div,
        }
    }

    pub(super) fn binary(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        op: Binary,
        a: &Tensor,
        b: &Tensor,
        out: Shape,
    ) -> Result<Tensor> {
        let name = op.name();
        let (ab, bb) = (a.cuda_buffer(name)?, b.cuda_buffer(name)?);
        let y = kernels::binary_forward(dev, code(op), ab, a.shape(), bb, b.shape(), &out)?;
        let y = Tensor::from_cuda(out, dev, y);
        let (a2, b2, dev) = (a.clone(), b.clone(), dev.clone());
        Ok(tape.record(name, y, &[a, b], move |g, needs| {
            let (ga, gb) = kernels::binary_backward(
                &dev,
                code(op),
                a2.cuda_buffer(name)?,
                a2.shape(),
                b2.cuda_buffer(name)?,
                b2.shape(),
                g.cuda_buffer(name)?,
                &out,
                [needs[0], needs[1]],
            )?;
            Ok(vec![
                ga.map(|v| Tensor::from_cuda(*a2.shape(), &dev, v)),
                gb.map(|v| Tensor::from_cuda(*b2.shape(), &dev, v)),
            ])
        }))
    }
}
