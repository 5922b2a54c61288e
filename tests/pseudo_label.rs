//! Pseudo-labelling for noisy-student training (Xie et al., CVPR 2020, §2):
//! listing an unlabeled folder, the confidence threshold and the dropped
//! counts, the dataset folder written and read back, and the errors.

use retort::data::batch::WidthPolicy;
use retort::data::charset::Charset;
use retort::data::image::write_png;
use retort::data::labels::{load_dataset, LABELS_FILE};
use retort::data::render::{RenderConfig, Renderer};
use retort::distill::{list_png_files, pseudo_label, write_pseudo_labels, PseudoLabels};
use retort::nn::{Crnn, CrnnConfig};
use retort::train::recognize_batch;
use retort::Rng;
use std::path::{Path, PathBuf};

const LINES: usize = 7;
const POLICY: WidthPolicy = WidthPolicy::Pad {
    max_width: 256,
    multiple: 4,
};

/// A fresh, empty folder under the system's temporary folder.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retort-pseudo-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An unlabeled folder of `LINES` rendered lines (`line-{i}.png`), with a
/// stray labels.txt (ignored), a sub-folder (not searched) and a hidden file.
fn unlabeled_folder(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let renderer = Renderer::new(&RenderConfig {
        count: LINES,
        seed: 4,
        ..RenderConfig::default()
    })
    .unwrap();
    for i in 0..LINES {
        let line = renderer.render(i as u64);
        write_png(&dir.join(format!("line-{i}.png")), &line.image).unwrap();
    }
    std::fs::write(dir.join(LABELS_FILE), "nothing.png\tignored\n").unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub").join("notes.txt"), "not searched").unwrap();
    std::fs::write(dir.join(".hidden"), "skipped").unwrap();
    dir
}

/// A crnn-s teacher whose head bias is shifted on the blank: a large
/// negative shift makes every reading non-empty, a positive one every
/// reading empty; the rest of the scores still depend on the image.
fn teacher(blank_shift: f32) -> Crnn {
    let mut model = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut Rng::seed(21)).unwrap();
    model.head.bias.as_mut().unwrap().values_mut()[0] += blank_shift;
    model
}

fn run(model: &mut Crnn, images: &[PathBuf], threshold: f32) -> retort::Result<PseudoLabels> {
    pseudo_label(
        model,
        &Charset::default_alnum(),
        images,
        threshold,
        3,
        POLICY,
    )
}

#[test]
fn an_unlabeled_folder_lists_its_pngs_sorted() {
    let dir = unlabeled_folder("list");
    let files = list_png_files(&dir).unwrap();
    let want: Vec<PathBuf> = (0..LINES)
        .map(|i| dir.join(format!("line-{i}.png")))
        .collect();
    assert_eq!(files, want);
    // Upper-case extensions count too.
    std::fs::copy(dir.join("line-0.png"), dir.join("A.PNG")).unwrap();
    assert_eq!(list_png_files(&dir).unwrap()[0], dir.join("A.PNG"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn threshold_zero_keeps_every_non_empty_reading() {
    let dir = unlabeled_folder("keep");
    let images = list_png_files(&dir).unwrap();
    let charset = Charset::default_alnum();
    let mut model = teacher(-100.0);
    let all = run(&mut model, &images, 0.0).unwrap();
    assert_eq!(all.kept.len(), LINES);
    assert_eq!((all.below_threshold, all.empty, all.total()), (0, 0, LINES));
    for (k, path) in all.kept.iter().zip(&images) {
        assert_eq!(&k.path, path, "in the order given");
        assert!(!k.text.is_empty());
        assert!((0.0..=1.0).contains(&k.confidence), "{}", k.confidence);
    }

    // The readings and confidences are recognize_batch's (greedy) on the
    // loader's batches.
    let samples: Vec<_> = images
        .iter()
        .map(|p| retort::data::labels::Sample {
            path: p.clone(),
            label: String::new(),
            target: Vec::new(),
        })
        .collect();
    let loader = retort::data::loader::Loader::new(
        samples,
        retort::data::loader::LoaderConfig {
            batch_size: 3,
            shuffle: false,
            width: POLICY,
            ..Default::default()
        },
    )
    .unwrap();
    let mut direct = Vec::new();
    for batch in loader.epoch(0) {
        direct.extend(recognize_batch(&mut model, &batch.unwrap(), &charset, 1).unwrap());
    }
    for (k, d) in all.kept.iter().zip(&direct) {
        assert_eq!((&k.text, k.confidence), (&d.text, d.confidence));
    }

    // A threshold in between splits the lines by confidence.
    let mut confidences: Vec<f32> = all.kept.iter().map(|k| k.confidence).collect();
    confidences.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(
        confidences[0] < confidences[LINES / 2],
        "the lines should read with different confidences: {confidences:?}"
    );
    let threshold = confidences[LINES / 2];
    let some = run(&mut model, &images, threshold).unwrap();
    let above = all
        .kept
        .iter()
        .filter(|k| k.confidence >= threshold)
        .count();
    assert_eq!(some.kept.len(), above);
    assert_eq!(some.below_threshold, LINES - above);
    assert_eq!(some.empty, 0);
    assert!(some.below_threshold > 0 && !some.kept.is_empty());
    assert!(some.kept.iter().all(|k| k.confidence >= threshold));
    let one = run(&mut model, &images, 1.0).unwrap();
    assert_eq!(one.total(), LINES);

    // Thresholds outside [0, 1] are refused.
    for bad in [1.01, -0.01, f32::NAN] {
        let err = run(&mut model, &images, bad).unwrap_err().to_string();
        assert!(err.contains("threshold") && err.contains("[0, 1]"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn empty_readings_are_always_dropped() {
    let dir = unlabeled_folder("empty");
    let images = list_png_files(&dir).unwrap();
    let mut model = teacher(100.0);
    let none = run(&mut model, &images, 0.0).unwrap();
    assert!(none.kept.is_empty());
    assert_eq!((none.empty, none.below_threshold), (LINES, 0));
    let err = write_pseudo_labels(&dir.join("out"), &none.kept)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no pseudo-labelled line"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_written_folder_loads_as_a_dataset() {
    let dir = unlabeled_folder("write");
    let images = list_png_files(&dir).unwrap();
    let mut model = teacher(-100.0);
    let labels = run(&mut model, &images, 0.0).unwrap();
    let out = temp_dir("write-out");
    write_pseudo_labels(&out, &labels.kept).unwrap();
    let text = std::fs::read_to_string(out.join(LABELS_FILE)).unwrap();
    assert_eq!(text.lines().count(), LINES);
    for line in text.lines() {
        let (path, _) = line.split_once('\t').unwrap();
        assert!(Path::new(path).is_absolute(), "{line}");
    }
    let charset = Charset::default_alnum();
    let dataset = load_dataset(&out, &charset, false).unwrap();
    assert!(dataset.skipped.is_empty());
    assert_eq!(dataset.samples.len(), LINES);
    for (s, k) in dataset.samples.iter().zip(&labels.kept) {
        assert_eq!(s.label, k.text);
        assert_eq!(s.path, std::path::absolute(&k.path).unwrap());
        assert_eq!(s.target, charset.encode(&k.text).unwrap());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_folders_and_images_are_errors_naming_the_file() {
    let dir = unlabeled_folder("bad");
    std::fs::write(dir.join("notes.txt"), "a stray note").unwrap();
    let err = list_png_files(&dir).unwrap_err().to_string();
    assert!(
        err.contains("notes.txt") && err.contains("not a PNG"),
        "{err}"
    );
    std::fs::remove_file(dir.join("notes.txt")).unwrap();

    // A file named .png that is not one: the loader's error names it.
    std::fs::write(dir.join("broken.png"), "not an image").unwrap();
    let images = list_png_files(&dir).unwrap();
    assert!(images.contains(&dir.join("broken.png")));
    let err = run(&mut teacher(-100.0), &images, 0.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.png"), "{err}");

    // A missing or empty folder.
    let err = list_png_files(&dir.join("absent")).unwrap_err().to_string();
    assert!(err.contains("absent"), "{err}");
    let empty = temp_dir("bad-empty");
    let err = list_png_files(&empty).unwrap_err().to_string();
    assert!(err.contains("no PNG image"), "{err}");

    // No image, a batch size of 0, and a charset that does not fit the teacher.
    let good = vec![dir.join("line-0.png")];
    assert!(run(&mut teacher(0.0), &[], 0.5).is_err());
    assert!(pseudo_label(
        &mut teacher(0.0),
        &Charset::default_alnum(),
        &good,
        0.5,
        0,
        POLICY
    )
    .is_err());
    let small = Charset::from_symbols(vec!["a".into(), "b".into()]).unwrap();
    let err = pseudo_label(&mut teacher(0.0), &small, &good, 0.5, 2, POLICY)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 symbols") && err.contains("37 classes"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}
