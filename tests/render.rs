//! `retort render` and the augmentations: files written, determinism, font
//! variety, word files, errors, and robustness of `augment` on odd sizes.

use proptest::prelude::*;
use retort::data::augment::{augment, AugmentConfig};
use retort::data::charset::Charset;
use retort::data::image::{read_png, GrayImage};
use retort::data::render::{render_dataset, RenderConfig};
use retort::{Error, Rng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A fresh, empty folder under the system's temporary folder.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retort-render-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn cfg(count: usize, seed: u64) -> RenderConfig {
    RenderConfig {
        count,
        seed,
        ..RenderConfig::default()
    }
}

/// The `path<TAB>value` lines of a file, in order.
fn tsv(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').expect("a TAB on every line");
            (a.to_string(), b.to_string())
        })
        .collect()
}

/// Every file under `dir` with its bytes, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn renders_a_labelled_folder() {
    let dir = temp_dir("folder");
    let summary = render_dataset(&dir, &cfg(40, 3)).unwrap();
    assert_eq!(summary.count, 40);
    assert_eq!(summary.out, dir);
    assert!(!summary.fonts.is_empty());

    let labels = tsv(&dir.join("labels.txt"));
    let fonts = tsv(&dir.join("fonts.tsv"));
    assert_eq!(labels.len(), 40);
    assert_eq!(fonts.len(), 40);
    let pngs = std::fs::read_dir(dir.join("images")).unwrap().count();
    assert_eq!(pngs, 40);
    let charset = Charset::default_alnum();
    for (i, ((path, label), (fpath, font))) in labels.iter().zip(&fonts).enumerate() {
        assert_eq!(path, &format!("images/{i:06}.png"));
        assert_eq!(path, fpath);
        assert!(summary.fonts.contains(font), "{font} not in the summary");
        assert!((4..=12).contains(&label.chars().count()), "{label:?}");
        charset.encode(label).unwrap();
        let img = read_png(&dir.join(path)).unwrap();
        assert_eq!(img.height, 32, "{path}");
        assert!(img.width >= 8, "{path} is {} wide", img.width);
    }
    // The folder reads back as a dataset.
    let data = retort::data::labels::load_dataset(&dir, &charset, false).unwrap();
    assert_eq!(data.samples.len(), 40);

    let sheet = read_png(&dir.join("contact_sheet.png")).unwrap();
    assert!(sheet.width > 200 && sheet.height > 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (temp_dir("seed-a"), temp_dir("seed-b"), temp_dir("seed-c"));
    render_dataset(&a, &cfg(30, 11)).unwrap();
    render_dataset(&b, &cfg(30, 11)).unwrap();
    render_dataset(&c, &cfg(30, 12)).unwrap();
    let (sa, sb, sc) = (snapshot(&a), snapshot(&b), snapshot(&c));
    assert_eq!(sa.len(), 30 + 3);
    assert!(sa == sb, "same seed gave different files");
    let differ = sa.iter().filter(|(k, v)| sc.get(*k) != Some(*v)).count();
    assert!(differ >= 30, "only {differ} files differ with another seed");
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn many_typefaces_including_the_bitmap_font() {
    let dir = temp_dir("fonts");
    let summary = render_dataset(&dir, &cfg(200, 5)).unwrap();
    let used: BTreeSet<String> = tsv(&dir.join("fonts.tsv"))
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    assert!(used.len() > 10, "only {} typefaces: {used:?}", used.len());
    assert!(used
        .iter()
        .any(|f| f.contains("Bitmap") || f.contains("Dot Matrix")));
    assert!(used.iter().any(|f| f.starts_with("DejaVu")));
    assert_eq!(used.len(), summary.fonts.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn word_file_lines_are_used() {
    let dir = temp_dir("words");
    let words = dir.join("words.txt");
    std::fs::write(&words, "Hello World\n\n  kilo-42 \nzulu\n").unwrap();
    let out = dir.join("out");
    let config = RenderConfig {
        words: Some(words),
        ..cfg(30, 2)
    };
    render_dataset(&out, &config).unwrap();
    let labels: BTreeSet<String> = tsv(&out.join("labels.txt"))
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let expected: BTreeSet<String> = ["helloworld", "kilo42", "zulu"].map(String::from).into();
    assert!(labels.is_subset(&expected), "{labels:?}");
    assert_eq!(labels.len(), 3, "{labels:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_name_their_cause() {
    let dir = temp_dir("errors");
    let out = dir.join("out");
    // A font that is not a font.
    let bad_font = dir.join("not-a-font.ttf");
    std::fs::write(&bad_font, b"hello").unwrap();
    let e = render_dataset(
        &out,
        &RenderConfig {
            fonts: vec![bad_font.clone()],
            ..cfg(5, 0)
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("not-a-font.ttf"), "{e}");
    // A font file that does not exist.
    let missing = dir.join("missing.otf");
    let e = render_dataset(
        &out,
        &RenderConfig {
            fonts: vec![missing],
            ..cfg(5, 0)
        },
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("missing.otf"),
        "{e}"
    );
    // An empty word file.
    let empty = dir.join("empty-words.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let e = render_dataset(
        &out,
        &RenderConfig {
            words: Some(empty),
            ..cfg(5, 0)
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("empty-words.txt"), "{e}");
    // Lengths, count, height.
    let e = render_dataset(
        &out,
        &RenderConfig {
            min_len: 9,
            max_len: 3,
            ..cfg(5, 0)
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("min-len"), "{e}");
    assert!(render_dataset(&out, &cfg(0, 0)).is_err());
    assert!(render_dataset(
        &out,
        &RenderConfig {
            height: 0,
            ..cfg(5, 0)
        }
    )
    .is_err());
    // An output path that is a file.
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = render_dataset(&file, &cfg(5, 0)).unwrap_err();
    assert!(e.to_string().contains("a-file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn user_font_is_used() {
    let dir = temp_dir("user-font");
    let font = dir.join("MyFont.ttf");
    std::fs::write(&font, dejavu::sans_mono::bold()).unwrap();
    let out = dir.join("out");
    let summary = render_dataset(
        &out,
        &RenderConfig {
            fonts: vec![font],
            ..cfg(120, 4)
        },
    )
    .unwrap();
    // The file repeats an embedded face, so its name says which file it is.
    assert!(
        summary.fonts.iter().any(|f| f.contains("MyFont.ttf")),
        "{:?}",
        summary.fonts
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn binary_renders() {
    let dir = temp_dir("binary");
    let out = dir.join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(["render", "--out"])
        .arg(&out)
        .args(["--count", "5", "--seed", "1"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(tsv(&out.join("labels.txt")).len(), 5);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_retort"))
        .args(["render", "--out"])
        .arg(&out)
        .args(["--count", "5", "--font", "/nonexistent/font.ttf"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/font.ttf"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn noisy(width: usize, height: usize, seed: u64) -> GrayImage {
    let mut rng = Rng::seed(seed);
    GrayImage {
        width,
        height,
        pixels: (0..width * height).map(|_| rng.below(256) as u8).collect(),
    }
}

fn check_augment(img: &GrayImage, strength: f32, seed: u64) {
    let cfg = AugmentConfig::with_strength(strength);
    let out = augment(img, &cfg, &mut Rng::seed(seed));
    assert!(out.width >= 1 && out.height >= 1);
    assert_eq!(out.pixels.len(), out.width * out.height);
    assert!(
        out.width <= 3 * img.width + 8,
        "{}x{} -> {}x{}",
        img.width,
        img.height,
        out.width,
        out.height
    );
    assert!(
        out.height <= 3 * img.height + 8,
        "{}x{} -> {}x{}",
        img.width,
        img.height,
        out.width,
        out.height
    );
}

#[test]
fn augment_survives_degenerate_sizes() {
    for (w, h) in [(1, 1), (1, 2000), (2000, 1), (2, 3), (7, 1)] {
        for seed in 0..40 {
            for strength in [0.0, 0.5, 1.0, 2.0, 5.0, f32::NAN] {
                check_augment(&noisy(w, h, seed), strength, seed);
                check_augment(&GrayImage::filled(w, h, 255), strength, seed);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn augment_never_panics(w in 1usize..300, h in 1usize..80, seed in any::<u64>(), strength in 0.0f32..2.0) {
        check_augment(&noisy(w, h, seed), strength, seed);
    }
}
