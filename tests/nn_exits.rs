//! Early exits of the CRNN (Phuong & Lampert, ICCV 2019): config
//! validation, parameter names and initialisation, equality with the model
//! without exits, `forward_to_exit`, gradients into the exit heads (with a
//! finite-difference check), checkpoints, and recognition at an exit.

mod common;

use common::Tol;
use retort::checkpoint;
use retort::data::charset::Charset;
use retort::data::image::{write_png, GrayImage};
use retort::data::labels::Sample;
use retort::data::loader::{Loader, LoaderConfig};
use retort::decode::greedy;
use retort::nn::{BlockConfig, Crnn, CrnnConfig};
use retort::ops::ctc::{ctc_loss, CtcOptions};
use retort::train::{evaluate, evaluate_at, recognize_batch, recognize_batch_at};
use retort::{ops, Rng, Tape, Tensor};
use std::path::PathBuf;

fn random_images(n: usize, h: usize, w: usize, rng: &mut Rng) -> Tensor {
    let values = (0..n * h * w).map(|_| rng.range(-1.0, 1.0)).collect();
    Tensor::from_vec(values, &[n, 1, h, w]).unwrap()
}

fn with_exits(name: &str, exits: &[&str]) -> CrnnConfig {
    let mut config = CrnnConfig::preset(name).unwrap();
    config.exits = exits.iter().map(|e| e.to_string()).collect();
    config
}

/// A fresh, empty folder under the system's temporary folder.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retort-exits-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small model with two exits: three blocks (b1 pools 2x2, b2 none, b3 2x1).
fn tiny_config() -> CrnnConfig {
    CrnnConfig {
        in_channels: 1,
        height: 8,
        blocks: vec![
            BlockConfig {
                out_channels: 3,
                pool: Some((2, 2)),
            },
            BlockConfig {
                out_channels: 4,
                pool: None,
            },
            BlockConfig {
                out_channels: 4,
                pool: Some((2, 1)),
            },
        ],
        hidden: 5,
        layers: 1,
        bidirectional: true,
        num_classes: 5,
        dropout: 0.0,
        exits: vec!["b1".into(), "b2".into()],
    }
}

fn error_of(config: &CrnnConfig) -> String {
    let err = config.validate().unwrap_err().to_string();
    assert!(
        Crnn::new(config.clone(), &mut Rng::seed(0)).is_err(),
        "{config:?}"
    );
    err
}

#[test]
fn exit_names_are_validated() {
    with_exits("crnn-t", &["b2", "b3"]).validate().unwrap();
    with_exits("crnn-s", &["b3"]).validate().unwrap();
    tiny_config().validate().unwrap();

    // b1 of crnn-t is at twice the final time resolution (b2 pools the width).
    let err = error_of(&with_exits("crnn-t", &["b1"]));
    assert!(
        err.contains("`b1`") && err.contains("2 times") && err.contains("b2 pools the width"),
        "{err}"
    );
    assert!(err.contains("align"), "{err}");
    // The last block feeds the LSTM already.
    let err = error_of(&with_exits("crnn-t", &["b4"]));
    assert!(err.contains("`b4`") && err.contains("last block"), "{err}");
    // Not a block.
    for name in ["b5", "b0", "x", "b02", "", "B2", "b2 "] {
        let err = error_of(&with_exits("crnn-t", &[name]));
        assert!(
            err.contains(&format!("`{name}`")) && err.contains("b1 … b4"),
            "{err}"
        );
    }
    // Repeated.
    let err = error_of(&with_exits("crnn-t", &["b2", "b3", "b2"]));
    assert!(
        err.contains("`b2`") && err.contains("more than once"),
        "{err}"
    );
    // Two width pools after the exit multiply.
    let mut config = tiny_config();
    config.blocks[2].pool = Some((2, 2));
    config.blocks.push(BlockConfig {
        out_channels: 2,
        pool: Some((1, 3)),
    });
    config.exits = vec!["b2".into()];
    let err = error_of(&config);
    assert!(
        err.contains("6 times") && err.contains("b3 pools the width by 2"),
        "{err}"
    );

    assert_eq!(
        CrnnConfig::preset("crnn-t").unwrap().exit_block("b3"),
        Some(2)
    );
    let t = with_exits("crnn-t", &[]);
    assert_eq!(t.exit_features("b2"), Some(64 * 8));
    assert_eq!(t.exit_features("b3"), Some(128 * 8));
    assert_eq!(t.exit_features("b4"), Some(128 * 4));
    assert_eq!(t.exit_features("b9"), None);
    assert_eq!(t.height_after(0), 16);
}

#[test]
fn exits_travel_through_json_only_when_present() {
    let plain = CrnnConfig::preset("crnn-s").unwrap();
    let json = serde_json::to_string(&plain).unwrap();
    assert!(!json.contains("exits"), "{json}");
    let back: CrnnConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plain);
    assert!(back.exits.is_empty());

    let config = with_exits("crnn-s", &["b3", "b2"]);
    let json = serde_json::to_string(&config).unwrap();
    assert!(json.contains(r#""exits":["b3","b2"]"#), "{json}");
    let back: CrnnConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
}

#[test]
fn exit_parameters_follow_the_head_and_leave_the_rest_unchanged() {
    let plain = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut Rng::seed(3)).unwrap();
    let mut model = Crnn::new(with_exits("crnn-s", &["b3", "b2"]), &mut Rng::seed(3)).unwrap();
    let base: Vec<(String, Vec<usize>)> = plain
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.dims().to_vec()))
        .collect();
    let got: Vec<(String, Vec<usize>)> = model
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.dims().to_vec()))
        .collect();
    let mut want = base.clone();
    // Config order; b3 is 32 x 8 per column, b2 16 x 8.
    want.push(("exits.b3.weight".into(), vec![37, 256]));
    want.push(("exits.b3.bias".into(), vec![37]));
    want.push(("exits.b2.weight".into(), vec![37, 128]));
    want.push(("exits.b2.bias".into(), vec![37]));
    assert_eq!(got, want);
    let names_mut: Vec<String> = model.params_mut().into_iter().map(|(n, _)| n).collect();
    let names: Vec<String> = want.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names_mut, names);
    assert_eq!(
        model.num_parameters(),
        plain.num_parameters() + 37 * 256 + 37 + 37 * 128 + 37
    );
    let state: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(state.len(), plain.state_dict().len() + 4);
    assert_eq!(state[state.len() - 5], "head.bias");
    assert_eq!(&state[state.len() - 4..], &names[names.len() - 4..]);

    // The exits are drawn last: every other initial value is as without them.
    for ((n0, p0), (n1, p1)) in plain.params().into_iter().zip(model.params()) {
        assert_eq!(n0, n1);
        assert_eq!(p0.tensor().data(), p1.tensor().data(), "{n0}");
    }
    // PyTorch's default init of the exit classifiers: uniform in ±1/sqrt(in).
    let (_, b2) = &model.exits[1];
    let bound = 1.0 / (128f32).sqrt();
    assert!(b2.weight.tensor().data().iter().all(|v| v.abs() <= bound));
    assert!(b2
        .bias
        .as_ref()
        .unwrap()
        .tensor()
        .data()
        .iter()
        .all(|v| v.abs() <= bound));
}

/// The state dict of `model` without the `exits.*` tensors.
fn without_exit_tensors(model: &Crnn) -> Vec<(String, Tensor)> {
    model
        .state_dict()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("exits."))
        .collect()
}

#[test]
fn exits_do_not_change_the_final_logits() {
    let mut rng = Rng::seed(5);
    let mut config = with_exits("crnn-s", &["b2", "b3"]);
    config.dropout = 0.2;
    let mut model = Crnn::new(config, &mut rng).unwrap();
    let mut plain_config = CrnnConfig::preset("crnn-s").unwrap();
    plain_config.dropout = 0.2;
    let mut plain = Crnn::new(plain_config, &mut Rng::seed(99)).unwrap();
    // Move the running statistics away from their initial values first.
    let x = random_images(3, 32, 96, &mut rng);
    let widths = [96, 80, 41];
    model
        .forward(&mut Tape::no_grad(), &x, &widths, true, &mut Rng::seed(1))
        .unwrap();
    plain
        .load_state_dict(&without_exit_tensors(&model))
        .unwrap();

    for training in [false, true] {
        let a = model
            .forward(&mut Tape::new(), &x, &widths, training, &mut Rng::seed(7))
            .unwrap();
        let b = plain
            .forward(&mut Tape::new(), &x, &widths, training, &mut Rng::seed(7))
            .unwrap();
        assert_eq!(a.logits.data(), b.logits.data(), "training = {training}");
        assert_eq!(a.lengths, b.lengths);
        assert_eq!(
            a.features.keys().collect::<Vec<_>>(),
            b.features.keys().collect::<Vec<_>>()
        );
        assert!(b.exits.is_empty());
        assert_eq!(a.exits.keys().collect::<Vec<_>>(), ["b2", "b3"]);
        for logits in a.exits.values() {
            assert_eq!(logits.dims(), [24, 3, 37]);
        }
    }
}

#[test]
fn an_exit_reads_its_block_columns_through_a_linear_map() {
    let mut rng = Rng::seed(6);
    let mut model = Crnn::new(tiny_config(), &mut rng).unwrap();
    let x = random_images(2, 8, 12, &mut rng);
    let out = model
        .forward(&mut Tape::no_grad(), &x, &[12, 9], false, &mut rng)
        .unwrap();
    assert_eq!(out.lengths, [6, 4]);
    for (name, head) in &model.exits {
        let f = &out.features[name];
        let (n, c, h, t) = (f.dims()[0], f.dims()[1], f.dims()[2], f.dims()[3]);
        let logits = &out.exits[name];
        assert_eq!(logits.dims(), [t, n, 5], "{name}");
        assert_eq!(
            t,
            out.logits.dims()[0],
            "{name}: frames align with the head"
        );
        let w = head.weight.tensor().data();
        let b = head.bias.as_ref().unwrap().tensor().data();
        for ti in 0..t {
            for ni in 0..n {
                for k in 0..5 {
                    let mut want = b[k] as f64;
                    for ci in 0..c {
                        for hi in 0..h {
                            let v = f.data()[((ni * c + ci) * h + hi) * t + ti] as f64;
                            want += w[k * c * h + ci * h + hi] as f64 * v;
                        }
                    }
                    let got = logits.data()[(ti * n + ni) * 5 + k] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{name} [{ti}, {ni}, {k}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn forward_to_exit_stops_early_with_the_same_logits() {
    let mut rng = Rng::seed(8);
    let mut model = Crnn::new(with_exits("crnn-t", &["b2", "b3"]), &mut rng).unwrap();
    let x = random_images(2, 32, 64, &mut rng);
    let widths = [64, 37];
    let full = model
        .forward(&mut Tape::no_grad(), &x, &widths, false, &mut rng)
        .unwrap();
    for (exit, blocks) in [("b2", vec!["b1", "b2"]), ("b3", vec!["b1", "b2", "b3"])] {
        let early = model
            .forward_to_exit(&mut Tape::no_grad(), &x, &widths, exit, false, &mut rng)
            .unwrap();
        assert_eq!(early.logits.data(), full.exits[exit].data(), "{exit}");
        assert_eq!(early.logits.dims(), [16, 2, 37]);
        assert_eq!(early.lengths, full.lengths);
        assert_eq!(early.features.keys().collect::<Vec<_>>(), blocks);
        assert_eq!(early.exits.keys().collect::<Vec<_>>(), [exit]);
        assert_eq!(early.features[exit].data(), full.features[exit].data());
    }
    let err = model
        .forward_to_exit(&mut Tape::no_grad(), &x, &widths, "b4", false, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`b4`") && err.contains("b2, b3"), "{err}");
    let mut plain = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut rng).unwrap();
    let err = plain
        .forward_to_exit(&mut Tape::no_grad(), &x, &widths, "b2", false, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no exits"), "{err}");
    // The input checks are forward's.
    assert!(model
        .forward_to_exit(&mut Tape::no_grad(), &x, &[64], "b2", false, &mut rng)
        .is_err());
    assert!(model
        .forward_to_exit(&mut Tape::no_grad(), &x, &[64, 65], "b2", false, &mut rng)
        .is_err());
}

/// The CTC loss of `logits` (T, N, K) for fixed targets.
fn ctc(tape: &mut Tape, logits: &Tensor, lengths: &[usize]) -> Tensor {
    let lp = ops::log_softmax(tape, logits, 1.0).unwrap();
    let targets: Vec<Vec<usize>> = (0..lengths.len()).map(|i| vec![1 + i % 4, 2]).collect();
    ctc_loss(tape, &lp, &targets, lengths, CtcOptions::default()).unwrap()
}

#[test]
fn gradients_of_an_exit_loss_reach_its_head_and_the_blocks_before_it() {
    let mut rng = Rng::seed(10);
    let mut model = Crnn::new(tiny_config(), &mut rng).unwrap();
    let x = random_images(2, 8, 12, &mut rng);
    let mut tape = Tape::new();
    let out = model
        .forward(&mut tape, &x, &[12, 10], true, &mut rng)
        .unwrap();
    let loss = ctc(&mut tape, &out.exits["b2"], &out.lengths);
    assert!(loss.item().unwrap().is_finite());
    let grads = tape.backward(&loss).unwrap();
    for (name, p) in model.params() {
        let reaches = name.starts_with("cnn.b1.")
            || name.starts_with("cnn.b2.")
            || name.starts_with("exits.b2.");
        match p.grad(&grads) {
            Some(g) if reaches => {
                assert_eq!(g.dims(), p.dims(), "{name}");
                assert!(
                    g.data().iter().any(|&v| v != 0.0),
                    "{name}: all-zero gradient"
                );
                assert!(g.data().iter().all(|v| v.is_finite()), "{name}");
            }
            None if reaches => panic!("{name} got no gradient"),
            Some(g) => assert!(g.data().iter().all(|&v| v == 0.0), "{name} should get none"),
            None => {}
        }
    }
    // A joint loss over the head and both exits reaches everything.
    let mut tape = Tape::new();
    let out = model
        .forward(&mut tape, &x, &[12, 10], true, &mut rng)
        .unwrap();
    let mut total = ctc(&mut tape, &out.logits, &out.lengths);
    for logits in out.exits.values() {
        let l = ctc(&mut tape, logits, &out.lengths);
        total = ops::add(&mut tape, &total, &l).unwrap();
    }
    let grads = tape.backward(&total).unwrap();
    for (name, p) in model.params() {
        assert!(p.grad(&grads).is_some(), "{name} got no gradient");
    }
}

#[test]
fn exit_head_gradients_match_finite_differences() {
    let mut rng = Rng::seed(12);
    let model = Crnn::new(tiny_config(), &mut rng).unwrap();
    let x = random_images(2, 8, 12, &mut rng);
    let widths = [12, 8];
    // Evaluation mode: BatchNorm uses its running statistics, so the loss is
    // a fixed function of the weights.
    let loss_of = |m: &Crnn, tape: &mut Tape, exit: &str| -> Tensor {
        let mut m = m.clone();
        let out = m
            .forward_to_exit(tape, &x, &widths, exit, false, &mut Rng::seed(0))
            .unwrap();
        ctc(tape, &out.logits, &out.lengths)
    };
    let tol = Tol::default();
    for exit in ["b1", "b2"] {
        let mut tape = Tape::new();
        let loss = loss_of(&model, &mut tape, exit);
        let grads = tape.backward(&loss).unwrap();
        let prefix = format!("exits.{exit}.");
        for (pi, (name, param)) in model.params().into_iter().enumerate() {
            if !name.starts_with(&prefix) {
                continue;
            }
            let analytic = param.grad(&grads).expect("a gradient").to_vec();
            let stride = analytic.len().div_ceil(tol.max_checks).max(1);
            for j in (0..analytic.len()).step_by(stride) {
                let eval = |delta: f32| -> f64 {
                    let mut moved = model.clone();
                    moved.params_mut()[pi].1.values_mut()[j] += delta;
                    loss_of(&moved, &mut Tape::no_grad(), exit).item().unwrap() as f64
                };
                let numeric = (eval(tol.step as f32) - eval(-tol.step as f32)) / (2.0 * tol.step);
                let a = analytic[j] as f64;
                let bound = tol.atol + tol.rtol * a.abs().max(numeric.abs());
                assert!(
                    (a - numeric).abs() <= bound,
                    "{name}[{j}]: analytic {a:.6} vs numeric {numeric:.6}"
                );
            }
        }
    }
}

#[test]
fn state_dicts_and_checkpoints_keep_the_exits() {
    let mut rng = Rng::seed(14);
    let model = Crnn::new(with_exits("crnn-s", &["b2", "b3"]), &mut rng).unwrap();
    let dir = temp_dir("checkpoint");
    checkpoint::save(&dir, &model, &checkpoint::default_charset()).unwrap();
    let json = std::fs::read_to_string(dir.join(checkpoint::CONFIG_FILE)).unwrap();
    assert!(json.contains("\"exits\""), "{json}");
    let loaded = checkpoint::load(&dir).unwrap();
    assert_eq!(loaded.model.config, model.config);
    let (a, b) = (model.state_dict(), loaded.model.state_dict());
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(ta.data(), tb.data(), "{na}");
    }
    let _ = std::fs::remove_dir_all(&dir);

    // Loading is all or nothing, and the error names the exit tensors.
    let mut other = Crnn::new(with_exits("crnn-s", &["b2", "b3"]), &mut Rng::seed(15)).unwrap();
    let before = other.state_dict();
    let err = other
        .load_state_dict(&without_exit_tensors(&model))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing tensors")
            && err.contains("exits.b2.weight")
            && err.contains("exits.b3.bias"),
        "{err}"
    );
    let mut wrong = model.state_dict();
    let at = wrong
        .iter()
        .position(|(n, _)| n == "exits.b3.weight")
        .unwrap();
    wrong[at].1 = Tensor::zeros(&[37, 255]).unwrap();
    let err = other.load_state_dict(&wrong).unwrap_err().to_string();
    assert!(err.contains("exits.b3.weight is [37, 255]"), "{err}");
    for ((n, t0), (_, t1)) in before.iter().zip(other.state_dict()) {
        assert_eq!(t0.data(), t1.data(), "{n} changed by a failed load");
    }
    let mut plain = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut Rng::seed(16)).unwrap();
    let err = plain
        .load_state_dict(&model.state_dict())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected tensors") && err.contains("exits.b2.bias"),
        "{err}"
    );

    // A model without exits writes no `exits` key.
    let dir = temp_dir("plain");
    checkpoint::save(&dir, &plain, &checkpoint::default_charset()).unwrap();
    let json = std::fs::read_to_string(dir.join(checkpoint::CONFIG_FILE)).unwrap();
    assert!(!json.contains("exits"), "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recognition_and_evaluation_at_an_exit() {
    let dir = temp_dir("eval");
    let mut rng = Rng::seed(17);
    let mut samples = Vec::new();
    let charset = Charset::default_alnum();
    for (i, label) in ["ab", "7", "xyz", "q0"].iter().enumerate() {
        let w = 40 + 13 * i;
        let mut img = GrayImage::filled(w, 32, 255);
        for y in 8..24 {
            for x in 4..w - 4 {
                if (x / 3 + y / 5 + i) % 3 == 0 {
                    img.set(x, y, (rng.range(0.0, 120.0)) as u8);
                }
            }
        }
        let path = dir.join(format!("{i}.png"));
        write_png(&path, &img).unwrap();
        samples.push(Sample {
            path,
            label: label.to_string(),
            target: charset.encode(label).unwrap(),
        });
    }
    let loader = Loader::new(
        samples,
        LoaderConfig {
            batch_size: 3,
            shuffle: false,
            workers: 0,
            ..LoaderConfig::default()
        },
    )
    .unwrap();
    let mut model = Crnn::new(with_exits("crnn-s", &["b2"]), &mut Rng::seed(18)).unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    let at_exit = recognize_batch_at(&mut model, &batch, &charset, 1, Some("b2")).unwrap();
    let out = model
        .forward(
            &mut Tape::no_grad(),
            &batch.images,
            &batch.widths,
            false,
            &mut rng,
        )
        .unwrap();
    let want = greedy(&out.exits["b2"], &out.lengths).unwrap();
    assert_eq!(at_exit.len(), 3);
    for (r, d) in at_exit.iter().zip(&want) {
        assert_eq!(r.text, charset.decode(&d.classes));
        assert_eq!(r.confidence, d.confidence);
    }
    assert_eq!(
        recognize_batch_at(&mut model, &batch, &charset, 3, None).unwrap(),
        recognize_batch(&mut model, &batch, &charset, 3).unwrap()
    );

    let head = evaluate(&mut model, &charset, &loader, 1, 10).unwrap();
    let none = evaluate_at(&mut model, &charset, &loader, 1, 10, None).unwrap();
    assert_eq!(head.metrics.n, 4);
    assert_eq!(none.worst, head.worst);
    let exit = evaluate_at(&mut model, &charset, &loader, 1, 10, Some("b2")).unwrap();
    assert_eq!(exit.metrics.n, 4);
    assert!(exit.images_per_s > 0.0);
    let first: Vec<String> = at_exit.iter().map(|r| r.text.clone()).collect();
    for m in &exit.worst {
        let i: usize = m
            .path
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        if i < 3 {
            assert_eq!(m.predicted, first[i]);
        }
    }
    let err = evaluate_at(&mut model, &charset, &loader, 1, 10, Some("b3"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`b3`") && err.contains("b2"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
