//! Data: charsets, PaddleOCR-format label files, PNG images, resizing and
//! batching, the seeded loader, and the synthetic text-line renderer.

pub mod augment;
pub mod batch;
pub mod charset;
pub mod image;
pub mod labels;
pub mod loader;
pub mod render;
pub mod resize;
