//! Domain alignment between a labelled source batch and an unlabelled target
//! batch: multi-kernel MMD (Long, Cao, Wang & Jordan, "Learning transferable
//! features with deep adaptation networks", ICML 2015, eq. (1)–(3)) and CORAL
//! (Sun & Saenko, "Deep CORAL: correlation alignment for deep domain
//! adaptation", ECCV 2016 workshops, eq. (1)–(2)).

use super::nonempty;
use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

/// Checks that `source` (b, d) and `target` (b', d) are non-empty matrices
/// of equal width; returns (b, b', d).
fn check_pair(op: &'static str, source: &Tensor, target: &Tensor) -> Result<(usize, usize, usize)> {
    match (source.dims(), target.dims()) {
        (&[b, d], &[b2, d2]) if d == d2 && d > 0 => {
            nonempty(op, source, b)?;
            nonempty(op, target, b2)?;
            Ok((b, b2, d))
        }
        _ => Err(Error::shape(
            op,
            format!(
                "source {:?} and target {:?} must be (b, d) and (b', d) with the same d > 0",
                source.shape(),
                target.shape()
            ),
        )),
    }
}

/// Pairwise squared distances of the rows of `x` (m, d): `‖x_i‖² + ‖x_j‖² − 2 x_i·x_j`, (m, m).
fn pairwise_sq_distances(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    let m = x.dims()[0];
    let sq = ops::square(tape, x)?;
    let norms = ops::sum(tape, &sq, &[1], true)?; // (m, 1)
    let norms_row = ops::reshape(tape, &norms, &[1, m])?;
    let xt = ops::permute(tape, x, &[1, 0])?;
    let gram = ops::matmul(tape, x, &xt)?;
    let gram2 = ops::scale(tape, &gram, -2.0)?;
    let d = ops::add(tape, &gram2, &norms)?;
    ops::add(tape, &d, &norms_row)
}

/// The mean squared distance between distinct rows of source and target
/// stacked together, computed without a tape (a plain number): the base
/// bandwidth of [`mk_mmd`]. 1 when every row is the same point (or a single row).
pub fn mean_pairwise_sq_distance(source: &Tensor, target: &Tensor) -> Result<f32> {
    check_pair("mean_pairwise_sq_distance", source, target)?;
    let d = source.dims()[1];
    let rows: Vec<&[f32]> = source
        .data()
        .chunks_exact(d)
        .chain(target.data().chunks_exact(d))
        .collect();
    let m = rows.len();
    let mut total = 0.0f64;
    for i in 0..m {
        for j in 0..m {
            if i != j {
                total += rows[i]
                    .iter()
                    .zip(rows[j])
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>();
            }
        }
    }
    let pairs = (m * m - m) as f64;
    let mean = if pairs > 0.0 { total / pairs } else { 0.0 };
    Ok(if mean > 0.0 && mean.is_finite() {
        mean as f32
    } else {
        1.0
    })
}

/// Multi-kernel MMD² (DAN, Long et al. 2015, eq. (1)–(3)) with `kernels`
/// Gaussian kernels `k_u(x, y) = exp(−‖x − y‖² / σ_u)` summed with equal
/// weights β_u = 1, at the bandwidths `σ_u = base · 2^(u − ⌊kernels/2⌋)`,
/// u = 0..kernels, centred on `base` as the deep-transfer-learning reference
/// code (kernel_mul = 2). `base` is the mean squared distance between distinct
/// points of the pooled batch ([`mean_pairwise_sq_distance`]), taken as a
/// constant (no gradient flows through it).
///
/// The estimator is the biased (V-statistic) quadratic form
/// `mean K(S,S) + mean K(T,T) − 2 mean K(S,T)`, which allows b ≠ b' (the paper's
/// linear-time estimator needs b = b' and is noisier). `source` is (b, d),
/// `target` (b', d); flatten features per sample first.
pub fn mk_mmd(tape: &mut Tape, source: &Tensor, target: &Tensor, kernels: usize) -> Result<Tensor> {
    let base = mean_pairwise_sq_distance(source, target)?;
    mk_mmd_with_bandwidth(tape, source, target, kernels, base)
}

/// [`mk_mmd`] with the base bandwidth given (positive and finite).
pub fn mk_mmd_with_bandwidth(
    tape: &mut Tape,
    source: &Tensor,
    target: &Tensor,
    kernels: usize,
    base: f32,
) -> Result<Tensor> {
    const OP: &str = "mk_mmd";
    let (b, b2, _) = check_pair(OP, source, target)?;
    if kernels == 0 {
        return Err(Error::invalid(OP, "needs at least one kernel"));
    }
    if !(base > 0.0 && base.is_finite()) {
        return Err(Error::invalid(
            OP,
            format!("base bandwidth must be positive and finite, got {base}"),
        ));
    }
    let pooled = ops::concat(tape, &[source, target], 0)?;
    let dist = pairwise_sq_distances(tape, &pooled)?;
    let mut kernel: Option<Tensor> = None;
    for u in 0..kernels {
        let sigma = base * 2f32.powi(u as i32 - (kernels / 2) as i32);
        let scaled = ops::scale(tape, &dist, -1.0 / sigma)?;
        let k = ops::exp(tape, &scaled)?;
        kernel = Some(match kernel {
            None => k,
            Some(acc) => ops::add(tape, &acc, &k)?,
        });
    }
    let kernel = kernel.expect("kernels > 0");
    let m = b + b2;
    let top = ops::slice(tape, &kernel, 0, 0, b)?;
    let bottom = ops::slice(tape, &kernel, 0, b, m)?;
    let k_ss = ops::slice(tape, &top, 1, 0, b)?;
    let k_st = ops::slice(tape, &top, 1, b, m)?;
    let k_tt = ops::slice(tape, &bottom, 1, b, m)?;
    let ss = ops::mean_all(tape, &k_ss)?;
    let tt = ops::mean_all(tape, &k_tt)?;
    let st = ops::mean_all(tape, &k_st)?;
    let st2 = ops::scale(tape, &st, -2.0)?;
    let sum = ops::add(tape, &ss, &tt)?;
    ops::add(tape, &sum, &st2)
}

/// The feature covariance of eq. (1), `C = (Xᵀ X − (1ᵀX)ᵀ(1ᵀX)/n) / (n − 1)`, written as
/// `(X − x̄)ᵀ(X − x̄) / (n − 1)`: (n, d) → (d, d).
fn covariance(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    let n = x.dims()[0];
    let mean = ops::mean(tape, x, &[0], true)?;
    let centred = ops::sub(tape, x, &mean)?;
    let ct = ops::permute(tape, &centred, &[1, 0])?;
    let c = ops::matmul(tape, &ct, &centred)?;
    ops::scale(tape, &c, 1.0 / (n - 1) as f32)
}

/// The CORAL loss (Sun & Saenko 2016, eq. (1)): `‖C_S − C_T‖²_F / (4d²)`,
/// with the covariances of eq. (2) (unbiased, divided by n − 1). `source` is
/// (b, d) and `target` (b', d); each needs at least two rows.
pub fn coral(tape: &mut Tape, source: &Tensor, target: &Tensor) -> Result<Tensor> {
    const OP: &str = "coral";
    let (b, b2, d) = check_pair(OP, source, target)?;
    if b < 2 || b2 < 2 {
        return Err(Error::invalid(
            OP,
            format!(
                "covariances need at least 2 rows, got source {:?} and target {:?}",
                source.shape(),
                target.shape()
            ),
        ));
    }
    let cs = covariance(tape, source)?;
    let ct = covariance(tape, target)?;
    let diff = ops::sub(tape, &cs, &ct)?;
    let sq = ops::square(tape, &diff)?;
    let total = ops::sum_all(tape, &sq)?;
    ops::scale(tape, &total, 1.0 / (4 * d * d) as f32)
}
