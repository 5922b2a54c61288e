//! retort: knowledge distillation for OCR text-line recognition, with its own
//! tape-based autograd over f32 tensors.
//!
//! The layers of the crate, from the bottom: [`tensor`] (shapes and storage),
//! [`cpu`] (kernels), [`autograd`] (the tape), [`ops`] (differentiable
//! functions). Everything fallible returns [`Result`].

#![warn(missing_docs)]

pub mod autograd;
pub mod checkpoint;
pub mod cli;
pub mod cpu;
pub mod cuda;
pub mod data;
pub mod decode;
mod device;
pub mod distill;
pub mod error;
pub mod fsutil;
mod malloc_tuning;
pub mod metrics;
pub mod nn;
pub mod ops;
pub mod optim;
mod recognizer;
pub mod rng;
pub mod tensor;
mod threads;
pub mod train;

pub use autograd::{Gradients, Param, Tape};
pub use device::DeviceChoice;
pub use error::{Error, Result};
pub use malloc_tuning::keep_freed_memory;
pub use recognizer::{Recognized, Recognizer};
pub use rng::Rng;
pub use tensor::{Device, Shape, Tensor, TensorId};
pub use threads::{on_pool, set_threads, set_threads_with_caller};

/// The README's Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
