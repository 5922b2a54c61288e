//! Which device an op runs on: the one all its inputs live on.

use super::{Device, Storage, Tensor};
use crate::error::{Error, Result};

/// Checks that `inputs` all live on one device and says which; an error
/// naming `op` and the devices when they do not.
pub fn expect_same_device(op: &'static str, inputs: &[&Tensor]) -> Result<Device> {
    let first = inputs.first().map_or(Device::Cpu, |t| t.device());
    if let Some(other) = inputs.iter().find(|t| t.device() != first) {
        return Err(Error::Device(format!(
            "{op}: inputs on different devices ({first} and {}); move them with Tensor::to_device",
            other.device()
        )));
    }
    Ok(first)
}

/// The GPU that all of `inputs` live on, or `None` when they all live on
/// the CPU; an error naming `op` when they are on different devices.
#[cfg(feature = "cuda")]
pub fn cuda_device_of(
    op: &'static str,
    inputs: &[&Tensor],
) -> Result<Option<std::sync::Arc<crate::cuda::CudaDevice>>> {
    expect_same_device(op, inputs)?;
    Ok(inputs
        .first()
        .and_then(|t| t.cuda_values())
        .map(|v| v.device().clone()))
}

/// Host `values` placed on `device`.
pub(super) fn storage_on(device: Device, values: Vec<f32>) -> Result<Storage> {
    match device {
        Device::Cpu => Ok(Storage::Cpu(values)),
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => {
            let dev = crate::cuda::CudaDevice::get(ordinal)?;
            let buffer = dev.upload(&values)?;
            Ok(Storage::Cuda(super::CudaValues::new(dev, buffer)))
        }
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(_) => Err(Error::Device(
            "retort was built without the `cuda` feature; rebuild with `cargo build --release --features cuda`".into(),
        )),
    }
}
