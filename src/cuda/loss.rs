//! The elementwise parts of the task losses on the GPU (`kernels/loss.cu`):
//! cross-entropy with label smoothing from log-probabilities
//! (`ops::cross_entropy`) and the squared error (`ops::mse_loss`), forward
//! per row or value, and backward. The reduction of the per-row values is
//! [`super::reduce::sum_all`] (and a scale for a mean).

use super::device::CudaDevice;
use super::launch::{expect_len, for_elements, for_rows, int, launch};
use super::nvrtc::LOSS;
use super::pool::DeviceBuffer;
use crate::error::{Error, Result};

type Buf = DeviceBuffer<f32>;

/// How the gradient `g` of a reduced loss reaches each row (or value).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Upstream {
    /// No reduction: `g` holds one value per row.
    PerItem,
    /// Sum (`divisor` 1) or mean (`divisor` = the number of rows): row r gets `g[0] / divisor`.
    Shared {
        /// 1 for a sum, the count for a mean.
        divisor: f32,
    },
}

impl Upstream {
    /// The kernels' (per_item flag, divisor), checking the length of `g` for `items` items.
    pub(crate) fn args(self, g: &Buf, items: usize) -> Result<(i32, f32)> {
        let (per_item, divisor, len) = match self {
            Upstream::PerItem => (1, 1.0, items),
            Upstream::Shared { divisor } => (0, divisor, 1),
        };
        expect_len("cuda loss backward", "g", g, len)?;
        Ok((per_item, divisor))
    }
}

fn upload_targets(
    dev: &CudaDevice,
    targets: &[usize],
    rows: usize,
    k: usize,
) -> Result<DeviceBuffer<i64>> {
    if targets.len() != rows || targets.iter().any(|&t| t >= k) {
        return Err(Error::invalid(
            "cuda::cross_entropy",
            format!("{} targets for {rows} rows of {k} classes", targets.len()),
        ));
    }
    dev.upload(&targets.iter().map(|&t| int(t)).collect::<Vec<i64>>())
}

/// The loss of each row of log-probabilities `lp` (rows of `k`) against
/// class `targets[r]` with label smoothing `eps`:
/// `-(1-ε)·lp[y] - ε·mean(lp)`, as `ops::cross_entropy` per row.
pub fn cross_entropy_rows(
    dev: &CudaDevice,
    lp: &Buf,
    targets: &[usize],
    k: usize,
    eps: f32,
) -> Result<Buf> {
    let rows = lp.len().checked_div(k).unwrap_or(0);
    expect_len("cuda::cross_entropy_rows", "lp", lp, rows * k)?;
    let t = upload_targets(dev, targets, rows, k)?;
    let mut out = dev.alloc(rows)?;
    if rows == 0 {
        return Ok(out);
    }
    let (lpp, tp, r, kk, op) = (lp.ptr(), t.ptr(), int(rows), int(k), out.ptr_mut());
    launch!(
        dev,
        LOSS,
        "cross_entropy_rows",
        for_rows(rows, k),
        lpp,
        tp,
        r,
        kk,
        eps,
        op
    )?;
    Ok(out)
}

/// The gradient of the cross-entropy with respect to the logits:
/// `(softmax - target distribution) · upstream` per row.
pub fn cross_entropy_backward(
    dev: &CudaDevice,
    lp: &Buf,
    targets: &[usize],
    k: usize,
    eps: f32,
    g: &Buf,
    up: Upstream,
) -> Result<Buf> {
    let rows = lp.len().checked_div(k).unwrap_or(0);
    expect_len("cuda::cross_entropy_backward", "lp", lp, rows * k)?;
    let t = upload_targets(dev, targets, rows, k)?;
    let (per_row, divisor) = up.args(g, rows)?;
    let mut grad = dev.alloc(lp.len())?;
    if lp.is_empty() {
        return Ok(grad);
    }
    let (lpp, tp, gp, kk, gr, n) = (
        lp.ptr(),
        t.ptr(),
        g.ptr(),
        int(k),
        grad.ptr_mut(),
        int(lp.len()),
    );
    launch!(
        dev,
        LOSS,
        "cross_entropy_backward",
        for_elements(lp.len()),
        lpp,
        tp,
        gp,
        per_row,
        divisor,
        kk,
        eps,
        gr,
        n
    )?;
    Ok(grad)
}

/// `(a - b, (a - b)²)` elementwise: the difference the backward pass needs
/// and the squared errors to reduce, as `ops::mse_loss`.
pub fn mse_forward(dev: &CudaDevice, a: &Buf, b: &Buf) -> Result<(Buf, Buf)> {
    expect_len("cuda::mse_forward", "b", b, a.len())?;
    let mut diff = dev.alloc(a.len())?;
    let mut sq = dev.alloc(a.len())?;
    if !a.is_empty() {
        let (ap, bp, dp, sp, n) = (a.ptr(), b.ptr(), diff.ptr_mut(), sq.ptr_mut(), int(a.len()));
        launch!(
            dev,
            LOSS,
            "mse_forward",
            for_elements(a.len()),
            ap,
            bp,
            dp,
            sp,
            n
        )?;
    }
    Ok((diff, sq))
}

/// The gradients of the squared error from `diff` = a - b: `2·diff·upstream`
/// for `a` and its negation for `b`; `None` where `needs` says not wanted.
pub fn mse_backward(
    dev: &CudaDevice,
    diff: &Buf,
    g: &Buf,
    up: Upstream,
    needs: [bool; 2],
) -> Result<(Option<Buf>, Option<Buf>)> {
    let (per_item, divisor) = up.args(g, diff.len())?;
    let mut ga = needs[0].then(|| dev.alloc(diff.len())).transpose()?;
    let mut gb = needs[1].then(|| dev.alloc(diff.len())).transpose()?;
    if !diff.is_empty() && (needs[0] || needs[1]) {
        let (dp, gp, n) = (diff.ptr(), g.ptr(), int(diff.len()));
        let gap = ga.as_mut().map_or(0u64, |b| b.ptr_mut());
        let gbp = gb.as_mut().map_or(0u64, |b| b.ptr_mut());
        launch!(
            dev,
            LOSS,
            "mse_backward",
            for_elements(diff.len()),
            dp,
            gp,
            per_item,
            divisor,
            gap,
            gbp,
            n
        )?;
    }
    Ok((ga, gb))
}
