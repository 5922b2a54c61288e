//! Layers with parameters and the CRNN family built from them.
//!
//! Every layer holds its trainable values as [`Param`]s under the names that
//! `torch.nn` gives them (`weight`, `bias`, `weight_ih_l0`, …), so that a
//! PyTorch `state_dict` moves both ways (see `reference-models.md`). The
//! layers initialise themselves as PyTorch does, from a seeded [`Rng`].
//!
//! [`Crnn`] is the text-line recogniser: a stack of conv blocks, a
//! (bidirectional) LSTM over the image columns and a linear head, configured
//! by a [`CrnnConfig`] (presets `crnn-t` and `crnn-s`).
//!
//! [`Param`]: crate::Param
//! [`Rng`]: crate::Rng

mod batchnorm;
mod config;
mod conv;
mod crnn;
pub mod init;
mod linear;
mod lstm;

pub use batchnorm::BatchNorm2d;
pub use config::{BlockConfig, CrnnConfig};
pub use conv::Conv2d;
pub use crnn::{Crnn, CrnnOutput};
pub use linear::Linear;
pub use lstm::{Lstm, LstmDirection, LstmLayerParams};
