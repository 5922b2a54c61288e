//! CTC decoding (greedy and prefix beam search) and recognition metrics.

use proptest::prelude::*;
use retort::decode::{beam_search, greedy, Decoded};
use retort::metrics::{edit_distance, RecognitionMetrics};
use retort::Tensor;
use std::collections::HashMap;

// ---------------------------------------------------------------------------
// Helpers.

/// Log-probabilities `(T, N, K)` from per-sample, per-frame probabilities.
fn from_probs(probs: &[Vec<Vec<f64>>]) -> Tensor {
    let n = probs.len();
    let t = probs[0].len();
    let k = probs[0][0].len();
    let mut data = vec![0.0f32; t * n * k];
    for (i, sample) in probs.iter().enumerate() {
        for (f, frame) in sample.iter().enumerate() {
            for (c, &p) in frame.iter().enumerate() {
                data[(f * n + i) * k + c] = (p as f32).ln();
            }
        }
    }
    Tensor::from_vec(data, &[t, n, k]).unwrap()
}

/// A peaked frame: probability `peak` on `class`, the rest spread evenly.
fn peaked(class: usize, k: usize, peak: f64) -> Vec<f64> {
    (0..k)
        .map(|c| {
            if c == class {
                peak
            } else {
                (1.0 - peak) / (k - 1) as f64
            }
        })
        .collect()
}

/// One sample whose frames peak on `path` (class 0 = blank).
fn path(path: &[usize], k: usize) -> Vec<Vec<f64>> {
    path.iter().map(|&c| peaked(c, k, 0.9)).collect()
}

fn classes(d: &[Decoded]) -> Vec<Vec<usize>> {
    d.iter().map(|d| d.classes.clone()).collect()
}

/// The probability of every label sequence, summing all `K^T` paths.
fn brute_force(frames: &[Vec<f64>]) -> HashMap<Vec<usize>, f64> {
    let t = frames.len();
    let k = frames.first().map_or(1, |f| f.len());
    let mut out = HashMap::new();
    let total = k.pow(t as u32);
    for mut code in 0..total {
        let mut p = 1.0;
        let mut labels = Vec::new();
        let mut prev = 0;
        for f in frames {
            let c = code % k;
            code /= k;
            p *= f[c];
            if c != 0 && c != prev {
                labels.push(c);
            }
            prev = c;
        }
        *out.entry(labels).or_insert(0.0) += p;
    }
    out
}

/// Softmax of f32 logits, in f64.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let e: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Frame probabilities of sample `i` of logits `(T, N, K)`, over its first `len` frames.
fn sample_probs(x: &Tensor, i: usize, len: usize) -> Vec<Vec<f64>> {
    let (n, k) = (x.dims()[1], x.dims()[2]);
    (0..len)
        .map(|t| softmax(&x.data()[(t * n + i) * k..(t * n + i + 1) * k]))
        .collect()
}

// ---------------------------------------------------------------------------
// Greedy.

#[test]
fn greedy_collapses_repeats_and_drops_blanks() {
    let k = 4;
    let cases: [(&[usize], &[usize]); 8] = [
        (&[1, 1], &[1]),       // "a a" → "a"
        (&[1, 0, 1], &[1, 1]), // "a - a" → "aa"
        (&[0, 0, 0], &[]),     // all blank
        (&[1, 1, 0, 1, 2], &[1, 1, 2]),
        (&[0, 3, 3, 3, 0], &[3]),
        (&[2, 3, 2, 3], &[2, 3, 2, 3]),
        (&[2, 0, 0, 2, 2], &[2, 2]),
        (&[1, 2, 0, 2, 1], &[1, 2, 2, 1]),
    ];
    for (frames, want) in cases {
        // Pad every case to 5 frames with trailing blanks, one sample each.
        let mut padded = frames.to_vec();
        padded.resize(5, 0);
        let x = from_probs(&[path(&padded, k)]);
        let got = greedy(&x, &[5]).unwrap();
        assert_eq!(got[0].classes, want, "{frames:?}");
        assert!((0.0..=1.0).contains(&got[0].confidence));
    }
}

#[test]
fn greedy_accepts_raw_logits() {
    let logits = Tensor::from_vec(
        vec![
            5.0, 1.0, 0.0, // t0: blank
            0.0, 7.0, 2.0, // t1: 1
            1.0, 9.0, 2.0, // t2: 1 (repeat)
            0.0, 2.0, 3.0, // t3: 2
        ],
        &[4, 1, 3],
    )
    .unwrap();
    let got = greedy(&logits, &[4]).unwrap();
    assert_eq!(got[0].classes, vec![1, 2]);
    // The same as on the log-softmax of the logits, confidence included.
    let probs = sample_probs(&logits, 0, 4);
    let lp = greedy(&from_probs(&[probs]), &[4]).unwrap();
    assert_eq!(lp[0].classes, got[0].classes);
    assert!((lp[0].confidence - got[0].confidence).abs() < 1e-6);
}

#[test]
fn lengths_are_respected() {
    let k = 3;
    // Sample 0 uses 3 of 6 frames; its padding frames say "2 2 2".
    let s0 = path(&[1, 0, 1, 2, 2, 2], k);
    let s1 = path(&[2, 2, 0, 1, 1, 0], k);
    let s2 = path(&[1, 1, 1, 1, 1, 1], k);
    let x = from_probs(&[s0.clone(), s1, s2]);
    let lengths = [3, 6, 0];
    for decoded in [
        greedy(&x, &lengths).unwrap(),
        beam_search(&x, &lengths, 4).unwrap(),
    ] {
        assert_eq!(classes(&decoded), vec![vec![1, 1], vec![2, 1], vec![]]);
        // An empty sample is decoded as nothing, with certainty.
        assert_eq!(decoded[2].confidence, 1.0);
    }
    // Decoding the truncated sample alone gives the same result.
    let alone = from_probs(&[s0[..3].to_vec()]);
    assert_eq!(
        greedy(&alone, &[3]).unwrap()[0],
        greedy(&x, &lengths).unwrap()[0]
    );
}

#[test]
fn bad_inputs_are_errors() {
    let x = from_probs(&[path(&[1, 0], 3), path(&[2, 2], 3)]);
    assert!(greedy(&x, &[2]).is_err(), "one length for two samples");
    assert!(greedy(&x, &[2, 2, 2]).is_err());
    assert!(greedy(&x, &[2, 3]).is_err(), "length beyond T");
    assert!(beam_search(&x, &[2, 3], 2).is_err());
    assert!(beam_search(&x, &[2, 2], 0).is_err(), "beam 0");
    let flat = Tensor::zeros(&[2, 3]).unwrap();
    assert!(greedy(&flat, &[2]).is_err(), "rank 2");
    assert!(beam_search(&flat, &[2], 2).is_err());
    let no_classes = Tensor::zeros(&[2, 1, 0]).unwrap();
    assert!(greedy(&no_classes, &[2]).is_err(), "K = 0");
    let mut nan = vec![0.0f32; 2 * 3];
    nan[4] = f32::NAN;
    let nan = Tensor::from_vec(nan, &[2, 1, 3]).unwrap();
    assert!(greedy(&nan, &[2]).is_err(), "NaN in a used frame");
    assert!(beam_search(&nan, &[2], 3).is_err());
    assert!(greedy(&nan, &[1]).is_ok(), "NaN past the length is ignored");
    let dead = Tensor::full(&[1, 1, 3], f32::NEG_INFINITY).unwrap();
    assert!(greedy(&dead, &[1]).is_err(), "a frame of all -inf");
    // No frames at all is fine.
    let empty = Tensor::zeros(&[0, 2, 3]).unwrap();
    assert_eq!(
        classes(&greedy(&empty, &[0, 0]).unwrap()),
        vec![Vec::<usize>::new(), vec![]]
    );
}

// ---------------------------------------------------------------------------
// Beam search.

#[test]
fn beam_finds_the_sequence_greedy_misses() {
    // Two frames, classes {blank, a}, each frame P(blank) = 0.6, P(a) = 0.4.
    // Best path: "- -" (0.36) → "". But P("a") = P(aa) + P(a-) + P(-a)
    // = 0.16 + 0.24 + 0.24 = 0.64 > P("") = 0.36.
    let frames = vec![vec![0.6, 0.4], vec![0.6, 0.4]];
    let x = from_probs(&[frames]);
    let g = greedy(&x, &[2]).unwrap();
    assert_eq!(g[0].classes, Vec::<usize>::new());
    assert!((g[0].confidence - 0.6).abs() < 1e-6, "√0.36");
    for beam in [2, 3, 10] {
        let b = beam_search(&x, &[2], beam).unwrap();
        assert_eq!(b[0].classes, vec![1], "beam {beam}");
        assert!((b[0].confidence - 0.8).abs() < 1e-6, "√0.64");
    }
    // Width 1 is greedy.
    assert_eq!(beam_search(&x, &[2], 1).unwrap(), g);
}

#[test]
fn beam_equals_greedy_on_peaked_distributions() {
    let mut seed = 7u64;
    let mut next = |m: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % m
    };
    let (t, n, k) = (20, 6, 6);
    let samples: Vec<Vec<Vec<f64>>> = (0..n)
        .map(|_| (0..t).map(|_| peaked(next(k), k, 0.98)).collect())
        .collect();
    let x = from_probs(&samples);
    let lengths: Vec<usize> = (0..n).map(|i| t - i).collect();
    let g = greedy(&x, &lengths).unwrap();
    for beam in [1, 2, 5, 16] {
        let b = beam_search(&x, &lengths, beam).unwrap();
        assert_eq!(classes(&b), classes(&g), "beam {beam}");
        for (b, g) in b.iter().zip(&g) {
            assert!((b.confidence - g.confidence).abs() < 1e-5);
        }
    }
}

/// `P(labels | frames)` by the CTC forward recursion, in probability space.
fn ctc_prob(frames: &[Vec<f64>], labels: &[usize]) -> f64 {
    let ext: Vec<usize> = std::iter::once(0)
        .chain(labels.iter().flat_map(|&l| [l, 0]))
        .collect();
    let s = ext.len();
    let mut alpha = vec![0.0; s];
    alpha[0] = frames[0][0];
    if s > 1 {
        alpha[1] = frames[0][ext[1]];
    }
    for f in &frames[1..] {
        let prev = alpha.clone();
        for j in 0..s {
            let mut a = prev[j];
            if j >= 1 {
                a += prev[j - 1];
            }
            if j >= 2 && ext[j] != 0 && ext[j] != ext[j - 2] {
                a += prev[j - 2];
            }
            alpha[j] = a * f[ext[j]];
        }
    }
    alpha[s - 1] + if s > 1 { alpha[s - 2] } else { 0.0 }
}

/// The best path: argmax per frame, repeats merged, blanks dropped.
fn best_path(frames: &[Vec<f64>]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut prev = 0;
    for f in frames {
        let c = (0..f.len()).fold(0, |b, c| if f[c] > f[b] { c } else { b });
        if c != 0 && c != prev {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// A plain CTC prefix beam search over every class, written independently,
/// whose final prefixes and the best path are rescored by their exact
/// probability: checks that the pruning of `beam_search` loses nothing.
fn reference_beam(frames: &[Vec<f64>], beam: usize) -> Vec<usize> {
    let mut beams: Vec<(Vec<usize>, f64, f64)> = vec![(vec![], 1.0, 0.0)];
    for f in frames {
        let mut next: HashMap<Vec<usize>, (f64, f64)> = HashMap::new();
        for (p, pb, pnb) in &beams {
            let e = next.entry(p.clone()).or_insert((0.0, 0.0));
            e.0 += (pb + pnb) * f[0];
            if let Some(&last) = p.last() {
                e.1 += pnb * f[last];
            }
            for (c, &fc) in f.iter().enumerate().skip(1) {
                let mut q = p.clone();
                q.push(c);
                let e = next.entry(q).or_insert((0.0, 0.0));
                e.1 += if p.last() == Some(&c) { *pb } else { pb + pnb } * fc;
            }
        }
        let mut v: Vec<_> = next.into_iter().map(|(p, (b, nb))| (p, b, nb)).collect();
        v.sort_by(|a, b| (b.1 + b.2).total_cmp(&(a.1 + a.2)).then(a.0.cmp(&b.0)));
        v.truncate(beam);
        beams = v;
    }
    let mut candidates: Vec<Vec<usize>> = beams.into_iter().map(|b| b.0).collect();
    candidates.push(best_path(frames));
    candidates
        .into_iter()
        .fold((Vec::new(), -1.0), |(bc, bp), c| {
            let p = ctc_prob(frames, &c);
            if p > bp {
                (c, p)
            } else {
                (bc, bp)
            }
        })
        .0
}

fn logits_strategy(
    t: std::ops::RangeInclusive<usize>,
    k: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Tensor> {
    (t, k).prop_flat_map(|(t, k)| {
        prop::collection::vec(-3.0f32..3.0, t * k)
            .prop_map(move |v| Tensor::from_vec(v, &[t, 1, k]).unwrap())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Against brute force on tiny problems: the beam result is at least as
    /// probable as greedy's, an exhaustive beam finds the most probable
    /// sequence, and each confidence is `P(classes)^(1/T)`.
    #[test]
    fn beam_is_at_least_as_probable_as_greedy(x in logits_strategy(1..=4, 2..=4)) {
        let t = x.dims()[0];
        let probs = sample_probs(&x, 0, t);
        let all = brute_force(&probs);
        let prob = |c: &[usize]| all.get(c).copied().unwrap_or(0.0);
        let best = all.values().fold(0.0f64, |m, &v| m.max(v));

        let g = &greedy(&x, &[t]).unwrap()[0];
        let pg = prob(&g.classes);
        prop_assert!((g.confidence as f64 - pg.powf(1.0 / t as f64)).abs() < 1e-5);
        for beam in [2, 3, 4, 8, 200] {
            let b = &beam_search(&x, &[t], beam).unwrap()[0];
            let pb = prob(&b.classes);
            prop_assert!(pb >= pg - 1e-9, "beam {}: {:?} {} < greedy {:?} {}", beam, b.classes, pb, g.classes, pg);
            prop_assert!((b.confidence as f64 - pb.powf(1.0 / t as f64)).abs() < 1e-5);
            if beam == 200 {
                // 200 exceeds the number of prefixes (at most 1 + 3 + … + 3^4 = 121).
                prop_assert!(pb >= best - 1e-9, "exhaustive beam {} < best {}", pb, best);
            }
        }
    }

    /// Pruning the extensions per frame changes nothing.
    #[test]
    fn beam_matches_an_unpruned_reference(x in logits_strategy(1..=7, 2..=8), beam in 2usize..5) {
        let t = x.dims()[0];
        let probs = sample_probs(&x, 0, t);
        let got = &beam_search(&x, &[t], beam).unwrap()[0];
        prop_assert_eq!(&got.classes, &reference_beam(&probs, beam));
    }

    /// Width 1 is exactly greedy, confidence included.
    #[test]
    fn beam_one_is_greedy(x in logits_strategy(0..=12, 1..=6)) {
        let t = x.dims()[0];
        prop_assert_eq!(beam_search(&x, &[t], 1).unwrap(), greedy(&x, &[t]).unwrap());
    }
}

// ---------------------------------------------------------------------------
// Edit distance and metrics.

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

fn ed(a: &str, b: &str) -> usize {
    edit_distance(&chars(a), &chars(b))
}

/// The textbook full-matrix Levenshtein distance.
fn naive(a: &[char], b: &[char]) -> usize {
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let sub = d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = sub.min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
        }
    }
    d[a.len()][b.len()]
}

#[test]
fn known_edit_distances() {
    assert_eq!(ed("kitten", "sitting"), 3);
    assert_eq!(ed("sitting", "kitten"), 3);
    assert_eq!(ed("flaw", "lawn"), 2);
    assert_eq!(ed("", ""), 0);
    assert_eq!(ed("", "abc"), 3);
    assert_eq!(ed("abc", ""), 3);
    assert_eq!(ed("abc", "abc"), 0);
    assert_eq!(ed("abc", "cba"), 2);
    // Unicode symbols count once each, not per byte.
    assert_eq!(ed("héllo", "hello"), 1);
    assert_eq!(ed("日本語", "日本"), 1);
    assert_eq!(ed("日本語", "中国語"), 2);
    assert_eq!(ed("🙂a", "a"), 1);
    // Any element type.
    assert_eq!(edit_distance(&[1, 2, 3, 4], &[1, 3, 4, 5]), 2);
}

proptest! {
    #[test]
    fn edit_distance_is_a_metric(
        a in "[ab日é]{0,9}",
        b in "[ab日é]{0,9}",
        c in "[ab日é]{0,9}",
    ) {
        let (ca, cb) = (chars(&a), chars(&b));
        let ab = ed(&a, &b);
        prop_assert_eq!(ed(&a, &a), 0);
        prop_assert_eq!(ab, ed(&b, &a));
        prop_assert!(ed(&a, &c) <= ab + ed(&b, &c));
        prop_assert_eq!(ab == 0, a == b);
        prop_assert!(ab >= ca.len().abs_diff(cb.len()));
        prop_assert!(ab <= ca.len().max(cb.len()));
        prop_assert_eq!(ab, naive(&ca, &cb));
    }
}

#[test]
fn cer_and_exact_match() {
    let pairs = [
        ("abc", "abc"),     // exact, 0 edits, 3 chars
        ("abd", "abc"),     // 1 edit, 3 chars
        ("", "xy"),         // 2 edits, 2 chars
        ("日本", "日本語"), // 1 edit, 3 chars
        ("hello", "hell"),  // 1 edit, 4 chars
    ];
    let mut m = RecognitionMetrics::default();
    assert_eq!(m.exact_match(), 0.0);
    assert_eq!(m.cer(), 0.0);
    for (p, l) in pairs {
        m.add(p, l);
    }
    assert_eq!(
        m,
        RecognitionMetrics {
            n: 5,
            exact: 1,
            edits: 5,
            label_chars: 15
        }
    );
    assert!((m.exact_match() - 0.2).abs() < 1e-12);
    assert!((m.cer() - 5.0 / 15.0).abs() < 1e-12);

    // Merging parts gives the whole.
    let mut first = RecognitionMetrics::default();
    let mut second = RecognitionMetrics::default();
    for (i, (p, l)) in pairs.iter().enumerate() {
        if i < 2 {
            first.add(p, l)
        } else {
            second.add(p, l)
        }
    }
    first.merge(&second);
    assert_eq!(first, m);

    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["edits"], 5);
    assert_eq!(json["label_chars"], 15);
}
