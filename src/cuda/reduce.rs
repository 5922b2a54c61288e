//! Sums over broadcast axes on the GPU (`kernels/reduce.cu`), as
//! `tensor::reduce_sum_to`: the gradient of a broadcast operand, `ops::sum`
//! and `ops::mean` over axes (the summed axes kept as size 1), bias gradients.

use super::device::CudaDevice;
use super::launch::{dims4, expect_len, for_rows, int, launch};
use super::nvrtc::REDUCE;
use super::pool::DeviceBuffer;
use crate::error::Result;
use crate::tensor::Shape;

type Buf = DeviceBuffer<f32>;

/// `x` of shape `big` summed down to `small`, which broadcasts to `big`.
pub fn reduce_sum_to(dev: &CudaDevice, x: &Buf, big: &Shape, small: &Shape) -> Result<Buf> {
    if big.numel() == small.numel() {
        expect_len("cuda::reduce_sum_to", "x", x, big.numel())?;
        return x.try_clone();
    }
    let mut out = dev.alloc(small.numel())?;
    reduce_sum_to_into(dev, x, big, small, &mut out)?;
    Ok(out)
}

/// [`reduce_sum_to`] into `out` (`small.numel()` values, overwritten).
pub fn reduce_sum_to_into(
    dev: &CudaDevice,
    x: &Buf,
    big: &Shape,
    small: &Shape,
    out: &mut Buf,
) -> Result<()> {
    const OP: &str = "cuda::reduce_sum_to";
    expect_len(OP, "x", x, big.numel())?;
    expect_len(OP, "out", out, small.numel())?;
    let (bd, sd) = (big.padded4(), small.padded4());
    let count: usize = (0..4)
        .filter(|&k| sd[k] == 1 && bd[k] != 1)
        .map(|k| bd[k])
        .product();
    let out_n = small.numel();
    if out_n == 0 {
        return Ok(());
    }
    let (xp, big4, small4, op, on, cnt) = (
        x.ptr(),
        dims4(bd),
        dims4(sd),
        out.ptr_mut(),
        int(out_n),
        int(count),
    );
    launch!(
        dev,
        REDUCE,
        "sum_to",
        for_rows(out_n, count),
        xp,
        big4,
        small4,
        op,
        on,
        cnt
    )
}

/// The sum of every value of `x`, as one value.
pub fn sum_all(dev: &CudaDevice, x: &Buf) -> Result<Buf> {
    let big = Shape::new(&[x.len()])?;
    let mut out = dev.alloc(1)?;
    reduce_sum_to_into(dev, x, &big, &Shape::new(&[1])?, &mut out)?;
    Ok(out)
}
