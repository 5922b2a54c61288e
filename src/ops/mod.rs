//! The differentiable functions users call. Each takes the [`Tape`] first,
//! computes its forward result with a CPU kernel and, when the tape records
//! and an input is tracked, records its backward rule beside it.
//!
//! [`Tape`]: crate::Tape

pub mod batchnorm2d;
pub mod bilstm;
mod binary;
pub mod conv2d;
mod cross_entropy;
pub mod ctc;
mod dropout;
mod frozen_weights;
mod kl_div;
pub mod lstm;
mod matmul;
pub mod maxpool2d;
mod mse;
mod reduce;
mod reduction;
mod shape_ops;
mod softmax;
mod unary;

pub use binary::{add, div, mul, sub};
pub use cross_entropy::cross_entropy;
pub use dropout::dropout;
pub use kl_div::kl_div;
pub use matmul::{linear, matmul};
pub use mse::mse_loss;
pub use reduce::{mean, mean_all, sum, sum_all};
pub use reduction::Reduction;
pub use shape_ops::{concat, flip, permute, reshape, reverse_sequences, slice};
pub use softmax::{log_softmax, softmax};
pub use unary::{
    abs, add_scalar, exp, log, mul_const, neg, pow, relu, scale, sigmoid, sqrt, square, tanh,
};
