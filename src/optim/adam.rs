//! The Adam / AdamW update of one parameter, exactly as `torch.optim.Adam`
//! and `torch.optim.AdamW` (amsgrad off, maximize off).

/// Hyper-parameters of one Adam update.
#[derive(Clone, Copy, Debug)]
pub(super) struct AdamHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Decoupled weight decay (AdamW) rather than L2 added to the gradient (Adam).
    pub decoupled: bool,
}

/// Updates `param` in place from `grad`, with the first and second moment
/// buffers `m` and `v`; `step` is this parameter's update count including
/// this one (1 on the first update), used for bias correction.
///
/// ```text
/// p = p·(1 - lr·wd)                          (AdamW)
/// g = g + wd·p                               (Adam)
/// m = β1·m + (1-β1)·g
/// v = β2·v + (1-β2)·g²
/// p = p - (lr / (1-β1^t)) · m / (√v / √(1-β2^t) + eps)
/// ```
pub(super) fn update(
    h: AdamHyper,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: u64,
) {
    // torch computes the bias corrections as Python floats (f64).
    let t = i32::try_from(step).unwrap_or(i32::MAX);
    let bias1 = 1.0 - (h.beta1 as f64).powi(t);
    let bias2_sqrt = (1.0 - (h.beta2 as f64).powi(t)).sqrt();
    let step_size = (h.lr as f64 / bias1) as f32;
    let bias2_sqrt = bias2_sqrt as f32;
    let decay = 1.0 - h.lr * h.weight_decay;
    for (((p, &g), m), v) in param
        .iter_mut()
        .zip(grad)
        .zip(m.iter_mut())
        .zip(v.iter_mut())
    {
        let mut g = g;
        if h.weight_decay != 0.0 {
            if h.decoupled {
                *p *= decay;
            } else {
                g += h.weight_decay * *p;
            }
        }
        *m = h.beta1 * *m + (1.0 - h.beta1) * g;
        *v = h.beta2 * *v + (1.0 - h.beta2) * g * g;
        let denom = v.sqrt() / bias2_sqrt + h.eps;
        *p -= step_size * *m / denom;
    }
}
