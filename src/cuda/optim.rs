//! Fused optimizer updates on the GPU (`kernels/optim.cu`), one pass over a
//! parameter with exactly the rules of `optim` (`torch.optim`'s SGD, Adam and
//! AdamW), and the global gradient norm of clipping, summed in f64.

use super::device::CudaDevice;
use super::launch::{expect_len, for_elements, int, launch};
use super::nvrtc::OPTIM;
use super::pool::DeviceBuffer;
use crate::error::Result;
use cudarc::driver::LaunchConfig;

type Buf = DeviceBuffer<f32>;

/// Hyper-parameters of one SGD update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0: no momentum buffer).
    pub momentum: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// Updates `param` in place from `grad`, as `torch.optim.SGD` (dampening 0):
/// `buf` is the momentum buffer (`None` without momentum), set to the
/// (decayed) gradient on the parameter's `first` update.
pub fn sgd_update(
    dev: &CudaDevice,
    h: Sgd,
    param: &mut Buf,
    grad: &Buf,
    buf: Option<&mut Buf>,
    first: bool,
) -> Result<()> {
    let n = param.len();
    expect_len("cuda::sgd_update", "grad", grad, n)?;
    let bp = match buf {
        Some(b) => {
            expect_len("cuda::sgd_update", "momentum buffer", b, n)?;
            b.ptr_mut()
        }
        None => 0,
    };
    if n == 0 {
        return Ok(());
    }
    let (pp, gp, nn, nesterov, first) = (
        param.ptr_mut(),
        grad.ptr(),
        int(n),
        i32::from(h.nesterov),
        i32::from(first),
    );
    let (lr, momentum, wd) = (h.lr, h.momentum, h.weight_decay);
    launch!(
        dev,
        OPTIM,
        "sgd_update",
        for_elements(n),
        pp,
        gp,
        bp,
        nn,
        lr,
        momentum,
        wd,
        nesterov,
        first
    )
}

/// Hyper-parameters of one Adam or AdamW update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// L2 penalty (Adam) or decoupled decay (AdamW).
    pub weight_decay: f32,
    /// AdamW's decoupled weight decay rather than Adam's L2.
    pub decoupled: bool,
}

/// Updates `param` in place from `grad` with the moments `m` and `v`, as
/// `torch.optim.Adam`/`AdamW`; `step` is the parameter's update count
/// including this one (1 on the first), for the bias corrections, which are
/// computed on the host in f64 as the CPU does.
pub fn adam_update(
    dev: &CudaDevice,
    h: Adam,
    param: &mut Buf,
    grad: &Buf,
    m: &mut Buf,
    v: &mut Buf,
    step: u64,
) -> Result<()> {
    let n = param.len();
    expect_len("cuda::adam_update", "grad", grad, n)?;
    expect_len("cuda::adam_update", "m", m, n)?;
    expect_len("cuda::adam_update", "v", v, n)?;
    if n == 0 {
        return Ok(());
    }
    let t = i32::try_from(step).unwrap_or(i32::MAX);
    let bias1 = 1.0 - (h.beta1 as f64).powi(t);
    let bias2_sqrt = (1.0 - (h.beta2 as f64).powi(t)).sqrt() as f32;
    let step_size = (h.lr as f64 / bias1) as f32;
    let decay = 1.0 - h.lr * h.weight_decay;
    let (pp, gp, mp, vp, nn, decoupled) = (
        param.ptr_mut(),
        grad.ptr(),
        m.ptr_mut(),
        v.ptr_mut(),
        int(n),
        i32::from(h.decoupled),
    );
    let (beta1, beta2, eps, wd) = (h.beta1, h.beta2, h.eps, h.weight_decay);
    launch!(
        dev,
        OPTIM,
        "adam_update",
        for_elements(n),
        pp,
        gp,
        mp,
        vp,
        nn,
        step_size,
        bias2_sqrt,
        beta1,
        beta2,
        eps,
        wd,
        decoupled,
        decay
    )
}

/// Blocks per tensor of the sum of squares (each leaves one partial sum).
const NORM_BLOCKS: usize = 256;

/// The global L2 norm of `grads`, accumulated in f64 and returned as f32
/// (waits for the device), as `optim::grad_norm`.
pub fn grad_norm(dev: &CudaDevice, grads: &[&Buf]) -> Result<f32> {
    let mut partial = dev.zeros::<f64>(NORM_BLOCKS * grads.len().max(1))?;
    for (i, g) in grads.iter().enumerate() {
        if g.is_empty() {
            continue;
        }
        let cfg = LaunchConfig {
            grid_dim: (g.len().div_ceil(256).clamp(1, NORM_BLOCKS) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (xp, n, pp) = (g.ptr(), int(g.len()), partial.ptr_at(i * NORM_BLOCKS));
        launch!(dev, OPTIM, "sum_squares", cfg, xp, n, pp)?;
    }
    let mut total = dev.alloc::<f64>(1)?;
    let (pp, n, tp) = (partial.ptr_mut(), int(partial.len()), total.ptr_mut());
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch!(dev, OPTIM, "sum_partials", cfg, pp, n, tp)?;
    Ok(total.to_vec()?[0].sqrt() as f32)
}
