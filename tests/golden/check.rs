//! Comparison helpers shared by the golden tests (included with
//! `#[path = "golden/check.rs"] mod check;`). Hand-written, not generated.
#![allow(dead_code)]

use retort::Tensor;

/// Relative tolerance of every golden comparison: |a - b| <= TOL * max(1, |b|).
pub const TOL: f64 = 1e-4;

/// The multi-index of flat position `i` in a row-major array of `dims`.
fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for (k, &d) in dims.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = i % d;
            i /= d;
        }
    }
    idx
}

/// Compares `got` to the reference `want` (shape `dims`) element by element and
/// panics with the worst element (by error / allowed error) if any exceeds the
/// tolerance. Infinite or NaN references must be matched exactly.
pub fn assert_close_slice(what: &str, got: &[f32], want: &[f32], dims: &[usize]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, expected {} (shape {dims:?})",
        got.len(),
        want.len()
    );
    let mut worst: Option<(usize, f64)> = None;
    let mut failures = 0usize;
    let mut max_abs = 0.0f64;
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let (a, b) = (a as f64, b as f64);
        let ratio = if !b.is_finite() {
            let same = (b.is_nan() && a.is_nan()) || a == b;
            if same {
                0.0
            } else {
                f64::INFINITY
            }
        } else if !a.is_finite() {
            f64::INFINITY
        } else {
            let err = (a - b).abs();
            max_abs = max_abs.max(err);
            err / (TOL * b.abs().max(1.0))
        };
        if ratio > 1.0 {
            failures += 1;
        }
        if worst.is_none_or(|(_, w)| ratio > w) {
            worst = Some((i, ratio));
        }
    }
    if failures > 0 {
        let (i, ratio) = worst.unwrap();
        panic!(
            "{what}: {failures} of {} elements differ from PyTorch beyond {TOL:e} relative; \
             worst at flat {i}, index {:?} of shape {dims:?}: got {:e}, expected {:e} \
             (|diff| = {:e}, {ratio:.1}x the tolerance); largest finite |diff| = {max_abs:e}",
            want.len(),
            unravel(i, dims),
            got[i],
            want[i],
            (got[i] as f64 - want[i] as f64).abs(),
        );
    }
}

/// [`assert_close_slice`] for a tensor, also checking its dims.
pub fn assert_close(what: &str, got: &Tensor, want: &[f32], dims: &[usize]) {
    assert_eq!(got.dims(), dims, "{what}: shape");
    assert_close_slice(what, got.data(), want, dims);
}

/// A tensor from golden data.
pub fn tensor(data: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_vec(data.to_vec(), dims).expect("golden tensor")
}

/// A tracked leaf from golden data.
pub fn leaf(data: &[f32], dims: &[usize]) -> Tensor {
    tensor(data, dims).detach().tracked()
}
