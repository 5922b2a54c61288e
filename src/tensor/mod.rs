//! Tensors: f32 values of up to four dimensions, contiguous, on a device.
//!
//! A [`Tensor`] is cheap to clone (its storage is shared) and immutable; ops
//! make new tensors. Each tensor has an identity ([`TensorId`]) that the tape
//! uses to key gradients, and a flag saying whether gradients flow to it.

mod broadcast;
#[cfg(feature = "cuda")]
mod cuda_values;
mod placement;
mod shape;
mod storage;

pub use broadcast::{broadcast_shapes, broadcast_strides, expand, reduce_sum_to};
#[cfg(feature = "cuda")]
pub use placement::cuda_device_of;
pub use placement::expect_same_device;
pub use shape::{Shape, MAX_RANK};
#[cfg(feature = "cuda")]
pub use storage::CudaValues;
pub use storage::{Device, Storage};

use crate::error::{Error, Result};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Identity of a tensor value, unique within the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    /// A fresh identity never handed out before.
    pub fn fresh() -> TensorId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// An f32 tensor of up to four dimensions.
#[derive(Clone)]
pub struct Tensor {
    id: TensorId,
    shape: Shape,
    storage: Arc<Storage>,
    tracked: bool,
}

impl Tensor {
    /// A CPU tensor from row-major values; the length must match the shape.
    pub fn from_vec(data: Vec<f32>, dims: &[usize]) -> Result<Tensor> {
        let shape = Shape::new(dims)?;
        if data.len() != shape.numel() {
            return Err(Error::shape(
                "Tensor::from_vec",
                format!(
                    "{} values do not fill shape {shape:?} ({} elements)",
                    data.len(),
                    shape.numel()
                ),
            ));
        }
        Ok(Tensor::from_parts(shape, Storage::Cpu(data)))
    }

    /// A CPU tensor from a slice of values.
    pub fn from_slice(data: &[f32], dims: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), dims)
    }

    /// A tensor filled with `value`.
    pub fn full(dims: &[usize], value: f32) -> Result<Tensor> {
        let shape = Shape::new(dims)?;
        Ok(Tensor::from_parts(
            shape,
            Storage::Cpu(vec![value; shape.numel()]),
        ))
    }

    /// A tensor of zeros.
    pub fn zeros(dims: &[usize]) -> Result<Tensor> {
        Tensor::full(dims, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(dims: &[usize]) -> Result<Tensor> {
        Tensor::full(dims, 1.0)
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::from_parts(Shape::scalar(), Storage::Cpu(vec![value]))
    }

    /// A new untracked tensor with a fresh identity.
    pub fn from_parts(shape: Shape, storage: Storage) -> Tensor {
        debug_assert_eq!(shape.numel(), storage.len());
        Tensor {
            id: TensorId::fresh(),
            shape,
            storage: Arc::new(storage),
            tracked: false,
        }
    }

    /// A new untracked CPU tensor of `shape` from values whose count is known to fit.
    pub(crate) fn from_shape_vec(shape: Shape, data: Vec<f32>) -> Tensor {
        Tensor::from_parts(shape, Storage::Cpu(data))
    }

    /// This tensor's identity: gradients are keyed by it.
    pub fn id(&self) -> TensorId {
        self.id
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// The device that holds the values.
    pub fn device(&self) -> Device {
        self.storage.device()
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        self.storage.as_slice()
    }

    /// A copy of the values, row-major.
    pub fn to_vec(&self) -> Vec<f32> {
        self.data().to_vec()
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "Tensor::item",
                format!("tensor of shape {:?} is not a single value", self.shape),
            ));
        }
        Ok(self.data()[0])
    }

    /// Whether gradients flow to this tensor (a parameter, or a value computed
    /// from one on a recording tape).
    pub fn is_tracked(&self) -> bool {
        self.tracked
    }

    /// The same value, marked as a leaf that gradients flow to. Keeps the identity.
    pub fn tracked(mut self) -> Tensor {
        self.tracked = true;
        self
    }

    /// The same values under a new identity, cut off from the tape: no
    /// gradient flows through the result.
    pub fn detach(&self) -> Tensor {
        Tensor {
            id: TensorId::fresh(),
            shape: self.shape,
            storage: Arc::clone(&self.storage),
            tracked: false,
        }
    }

    /// The same values viewed with another shape of equal element count
    /// (no copy, new identity, untracked). The differentiable form is `ops::reshape`.
    pub fn reshaped(&self, dims: &[usize]) -> Result<Tensor> {
        let shape = Shape::new(dims)?;
        if shape.numel() != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!("cannot view {:?} as {shape:?}", self.shape),
            ));
        }
        Ok(Tensor {
            id: TensorId::fresh(),
            shape,
            storage: Arc::clone(&self.storage),
            tracked: false,
        })
    }

    /// Mutable values, copying the storage first if it is shared. Keeps the
    /// identity: this is how parameters are updated in place between steps.
    /// Values on a GPU are brought to host memory first (the tensor then
    /// lives on the CPU); device code updates GPU values with its own kernels.
    pub fn data_mut(&mut self) -> &mut [f32] {
        let owned_on_host = matches!(Arc::get_mut(&mut self.storage), Some(Storage::Cpu(_)));
        if !owned_on_host {
            self.storage = Arc::new(Storage::Cpu(self.data().to_vec()));
        }
        match Arc::get_mut(&mut self.storage) {
            Some(Storage::Cpu(values)) => values,
            _ => unreachable!("the storage was just made an unshared host vector"),
        }
    }

    /// The same identity and tracking with other storage of the same length
    /// (a parameter moved to another device keeps its identity).
    pub(crate) fn with_storage(&self, storage: Storage) -> Tensor {
        debug_assert_eq!(storage.len(), self.numel());
        Tensor {
            id: self.id,
            shape: self.shape,
            storage: Arc::new(storage),
            tracked: self.tracked,
        }
    }

    /// This identity and tracking with the values of `other` (same shape).
    pub(crate) fn with_storage_of(&self, other: &Tensor) -> Tensor {
        debug_assert_eq!(other.shape, self.shape);
        Tensor {
            id: self.id,
            shape: self.shape,
            storage: Arc::clone(&other.storage),
            tracked: self.tracked,
        }
    }

    /// The storage, for kernels that dispatch on the device.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The shared storage itself: caches of values derived from a tensor
    /// key on it, and keep it alive so that an in-place update
    /// ([`Tensor::data_mut`]) copies it rather than changing it under them.
    pub(crate) fn storage_arc(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// A copy of the values in host memory; unlike [`Tensor::to_vec`], a
    /// failed copy from a GPU is an error.
    pub fn try_to_vec(&self) -> Result<Vec<f32>> {
        match &*self.storage {
            Storage::Cpu(v) => Ok(v.clone()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(v) => v.to_vec(),
        }
    }

    /// The values on `device`: the same tensor when they are there already,
    /// otherwise an untracked copy with a new identity.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if self.device() == device {
            return Ok(self.clone());
        }
        let storage = placement::storage_on(device, self.try_to_vec()?)?;
        Ok(Tensor::from_parts(self.shape, storage))
    }

    /// The same identity and tracking with the values moved to `device`
    /// (parameters and optimizer state move this way).
    pub fn moved_to(&self, device: Device) -> Result<Tensor> {
        if self.device() == device {
            return Ok(self.clone());
        }
        let storage = placement::storage_on(device, self.try_to_vec()?)?;
        Ok(self.with_storage(storage))
    }

    /// The GPU values, when the tensor lives on a GPU.
    #[cfg(feature = "cuda")]
    pub fn cuda_values(&self) -> Option<&CudaValues> {
        match &*self.storage {
            Storage::Cuda(v) => Some(v),
            Storage::Cpu(_) => None,
        }
    }

    /// The device buffer of a tensor on a GPU; an error naming `op` otherwise.
    #[cfg(feature = "cuda")]
    pub fn cuda_buffer(&self, op: &'static str) -> Result<&crate::cuda::DeviceBuffer<f32>> {
        self.cuda_values().map(CudaValues::buffer).ok_or_else(|| {
            Error::Device(format!(
                "{op}: a tensor of shape {:?} is on {}, expected a GPU",
                self.shape,
                self.device()
            ))
        })
    }

    /// The device buffer of a tensor on a GPU, to be changed in place (for
    /// optimizer updates); copied first if a tape still shares it. Keeps the
    /// identity. An error naming `op` when the tensor is not on a GPU.
    #[cfg(feature = "cuda")]
    pub fn cuda_buffer_mut(
        &mut self,
        op: &'static str,
    ) -> Result<&mut crate::cuda::DeviceBuffer<f32>> {
        let values = self.cuda_values().ok_or_else(|| {
            Error::Device(format!(
                "{op}: a tensor of shape {:?} is on {}, expected a GPU",
                self.shape,
                self.device()
            ))
        })?;
        if Arc::strong_count(&self.storage) > 1 {
            let copy = CudaValues::new(values.device().clone(), values.buffer().try_clone()?);
            self.storage = Arc::new(Storage::Cuda(copy));
        }
        match Arc::get_mut(&mut self.storage) {
            Some(Storage::Cuda(values)) => Ok(values.buffer_mut()),
            _ => Err(Error::Device(format!("{op}: GPU values still shared"))),
        }
    }

    /// A new untracked tensor of `shape` holding `buffer` on `device`.
    #[cfg(feature = "cuda")]
    pub fn from_cuda(
        shape: Shape,
        device: &Arc<crate::cuda::CudaDevice>,
        buffer: crate::cuda::DeviceBuffer<f32>,
    ) -> Tensor {
        Tensor::from_parts(
            shape,
            Storage::Cuda(CudaValues::new(device.clone(), buffer)),
        )
    }

    pub(crate) fn mark_tracked(&mut self) {
        self.tracked = true;
    }

    /// Checks that this tensor has the dimensions `dims`.
    pub fn expect_dims(&self, op: &'static str, what: &str, dims: &[usize]) -> Result<()> {
        if self.dims() != dims {
            return Err(Error::shape(
                op,
                format!("{what} has shape {:?}, expected {dims:?}", self.shape),
            ));
        }
        Ok(())
    }

    /// Checks that this tensor is a batch of feature maps: rank 4 (N, C, H, W)
    /// with non-zero channel and spatial sizes.
    pub fn expect_feature_maps(&self, op: &'static str, what: &str) -> Result<()> {
        self.expect_rank(op, what, 4)?;
        if self.dims()[1..].contains(&0) {
            return Err(Error::shape(
                op,
                format!(
                    "{what} {:?} must have non-zero channel and spatial sizes",
                    self.shape
                ),
            ));
        }
        Ok(())
    }

    /// Checks that this tensor has rank `rank`.
    pub fn expect_rank(&self, op: &'static str, what: &str, rank: usize) -> Result<()> {
        if self.rank() != rank {
            return Err(Error::shape(
                op,
                format!(
                    "{what} has shape {:?}, expected {rank} dimensions",
                    self.shape
                ),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.data();
        let shown: Vec<f32> = data.iter().take(8).copied().collect();
        write!(
            f,
            "Tensor(id={:?}, shape={:?}, tracked={}, {:?}{})",
            self.id.0,
            self.shape,
            self.tracked,
            shown,
            if data.len() > 8 { ", …" } else { "" }
        )
    }
}
