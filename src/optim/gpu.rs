//! The optimizer updates of a parameter that lives on a GPU: the fused
//! kernels of `cuda::optim`, with the same rules as the CPU updates.

use super::{OptimizerConfig, ParamState};
use crate::autograd::Param;
use crate::cuda::optim::{adam_update, sgd_update, Adam, Sgd};
use crate::cuda::CudaDevice;
use crate::error::Result;
use crate::tensor::Tensor;

const OP: &str = "Optimizer::step";

/// Updates `param` in place from `grad` with the state `st` (its buffers on
/// the same GPU; `st.step` already counts this update).
pub(super) fn update(
    dev: &CudaDevice,
    config: &OptimizerConfig,
    param: &mut Param,
    grad: &Tensor,
    st: &mut ParamState,
    lr: f32,
    first: bool,
) -> Result<()> {
    let grad = grad.cuda_buffer(OP)?;
    let values = param.tensor_mut().cuda_buffer_mut(OP)?;
    match *config {
        OptimizerConfig::Sgd {
            momentum,
            weight_decay,
            nesterov,
        } => {
            let h = Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            };
            let buf = match st.buffers.first_mut() {
                Some(b) => Some(b.cuda_buffer_mut(OP)?),
                None => None,
            };
            sgd_update(dev, h, values, grad, buf, first)
        }
        OptimizerConfig::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        }
        | OptimizerConfig::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let h = Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: matches!(config, OptimizerConfig::AdamW { .. }),
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
