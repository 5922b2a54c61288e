//! Read the text in PNG images of single lines with a trained checkpoint.
//!
//! ```sh
//! cargo run --release --example recognize -- runs/crnn-s/best line1.png line2.png
//! ```

use retort::Recognizer;
use std::path::Path;

fn main() -> retort::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((checkpoint, images)) = args.split_first() else {
        eprintln!("usage: recognize CHECKPOINT_DIR IMAGE.png...");
        std::process::exit(2);
    };
    let mut reader = Recognizer::load(Path::new(checkpoint))?;
    for image in images {
        let line = reader.recognize_png(Path::new(image))?;
        println!("{image}\t{}\t{:.3}", line.text, line.confidence);
    }
    Ok(())
}
