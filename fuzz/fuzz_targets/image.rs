//! The image path: PNG decoding to grey, then resizing to the input height.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = retort::data::image::decode_png(data) {
        assert_eq!(img.pixels.len(), img.width * img.height);
        let out = retort::data::resize::resize_to_height(&img, 32, 2048);
        assert_eq!(out.height, 32);
        assert!(out.width >= 1 && out.width <= 2048);
        assert_eq!(out.pixels.len(), out.width * out.height);
    }
});
