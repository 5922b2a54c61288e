//! The checkpoint loader: arbitrary bytes as a `model.safetensors` file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static DIR: std::path::PathBuf = {
            let d = std::env::temp_dir().join(format!("retort-fuzz-ckpt-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            d
        };
    }
    let path = DIR.with(|d| d.join("model.safetensors"));
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(data).unwrap();
    }
    let _ = retort::checkpoint::load_weights(&path);
    let _ = retort::checkpoint::load_metadata(&path);
});
