//! The optimizer updates of a parameter that lives on a GPU: the fused
//! kernels of `cuda::optim`, with the same rules as the CPU updates.

use super::{ParamState, Rule};
use crate::autograd::Param;
use crate::cuda::optim::{adam_update, sgd_update, Adam, Sgd};
use crate::cuda::CudaDevice;
use crate::error::Result;
use crate::tensor::Tensor;

const OP: &str = "Optimizer::step";

/// Updates `param` in place from `grad` by `rule` with the state `st` (its
/// buffers on the same GPU; `st.step` already counts this update).
pub(super) fn update(
    dev: &CudaDevice,
    rule: Rule,
    param: &mut Param,
    grad: &Tensor,
    st: &mut ParamState,
    first: bool,
) -> Result<()> {
    let grad = grad.cuda_buffer(OP)?;
    let values = param.tensor_mut().cuda_buffer_mut(OP)?;
    match rule {
        Rule::Sgd(h) => {
            let h = Sgd {
                lr: h.lr,
                momentum: h.momentum,
                weight_decay: h.weight_decay,
                nesterov: h.nesterov,
            };
            let buf = match st.buffers.first_mut() {
                Some(b) => Some(b.cuda_buffer_mut(OP)?),
                None => None,
            };
            sgd_update(dev, h, values, grad, buf, first)
        }
        Rule::Adam(h) => {
            let h = Adam {
                lr: h.lr,
                beta1: h.beta1,
                beta2: h.beta2,
                eps: h.eps,
                weight_decay: h.weight_decay,
                decoupled: h.decoupled,
            };
            let (m, v) = st.buffers.split_at_mut(1);
            adam_update(
                dev,
                h,
                values,
                grad,
                m[0].cuda_buffer_mut(OP)?,
                v[0].cuda_buffer_mut(OP)?,
                st.step,
            )
        }
    }
}
