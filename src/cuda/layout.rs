//! Data movement on the GPU (`kernels/layout.cu`), as `cpu::layout` and
//! `ops::shape_ops`: permute, concat, slice (and its gradient), flip and the
//! length-aware reversal of padded sequences.

use super::device::CudaDevice;
use super::launch::{dims4, expect_len, for_elements, int, launch};
use super::nvrtc::LAYOUT;
use super::pool::DeviceBuffer;
use crate::cpu::layout::around_axis;
use crate::error::{Error, Result};
use crate::tensor::Shape;

type Buf = DeviceBuffer<f32>;

/// The values of `x` (shape `s`) with axes reordered: output axis i is input
/// axis `perm[i]`, as `cpu::layout::permute`.
pub fn permute(dev: &CudaDevice, x: &Buf, s: &Shape, perm: &[usize]) -> Result<Buf> {
    expect_len("cuda::permute", "x", x, s.numel())?;
    let rank = s.rank();
    if perm.len() != rank || perm.iter().any(|&p| p >= rank) {
        return Err(Error::invalid(
            "cuda::permute",
            format!("{perm:?} does not permute {s:?}"),
        ));
    }
    let in_strides = s.strides();
    let (mut dims, mut strides) = ([1usize; 4], [0usize; 4]);
    for (i, &p) in perm.iter().enumerate() {
        dims[4 - rank + i] = s.dim(p);
        strides[4 - rank + i] = in_strides[p];
    }
    let mut y = dev.alloc(s.numel())?;
    if s.numel() == 0 {
        return Ok(y);
    }
    let (xp, d, st, yp, n) = (
        x.ptr(),
        dims4(dims),
        dims4(strides),
        y.ptr_mut(),
        int(s.numel()),
    );
    launch!(
        dev,
        LAYOUT,
        "permute4",
        for_elements(s.numel()),
        xp,
        d,
        st,
        yp,
        n
    )?;
    Ok(y)
}

/// Copies `rows` rows of `cols` values: row r of `src` starts at
/// `r * src_stride + src_offset`, and lands at `r * dst_stride + dst_offset` in `dst`.
#[allow(clippy::too_many_arguments)]
fn copy_rows(
    dev: &CudaDevice,
    src: &Buf,
    (src_stride, src_offset): (usize, usize),
    dst: &mut Buf,
    (dst_stride, dst_offset): (usize, usize),
    rows: usize,
    cols: usize,
) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = |stride: usize, offset: usize| (rows - 1) * stride + offset + cols;
    if last(src_stride, src_offset) > src.len() || last(dst_stride, dst_offset) > dst.len() {
        return Err(Error::shape(
            "cuda::copy_rows",
            "rows outside their buffers",
        ));
    }
    let (sp, ss, so, dp, ds, dof, r, c) = (
        src.ptr(),
        int(src_stride),
        int(src_offset),
        dst.ptr_mut(),
        int(dst_stride),
        int(dst_offset),
        int(rows),
        int(cols),
    );
    launch!(
        dev,
        LAYOUT,
        "copy_rows",
        for_elements(rows * cols),
        sp,
        ss,
        so,
        dp,
        ds,
        dof,
        r,
        c
    )
}

/// The tensors `xs` (each with its shape) joined along `axis`, as `ops::concat`;
/// all other dimensions must agree.
pub fn concat(dev: &CudaDevice, xs: &[(&Buf, &Shape)], axis: usize) -> Result<Buf> {
    let Some(&(_, first)) = xs.first() else {
        return Err(Error::invalid("cuda::concat", "no tensors to join"));
    };
    first.check_axis("cuda::concat", axis)?;
    let mut out_dims = first.dims().to_vec();
    out_dims[axis] = 0;
    for &(x, s) in xs {
        expect_len("cuda::concat", "input", x, s.numel())?;
        let same_rest = s.rank() == first.rank()
            && (0..first.rank()).all(|i| i == axis || s.dims()[i] == first.dims()[i]);
        if !same_rest {
            return Err(Error::shape(
                "cuda::concat",
                format!("{s:?} does not match {first:?} outside axis {axis}"),
            ));
        }
        out_dims[axis] += s.dims()[axis];
    }
    let out_shape = Shape::new(&out_dims)?;
    let (outer, total, inner) = around_axis(&out_shape, axis);
    let mut y = dev.alloc(out_shape.numel())?;
    let mut offset = 0;
    for &(x, s) in xs {
        let n = s.dims()[axis];
        copy_rows(
            dev,
            x,
            (n * inner, 0),
            &mut y,
            (total * inner, offset * inner),
            outer,
            n * inner,
        )?;
        offset += n;
    }
    Ok(y)
}

/// Elements `start..end` along `axis` of `x` (shape `s`), as `ops::slice`.
/// Also the gradient of one input of a concat.
pub fn slice(
    dev: &CudaDevice,
    x: &Buf,
    s: &Shape,
    axis: usize,
    start: usize,
    end: usize,
) -> Result<Buf> {
    expect_len("cuda::slice", "x", x, s.numel())?;
    s.check_axis("cuda::slice", axis)?;
    let (outer, n, inner) = around_axis(s, axis);
    if start > end || end > n {
        return Err(Error::invalid(
            "cuda::slice",
            format!("range {start}..{end} outside axis {axis} of size {n}"),
        ));
    }
    let w = (end - start) * inner;
    let mut y = dev.alloc(outer * w)?;
    copy_rows(dev, x, (n * inner, start * inner), &mut y, (w, 0), outer, w)?;
    Ok(y)
}

/// The gradient of [`slice()`]: `g` placed at `start..end` along `axis` of a
/// zero tensor of shape `s`.
pub fn slice_backward(
    dev: &CudaDevice,
    g: &Buf,
    s: &Shape,
    axis: usize,
    start: usize,
    end: usize,
) -> Result<Buf> {
    s.check_axis("cuda::slice_backward", axis)?;
    let (outer, n, inner) = around_axis(s, axis);
    if start > end || end > n {
        return Err(Error::invalid(
            "cuda::slice_backward",
            format!("range {start}..{end} outside axis {axis} of size {n}"),
        ));
    }
    let w = (end - start) * inner;
    expect_len("cuda::slice_backward", "g", g, outer * w)?;
    let mut y = dev.zeros(s.numel())?;
    copy_rows(dev, g, (w, 0), &mut y, (n * inner, start * inner), outer, w)?;
    Ok(y)
}

/// Data laid out as (outer, steps, groups, inner): within each outer block,
/// group j's first `lengths[j % lengths.len()]` steps reversed (all steps
/// when `lengths` is empty), the others copied.
fn reverse_blocks(
    dev: &CudaDevice,
    x: &Buf,
    (outer, steps, groups, inner): (usize, usize, usize, usize),
    lengths: &[usize],
) -> Result<Buf> {
    expect_len("cuda::reverse", "x", x, outer * steps * groups * inner)?;
    if lengths.iter().any(|&l| l > steps) {
        return Err(Error::invalid(
            "cuda::reverse",
            format!("lengths {lengths:?} exceed {steps} steps"),
        ));
    }
    let mut y = dev.alloc(x.len())?;
    if x.is_empty() {
        return Ok(y);
    }
    let lens: Vec<i64> = lengths.iter().map(|&l| int(l)).collect();
    let lens_dev = if lens.is_empty() {
        None
    } else {
        Some(dev.upload(&lens)?)
    };
    let lp = lens_dev.as_ref().map_or(0u64, |b| b.ptr());
    let (xp, yp, o, s, g, i, nl) = (
        x.ptr(),
        y.ptr_mut(),
        int(outer),
        int(steps),
        int(groups),
        int(inner),
        int(lens.len()),
    );
    launch!(
        dev,
        LAYOUT,
        "reverse_blocks",
        for_elements(x.len()),
        xp,
        yp,
        o,
        s,
        g,
        i,
        lp,
        nl
    )?;
    Ok(y)
}

/// `x` (shape `s`) reversed along `axis`, as `ops::flip` (its own gradient).
pub fn flip(dev: &CudaDevice, x: &Buf, s: &Shape, axis: usize) -> Result<Buf> {
    s.check_axis("cuda::flip", axis)?;
    let (outer, n, inner) = around_axis(s, axis);
    reverse_blocks(dev, x, (outer, n, 1, inner), &[])
}

/// Each sequence of a padded (T, N, …) batch `x` (shape `s`) reversed in
/// time within its own length, padding in place, as `ops::reverse_sequences`
/// (its own gradient).
pub fn reverse_sequences(dev: &CudaDevice, x: &Buf, s: &Shape, lengths: &[usize]) -> Result<Buf> {
    if s.rank() < 2 || lengths.len() != s.dim(1) {
        return Err(Error::shape(
            "cuda::reverse_sequences",
            format!("{} lengths for {s:?}", lengths.len()),
        ));
    }
    let (t, n) = (s.dim(0), s.dim(1));
    let inner = s.numel() / (t * n).max(1);
    reverse_blocks(dev, x, (1, t, n, inner), lengths)
}
