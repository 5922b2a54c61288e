//! One training step: it lowers the loss, and a non-finite loss skips the
//! update without touching the weights.

use retort::data::batch::Batch;
use retort::nn::{Crnn, CrnnConfig};
use retort::optim::{Optimizer, OptimizerConfig};
use retort::train::train_step;
use retort::{Rng, Tensor};
use std::path::PathBuf;

fn batch(rng: &mut Rng) -> Batch {
    let (n, w) = (4, 64);
    let images: Vec<f32> = (0..n * 32 * w).map(|_| rng.range(-1.0, 1.0)).collect();
    Batch {
        images: Tensor::from_vec(images, &[n, 1, 32, w]).unwrap(),
        widths: vec![w; n],
        targets: vec![vec![1, 2, 3], vec![4, 5], vec![6], vec![7, 7, 8]],
        labels: vec!["012".into(), "34".into(), "5".into(), "667".into()],
        paths: vec![PathBuf::new(); n],
    }
}

/// Every parameter and running statistic, as bits.
fn state(model: &Crnn) -> Vec<Vec<u32>> {
    model
        .state_dict()
        .iter()
        .map(|(_, t)| t.data().iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn steps_lower_the_loss_on_a_fixed_batch() {
    let mut rng = Rng::seed(3);
    let mut model = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut rng).unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::adam()).unwrap();
    let b = batch(&mut rng);
    let first = train_step(&mut model, &mut opt, &b, 3e-3, Some(5.0), &mut rng).unwrap();
    let mut last = first;
    for _ in 0..30 {
        last = train_step(&mut model, &mut opt, &b, 3e-3, Some(5.0), &mut rng).unwrap();
    }
    assert!(!first.skipped && !last.skipped);
    assert!(last.loss < first.loss, "{} -> {}", first.loss, last.loss);
}

#[test]
fn a_non_finite_loss_skips_the_update() {
    let mut rng = Rng::seed(4);
    let mut model = Crnn::new(CrnnConfig::preset("crnn-s").unwrap(), &mut rng).unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::adam()).unwrap();
    let mut b = batch(&mut rng);
    let mut poisoned = b.images.to_vec();
    poisoned[0] = f32::NAN;
    b.images = Tensor::from_vec(poisoned, b.images.dims()).unwrap();
    let before = state(&model);
    let stats = train_step(&mut model, &mut opt, &b, 1e-3, Some(5.0), &mut rng).unwrap();
    assert!(stats.skipped, "loss {} was not skipped", stats.loss);
    assert_eq!(opt.steps_taken(), 0);
    // Neither the weights nor BatchNorm's running statistics keep a trace of it.
    assert_eq!(before, state(&model));
}
