//! CPU kernels: the forward and backward math of each op on host memory.
//! Ops in `crate::ops` pair these with the tape.

#[macro_use]
pub(crate) mod simd;

pub mod batchnorm2d;
pub mod conv2d;
pub mod conv_direct;
pub mod conv_weight_grad;
pub mod ctc;
pub mod elementwise;
pub mod fastmath;
pub mod gemm;
mod lanes;
pub mod layout;
pub mod lstm;
mod lstm_line;
pub mod maxpool2d;
pub mod panel_gemm;
pub mod peak;
pub(crate) mod scratch;
pub mod small_gemm;
pub mod small_gemm_avx512;
pub mod softmax;
mod split;
pub(crate) mod step_weights;
pub mod thin_block;
pub(crate) mod uninit;
pub mod winograd;
pub mod winograd4;
