//! Parameters: tracked leaves that live across training steps.

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::tensor::{Device, Tensor};

/// A trainable value. Its identity stays the same across steps, so the
/// gradients of every step's tape can be looked up by it, while each step's
/// tape (and everything it saved) is dropped after its backward pass.
#[derive(Clone, Debug)]
pub struct Param {
    value: Tensor,
}

impl Param {
    /// A parameter holding `value`.
    pub fn new(value: Tensor) -> Param {
        Param {
            value: value.detach().tracked(),
        }
    }

    /// The current value, for use in ops on a tape.
    pub fn tensor(&self) -> &Tensor {
        &self.value
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.value.dims()
    }

    /// This parameter's gradient in `grads`, if the loss depended on it.
    pub fn grad<'g>(&self, grads: &'g Gradients) -> Option<&'g Tensor> {
        grads.get(&self.value)
    }

    /// Mutable values for an in-place update; copies first if a live tape
    /// still shares them, so that the tape's saved inputs are never changed.
    pub fn values_mut(&mut self) -> &mut [f32] {
        self.value.data_mut()
    }

    /// The value to be changed in place by device code (an optimizer's GPU
    /// update); the identity must be kept.
    #[cfg(feature = "cuda")]
    pub(crate) fn tensor_mut(&mut self) -> &mut Tensor {
        &mut self.value
    }

    /// The device holding the values.
    pub fn device(&self) -> Device {
        self.value.device()
    }

    /// Moves the values to `device`, keeping the identity (so gradients and
    /// optimizer state still find it).
    pub fn move_to(&mut self, device: Device) -> Result<()> {
        self.value = self.value.moved_to(device)?;
        Ok(())
    }

    /// Replaces the values, keeping the identity and the device; the shape must match.
    pub fn set(&mut self, values: &Tensor) -> Result<()> {
        if values.shape() != self.value.shape() {
            return Err(Error::shape(
                "Param::set",
                format!(
                    "new value of shape {:?} for a parameter of shape {:?}",
                    values.shape(),
                    self.value.shape()
                ),
            ));
        }
        let device = self.value.device();
        if device == Device::Cpu {
            self.value.data_mut().copy_from_slice(&values.try_to_vec()?);
        } else {
            self.value = self.value.with_storage_of(&values.to_device(device)?);
        }
        Ok(())
    }
}
