//! CTC (connectionist temporal classification) on the CPU: the log-space
//! forward (alpha) and backward (beta) recursions of one sample, its loss and
//! the derivative of the loss with respect to its log-probabilities.
//!
//! Everything here works in f64 on f32 inputs. A sample is one column `n` of a
//! (T, N, C) buffer of log-probabilities; samples are independent, so the
//! caller may run them in parallel and the result does not depend on the
//! thread count.
//!
//! Notation: `S` is the target length, `l'` the blank-extended label
//! `[b, l1, b, l2, …, lS, b]` of length `L = 2S + 1`, `y_t(c) = exp(lp[t, c])`.
//! `α_t(s)` is the log-probability of all alignment prefixes of frames `0..=t`
//! that end in state `s`, `β_t(s)` the log-probability of all suffixes of
//! frames `t..len` that start in state `s`; both include the emission at `t`.

use crate::error::{Error, Result};

const NEG_INF: f64 = f64::NEG_INFINITY;

/// `ln(e^a + e^b)`, exact for the edge cases of log space:
/// `-inf` is probability 0 and leaves the other term unchanged (so two `-inf`
/// give `-inf`, never `NaN`), `+inf` absorbs everything, and `NaN` propagates.
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    // Probability 0 on either side: the sum is the other term. This is the
    // case `-inf - -inf = NaN` below would get wrong.
    if a == NEG_INF {
        return b;
    }
    if b == NEG_INF {
        return a;
    }
    // NaN in, NaN out (comparisons with NaN are false, so handle it first).
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    // `+inf` absorbs the other (finite or `+inf`) term; `inf - inf` would be NaN.
    if hi == f64::INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// The blank-extended label `[blank, l1, blank, l2, …, lS, blank]` (length `2S + 1`).
pub fn extended_labels(target: &[usize], blank: usize) -> Vec<usize> {
    let mut ext = Vec::with_capacity(2 * target.len() + 1);
    ext.push(blank);
    for &l in target {
        ext.push(l);
        ext.push(blank);
    }
    ext
}

/// The fewest frames that can emit `target`: one per label plus one blank
/// between each pair of equal neighbours (`[1, 1]` needs `1, b, 1`).
pub fn min_input_length(target: &[usize]) -> usize {
    let repeats = target.windows(2).filter(|w| w[0] == w[1]).count();
    target.len() + repeats
}

/// Whether state `s` of the extended label may be entered from `s - 2`
/// (skipping a blank): only a label state whose label differs from the label
/// two states back. A blank never skips (`ext[s - 2]` is then a blank too).
fn can_skip(ext: &[usize], s: usize) -> bool {
    s >= 2 && ext[s] != ext[s - 2]
}

/// The log-probabilities of one sample inside a (T, N, C) buffer: frames
/// `0..len` of column `index`.
#[derive(Clone, Copy, Debug)]
pub struct SampleLogProbs<'a> {
    data: &'a [f32],
    batch: usize,
    index: usize,
    classes: usize,
    len: usize,
}

impl<'a> SampleLogProbs<'a> {
    /// A view of sample `index` of a (T, N, C) buffer `data` (`dims = [T, N, C]`)
    /// over its first `len` frames. Checks that the view lies inside the buffer.
    pub fn new(data: &'a [f32], dims: [usize; 3], index: usize, len: usize) -> Result<Self> {
        let [t, batch, classes] = dims;
        if data.len() != t * batch * classes {
            return Err(Error::shape(
                "ctc",
                format!("{} values do not fill (T, N, C) = {dims:?}", data.len()),
            ));
        }
        if index >= batch || len > t {
            return Err(Error::invalid(
                "ctc",
                format!("sample {index} with {len} frames is outside (T, N, C) = {dims:?}"),
            ));
        }
        Ok(SampleLogProbs {
            data,
            batch,
            index,
            classes,
            len,
        })
    }

    /// Number of frames of this sample (its input length).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the sample has no frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of classes `C`.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// `lp[t, c]` in f64; `t < len`, `c < C`.
    #[inline]
    fn at(&self, t: usize, c: usize) -> f64 {
        self.data[(t * self.batch + self.index) * self.classes + c] as f64
    }
}

/// Loss and gradient of one sample.
#[derive(Clone, Debug)]
pub struct CtcSample {
    /// `-ln p(target | input)`; `+inf` when no alignment has non-zero
    /// probability (input too short for the target, or log-probabilities of `-inf`).
    pub loss: f64,
    /// When asked for: `∂loss/∂lp[t, c]`, row-major (len, C). All zeros when the
    /// loss is infinite (the derivative does not exist there).
    pub grad: Option<Vec<f64>>,
}

/// The alpha table (len × L, row-major) and the loss of one sample.
/// `len = 0` gives an empty table and a loss of 0 for an empty target
/// (the empty alignment), `+inf` otherwise.
pub fn alpha(lp: &SampleLogProbs<'_>, ext: &[usize]) -> (Vec<f64>, f64) {
    let (len, states) = (lp.len(), ext.len());
    let mut alpha = vec![NEG_INF; len * states];
    if len == 0 {
        let loss = if states == 1 { 0.0 } else { f64::INFINITY };
        return (alpha, loss);
    }
    // t = 0: a path starts in the leading blank or in the first label; every
    // other state is unreachable (-inf, as initialised).
    alpha[0] = lp.at(0, ext[0]);
    if states > 1 {
        alpha[1] = lp.at(0, ext[1]);
    }
    for t in 1..len {
        let (prev, cur) = alpha[(t - 1) * states..(t + 1) * states].split_at_mut(states);
        for s in 0..states {
            // Stay in s, advance from s - 1, or skip a blank from s - 2. Missing
            // predecessors contribute probability 0 (-inf): log_add_exp keeps
            // -inf + -inf at -inf, so states no path reaches yet stay -inf.
            let mut acc = prev[s];
            if s >= 1 {
                acc = log_add_exp(acc, prev[s - 1]);
            }
            if can_skip(ext, s) {
                acc = log_add_exp(acc, prev[s - 2]);
            }
            // An unreachable state stays -inf whatever the emission (a finite
            // emission added to -inf is -inf); skip the add to keep it exact.
            cur[s] = if acc == NEG_INF {
                NEG_INF
            } else {
                acc + lp.at(t, ext[s])
            };
        }
    }
    // A complete path ends in the last label or the trailing blank. With an
    // input too short for the target both are -inf, and the loss is +inf.
    let last = &alpha[(len - 1) * states..];
    let mut log_p = last[states - 1];
    if states >= 2 {
        log_p = log_add_exp(log_p, last[states - 2]);
    }
    (alpha, -log_p)
}

/// The beta table (len × L, row-major) of one sample: the mirror of [`alpha`].
pub fn beta(lp: &SampleLogProbs<'_>, ext: &[usize]) -> Vec<f64> {
    let (len, states) = (lp.len(), ext.len());
    let mut beta = vec![NEG_INF; len * states];
    if len == 0 {
        return beta;
    }
    // t = len - 1: a suffix of one frame must be the trailing blank or the
    // last label; every other state cannot finish in time (-inf).
    let base = (len - 1) * states;
    beta[base + states - 1] = lp.at(len - 1, ext[states - 1]);
    if states >= 2 {
        beta[base + states - 2] = lp.at(len - 1, ext[states - 2]);
    }
    for t in (0..len - 1).rev() {
        let (cur, next) = beta[t * states..(t + 2) * states].split_at_mut(states);
        for s in 0..states {
            // Stay in s, advance to s + 1, or skip a blank to s + 2; successors
            // past the end contribute probability 0 (-inf).
            let mut acc = next[s];
            if s + 1 < states {
                acc = log_add_exp(acc, next[s + 1]);
            }
            if s + 2 < states && can_skip(ext, s + 2) {
                acc = log_add_exp(acc, next[s + 2]);
            }
            cur[s] = if acc == NEG_INF {
                NEG_INF
            } else {
                acc + lp.at(t, ext[s])
            };
        }
    }
    beta
}

/// Loss, and when `want_grad` the gradient, of one sample whose labels are
/// `target` (classes in `0..C`, none equal to `blank`).
///
/// The gradient is the true derivative with respect to the log-probabilities,
/// `∂loss/∂lp[t, c] = -exp(ln Σ_{s: l'(s) = c} α_t(s) β_t(s) − lp[t, c] + loss)`
/// (α and β both include the emission at `t`, hence the division by
/// `y_t(c)`). Entries with `lp[t, c] = -inf` get 0, which is their true
/// derivative: `∂p/∂lp = y · ∂p/∂y` and `y = 0` there.
pub fn ctc_sample(
    lp: &SampleLogProbs<'_>,
    target: &[usize],
    blank: usize,
    want_grad: bool,
) -> Result<CtcSample> {
    let classes = lp.classes();
    if blank >= classes {
        return Err(Error::invalid(
            "ctc",
            format!("blank {blank} is not a class of {classes}"),
        ));
    }
    if let Some(&bad) = target.iter().find(|&&l| l >= classes || l == blank) {
        return Err(Error::invalid(
            "ctc",
            format!("target label {bad} is the blank or not a class of {classes}"),
        ));
    }
    let ext = extended_labels(target, blank);
    let (alpha, loss) = alpha(lp, &ext);
    if !want_grad {
        return Ok(CtcSample { loss, grad: None });
    }
    let (len, states) = (lp.len(), ext.len());
    let mut grad = vec![0.0; len * classes];
    if !loss.is_finite() {
        // No alignment (loss +inf) or NaN inputs: there is no derivative;
        // report zeros rather than NaN. The op layer documents this.
        return Ok(CtcSample {
            loss,
            grad: Some(grad),
        });
    }
    let beta = beta(lp, &ext);
    // Per frame: log Σ_{s: l'(s) = c} α_t(s) β_t(s) for each class c.
    let mut occupancy = vec![NEG_INF; classes];
    for t in 0..len {
        occupancy.fill(NEG_INF);
        let (a, b) = (
            &alpha[t * states..(t + 1) * states],
            &beta[t * states..(t + 1) * states],
        );
        for s in 0..states {
            // -inf + x is -inf for finite x; two -infs are -inf too (no NaN:
            // -inf + -inf = -inf in IEEE arithmetic).
            let ab = a[s] + b[s];
            occupancy[ext[s]] = log_add_exp(occupancy[ext[s]], ab);
        }
        let row = &mut grad[t * classes..(t + 1) * classes];
        for (c, g) in row.iter_mut().enumerate() {
            let l = lp.at(t, c);
            // No path emits c at t (occupancy -inf): derivative 0. lp = -inf:
            // derivative 0 (see above); the formula would give -inf - -inf = NaN.
            *g = if occupancy[c] == NEG_INF || l == NEG_INF {
                0.0
            } else {
                -(occupancy[c] - l + loss).exp()
            };
        }
    }
    Ok(CtcSample {
        loss,
        grad: Some(grad),
    })
}
