//! Data: charsets, PaddleOCR-format label files, PNG images, resizing and
//! batching, the seeded loader, and the synthetic text-line renderer.

pub mod image;
