//! The resize and pad rule, batches, and the seeded loader.

use retort::data::batch::{make_batch, prepare_image, Batch, WidthPolicy};
use retort::data::image::{write_png, GrayImage};
use retort::data::labels::Sample;
use retort::data::loader::{AugmentFn, Loader, LoaderConfig};
use retort::data::resize::{normalize, resize_to_height, HEIGHT};
use retort::Rng;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A fresh, empty folder under the system temp dir, unique to this test run.
fn temp_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "retort-test-batching-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        name
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample(label: &str) -> Sample {
    Sample {
        path: PathBuf::from(format!("{label}.png")),
        label: label.to_string(),
        target: vec![1; label.len()],
    }
}

/// An image whose columns differ (so edge padding is visible).
fn ramp(width: usize, height: usize) -> GrayImage {
    let mut img = GrayImage::filled(width, height, 0);
    for y in 0..height {
        for x in 0..width {
            img.set(x, y, ((x * 37 + y * 11) % 256) as u8);
        }
    }
    img
}

#[test]
fn resize_keeps_aspect_ratio() {
    let img = resize_to_height(&ramp(200, 64), HEIGHT, 512);
    assert_eq!((img.width, img.height), (100, 32));
    assert_eq!(img.pixels.len(), 100 * 32);
    // Rounding: 50 x 48 -> round(33.33) = 33.
    let img = resize_to_height(&ramp(50, 48), 32, 512);
    assert_eq!((img.width, img.height), (33, 32));
    // Already the right size: unchanged.
    let src = ramp(77, 32);
    assert_eq!(resize_to_height(&src, 32, 512), src);
}

#[test]
fn resize_tiny_images() {
    // 3 wide, 1 high -> 96 x 32.
    let img = resize_to_height(&GrayImage::filled(3, 1, 90), 32, 512);
    assert_eq!((img.width, img.height), (96, 32));
    assert!(img.pixels.iter().all(|&p| p == 90));
    // 1 wide, 3 high -> round(10.67) = 11 x 32.
    let img = resize_to_height(&GrayImage::filled(1, 3, 7), 32, 512);
    assert_eq!((img.width, img.height), (11, 32));
    assert!(img.pixels.iter().all(|&p| p == 7));
    // 1 x 1.
    let img = resize_to_height(&GrayImage::filled(1, 1, 0), 32, 512);
    assert_eq!((img.width, img.height), (32, 32));
}

#[test]
fn resize_squashes_very_wide_and_very_tall_lines() {
    let wide = ramp(100_000, 10);
    let img = resize_to_height(&wide, 32, 512);
    assert_eq!((img.width, img.height), (512, 32));
    let tall = GrayImage::filled(10, 60_000, 33);
    let img = resize_to_height(&tall, 32, 512);
    assert_eq!((img.width, img.height), (1, 32));
    assert!(img.pixels.iter().all(|&p| p == 33));
}

#[test]
fn resize_guards_empty_and_malformed_images() {
    let empty = GrayImage {
        width: 0,
        height: 0,
        pixels: vec![],
    };
    let img = resize_to_height(&empty, 32, 512);
    assert_eq!((img.width, img.height, img.pixels.len()), (1, 32, 32));
    let bad = GrayImage {
        width: 10,
        height: 10,
        pixels: vec![0; 3],
    };
    let img = resize_to_height(&bad, 32, 512);
    assert_eq!((img.width, img.height), (1, 32));
    // Height and max width of 0 count as 1.
    let img = resize_to_height(&ramp(40, 20), 0, 0);
    assert_eq!((img.width, img.height), (1, 1));
}

#[test]
fn resize_averages_when_shrinking_and_interpolates_when_enlarging() {
    // Alternating black and white columns, halved: every pixel becomes mid-grey.
    let mut stripes = GrayImage::filled(64, 64, 0);
    for y in 0..64 {
        for x in (1..64).step_by(2) {
            stripes.set(x, y, 254);
        }
    }
    let img = resize_to_height(&stripes, 32, 512);
    assert_eq!(img.width, 32);
    assert!(
        img.pixels.iter().all(|&p| p == 127),
        "{:?}",
        &img.pixels[..8]
    );
    // A left-to-right ramp, enlarged, stays monotone within its range.
    let mut grad = GrayImage::filled(8, 16, 0);
    for y in 0..16 {
        for x in 0..8 {
            grad.set(x, y, (x * 30) as u8);
        }
    }
    let img = resize_to_height(&grad, 32, 512);
    assert_eq!(img.width, 16);
    let row: Vec<u8> = (0..16).map(|x| img.get(x, 5)).collect();
    assert!(row.windows(2).all(|w| w[0] <= w[1]), "{row:?}");
    assert_eq!(row[0], 0);
    assert_eq!(row[15], 210);
}

#[test]
fn normalize_maps_to_minus_one_one() {
    let v = normalize(&[0, 255, 127, 128]);
    assert_eq!(v[0], -1.0);
    assert_eq!(v[1], 1.0);
    assert!(v[2] < 0.0 && v[2] > -0.01);
    assert!(v[3] > 0.0 && v[3] < 0.01);
}

fn column(batch: &Batch, n: usize, y: usize, x: usize) -> f32 {
    let d = batch.images.dims();
    batch.images.data()[((n * d[1]) * d[2] + y) * d[3] + x]
}

#[test]
fn batch_pads_to_widest_rounded_up_with_edge_columns() {
    let policy = WidthPolicy::Pad {
        max_width: 512,
        multiple: 8,
    };
    let items = vec![
        (ramp(10, 32), sample("a")),
        (ramp(37, 32), sample("bb")),
        (ramp(20, 32), sample("ccc")),
    ];
    let originals: Vec<GrayImage> = items.iter().map(|(i, _)| i.clone()).collect();
    let batch = make_batch(items, policy).unwrap();
    assert_eq!(batch.images.dims(), &[3, 1, 32, 40]);
    assert_eq!(batch.widths, vec![10, 37, 20]);
    assert_eq!(batch.labels, vec!["a", "bb", "ccc"]);
    assert_eq!(batch.targets[1], vec![1, 1]);
    assert_eq!(batch.paths[2], Path::new("ccc.png"));
    assert_eq!(batch.len(), 3);
    for (n, img) in originals.iter().enumerate() {
        for y in 0..32 {
            for x in 0..40 {
                let src = img.get(x.min(img.width - 1), y);
                let want = src as f32 / 127.5 - 1.0;
                assert_eq!(column(&batch, n, y, x), want, "image {n} y {y} x {x}");
            }
        }
    }
    // multiple 1 (or 0): exactly the widest.
    let batch = make_batch(
        vec![(ramp(13, 32), sample("a"))],
        WidthPolicy::Pad {
            max_width: 512,
            multiple: 0,
        },
    )
    .unwrap();
    assert_eq!(batch.images.dims(), &[1, 1, 32, 13]);
}

#[test]
fn fixed_width_is_the_benchmark_shape() {
    let policy = WidthPolicy::Fixed(128);
    let short = prepare_image(&ramp(100, 64), policy);
    let long = prepare_image(&ramp(600, 64), policy);
    assert_eq!((short.width, short.height), (50, 32));
    assert_eq!((long.width, long.height), (128, 32));
    let batch = make_batch(vec![(short, sample("a")), (long, sample("b"))], policy).unwrap();
    assert_eq!(batch.images.dims(), &[2, 1, 32, 128]);
    assert_eq!(batch.widths, vec![50, 128]);
    // An image that does not fit the policy is resized by make_batch itself.
    let batch = make_batch(vec![(ramp(300, 64), sample("c"))], policy).unwrap();
    assert_eq!(batch.images.dims(), &[1, 1, 32, 128]);
    assert_eq!(batch.widths, vec![128]);
    assert!(make_batch(vec![], policy).is_err());
}

// ---------------------------------------------------------------- loader

/// Writes `n` PNGs of varied widths (and heights) and returns their samples;
/// the label of sample `i` is `i` written in digits.
fn dataset(name: &str, n: usize) -> (PathBuf, Vec<Sample>) {
    let dir = temp_dir(name);
    let mut rng = Rng::seed(7);
    let samples = (0..n)
        .map(|i| {
            let h = [32, 40, 64][i % 3];
            let w = 8 + rng.below(300);
            let mut img = GrayImage::filled(w, h, 255);
            for y in 0..h {
                for x in 0..w {
                    img.set(x, y, ((x * 7 + y * 3 + i * 13) % 256) as u8);
                }
            }
            let path = dir.join(format!("{i}.png"));
            write_png(&path, &img).unwrap();
            Sample {
                path,
                label: i.to_string(),
                target: i
                    .to_string()
                    .bytes()
                    .map(|b| (b - b'0') as usize + 1)
                    .collect(),
            }
        })
        .collect();
    (dir, samples)
}

fn config(batch_size: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        workers: 3,
        prefetch: 2,
        ..LoaderConfig::default()
    }
}

fn collect(loader: &Loader, epoch: usize) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

fn same(a: &[Batch], b: &[Batch]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.labels == y.labels
                && x.widths == y.widths
                && x.targets == y.targets
                && x.paths == y.paths
                && x.images.dims() == y.images.dims()
                && x.images.data() == y.images.data()
        })
}

fn noise_augment() -> AugmentFn {
    Arc::new(|img: &GrayImage, rng: &mut Rng| {
        // Random crop of the right edge plus noise: changes width and pixels.
        let keep = img.width - rng.below(img.width / 4 + 1);
        let mut out = GrayImage::filled(keep, img.height, 0);
        for y in 0..img.height {
            for x in 0..keep {
                let v = img.get(x, y) as f32 + rng.normal() * 20.0;
                out.set(x, y, v.clamp(0.0, 255.0) as u8);
            }
        }
        out
    })
}

#[test]
fn loader_is_deterministic_per_seed_and_epoch() {
    let (dir, samples) = dataset("determinism", 45);
    let base = LoaderConfig {
        augment: Some(noise_augment()),
        ..config(8)
    };
    let a = Loader::new(samples.clone(), base.clone()).unwrap();
    let e1 = collect(&a, 1);
    assert_eq!(e1.len(), 6);
    assert_eq!(a.batches_per_epoch(), 6);
    // Same loader again (now from the cache), a fresh loader with other
    // worker counts and no cache: identical batches.
    assert!(same(&e1, &collect(&a, 1)));
    for (workers, prefetch, cache) in [(0, 1, false), (1, 1, true), (5, 9, false)] {
        let cfg = LoaderConfig {
            workers,
            prefetch,
            cache_images: cache,
            ..base.clone()
        };
        let b = Loader::new(samples.clone(), cfg).unwrap();
        assert!(
            same(&e1, &collect(&b, 1)),
            "workers {workers} cache {cache}"
        );
    }
    // A different epoch: a different order (and different augmentation).
    let e2 = collect(&a, 2);
    let order = |bs: &[Batch]| bs.iter().flat_map(|b| b.labels.clone()).collect::<Vec<_>>();
    assert_ne!(order(&e1), order(&e2));
    // A different seed: a different order.
    let c = Loader::new(samples.clone(), LoaderConfig { seed: 9, ..base }).unwrap();
    assert_ne!(order(&e1), order(&collect(&c, 1)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_sample_once_per_epoch() {
    let (dir, samples) = dataset("once", 23);
    let loader = Loader::new(samples.clone(), config(5)).unwrap();
    assert_eq!(loader.len(), 23);
    assert!(!loader.is_empty());
    assert_eq!(loader.batches_per_epoch(), 5);
    for epoch in 0..3 {
        let batches = collect(&loader, epoch);
        assert_eq!(batches.len(), 5);
        let labels: Vec<String> = batches.iter().flat_map(|b| b.labels.clone()).collect();
        assert_eq!(labels.len(), 23);
        let set: HashSet<&String> = labels.iter().collect();
        assert_eq!(set.len(), 23);
        for b in &batches {
            // Heights 32, widths within the policy, W a multiple of 4.
            let d = b.images.dims();
            assert_eq!((d[1], d[2]), (1, 32));
            assert_eq!(d[3] % 4, 0);
            assert_eq!(d[3], b.widths.iter().max().unwrap().div_ceil(4) * 4);
        }
    }
    // drop_last: only full batches.
    let cfg = LoaderConfig {
        drop_last: true,
        ..config(5)
    };
    let loader = Loader::new(samples.clone(), cfg).unwrap();
    assert_eq!(loader.batches_per_epoch(), 4);
    let batches = collect(&loader, 0);
    assert_eq!(batches.len(), 4);
    assert!(batches.iter().all(|b| b.len() == 5));
    // Without shuffling: dataset order.
    let cfg = LoaderConfig {
        shuffle: false,
        ..config(5)
    };
    let loader = Loader::new(samples, cfg).unwrap();
    let labels: Vec<String> = collect(&loader, 3)
        .iter()
        .flat_map(|b| b.labels.clone())
        .collect();
    let want: Vec<String> = (0..23).map(|i| i.to_string()).collect();
    assert_eq!(labels, want);
    let _ = std::fs::remove_dir_all(&dir);
}

fn mean_spread(batches: &[Batch]) -> f64 {
    let total: usize = batches
        .iter()
        .map(|b| b.widths.iter().max().unwrap() - b.widths.iter().min().unwrap())
        .sum();
    total as f64 / batches.len() as f64
}

#[test]
fn buckets_group_similar_widths() {
    let (dir, samples) = dataset("buckets", 96);
    let plain = Loader::new(samples.clone(), config(8)).unwrap();
    let cfg = LoaderConfig {
        buckets: true,
        ..config(8)
    };
    let bucketed = Loader::new(samples, cfg).unwrap();
    let p = collect(&plain, 0);
    let b = collect(&bucketed, 0);
    let (sp, sb) = (mean_spread(&p), mean_spread(&b));
    assert!(sb * 3.0 < sp, "bucketed spread {sb}, plain {sp}");
    // Still every sample once, and deterministic.
    let labels: HashSet<String> = b.iter().flat_map(|x| x.labels.clone()).collect();
    assert_eq!(labels.len(), 96);
    assert!(same(&b, &collect(&bucketed, 0)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn epoch_from_equals_skipping() {
    let (dir, samples) = dataset("resume", 30);
    let cfg = LoaderConfig {
        augment: Some(noise_augment()),
        buckets: true,
        ..config(4)
    };
    let loader = Loader::new(samples, cfg).unwrap();
    let all = collect(&loader, 4);
    assert_eq!(all.len(), 8);
    for k in [0, 1, 3, 7, 8, 20] {
        let rest: Vec<Batch> = loader.epoch_from(4, k).map(|b| b.unwrap()).collect();
        assert!(same(&all[k.min(all.len())..], &rest), "start {k}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreadable_png_gives_an_error_naming_it() {
    let (dir, mut samples) = dataset("unreadable", 12);
    let bad = dir.join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    samples.push(Sample {
        path: bad.clone(),
        label: "broken".into(),
        target: vec![1],
    });
    let gone = dir.join("gone.png");
    samples.push(Sample {
        path: gone.clone(),
        label: "gone".into(),
        target: vec![1],
    });
    let cfg = LoaderConfig {
        shuffle: false,
        buckets: true,
        ..config(4)
    };
    let loader = Loader::new(samples, cfg).unwrap();
    let results: Vec<_> = loader.epoch(0).collect();
    assert_eq!(results.len(), 4);
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("broken.png") || errors[0].contains("gone.png"),
        "{errors:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dropping_the_iterator_early_stops_the_workers() {
    let (dir, samples) = dataset("early", 40);
    let loader = Loader::new(samples, config(2)).unwrap();
    let mut it = loader.epoch(0);
    assert!(it.next().unwrap().is_ok());
    drop(it);
    // And the loader is still usable afterwards.
    assert_eq!(loader.epoch(1).count(), 20);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn loader_refuses_bad_configs() {
    let s = vec![sample("a")];
    assert!(Loader::new(s.clone(), config(0)).is_err());
    assert!(Loader::new(vec![], config(4)).is_err());
    let cfg = LoaderConfig {
        width: WidthPolicy::Fixed(0),
        ..config(4)
    };
    assert!(Loader::new(s, cfg).is_err());
}
