//! The embedded-use entry point: load a checkpoint, read lines of text.

use crate::checkpoint;
use crate::data::batch::{make_batch, prepare_image, WidthPolicy};
use crate::data::charset::Charset;
use crate::data::image::{read_png, GrayImage};
use crate::data::labels::Sample;
use crate::error::Result;
use crate::nn::Crnn;
use crate::train::recognize_batch_at;
pub use crate::train::Recognized;
use std::path::{Path, PathBuf};

/// A trained model with its charset, ready to read text-line images.
///
/// ```no_run
/// let mut reader = retort::Recognizer::load(std::path::Path::new("runs/crnn-s/best"))?;
/// let line = reader.recognize_png(std::path::Path::new("line.png"))?;
/// println!("{} ({:.2})", line.text, line.confidence);
/// # Ok::<(), retort::Error>(())
/// ```
pub struct Recognizer {
    model: Crnn,
    charset: Charset,
    beam: usize,
    exit: Option<String>,
    policy: WidthPolicy,
}

impl Recognizer {
    /// Loads a checkpoint folder (`config.json` + `model.safetensors`).
    pub fn load(dir: &Path) -> Result<Recognizer> {
        let ck = checkpoint::load(dir)?;
        Ok(Recognizer::new(
            ck.model,
            Charset::from_symbols(ck.charset)?,
        ))
    }

    /// A recogniser from a model and its charset (greedy decoding).
    pub fn new(model: Crnn, charset: Charset) -> Recognizer {
        Recognizer {
            model,
            charset,
            beam: 1,
            exit: None,
            policy: WidthPolicy::Pad {
                max_width: 2048,
                multiple: 4,
            },
        }
    }

    /// Stops at the early exit after block `exit` (e.g. `b3`) of a model
    /// trained with exits (`self_distill`): faster, usually less accurate.
    /// The exit must exist: checked at the first recognition.
    pub fn with_exit(mut self, exit: Option<String>) -> Recognizer {
        self.exit = exit;
        self
    }

    /// Runs the model on `device` (e.g. `Device::Cuda(0)`); decoding stays on
    /// the host. An error when the device cannot be used.
    pub fn on_device(mut self, device: crate::Device) -> Result<Recognizer> {
        self.model.to_device(device)?;
        Ok(self)
    }

    /// Decodes with a CTC prefix beam of width `beam` (1 = greedy).
    pub fn with_beam(mut self, beam: usize) -> Recognizer {
        self.beam = beam.max(1);
        self
    }

    /// The charset the model reads.
    pub fn charset(&self) -> &Charset {
        &self.charset
    }

    /// Reads the text in grey images of single lines (any size; resized to
    /// height 32 keeping the aspect ratio), one result per image.
    pub fn recognize_many(&mut self, images: &[GrayImage]) -> Result<Vec<Recognized>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let items = images
            .iter()
            .map(|img| {
                let sample = Sample {
                    path: PathBuf::new(),
                    label: String::new(),
                    target: Vec::new(),
                };
                (prepare_image(img, self.policy), sample)
            })
            .collect();
        let batch = make_batch(items, self.policy)?;
        recognize_batch_at(
            &mut self.model,
            &batch,
            &self.charset,
            self.beam,
            self.exit.as_deref(),
        )
    }

    /// Reads the text in one grey image.
    pub fn recognize(&mut self, image: &GrayImage) -> Result<Recognized> {
        let mut all = self.recognize_many(std::slice::from_ref(image))?;
        Ok(all.remove(0))
    }

    /// Reads the text in a PNG file.
    pub fn recognize_png(&mut self, path: &Path) -> Result<Recognized> {
        self.recognize(&read_png(path)?)
    }
}
