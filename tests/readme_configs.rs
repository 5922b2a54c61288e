//! Every JSON configuration the README shows parses, so the README stays true.

use retort::nn::CrnnConfig;

#[test]
fn readme_json_blocks_parse() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("closed block");
        let cfg: CrnnConfig = serde_json::from_str(&body[..end])
            .unwrap_or_else(|e| panic!("README json block {blocks} does not parse: {e}"));
        cfg.validate().unwrap();
        blocks += 1;
        rest = &body[end..];
    }
    assert!(blocks >= 1);
}
