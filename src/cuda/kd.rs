//! The elementwise parts of the distillation losses on the GPU
//! (`kernels/kd.cu`): the KL divergence `Σ_k p_k (log p_k − log q_k)` between
//! rows of log-probabilities, as `ops::kl_div` (used by soft and sequence
//! KD), per row forward and to both arguments backward. The softening is
//! [`super::softmax`], the frame mask an elementwise product and the
//! reduction [`super::reduce::sum_all`].

use super::device::CudaDevice;
use super::launch::{expect_len, for_elements, for_rows, int, launch};
use super::loss::Upstream;
use super::nvrtc::KD;
use super::pool::DeviceBuffer;
use crate::error::Result;

type Buf = DeviceBuffer<f32>;

/// `KL(p ‖ q)` of each row of `k` classes, from log q (`input_log_q`, the
/// student) and log p (`target_log_p`, the teacher), with 0·log 0 = 0.
pub fn kl_div_rows(
    dev: &CudaDevice,
    input_log_q: &Buf,
    target_log_p: &Buf,
    k: usize,
) -> Result<Buf> {
    let rows = input_log_q.len().checked_div(k).unwrap_or(0);
    expect_len("cuda::kl_div_rows", "log q", input_log_q, rows * k)?;
    expect_len("cuda::kl_div_rows", "log p", target_log_p, rows * k)?;
    let mut out = dev.alloc(rows)?;
    if rows == 0 {
        return Ok(out);
    }
    let (qp, pp, r, kk, op) = (
        input_log_q.ptr(),
        target_log_p.ptr(),
        int(rows),
        int(k),
        out.ptr_mut(),
    );
    launch!(dev, KD, "kl_div_rows", for_rows(rows, k), qp, pp, r, kk, op)?;
    Ok(out)
}

/// The gradients of [`kl_div_rows`] scaled by the upstream gradient of each
/// row: `-p` for log q and `p (log p - log q + 1)` for log p (0 where p = 0);
/// `None` where `needs` says not wanted.
pub fn kl_div_backward(
    dev: &CudaDevice,
    input_log_q: &Buf,
    target_log_p: &Buf,
    k: usize,
    g: &Buf,
    up: Upstream,
    needs: [bool; 2],
) -> Result<(Option<Buf>, Option<Buf>)> {
    let n = input_log_q.len();
    let rows = n.checked_div(k).unwrap_or(0);
    expect_len("cuda::kl_div_backward", "log q", input_log_q, rows * k)?;
    expect_len("cuda::kl_div_backward", "log p", target_log_p, n)?;
    let (per_row, divisor) = up.args(g, rows)?;
    let mut gq = needs[0].then(|| dev.alloc(n)).transpose()?;
    let mut gp = needs[1].then(|| dev.alloc(n)).transpose()?;
    if n > 0 && (needs[0] || needs[1]) {
        let (qp, pp, gptr, kk, nn) = (
            input_log_q.ptr(),
            target_log_p.ptr(),
            g.ptr(),
            int(k),
            int(n),
        );
        let gqp = gq.as_mut().map_or(0u64, |b| b.ptr_mut());
        let gpp = gp.as_mut().map_or(0u64, |b| b.ptr_mut());
        launch!(
            dev,
            KD,
            "kl_div_backward",
            for_elements(n),
            qp,
            pp,
            gptr,
            per_row,
            divisor,
            kk,
            nn,
            gqp,
            gpp
        )?;
    }
    Ok((gq, gp))
}
