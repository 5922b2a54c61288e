//! Tensors: f32 values of up to four dimensions, contiguous, on a device.
//!
//! A [`Tensor`] is cheap to clone (its storage is shared) and immutable; ops
//! make new tensors. Each tensor has an identity ([`TensorId`]) that the tape
//! uses to key gradients, and a flag saying whether gradients flow to it.

mod broadcast;
mod shape;
mod storage;

pub use broadcast::{broadcast_shapes, broadcast_strides, expand, reduce_sum_to};
pub use shape::{Shape, MAX_RANK};
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
    pub fn data_mut(&mut self) -> &mut [f32] {
        Arc::make_mut(&mut self.storage).as_mut_slice()
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
