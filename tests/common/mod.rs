//! Shared test helpers: the finite-difference gradient check and proptest
//! strategies for tensors.
#![allow(dead_code)]

use proptest::prelude::*;
use retort::{ops, Rng, Tape, Tensor};

/// Tolerances of a gradient check: |analytic - numeric| <= atol + rtol * max(|a|, |n|).
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    /// Finite-difference step.
    pub step: f64,
    pub atol: f64,
    pub rtol: f64,
    /// Most elements checked per input (a deterministic sample beyond that).
    pub max_checks: usize,
}

impl Default for Tol {
    fn default() -> Self {
        Tol {
            step: 1e-2,
            atol: 2e-3,
            rtol: 2e-2,
            max_checks: 48,
        }
    }
}

/// `Σ r·y` in f64 for fixed random weights `r`: a scalar whose gradient
/// exercises every output element with a different weight.
fn projection(y: &Tensor, weights: &[f32]) -> f64 {
    y.data()
        .iter()
        .zip(weights)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

fn projection_weights(n: usize) -> Vec<f32> {
    let mut rng = Rng::seed(0x5EED ^ n as u64);
    (0..n).map(|_| rng.range(-1.0, 1.0)).collect()
}

/// Checks the analytic gradients of `f` at `inputs` against central
/// differences of the f64-accumulated projection `Σ r·f(inputs)`. Returns a
/// readable message for the first disagreement.
pub fn check_gradients<F>(inputs: &[Tensor], f: F, tol: Tol) -> Result<(), String>
where
    F: Fn(&mut Tape, &[Tensor]) -> retort::Result<Tensor>,
{
    let tracked: Vec<Tensor> = inputs.iter().map(|t| t.detach().tracked()).collect();
    let mut tape = Tape::new();
    let y = f(&mut tape, &tracked).map_err(|e| format!("forward failed: {e}"))?;
    let weights = projection_weights(y.numel());
    let r = Tensor::from_vec(weights.clone(), y.dims()).map_err(|e| e.to_string())?;
    let weighted = ops::mul(&mut tape, &y, &r).map_err(|e| e.to_string())?;
    let loss = ops::sum_all(&mut tape, &weighted).map_err(|e| e.to_string())?;
    if !loss.is_tracked() {
        return Err("output does not depend on the inputs".into());
    }
    let grads = tape
        .backward(&loss)
        .map_err(|e| format!("backward failed: {e}"))?;

    for (i, x) in tracked.iter().enumerate() {
        let analytic = match grads.get(x) {
            Some(g) => {
                if g.dims() != x.dims() {
                    return Err(format!(
                        "gradient of input {i} has shape {:?}, input has {:?}",
                        g.dims(),
                        x.dims()
                    ));
                }
                g.to_vec()
            }
            None => vec![0.0; x.numel()],
        };
        let n = x.numel();
        let stride = n.div_ceil(tol.max_checks).max(1);
        for j in (0..n).step_by(stride) {
            let eval = |delta: f64| -> Result<f64, String> {
                let mut values = inputs.to_vec();
                let mut v = values[i].to_vec();
                v[j] = (v[j] as f64 + delta) as f32;
                values[i] = Tensor::from_vec(v, x.dims()).map_err(|e| e.to_string())?;
                let mut nt = Tape::no_grad();
                let y = f(&mut nt, &values).map_err(|e| e.to_string())?;
                Ok(projection(&y, &weights))
            };
            let numeric = (eval(tol.step)? - eval(-tol.step)?) / (2.0 * tol.step);
            let a = analytic[j] as f64;
            let bound = tol.atol + tol.rtol * a.abs().max(numeric.abs());
            // Written as a negation so that a NaN on either side fails.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            let disagrees = !((a - numeric).abs() <= bound);
            if disagrees {
                return Err(format!(
                    "input {i} {:?}, element {j}: analytic {a:.6} vs numeric {numeric:.6}",
                    x.dims()
                ));
            }
        }
    }
    Ok(())
}

/// A tensor of the given dimensions with values drawn uniformly from [lo, hi).
pub fn tensor_in(dims: Vec<usize>, lo: f32, hi: f32) -> impl Strategy<Value = Tensor> {
    let n: usize = dims.iter().product();
    proptest::collection::vec(lo..hi, n)
        .prop_map(move |v| Tensor::from_vec(v, &dims).expect("strategy dims"))
}

/// A tensor of the given dimensions with values in [-2, 2).
pub fn tensor(dims: Vec<usize>) -> impl Strategy<Value = Tensor> {
    tensor_in(dims, -2.0, 2.0)
}

/// Values whose absolute value is at least `gap`, for functions with a kink at zero.
pub fn away_from_zero(dims: Vec<usize>, gap: f32) -> impl Strategy<Value = Tensor> {
    tensor(dims).prop_map(move |t| {
        let v = t
            .data()
            .iter()
            .map(|&x| {
                if x.abs() < gap {
                    x.signum() * gap + x
                } else {
                    x
                }
            })
            .collect();
        Tensor::from_vec(v, t.dims()).expect("same dims")
    })
}

/// Dimensions of rank 1 to 4, each size in 1..=max.
pub fn dims(max: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1..=max, 1..=4)
}

/// Proptest configuration for gradient checks: few cases, so the suite stays quick.
pub fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        ..ProptestConfig::default()
    }
}
