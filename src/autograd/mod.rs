//! Define-by-run reverse-mode autograd.
//!
//! Ops record themselves on a [`Tape`] as they run; [`Tape::backward`] walks
//! the records once in reverse and returns the [`Gradients`] of every tracked
//! leaf (a [`Param`] or a tensor marked with [`Tensor::tracked`]). A tape made
//! with [`Tape::no_grad`] records nothing and keeps nothing: teachers run on one.
//!
//! [`Tensor::tracked`]: crate::Tensor::tracked

mod gradients;
mod param;
mod tape;

pub use gradients::Gradients;
pub use param::Param;
pub use tape::{BackwardFn, Tape};
