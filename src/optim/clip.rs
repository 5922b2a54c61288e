//! Gradient-norm clipping over a set of parameters.

use crate::autograd::{Gradients, Param};
use crate::tensor::TensorId;

/// The distinct identities of `params` that have a gradient, in order (a
/// parameter listed twice counts once, as `torch.nn.Module.parameters()`).
fn with_grads(params: &[&Param], grads: &Gradients) -> Vec<TensorId> {
    let mut ids: Vec<TensorId> = Vec::with_capacity(params.len());
    for p in params {
        let id = p.tensor().id();
        if grads.get_id(id).is_some() && !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

fn norm_of(ids: &[TensorId], grads: &Gradients) -> f32 {
    #[cfg(feature = "cuda")]
    if let Some(norm) = gpu_norm(ids, grads) {
        return norm;
    }
    let sum: f64 = ids
        .iter()
        .filter_map(|&id| grads.get_id(id))
        .flat_map(|g| g.data().iter())
        .map(|&v| v as f64 * v as f64)
        .sum();
    sum.sqrt() as f32
}

/// The global L2 norm of the gradients of `params` (parameters without a
/// gradient contribute nothing; a parameter listed twice counts once).
/// Accumulated in f64; NaN or infinite when a gradient is.
pub fn grad_norm(params: &[&Param], grads: &Gradients) -> f32 {
    norm_of(&with_grads(params, grads), grads)
}

/// Scales all gradients of `params` so that their global L2 norm is at most
/// `max_norm`, as `torch.nn.utils.clip_grad_norm_`: when the norm exceeds
/// `max_norm`, every gradient is multiplied by `max_norm / (norm + 1e-6)`;
/// otherwise nothing changes. Returns the norm before clipping.
///
/// A non-finite norm is returned as it is and the gradients are left alone
/// (the caller should skip the step). A `max_norm` that is NaN also leaves
/// them alone; a negative one acts as 0 (all gradients zeroed).
pub fn clip_grad_norm(params: &[&Param], grads: &mut Gradients, max_norm: f32) -> f32 {
    let ids = with_grads(params, grads);
    let norm = norm_of(&ids, grads);
    if !norm.is_finite() || max_norm.is_nan() {
        return norm;
    }
    let max_norm = max_norm.max(0.0);
    let coef = max_norm as f64 / (norm as f64 + 1e-6);
    if coef < 1.0 {
        let coef = coef as f32;
        for id in ids {
            if let Some(g) = grads.get_mut(id) {
                if !scale_in_place(g, coef) {
                    // Some gradients are scaled and others not: the caller
                    // must skip this step, as for a non-finite norm.
                    return f32::NAN;
                }
            }
        }
    }
    norm
}

/// `g *= coef`, on the device `g` lives on; `false` when the device failed.
fn scale_in_place(g: &mut crate::Tensor, coef: f32) -> bool {
    #[cfg(feature = "cuda")]
    if let Some(dev) = g.cuda_values().map(|v| v.device().clone()) {
        use crate::cuda::elementwise::{unary_in_place, Unary};
        let scaled = g
            .cuda_buffer_mut("clip_grad_norm")
            .and_then(|buf| unary_in_place(&dev, Unary::Scale(coef), buf));
        if let Err(e) = &scaled {
            eprintln!("retort: clipping a gradient on the GPU failed: {e}");
        }
        return scaled.is_ok();
    }
    g.data_mut().iter_mut().for_each(|v| *v *= coef);
    true
}

/// The norm of gradients that all live on one GPU (`None` when they are on
/// the host); a failure on the device reads as NaN, so the step is skipped.
#[cfg(feature = "cuda")]
fn gpu_norm(ids: &[TensorId], grads: &Gradients) -> Option<f32> {
    let tensors: Vec<&crate::Tensor> = ids.iter().filter_map(|&id| grads.get_id(id)).collect();
    let dev = tensors.first()?.cuda_values()?.device().clone();
    let buffers: Option<Vec<_>> = tensors
        .iter()
        .map(|t| t.cuda_values().map(|v| v.buffer()))
        .collect();
    let norm = match buffers {
        Some(b) => crate::cuda::optim::grad_norm(&dev, &b),
        None => Err(crate::Error::Device(
            "clip_grad_norm: gradients on different devices".into(),
        )),
    };
    Some(norm.unwrap_or_else(|e| {
        eprintln!("retort: the gradient norm on the GPU failed: {e}");
        f32::NAN
    }))
}
