//! Elementwise functions of one tensor: scale, exp, log, relu, sigmoid, tanh,
//! square, sqrt, abs and power. Each backward is written beside its forward.

use crate::autograd::Tape;
use crate::cpu::elementwise::{logistic, map, zip, zip3, Unary};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Unary {
    fn name(self) -> &'static str {
        match self {
            Unary::Scale(_) => "scale",
            Unary::AddScalar(_) => "add_scalar",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Relu => "relu",
            Unary::Sigmoid => "sigmoid",
            Unary::Tanh => "tanh",
            Unary::Square => "square",
            Unary::Sqrt => "sqrt",
            Unary::Abs => "abs",
            Unary::Pow(_) => "pow",
        }
    }

    #[inline(always)]
    fn forward(self, x: f32) -> f32 {
        match self {
            Unary::Scale(s) => x * s,
            Unary::AddScalar(s) => x + s,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Relu => x.max(0.0),
            Unary::Sigmoid => logistic(x),
            Unary::Tanh => x.tanh(),
            Unary::Square => x * x,
            Unary::Sqrt => x.sqrt(),
            Unary::Abs => x.abs(),
            Unary::Pow(p) => x.powf(p),
        }
    }

    /// d out / d x, from the input `x` and the output `y`.
    #[inline(always)]
    fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Unary::Scale(s) => s,
            Unary::AddScalar(_) => 1.0,
            Unary::Exp => y,
            Unary::Log => 1.0 / x,
            Unary::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Unary::Sigmoid => y * (1.0 - y),
            Unary::Tanh => 1.0 - y * y,
            Unary::Square => 2.0 * x,
            Unary::Sqrt => 0.5 / y,
            Unary::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Unary::Pow(p) => p * x.powf(p - 1.0),
        }
    }
}

/// Evaluates `$body` with `$o` bound to a closure that rebuilds `$op` as a
/// constant variant (capturing only its parameter), so that each arm is
/// compiled for one op and the per-value `match` in `forward`/`derivative`
/// folds away.
macro_rules! for_op {
    ($op:expr, $o:ident => $body:expr) => {
        match $op {
            Unary::Scale(s) => {
                let $o = move || Unary::Scale(s);
                $body
            }
            Unary::AddScalar(s) => {
                let $o = move || Unary::AddScalar(s);
                $body
            }
            Unary::Exp => {
                let $o = || Unary::Exp;
                $body
            }
            Unary::Log => {
                let $o = || Unary::Log;
                $body
            }
            Unary::Relu => {
                let $o = || Unary::Relu;
                $body
            }
            Unary::Sigmoid => {
                let $o = || Unary::Sigmoid;
                $body
            }
            Unary::Tanh => {
                let $o = || Unary::Tanh;
                $body
            }
            Unary::Square => {
                let $o = || Unary::Square;
                $body
            }
            Unary::Sqrt => {
                let $o = || Unary::Sqrt;
                $body
            }
            Unary::Abs => {
                let $o = || Unary::Abs;
                $body
            }
            Unary::Pow(p) => {
                let $o = move || Unary::Pow(p);
                $body
            }
        }
    };
}

fn unary(tape: &mut Tape, op: Unary, x: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of(op.name(), &[x])? {
        return gpu::unary(tape, &dev, op, x);
    }
    let values = for_op!(op, o => map(x.data(), move |v| o().forward(v)));
    let y = Tensor::from_shape_vec(*x.shape(), values);
    let (x2, y2) = (x.clone(), y.detach());
    Ok(tape.record(op.name(), y, &[x], move |g, _| {
        let grad = for_op!(op, o => zip3(g.data(), x2.data(), y2.data(), move |g, x, y| {
            g * o().derivative(x, y)
        }));
        Ok(vec![Some(Tensor::from_shape_vec(*x2.shape(), grad))])
    }))
}

/// `x * factor`.
pub fn scale(tape: &mut Tape, x: &Tensor, factor: f32) -> Result<Tensor> {
    unary(tape, Unary::Scale(factor), x)
}

/// `-x`.
pub fn neg(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    unary(tape, Unary::Scale(-1.0), x)
}

/// `x + value`.
pub fn add_scalar(tape: &mut Tape, x: &Tensor, value: f32) -> Result<Tensor> {
    unary(tape, Unary::AddScalar(value), x)
}

/// `e^x`.
pub fn exp(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    unary(tape, Unary::Exp, x)
}

/// Natural logarithm.
pub fn log(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    unary(tape, Unary::Log, x)
}

/// `max(x, 0)`; the gradient at 0 is 0, as PyTorch's.
pub fn relu(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    unary(tape, Unary::Relu, x)
}

/// Logistic sigmoid.
pub fn sigmoid(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    unary(tape, Unary::Sigmoid, x)
}

/// Hyperbolic tangent.
pub fn tanh(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    unary(tape, Unary::Tanh, x)
}

/// `x²`.
pub fn square(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    unary(tape, Unary::Square, x)
}

/// Square root.
pub fn sqrt(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    unary(tape, Unary::Sqrt, x)
}

/// `|x|`; the gradient at 0 is 0.
pub fn abs(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    unary(tape, Unary::Abs, x)
}

/// `x^p` for a real power `p`.
pub fn pow(tape: &mut Tape, x: &Tensor, p: f32) -> Result<Tensor> {
    if !p.is_finite() {
        return Err(Error::invalid("pow", format!("power {p} is not finite")));
    }
    unary(tape, Unary::Pow(p), x)
}

/// Multiplies `x` by a fixed mask (no gradient flows to the mask): used for
/// padding masks and dropout.
pub fn mul_const(tape: &mut Tape, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    mask.expect_dims("mul_const", "mask", x.dims())?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("mul_const", &[x, mask])? {
        return gpu::mul_const(tape, &dev, x, mask);
    }
    let y = Tensor::from_shape_vec(*x.shape(), zip(x.data(), mask.data(), |a, m| a * m));
    let m2 = mask.detach();
    let shape = *x.shape();
    Ok(tape.record("mul_const", y, &[x], move |g, _| {
        let grad = zip(g.data(), m2.data(), |g, m| g * m);
        Ok(vec![Some(Tensor::from_shape_vec(shape, grad))])
    }))
}

#[cfg(feature = "cuda")]
mod gpu {
    use crate::autograd::Tape;
    use crate::cpu::elementwise::Unary;
    use crate::cuda::elementwise::{self as kernels, Binary};
    use crate::cuda::CudaDevice;
    use crate::error::Result;
    use crate::tensor::Tensor;
    use std::sync::Arc;

    pub(super) fn unary(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        op: Unary,
        x: &Tensor,
    ) -> Result<Tensor> {
        let name = op.name();
        let y = kernels::unary_forward(dev, op, x.cuda_buffer(name)?)?;
        let y = Tensor::from_cuda(*x.shape(), dev, y);
        let (x2, y2, dev) = (x.clone(), y.detach(), dev.clone());
        Ok(tape.record(name, y, &[x], move |g, _| {
            let grad = kernels::unary_backward(
                &dev,
                op,
                g.cuda_buffer(name)?,
                x2.cuda_buffer(name)?,
                y2.cuda_buffer(name)?,
            )?;
            Ok(vec![Some(Tensor::from_cuda(*x2.shape(), &dev, grad))])
        }))
    }

    pub(super) fn mul_const(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        x: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        const OP: &str = "mul_const";
        let shape = *x.shape();
        let mul = |a: &Tensor, b: &Tensor| {
            kernels::binary_forward(
                dev,
                Binary::Mul,
                a.cuda_buffer(OP)?,
                &shape,
                b.cuda_buffer(OP)?,
                &shape,
                &shape,
            )
        };
        let y = Tensor::from_cuda(shape, dev, mul(x, mask)?);
        let (m2, dev) = (mask.detach(), dev.clone());
        Ok(tape.record(OP, y, &[x], move |g, _| {
            let grad = kernels::binary_forward(
                &dev,
                Binary::Mul,
                g.cuda_buffer(OP)?,
                &shape,
                m2.cuda_buffer(OP)?,
                &shape,
                &shape,
            )?;
            Ok(vec![Some(Tensor::from_cuda(shape, &dev, grad))])
        }))
    }
}
