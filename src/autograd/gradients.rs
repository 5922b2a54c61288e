//! The gradient store: one accumulated gradient per tensor identity.

use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorId};
use std::collections::HashMap;

/// Gradients of a loss with respect to tracked leaves, keyed by tensor identity.
#[derive(Default, Debug)]
pub struct Gradients {
    map: HashMap<TensorId, Tensor>,
}

impl Gradients {
    /// The gradient of `tensor`, if the loss depends on it.
    pub fn get(&self, tensor: &Tensor) -> Option<&Tensor> {
        self.map.get(&tensor.id())
    }

    /// The gradient for an identity.
    pub fn get_id(&self, id: TensorId) -> Option<&Tensor> {
        self.map.get(&id)
    }

    /// Mutable access to the gradient for an identity (for clipping and scaling).
    pub fn get_mut(&mut self, id: TensorId) -> Option<&mut Tensor> {
        self.map.get_mut(&id)
    }

    /// Removes and returns the gradient for an identity.
    pub fn take(&mut self, id: TensorId) -> Option<Tensor> {
        self.map.remove(&id)
    }

    /// Number of gradients held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds `grad` to the gradient held for `id` (a value used twice gets the sum).
    pub(crate) fn accumulate(&mut self, id: TensorId, grad: Tensor) -> Result<()> {
        match self.map.get_mut(&id) {
            None => {
                self.map.insert(id, grad);
            }
            Some(held) => {
                if held.shape() != grad.shape() {
                    return Err(Error::Autograd(format!(
                        "gradient of shape {:?} cannot accumulate into {:?}",
                        grad.shape(),
                        held.shape()
                    )));
                }
                add_into(held, &grad)?;
            }
        }
        Ok(())
    }
}

/// `held += grad`, on the device both live on.
fn add_into(held: &mut Tensor, grad: &Tensor) -> Result<()> {
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("gradient accumulation", &[held, grad])? {
        const OP: &str = "gradient accumulation";
        let shape = *held.shape();
        let sum = crate::cuda::elementwise::binary_forward(
            &dev,
            crate::cuda::elementwise::Binary::Add,
            held.cuda_buffer(OP)?,
            &shape,
            grad.cuda_buffer(OP)?,
            &shape,
            &shape,
        )?;
        *held = Tensor::from_cuda(shape, &dev, sum);
        return Ok(());
    }
    for (h, g) in held.data_mut().iter_mut().zip(grad.data()) {
        *h += g;
    }
    Ok(())
}
