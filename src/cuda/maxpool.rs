//! 2-D max pooling on the GPU (`kernels/maxpool.cu`), as `cpu::maxpool2d`:
//! planes (planes, h, w) pooled into (planes, ho, wo) with the window
//! geometry `g` (its `c` ignored), padding read as `-inf`, the first maximum
//! of a window winning and a NaN over every number. The backward pass
//! gathers, for each input value, the gradients of the outputs that chose
//! it, in output order, so it is deterministic.

use super::device::CudaDevice;
use super::launch::{expect_len, for_elements, geom, int, launch};
use super::nvrtc::MAXPOOL;
use super::pool::DeviceBuffer;
use crate::cpu::conv2d::ConvGeom;
use crate::error::Result;

type Buf = DeviceBuffer<f32>;

/// Max pooling of the planes of `x` into `y`; when `argmax` is given (one
/// entry per output) it receives the index in the input plane of each chosen
/// value, as `cpu::maxpool2d::maxpool2d_forward`.
pub fn maxpool2d_forward(
    dev: &CudaDevice,
    x: &Buf,
    g: &ConvGeom,
    y: &mut Buf,
    argmax: Option<&mut DeviceBuffer<u32>>,
) -> Result<()> {
    const OP: &str = "cuda::maxpool2d_forward";
    let (in_plane, out_plane) = (g.h * g.w, g.ho * g.wo);
    if in_plane == 0 || out_plane == 0 {
        return Ok(());
    }
    let planes = x.len() / in_plane;
    expect_len(OP, "x", x, planes * in_plane)?;
    expect_len(OP, "y", y, planes * out_plane)?;
    let (ap, want) = match argmax {
        Some(a) => {
            expect_len(OP, "argmax", a, planes * out_plane)?;
            (a.ptr_mut(), 1i32)
        }
        None => (0u64, 0i32),
    };
    if planes == 0 {
        return Ok(());
    }
    let (xp, gg, pl, yp) = (x.ptr(), geom(g), int(planes), y.ptr_mut());
    launch!(
        dev,
        MAXPOOL,
        "maxpool_forward",
        for_elements(planes * out_plane),
        xp,
        gg,
        pl,
        yp,
        ap,
        want
    )
}

/// Gradient of max pooling: each output gradient `dy` (planes, ho, wo) added
/// at its `argmax` index of a zero input gradient (planes, h, w), as
/// `cpu::maxpool2d::maxpool2d_backward`.
pub fn maxpool2d_backward(
    dev: &CudaDevice,
    dy: &Buf,
    argmax: &DeviceBuffer<u32>,
    g: &ConvGeom,
    planes: usize,
) -> Result<Buf> {
    const OP: &str = "cuda::maxpool2d_backward";
    let (in_plane, out_plane) = (g.h * g.w, g.ho * g.wo);
    if in_plane == 0 || out_plane == 0 || planes == 0 {
        return dev.zeros(planes * in_plane);
    }
    expect_len(OP, "dy", dy, planes * out_plane)?;
    expect_len(OP, "argmax", argmax, planes * out_plane)?;
    let mut dx = dev.alloc(planes * in_plane)?;
    let (dyp, ap, gg, pl, dxp) = (dy.ptr(), argmax.ptr(), geom(g), int(planes), dx.ptr_mut());
    launch!(
        dev,
        MAXPOOL,
        "maxpool_backward",
        for_elements(planes * in_plane),
        dyp,
        ap,
        gg,
        pl,
        dxp
    )?;
    Ok(dx)
}
