//! Elementwise ops on the GPU (`kernels/elementwise.cu`): the maps of
//! `ops::unary` with their derivatives, the broadcasting zips of `ops::binary`
//! with the gradients of both operands, and fills.

use super::device::CudaDevice;
use super::launch::{dims4, expect_len, for_elements, int, launch};
use super::nvrtc::ELEMENTWISE;
use super::pool::DeviceBuffer;
use super::reduce::reduce_sum_to;
pub use crate::cpu::elementwise::Unary;
use crate::error::Result;
use crate::tensor::{broadcast_strides, Shape};

type Buf = DeviceBuffer<f32>;

impl Unary {
    /// The kernels' op code (`U_*` in elementwise.cu) and parameter.
    fn code(self) -> (i32, f32) {
        match self {
            Unary::Scale(s) => (0, s),
            Unary::AddScalar(s) => (1, s),
            Unary::Exp => (2, 0.0),
            Unary::Log => (3, 0.0),
            Unary::Relu => (4, 0.0),
            Unary::Sigmoid => (5, 0.0),
            Unary::Tanh => (6, 0.0),
            Unary::Square => (7, 0.0),
            Unary::Sqrt => (8, 0.0),
            Unary::Abs => (9, 0.0),
            Unary::Pow(p) => (10, p),
        }
    }
}

/// An operation on two values, as `ops::binary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
}

impl Binary {
    fn code(self) -> i32 {
        match self {
            Binary::Add => 0,
            Binary::Sub => 1,
            Binary::Mul => 2,
            Binary::Div => 3,
        }
    }
}

fn run_unary(dev: &CudaDevice, op: Unary, x: u64, y: u64, len: usize) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let (code, p) = op.code();
    let n = int(len);
    launch!(
        dev,
        ELEMENTWISE,
        "unary_forward",
        for_elements(len),
        code,
        p,
        x,
        y,
        n
    )
}

/// `op` applied to every value of `x`.
pub fn unary_forward(dev: &CudaDevice, op: Unary, x: &Buf) -> Result<Buf> {
    let mut y = dev.alloc(x.len())?;
    run_unary(dev, op, x.ptr(), y.ptr_mut(), x.len())?;
    Ok(y)
}

/// `op` applied to every value of `x`, in place.
pub fn unary_in_place(dev: &CudaDevice, op: Unary, x: &mut Buf) -> Result<()> {
    let p = x.ptr_mut();
    run_unary(dev, op, p, p, x.len())
}

/// The gradient of `op` at input `x` with output `y`: `g * op'(x, y)`.
pub fn unary_backward(dev: &CudaDevice, op: Unary, g: &Buf, x: &Buf, y: &Buf) -> Result<Buf> {
    const OP: &str = "cuda::unary_backward";
    expect_len(OP, "x", x, g.len())?;
    expect_len(OP, "y", y, g.len())?;
    let mut dx = dev.alloc(g.len())?;
    if g.is_empty() {
        return Ok(dx);
    }
    let (code, p) = op.code();
    let (gp, xp, yp, dxp, n) = (g.ptr(), x.ptr(), y.ptr(), dx.ptr_mut(), int(g.len()));
    launch!(
        dev,
        ELEMENTWISE,
        "unary_backward",
        for_elements(g.len()),
        code,
        p,
        gp,
        xp,
        yp,
        dxp,
        n
    )?;
    Ok(dx)
}

/// `op(a, b)` with `a` of shape `a_shape` and `b` of `b_shape` read as the
/// broadcast shape `out` (which the caller computed with `broadcast_shapes`).
pub fn binary_forward(
    dev: &CudaDevice,
    op: Binary,
    a: &Buf,
    a_shape: &Shape,
    b: &Buf,
    b_shape: &Shape,
    out: &Shape,
) -> Result<Buf> {
    const OP: &str = "cuda::binary_forward";
    expect_len(OP, "a", a, a_shape.numel())?;
    expect_len(OP, "b", b, b_shape.numel())?;
    let mut y = dev.alloc(out.numel())?;
    if out.numel() == 0 {
        return Ok(y);
    }
    let code = op.code();
    let (sa, sb) = (
        dims4(broadcast_strides(a_shape, out)),
        dims4(broadcast_strides(b_shape, out)),
    );
    let (ap, bp, yp, dims, n) = (
        a.ptr(),
        b.ptr(),
        y.ptr_mut(),
        dims4(out.padded4()),
        int(out.numel()),
    );
    launch!(
        dev,
        ELEMENTWISE,
        "binary_forward",
        for_elements(out.numel()),
        code,
        ap,
        sa,
        bp,
        sb,
        yp,
        dims,
        n
    )?;
    Ok(y)
}

/// The gradients of both operands of [`binary_forward`] from the output
/// gradient `g` (shape `out`), each summed back to its operand's shape as
/// `ops::binary` does; `None` where `needs` says it is not wanted.
#[allow(clippy::too_many_arguments)]
pub fn binary_backward(
    dev: &CudaDevice,
    op: Binary,
    a: &Buf,
    a_shape: &Shape,
    b: &Buf,
    b_shape: &Shape,
    g: &Buf,
    out: &Shape,
    needs: [bool; 2],
) -> Result<(Option<Buf>, Option<Buf>)> {
    expect_len("cuda::binary_backward", "g", g, out.numel())?;
    let ga = match (needs[0], op) {
        (false, _) => None,
        (true, Binary::Add | Binary::Sub) => Some(reduce_sum_to(dev, g, out, a_shape)?),
        (true, Binary::Mul | Binary::Div) => {
            let full_grad = binary_forward(dev, op, g, out, b, b_shape, out)?;
            Some(reduce_sum_to(dev, &full_grad, out, a_shape)?)
        }
    };
    let gb = match (needs[1], op) {
        (false, _) => None,
        (true, Binary::Add) => Some(reduce_sum_to(dev, g, out, b_shape)?),
        (true, Binary::Sub) => {
            let neg = unary_forward(dev, Unary::Scale(-1.0), g)?;
            Some(reduce_sum_to(dev, &neg, out, b_shape)?)
        }
        (true, Binary::Mul) => {
            let full_grad = binary_forward(dev, Binary::Mul, g, out, a, a_shape, out)?;
            Some(reduce_sum_to(dev, &full_grad, out, b_shape)?)
        }
        (true, Binary::Div) => {
            expect_len("cuda::binary_backward", "a", a, a_shape.numel())?;
            expect_len("cuda::binary_backward", "b", b, b_shape.numel())?;
            let mut full_grad = dev.alloc(out.numel())?;
            if out.numel() > 0 {
                let (sa, sb) = (
                    dims4(broadcast_strides(a_shape, out)),
                    dims4(broadcast_strides(b_shape, out)),
                );
                let (gp, ap, bp, yp) = (g.ptr(), a.ptr(), b.ptr(), full_grad.ptr_mut());
                let (dims, n) = (dims4(out.padded4()), int(out.numel()));
                launch!(
                    dev,
                    ELEMENTWISE,
                    "div_grad_b",
                    for_elements(out.numel()),
                    gp,
                    ap,
                    sa,
                    bp,
                    sb,
                    yp,
                    dims,
                    n
                )?;
            }
            Some(reduce_sum_to(dev, &full_grad, out, b_shape)?)
        }
    };
    Ok((ga, gb))
}

/// `x` of shape `src` copied out to the broadcast shape `dst` (`tensor::expand`).
pub fn expand(dev: &CudaDevice, x: &Buf, src: &Shape, dst: &Shape) -> Result<Buf> {
    expect_len("cuda::expand", "x", x, src.numel())?;
    if src.numel() == dst.numel() {
        return x.try_clone();
    }
    let mut y = dev.alloc(dst.numel())?;
    if dst.numel() == 0 {
        return Ok(y);
    }
    let sx = dims4(broadcast_strides(src, dst));
    let (xp, yp, dims, n) = (x.ptr(), y.ptr_mut(), dims4(dst.padded4()), int(dst.numel()));
    launch!(
        dev,
        ELEMENTWISE,
        "broadcast_copy",
        for_elements(dst.numel()),
        xp,
        sx,
        yp,
        dims,
        n
    )?;
    Ok(y)
}

/// `len` copies of `value`.
pub fn fill(dev: &CudaDevice, len: usize, value: f32) -> Result<Buf> {
    let mut y = dev.alloc(len)?;
    if len > 0 {
        let (yp, n) = (y.ptr_mut(), int(len));
        launch!(dev, ELEMENTWISE, "fill", for_elements(len), yp, value, n)?;
    }
    Ok(y)
}

/// `row` repeated `rows` times (`row.repeat(rows)`), e.g. a bias before a product is added.
pub fn repeat_row(dev: &CudaDevice, row: &Buf, rows: usize) -> Result<Buf> {
    let len = row.len() * rows;
    let mut y = dev.alloc(len)?;
    if len > 0 {
        let (rp, cols, yp, n) = (row.ptr(), int(row.len()), y.ptr_mut(), int(len));
        launch!(
            dev,
            ELEMENTWISE,
            "repeat_row",
            for_elements(len),
            rp,
            cols,
            yp,
            n
        )?;
    }
    Ok(y)
}
