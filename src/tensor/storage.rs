//! Where a tensor's values live.

use std::fmt;

#[cfg(feature = "cuda")]
pub use super::cuda_values::CudaValues;

/// A compute device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// The host CPU (SIMD kernels, rayon threads).
    Cpu,
    /// An NVIDIA GPU, by ordinal.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// The values of a tensor: host memory, or (with the `cuda` feature) a
/// buffer on a GPU. Every op dispatches on where its inputs live.
#[derive(Debug)]
pub enum Storage {
    /// Row-major values in host memory.
    Cpu(Vec<f32>),
    /// Row-major values in a GPU's memory.
    #[cfg(feature = "cuda")]
    Cuda(CudaValues),
}

impl Storage {
    /// Number of values held.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(v) => v.len(),
        }
    }

    /// Whether no values are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device holding the values.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(v) => Device::Cuda(v.device().info().ordinal),
        }
    }

    /// The values in host memory; a GPU's values are copied once and kept.
    pub(crate) fn as_slice(&self) -> &[f32] {
        match self {
            Storage::Cpu(v) => v,
            #[cfg(feature = "cuda")]
            Storage::Cuda(v) => v.host(),
        }
    }
}
