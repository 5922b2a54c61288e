//! The differentiable functions users call. Each takes the [`Tape`] first,
//! computes its forward result with a CPU kernel and, when the tape records
//! and an input is tracked, records its backward rule beside it.
//!
//! [`Tape`]: crate::Tape

pub mod batchnorm2d;
mod binary;
pub mod conv2d;
pub mod ctc;
pub mod lstm;
pub mod maxpool2d;
mod reduction;
mod matmul;
mod reduce;
mod shape_ops;
mod unary;

pub use binary::{add, div, mul, sub};
pub use matmul::{linear, matmul};
pub use reduction::Reduction;
pub use reduce::{mean, mean_all, sum, sum_all};
pub use shape_ops::{concat, flip, permute, reshape, reverse_sequences, slice};
pub use unary::{
    abs, add_scalar, exp, log, mul_const, neg, pow, relu, scale, sigmoid, sqrt, square, tanh,
};
