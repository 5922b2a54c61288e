//! The SGD update of one parameter, exactly as `torch.optim.SGD` (dampening 0).

/// Hyper-parameters of one SGD update.
#[derive(Clone, Copy, Debug)]
pub(super) struct SgdHyper {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

/// Updates `param` in place from `grad`. `buf` is the momentum buffer (absent
/// when momentum is 0); `first` says whether this is the parameter's first
/// update, when torch initialises the buffer with the (decayed) gradient.
///
/// ```text
/// d = g + wd·p
/// buf = d                       (first step)
/// buf = momentum·buf + d        (later steps)
/// d = d + momentum·buf          (nesterov)   or   d = buf
/// p = p - lr·d
/// ```
pub(super) fn update(
    h: SgdHyper,
    param: &mut [f32],
    grad: &[f32],
    buf: Option<&mut [f32]>,
    first: bool,
) {
    match buf {
        None => {
            for (p, &g) in param.iter_mut().zip(grad) {
                let d = if h.weight_decay != 0.0 {
                    g + h.weight_decay * *p
                } else {
                    g
                };
                *p -= h.lr * d;
            }
        }
        Some(buf) => {
            for ((p, &g), b) in param.iter_mut().zip(grad).zip(buf.iter_mut()) {
                let mut d = if h.weight_decay != 0.0 {
                    g + h.weight_decay * *p
                } else {
                    g
                };
                *b = if first { d } else { h.momentum * *b + d };
                d = if h.nesterov { d + h.momentum * *b } else { *b };
                *p -= h.lr * d;
            }
        }
    }
}
