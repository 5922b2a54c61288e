//! The CRNN family: preset shapes, parameter names and counts as in
//! reference-models.md, lengths, train/eval behaviour, JSON configs,
//! gradient flow and a small overfit run.

use retort::nn::{BlockConfig, Crnn, CrnnConfig};
use retort::ops::ctc::{ctc_loss, CtcOptions};
use retort::{ops, Rng, Tape, Tensor};

/// Parameter counts of the PyTorch models of reference-models.md, printed by
/// tests/golden/make_crnn_golden.py (sum of numel over model.parameters()).
const CRNN_T_PARAMS: usize = 1_302_789;
const CRNN_S_PARAMS: usize = 87_165;

fn random_images(n: usize, h: usize, w: usize, rng: &mut Rng) -> Tensor {
    let values = (0..n * h * w).map(|_| rng.range(-1.0, 1.0)).collect();
    Tensor::from_vec(values, &[n, 1, h, w]).unwrap()
}

fn dims(t: &Tensor) -> Vec<usize> {
    t.dims().to_vec()
}

#[test]
fn presets_have_the_reference_shapes() {
    // (name, channels of b1..b4, hidden)
    for (name, ch, hidden) in [
        ("crnn-t", [32, 64, 128, 128], 128),
        ("crnn-s", [8, 16, 32, 32], 48),
    ] {
        let config = CrnnConfig::preset(name).unwrap();
        assert_eq!(config.feature_height(), 4, "{name}");
        assert_eq!(config.time_steps(128), 32, "{name}");
        assert_eq!(config.num_classes, 37);
        let mut rng = Rng::seed(1);
        let mut model = Crnn::new(config, &mut rng).unwrap();
        let x = random_images(2, 32, 128, &mut rng);
        let out = model
            .forward(&mut Tape::no_grad(), &x, &[128, 128], false, &mut rng)
            .unwrap();
        let f = &out.features;
        assert_eq!(dims(&f["b1"]), [2, ch[0], 16, 64], "{name} b1");
        assert_eq!(dims(&f["b2"]), [2, ch[1], 8, 32], "{name} b2");
        assert_eq!(dims(&f["b3"]), [2, ch[2], 8, 32], "{name} b3");
        assert_eq!(dims(&f["b4"]), [2, ch[3], 4, 32], "{name} b4");
        assert_eq!(dims(&f["rnn"]), [32, 2, 2 * hidden], "{name} rnn");
        assert_eq!(f.len(), 5);
        assert_eq!(dims(&out.logits), [32, 2, 37], "{name} logits");
        assert_eq!(out.lengths, [32, 32]);
        assert_eq!(model.lstm.input_size(), ch[3] * 4, "{name} seq features");
    }
    assert_eq!(CrnnConfig::preset_names(), ["crnn-t", "crnn-s"]);
    let err = CrnnConfig::preset("crnn-x").unwrap_err().to_string();
    assert!(
        err.contains("crnn-x") && err.contains("crnn-t") && err.contains("crnn-s"),
        "{err}"
    );
}

#[test]
fn parameter_counts_match_pytorch() {
    let t = Crnn::new(CrnnConfig::preset("crnn-t").unwrap(), &mut Rng::seed(0)).unwrap();
    let s = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut Rng::seed(0)).unwrap();
    println!("crnn-t: {} parameters", t.num_parameters());
    println!("crnn-s: {} parameters", s.num_parameters());
    assert_eq!(t.num_parameters(), CRNN_T_PARAMS);
    assert_eq!(s.num_parameters(), CRNN_S_PARAMS);
}

/// The names and shapes of reference-models.md for a preset, in state-dict order.
fn expected_params(ch: [usize; 4], hidden: usize, layers: usize) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut cin = 1;
    for (i, &c) in ch.iter().enumerate() {
        let b = i + 1;
        out.push((format!("cnn.b{b}.conv.weight"), vec![c, cin, 3, 3]));
        out.push((format!("cnn.b{b}.bn.weight"), vec![c]));
        out.push((format!("cnn.b{b}.bn.bias"), vec![c]));
        cin = c;
    }
    let h4 = 4 * hidden;
    for k in 0..layers {
        let input = if k == 0 { ch[3] * 4 } else { 2 * hidden };
        for suffix in ["", "_reverse"] {
            out.push((format!("rnn.weight_ih_l{k}{suffix}"), vec![h4, input]));
            out.push((format!("rnn.weight_hh_l{k}{suffix}"), vec![h4, hidden]));
            out.push((format!("rnn.bias_ih_l{k}{suffix}"), vec![h4]));
            out.push((format!("rnn.bias_hh_l{k}{suffix}"), vec![h4]));
        }
    }
    out.push(("head.weight".into(), vec![37, 2 * hidden]));
    out.push(("head.bias".into(), vec![37]));
    out
}

#[test]
fn parameter_names_follow_the_reference_table() {
    for (name, ch, hidden, layers, n_state) in [
        ("crnn-t", [32, 64, 128, 128], 128, 2, 38),
        ("crnn-s", [8, 16, 32, 32], 48, 1, 30),
    ] {
        let mut model = Crnn::new(CrnnConfig::preset(name).unwrap(), &mut Rng::seed(3)).unwrap();
        let want = expected_params(ch, hidden, layers);
        let got: Vec<(String, Vec<usize>)> = model
            .params()
            .into_iter()
            .map(|(n, p)| (n, p.dims().to_vec()))
            .collect();
        assert_eq!(got, want, "{name}");
        let names_mut: Vec<String> = model.params_mut().into_iter().map(|(n, _)| n).collect();
        let names: Vec<String> = want.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names_mut, names);
        // The state dict adds running_mean / running_var after each bn.bias.
        let state: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            state.len(),
            n_state,
            "{name}: PyTorch's state dict minus num_batches_tracked"
        );
        let i = state.iter().position(|n| n == "cnn.b2.bn.bias").unwrap();
        assert_eq!(state[i + 1], "cnn.b2.bn.running_mean");
        assert_eq!(state[i + 2], "cnn.b2.bn.running_var");
        assert_eq!(state[i + 3], "cnn.b3.conv.weight");
    }
}

#[test]
fn lengths_follow_the_true_widths() {
    let mut rng = Rng::seed(5);
    let mut model = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut rng).unwrap();
    let x = random_images(1, 32, 100, &mut rng);
    let out = model
        .forward(&mut Tape::no_grad(), &x, &[100], false, &mut rng)
        .unwrap();
    assert_eq!(out.lengths, [25]);
    assert_eq!(dims(&out.logits), [25, 1, 37]);
    // In a padded batch: widths 100, 128, 3 (clamped to one step), 7 (floor).
    let x = random_images(4, 32, 128, &mut rng);
    let out = model
        .forward(&mut Tape::no_grad(), &x, &[100, 128, 3, 7], false, &mut rng)
        .unwrap();
    assert_eq!(out.lengths, [25, 32, 1, 1]);
    assert_eq!(model.config.time_steps(7), 1);
    // Padding steps of the rnn output are zero.
    let rnn = &out.features["rnn"];
    let f = rnn.dims()[2];
    let step = |t: usize, n: usize| &rnn.data()[(t * 4 + n) * f..(t * 4 + n + 1) * f];
    assert!(step(25, 0).iter().all(|&v| v == 0.0));
    assert!(step(24, 0).iter().any(|&v| v != 0.0));
    // Bad inputs are errors, not panics.
    let mut tape = Tape::no_grad();
    assert!(model
        .forward(&mut tape, &x, &[100, 128, 3], false, &mut rng)
        .is_err());
    assert!(model
        .forward(&mut tape, &x, &[100, 129, 3, 7], false, &mut rng)
        .is_err());
    let narrow = random_images(1, 32, 3, &mut rng);
    assert!(model
        .forward(&mut tape, &narrow, &[3], false, &mut rng)
        .is_err());
    let short = random_images(1, 16, 64, &mut rng);
    assert!(model
        .forward(&mut tape, &short, &[64], false, &mut rng)
        .is_err());
}

#[test]
fn eval_is_deterministic_and_training_updates_running_stats() {
    let mut rng = Rng::seed(7);
    let mut config = CrnnConfig::preset("crnn-s").unwrap();
    config.dropout = 0.3;
    let mut model = Crnn::new(config, &mut rng).unwrap();
    let x = random_images(2, 32, 64, &mut rng);
    let stats = |m: &Crnn| -> Vec<Vec<f32>> {
        m.blocks
            .iter()
            .flat_map(|(_, bn)| [bn.stats.mean.to_vec(), bn.stats.var.to_vec()])
            .collect()
    };
    let before = stats(&model);
    let a = model
        .forward(
            &mut Tape::no_grad(),
            &x,
            &[64, 50],
            false,
            &mut Rng::seed(1),
        )
        .unwrap();
    let b = model
        .forward(&mut Tape::new(), &x, &[64, 50], false, &mut Rng::seed(2))
        .unwrap();
    assert_eq!(
        a.logits.data(),
        b.logits.data(),
        "eval mode must not depend on the rng"
    );
    assert_eq!(
        stats(&model),
        before,
        "eval mode must not touch running stats"
    );

    let c = model
        .forward(&mut Tape::new(), &x, &[64, 50], true, &mut Rng::seed(1))
        .unwrap();
    let after = stats(&model);
    for (i, (x0, x1)) in before.iter().zip(&after).enumerate() {
        assert!(x0 != x1, "running stat {i} was not updated in training");
    }
    assert_ne!(a.logits.data(), c.logits.data());
    // Training mode with dropout draws from the rng.
    let d = model
        .forward(&mut Tape::new(), &x, &[64, 50], true, &mut Rng::seed(2))
        .unwrap();
    assert_ne!(c.logits.data(), d.logits.data());
}

const TINY_JSON: &str = r#"{
    "in_channels": 1,
    "height": 16,
    "blocks": [
        {"out_channels": 4, "pool": [2, 2]},
        {"out_channels": 6},
        {"out_channels": 6, "pool": [2, 1]}
    ],
    "hidden": 5,
    "layers": 2,
    "bidirectional": false,
    "num_classes": 6
}"#;

#[test]
fn config_from_json() {
    let config: CrnnConfig = serde_json::from_str(TINY_JSON).unwrap();
    assert_eq!(
        config.blocks[1],
        BlockConfig {
            out_channels: 6,
            pool: None
        }
    );
    assert_eq!(config.blocks[0].pool, Some((2, 2)));
    assert_eq!(config.dropout, 0.0);
    assert_eq!(config.feature_height(), 4);
    assert_eq!(config.time_steps(30), 15);
    config.validate().unwrap();
    let back: CrnnConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);

    let mut rng = Rng::seed(9);
    let mut model = Crnn::new(config.clone(), &mut rng).unwrap();
    let x = random_images(3, 16, 30, &mut rng);
    let out = model
        .forward(&mut Tape::no_grad(), &x, &[30, 20, 9], false, &mut rng)
        .unwrap();
    assert_eq!(dims(&out.logits), [15, 3, 6]);
    assert_eq!(dims(&out.features["rnn"]), [15, 3, 5]);
    assert_eq!(out.lengths, [15, 10, 4]);

    let unknown = TINY_JSON.replace("\"hidden\": 5", "\"hidden\": 5, \"hiden\": 5");
    let err = serde_json::from_str::<CrnnConfig>(&unknown)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `hiden`"), "{err}");
    let unknown = TINY_JSON.replace(
        "{\"out_channels\": 6}",
        "{\"out_channels\": 6, \"kernel\": 3}",
    );
    let err = serde_json::from_str::<CrnnConfig>(&unknown)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `kernel`"), "{err}");

    // Invalid configs.
    let mut bad = config.clone();
    bad.height = 3;
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("pool height"), "{err}");
    assert!(Crnn::new(bad, &mut rng).is_err());
    for edit in [
        |c: &mut CrnnConfig| c.hidden = 0,
        |c: &mut CrnnConfig| c.layers = 0,
        |c: &mut CrnnConfig| c.num_classes = 1,
        |c: &mut CrnnConfig| c.blocks.clear(),
        |c: &mut CrnnConfig| c.blocks[0].out_channels = 0,
        |c: &mut CrnnConfig| c.blocks[0].pool = Some((0, 2)),
        |c: &mut CrnnConfig| c.dropout = 1.0,
        |c: &mut CrnnConfig| c.in_channels = 0,
    ] {
        let mut bad = config.clone();
        edit(&mut bad);
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    assert_eq!(
        CrnnConfig::preset("crnn-s")
            .unwrap()
            .with_classes(11)
            .num_classes,
        11
    );
}

#[test]
fn gradient_reaches_every_parameter() {
    let mut rng = Rng::seed(11);
    let mut config: CrnnConfig = serde_json::from_str(TINY_JSON).unwrap();
    config.bidirectional = true;
    config.dropout = 0.2;
    let mut model = Crnn::new(config, &mut rng).unwrap();
    let x = random_images(3, 16, 30, &mut rng);
    let mut tape = Tape::new();
    let out = model
        .forward(&mut tape, &x, &[30, 24, 16], true, &mut rng)
        .unwrap();
    let lp = ops::log_softmax(&mut tape, &out.logits, 1.0).unwrap();
    let targets = vec![vec![1, 2, 3], vec![4, 4], vec![5]];
    let loss = ctc_loss(
        &mut tape,
        &lp,
        &targets,
        &out.lengths,
        CtcOptions::default(),
    )
    .unwrap();
    assert!(loss.item().unwrap().is_finite());
    let grads = tape.backward(&loss).unwrap();
    for (name, p) in model.params() {
        let g = p
            .grad(&grads)
            .unwrap_or_else(|| panic!("{name} got no gradient"));
        assert_eq!(g.dims(), p.dims(), "{name}");
        assert!(g.data().iter().all(|v| v.is_finite()), "{name}");
        assert!(
            g.data().iter().any(|&v| v != 0.0),
            "{name}: all-zero gradient"
        );
    }
}

/// Greedy CTC decoding: best class per step, repeats merged, blanks (0) dropped.
fn greedy(logits: &Tensor, lengths: &[usize]) -> Vec<Vec<usize>> {
    let (n, k) = (logits.dims()[1], logits.dims()[2]);
    (0..n)
        .map(|j| {
            let mut out = Vec::new();
            let mut prev = 0;
            for t in 0..lengths[j] {
                let row = &logits.data()[(t * n + j) * k..(t * n + j + 1) * k];
                let best = (0..k).fold(0, |b, c| if row[c] > row[b] { c } else { b });
                if best != 0 && best != prev {
                    out.push(best);
                }
                prev = best;
            }
            out
        })
        .collect()
}

/// An 8 x 32 image of up to four symbols (1, 2, 3), one per 8-pixel cell:
/// symbol s is a bar over rows 2(s-1) .. 2(s-1)+3 of columns 1..7.
fn glyph_image(labels: &[usize]) -> Vec<f32> {
    let (h, w) = (8, 32);
    let mut img = vec![-1.0f32; h * w];
    for (cell, &s) in labels.iter().enumerate() {
        for row in 2 * (s - 1)..2 * (s - 1) + 3 {
            for col in cell * 8 + 1..cell * 8 + 7 {
                img[row * w + col] = 1.0;
            }
        }
    }
    img
}

#[test]
fn tiny_crnn_overfits_a_few_images() {
    let config = CrnnConfig {
        in_channels: 1,
        height: 8,
        blocks: vec![
            BlockConfig {
                out_channels: 8,
                pool: Some((2, 2)),
            },
            BlockConfig {
                out_channels: 16,
                pool: Some((2, 2)),
            },
        ],
        hidden: 16,
        layers: 1,
        bidirectional: true,
        num_classes: 4,
        dropout: 0.0,
        exits: Vec::new(),
    };
    let labels: Vec<Vec<usize>> = vec![vec![1, 2, 3], vec![3, 2, 1], vec![2, 2], vec![1, 3, 3, 1]];
    let pixels: Vec<f32> = labels.iter().flat_map(|l| glyph_image(l)).collect();
    let x = Tensor::from_vec(pixels, &[4, 1, 8, 32]).unwrap();
    let widths = [32; 4];
    let mut rng = Rng::seed(2024);
    let mut model = Crnn::new(config, &mut rng).unwrap();

    // SGD with momentum, written out here so that the test depends on nn alone.
    let (lr, momentum) = (0.05f32, 0.9f32);
    let mut velocity: Vec<Vec<f32>> = model
        .params()
        .iter()
        .map(|(_, p)| vec![0.0; p.tensor().numel()])
        .collect();
    let start = std::time::Instant::now();
    let mut solved_at = None;
    for step in 1..=400 {
        let mut tape = Tape::new();
        let out = model
            .forward(&mut tape, &x, &widths, true, &mut rng)
            .unwrap();
        let lp = ops::log_softmax(&mut tape, &out.logits, 1.0).unwrap();
        let loss = ctc_loss(&mut tape, &lp, &labels, &out.lengths, CtcOptions::default()).unwrap();
        let grads = tape.backward(&loss).unwrap();
        for (i, (_, p)) in model.params_mut().into_iter().enumerate() {
            let Some(g) = p.grad(&grads).map(|g| g.to_vec()) else {
                continue;
            };
            for ((w, vel), g) in p.values_mut().iter_mut().zip(&mut velocity[i]).zip(g) {
                *vel = momentum * *vel + g;
                *w -= lr * *vel;
            }
        }
        if step % 10 == 0 {
            let eval = model
                .forward(&mut Tape::no_grad(), &x, &widths, false, &mut rng)
                .unwrap();
            if greedy(&eval.logits, &eval.lengths) == labels {
                solved_at = Some((step, loss.item().unwrap()));
                break;
            }
        }
    }
    println!("solved at {solved_at:?} in {:?}", start.elapsed());
    let eval = model
        .forward(&mut Tape::no_grad(), &x, &widths, false, &mut rng)
        .unwrap();
    assert_eq!(
        greedy(&eval.logits, &eval.lengths),
        labels,
        "not learnt in 400 steps"
    );
}
