//! The shape of a tensor: up to four dimensions, row-major.

use crate::error::{Error, Result};
use std::fmt;

/// The most dimensions a tensor may have.
pub const MAX_RANK: usize = 4;

/// Dimensions of a contiguous, row-major tensor of rank 0 (a scalar) to 4.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    dims: [usize; MAX_RANK],
    rank: usize,
}

impl Shape {
    /// A shape from its dimensions; more than [`MAX_RANK`] is an error.
    pub fn new(dims: &[usize]) -> Result<Shape> {
        if dims.len() > MAX_RANK {
            return Err(Error::shape(
                "Shape::new",
                format!(
                    "{dims:?} has {} dimensions, at most {MAX_RANK} are supported",
                    dims.len()
                ),
            ));
        }
        let mut d = [1; MAX_RANK];
        d[..dims.len()].copy_from_slice(dims);
        Ok(Shape {
            dims: d,
            rank: dims.len(),
        })
    }

    /// The shape of a scalar (rank 0, one element).
    pub fn scalar() -> Shape {
        Shape {
            dims: [1; MAX_RANK],
            rank: 0,
        }
    }

    /// The dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.dims[..self.rank]
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.dims().iter().product()
    }

    /// Size of dimension `axis`.
    pub fn dim(&self, axis: usize) -> usize {
        self.dims()[axis]
    }

    /// Row-major strides, in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.rank];
        for i in (0..self.rank.saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.dims[i + 1];
        }
        s
    }

    /// The dimensions right-aligned into four slots, padded with ones on the left.
    pub fn padded4(&self) -> [usize; MAX_RANK] {
        let mut d = [1; MAX_RANK];
        d[MAX_RANK - self.rank..].copy_from_slice(self.dims());
        d
    }

    /// Checks that `axis` names a dimension of this shape.
    pub fn check_axis(&self, op: &'static str, axis: usize) -> Result<()> {
        if axis >= self.rank {
            return Err(Error::shape(
                op,
                format!("axis {axis} out of range for shape {self:?}"),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}
