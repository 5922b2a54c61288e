//! A tensor's values in a GPU's memory.

use crate::cuda::{CudaDevice, DeviceBuffer};
use crate::error::Result;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// Values on a GPU: the device, its buffer, and a host copy made the first
/// time host code asks for the values (tensors are immutable, so the copy
/// never goes stale).
pub struct CudaValues {
    device: Arc<CudaDevice>,
    buffer: DeviceBuffer<f32>,
    host: OnceLock<Vec<f32>>,
}

impl CudaValues {
    /// Values held by `buffer` on `device`.
    pub fn new(device: Arc<CudaDevice>, buffer: DeviceBuffer<f32>) -> CudaValues {
        CudaValues {
            device,
            buffer,
            host: OnceLock::new(),
        }
    }

    /// The GPU holding the values.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }

    /// The device buffer.
    pub fn buffer(&self) -> &DeviceBuffer<f32> {
        &self.buffer
    }

    /// The device buffer, to be changed in place; the host copy is dropped.
    pub fn buffer_mut(&mut self) -> &mut DeviceBuffer<f32> {
        self.host.take();
        &mut self.buffer
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// A copy of the values in host memory (waits for the queued work).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match self.host.get() {
            Some(v) => Ok(v.clone()),
            None => self.buffer.to_vec(),
        }
    }

    /// The values in host memory, copied on first use. A copy that fails
    /// (a GPU that stopped working) reads as NaN, which every training loop
    /// stops on; code at the edges uses [`CudaValues::to_vec`] to see the error.
    pub(crate) fn host(&self) -> &[f32] {
        self.host.get_or_init(|| {
            self.buffer.to_vec().unwrap_or_else(|e| {
                eprintln!("retort: reading values back from the GPU failed: {e}");
                vec![f32::NAN; self.buffer.len()]
            })
        })
    }
}

impl fmt::Debug for CudaValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaValues({:?}, {} values)", self.device, self.len())
    }
}
