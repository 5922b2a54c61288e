//! One direction of one LSTM layer on the GPU, as `cpu::lstm`: the input
//! projection of every step hoisted into one cuBLAS product, then per step a
//! small product h·W_hhᵀ and the fused cell (`kernels/lstm.cu`) over the
//! batch; backward through time the same way, then dX, dW_ih and dW_hh as
//! one product each. Layouts, gate order (i, f, g, o) and length handling
//! are those of `cpu::lstm` (and `torch.nn.LSTM`).

use super::device::CudaDevice;
use super::gemm::{gemm, GpuMat};
use super::launch::{expect_len, for_elements, int, launch};
use super::nvrtc::LSTM;
use super::pool::DeviceBuffer;
use super::reduce::reduce_sum_to;
use crate::cpu::lstm::{LstmDims, LstmNeeds};
use crate::error::{Error, Result};
use crate::tensor::Shape;

type Buf = DeviceBuffer<f32>;

/// The weights of one direction on the device, `torch.nn.LSTM` layout.
#[derive(Clone, Copy, Debug)]
pub struct GpuLstmParams<'a> {
    /// (4H, F).
    pub w_ih: &'a Buf,
    /// (4H, H).
    pub w_hh: &'a Buf,
    /// (4H).
    pub b_ih: &'a Buf,
    /// (4H).
    pub b_hh: &'a Buf,
}

/// What the forward pass keeps for the backward pass, rows `t·N + n` (zero
/// at padding steps), as `cpu::lstm::LstmCache`.
#[derive(Debug)]
pub struct GpuLstmCache {
    /// Activated gates (T·N, 4H).
    pub gates: Buf,
    /// Cell state after the step (T·N, H).
    pub c: Buf,
    /// Hidden state before the step (T·N, H).
    pub h_prev: Buf,
}

/// Gradients of one direction; `None` where not asked for.
#[derive(Debug)]
pub struct GpuLstmGrads {
    /// (T, N, F).
    pub x: Option<Buf>,
    /// (4H, F).
    pub w_ih: Option<Buf>,
    /// (4H, H).
    pub w_hh: Option<Buf>,
    /// (4H); the gradient of both biases.
    pub bias: Option<Buf>,
}

fn check(
    op: &'static str,
    x: &Buf,
    p: &GpuLstmParams,
    d: LstmDims,
    lengths: &[usize],
) -> Result<()> {
    let g4 = 4 * d.hidden;
    expect_len(op, "x", x, d.steps * d.batch * d.input)?;
    expect_len(op, "w_ih", p.w_ih, g4 * d.input)?;
    expect_len(op, "w_hh", p.w_hh, g4 * d.hidden)?;
    expect_len(op, "b_ih", p.b_ih, g4)?;
    expect_len(op, "b_hh", p.b_hh, g4)?;
    if lengths.len() != d.batch || lengths.iter().any(|&l| l > d.steps) {
        return Err(Error::invalid(
            op,
            format!("lengths {lengths:?} do not fit {d:?}"),
        ));
    }
    Ok(())
}

fn lengths_on_device(dev: &CudaDevice, lengths: &[usize]) -> Result<DeviceBuffer<i64>> {
    let host: Vec<i64> = lengths.iter().map(|&l| int(l)).collect();
    dev.upload(&host)
}

/// Runs one direction over `x` (T, N, F) from a zero state, as
/// `cpu::lstm::lstm_forward`: the output (T, N, H), zero at padding steps,
/// and with `save` the cache the backward pass needs.
pub fn lstm_forward(
    dev: &CudaDevice,
    x: &Buf,
    p: GpuLstmParams,
    dims: LstmDims,
    lengths: &[usize],
    reverse: bool,
    save: bool,
) -> Result<(Buf, Option<GpuLstmCache>)> {
    check("cuda::lstm_forward", x, &p, dims, lengths)?;
    let LstmDims {
        steps,
        batch: n,
        input: f,
        hidden: h,
    } = dims;
    let (g4, rows) = (4 * h, steps * n);
    let mut out = dev.zeros(rows * h)?;
    let mut cache = if save {
        Some(GpuLstmCache {
            gates: dev.zeros(rows * g4)?,
            c: dev.zeros(rows * h)?,
            h_prev: dev.zeros(rows * h)?,
        })
    } else {
        None
    };
    if rows * h == 0 {
        return Ok((out, cache));
    }
    // Hoisted input projection: pre = b_ih + b_hh + X·W_ihᵀ over all rows.
    let mut pre = dev.alloc(rows * g4)?;
    let (bi, bh, gg, pp, total) = (
        p.b_ih.ptr(),
        p.b_hh.ptr(),
        int(g4),
        pre.ptr_mut(),
        int(rows * g4),
    );
    launch!(
        dev,
        LSTM,
        "lstm_bias_rows",
        for_elements(rows * g4),
        bi,
        bh,
        gg,
        pp,
        total
    )?;
    gemm(
        dev,
        1.0,
        GpuMat::row_major(x, rows, f),
        GpuMat::row_major(p.w_ih, g4, f).t(),
        1.0,
        &mut pre,
    )?;

    let mut h_state = dev.zeros(n * h)?;
    let mut c_state = dev.zeros::<f32>(n * h)?;
    let mut recur = dev.alloc(n * g4)?;
    let lens = lengths_on_device(dev, lengths)?;
    let max_len = lengths.iter().copied().max().unwrap_or(0);
    let (save_flag, gates, c_cache, h_prev) = match cache.as_mut() {
        Some(c) => (1i32, c.gates.ptr_mut(), c.c.ptr_mut(), c.h_prev.ptr_mut()),
        None => (0i32, 0u64, 0u64, 0u64),
    };
    let (pre_p, rec_p, len_p, rev, nn, hh) = (
        pre.ptr(),
        recur.ptr(),
        lens.ptr(),
        i32::from(reverse),
        int(n),
        int(h),
    );
    let (hs, cs, op) = (h_state.ptr_mut(), c_state.ptr_mut(), out.ptr_mut());
    for s in 0..max_len {
        if s > 0 {
            // h_{s-1}·W_hhᵀ for the whole batch.
            let hm = GpuMat::row_major(&h_state, n, h);
            gemm(
                dev,
                1.0,
                hm,
                GpuMat::row_major(p.w_hh, g4, h).t(),
                0.0,
                &mut recur,
            )?;
        }
        let step = int(s);
        launch!(
            dev,
            LSTM,
            "lstm_cell_forward",
            for_elements(n * h),
            step,
            pre_p,
            rec_p,
            len_p,
            rev,
            nn,
            hh,
            hs,
            cs,
            op,
            save_flag,
            gates,
            c_cache,
            h_prev
        )?;
    }
    Ok((out, cache))
}

/// Backward through time of [`lstm_forward`] from the output gradient `dy`
/// (T, N, H), as `cpu::lstm::lstm_backward`.
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward(
    dev: &CudaDevice,
    dy: &Buf,
    x: &Buf,
    p: GpuLstmParams,
    dims: LstmDims,
    lengths: &[usize],
    reverse: bool,
    cache: &GpuLstmCache,
    needs: LstmNeeds,
) -> Result<GpuLstmGrads> {
    const OP: &str = "cuda::lstm_backward";
    check(OP, x, &p, dims, lengths)?;
    let LstmDims {
        steps,
        batch: n,
        input: f,
        hidden: h,
    } = dims;
    let (g4, rows) = (4 * h, steps * n);
    expect_len(OP, "dy", dy, rows * h)?;
    expect_len(OP, "cache.gates", &cache.gates, rows * g4)?;
    expect_len(OP, "cache.c", &cache.c, rows * h)?;
    expect_len(OP, "cache.h_prev", &cache.h_prev, rows * h)?;

    let mut d_gates = dev.zeros(rows * g4)?;
    let mut dh_next = dev.zeros(n * h)?;
    let mut dc_next = dev.zeros::<f32>(n * h)?;
    let mut step_gates = dev.zeros(n * g4)?;
    let lens = lengths_on_device(dev, lengths)?;
    let max_len = lengths.iter().copied().max().unwrap_or(0);
    let (gp, cp, dyp, len_p, rev, nn, hh) = (
        cache.gates.ptr(),
        cache.c.ptr(),
        dy.ptr(),
        lens.ptr(),
        i32::from(reverse),
        int(n),
        int(h),
    );
    let (dhp, dcp, sgp, dgp) = (
        dh_next.ptr(),
        dc_next.ptr_mut(),
        step_gates.ptr_mut(),
        d_gates.ptr_mut(),
    );
    for s in (0..max_len).rev() {
        let step = int(s);
        launch!(
            dev,
            LSTM,
            "lstm_cell_backward",
            for_elements(n * h),
            step,
            gp,
            cp,
            dyp,
            len_p,
            rev,
            nn,
            hh,
            dhp,
            dcp,
            sgp,
            dgp
        )?;
        // dh_{s-1} = dGates_s·W_hh; nothing flows before the first step.
        if s > 0 {
            let sg = GpuMat::row_major(&step_gates, n, g4);
            gemm(
                dev,
                1.0,
                sg,
                GpuMat::row_major(p.w_hh, g4, h),
                0.0,
                &mut dh_next,
            )?;
        }
    }

    let dg = GpuMat::row_major(&d_gates, rows, g4);
    let product = |a: GpuMat, b: GpuMat, len: usize| -> Result<Buf> {
        let mut out = dev.alloc(len)?;
        gemm(dev, 1.0, a, b, 0.0, &mut out)?;
        Ok(out)
    };
    Ok(GpuLstmGrads {
        x: needs
            .x
            .then(|| product(dg, GpuMat::row_major(p.w_ih, g4, f), rows * f))
            .transpose()?,
        w_ih: needs
            .w_ih
            .then(|| product(dg.t(), GpuMat::row_major(x, rows, f), g4 * f))
            .transpose()?,
        w_hh: needs
            .w_hh
            .then(|| product(dg.t(), GpuMat::row_major(&cache.h_prev, rows, h), g4 * h))
            .transpose()?,
        bias: needs
            .bias
            .then(|| {
                reduce_sum_to(
                    dev,
                    &d_gates,
                    &Shape::new(&[rows, g4])?,
                    &Shape::new(&[1, g4])?,
                )
            })
            .transpose()?,
    })
}
