//! Helpers of the CUDA tests: the shared GPU (or a printed reason to skip),
//! random values, and the comparison of GPU results with the CPU's.
#![allow(dead_code)]

use retort::cuda::CudaDevice;
use retort::tensor::Device;
use retort::{Rng, Tensor};
use std::sync::Arc;

/// The shared GPU, or `None` after printing why `test` is skipped; with
/// `RETORT_REQUIRE_GPU=1` a missing GPU is a failure instead.
pub fn gpu(test: &str) -> Option<Arc<CudaDevice>> {
    match CudaDevice::get(0) {
        Ok(dev) => Some(dev),
        Err(e) if std::env::var("RETORT_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("RETORT_REQUIRE_GPU=1 but no GPU: {e}")
        }
        Err(e) => {
            eprintln!("skipped {test}: {e}");
            None
        }
    }
}

/// `n` values drawn uniformly from `lo..hi`.
pub fn values(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.range(lo, hi)).collect()
}

/// Asserts that `gpu` matches `cpu` value by value to `rtol` (relative to
/// the value, floored at the reference's root mean square); NaNs and
/// infinities must sit at the same places.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], rtol: f32) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    let finite: Vec<f64> = cpu
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| v as f64)
        .collect();
    let rms =
        (finite.iter().map(|v| v * v).sum::<f64>() / finite.len().max(1) as f64).sqrt() as f32;
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let ok = if c.is_nan() || g.is_nan() {
            c.is_nan() && g.is_nan()
        } else if c.is_infinite() || g.is_infinite() {
            c == g
        } else {
            (g - c).abs() <= rtol * (c.abs() + rms)
        };
        assert!(
            ok,
            "{what}: value {i}: gpu {g} vs cpu {c} (rtol {rtol}, rms {rms})"
        );
    }
}

/// One input of an op: its values, its dimensions, and whether it is a
/// tracked leaf.
pub struct Input {
    pub values: Vec<f32>,
    pub dims: Vec<usize>,
    pub tracked: bool,
}

impl Input {
    /// The input as a tensor on `device` (tracked when it should be).
    pub fn on(&self, device: Device) -> Tensor {
        let t = Tensor::from_vec(self.values.clone(), &self.dims)
            .unwrap()
            .to_device(device)
            .unwrap();
        if self.tracked {
            t.tracked()
        } else {
            t
        }
    }
}
