//! CTC decoding: greedy (best path) and prefix beam search.
//!
//! Both take scores of shape `(T, N, K)`: `T` frames, `N` samples, `K`
//! classes with class 0 the CTC blank, and each sample's number of valid
//! frames (`lengths`, at most `T`; frames beyond are ignored). The scores may
//! be log-probabilities or raw logits: every frame is passed through
//! `log_softmax` first, which leaves log-probabilities unchanged.
//!
//! The [`Decoded::confidence`] of both is the same quantity, the CTC
//! probability of the decoded sequence (summed over all its alignments)
//! normalised per frame: `P(classes | x)^(1 / T_n)`, the geometric mean over
//! the sample's `T_n` frames, in `[0, 1]` (1 for a sample of no frames).

use crate::cpu::fastmath;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::collections::HashMap;

/// The decoding of one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The recognised classes, blanks removed (each in `1..K`).
    pub classes: Vec<usize>,
    /// `P(classes | x)^(1 / T_n)`: the CTC probability of `classes` over all
    /// alignments, as a geometric mean per frame; in `[0, 1]`.
    pub confidence: f32,
}

const NEG_INF: f64 = f64::NEG_INFINITY;

fn lse(a: f64, b: f64) -> f64 {
    if a == NEG_INF {
        return b;
    }
    if b == NEG_INF {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// Checks the inputs; returns `(T, N, K)`.
fn check(op: &'static str, scores: &Tensor, lengths: &[usize]) -> Result<(usize, usize, usize)> {
    scores.expect_rank(op, "scores (T, N, K)", 3)?;
    let (t, n, k) = (scores.dims()[0], scores.dims()[1], scores.dims()[2]);
    if k == 0 {
        return Err(Error::shape(op, "scores have no classes (K = 0)"));
    }
    if lengths.len() != n {
        return Err(Error::shape(
            op,
            format!("{} lengths for {n} samples", lengths.len()),
        ));
    }
    if let Some((i, &l)) = lengths.iter().enumerate().find(|(_, &l)| l > t) {
        return Err(Error::invalid(
            op,
            format!("length {l} of sample {i} exceeds the {t} frames"),
        ));
    }
    Ok((t, n, k))
}

/// The log-softmax of the first `len` frames of sample `i`, in f64.
fn frames(
    op: &'static str,
    scores: &Tensor,
    (_, n, k): (usize, usize, usize),
    i: usize,
    len: usize,
) -> Result<Vec<Vec<f64>>> {
    let data = scores.data();
    (0..len)
        .map(|t| {
            let row = &data[(t * n + i) * k..(t * n + i + 1) * k];
            if row.iter().any(|v| v.is_nan() || *v == f32::INFINITY) {
                return Err(Error::invalid(
                    op,
                    format!("scores of sample {i}, frame {t} contain NaN or +inf"),
                ));
            }
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            if max == NEG_INF {
                return Err(Error::invalid(
                    op,
                    format!("scores of sample {i}, frame {t} are all -inf"),
                ));
            }
            let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            let lse = max + sum.ln();
            Ok(row.iter().map(|&v| v as f64 - lse).collect())
        })
        .collect()
}

/// The decoding `classes` with its confidence, from its exact log-probability `lp`.
fn decoded(frames: &[Vec<f64>], classes: Vec<usize>, lp: f64) -> Decoded {
    Decoded {
        classes,
        confidence: confidence(lp, frames.len()),
    }
}

/// `P^(1 / frames)` from `lp = log P`, in [0, 1]; 1 for no frames.
fn confidence(lp: f64, frames: usize) -> f32 {
    if frames == 0 {
        1.0
    } else {
        ((lp / frames as f64).exp() as f32).clamp(0.0, 1.0)
    }
}

/// The first index of the largest value (the lowest class on ties) and the
/// value; `(0, -inf)` when every value is -inf.
fn argmax(values: impl Iterator<Item = f64>) -> (usize, f64) {
    values.enumerate().fold(
        (0, NEG_INF),
        |(bi, bv), (i, v)| if v > bv { (i, v) } else { (bi, bv) },
    )
}

/// The best-path classes of one sample: argmax per frame (the lowest class
/// on ties), repeats collapsed, blanks dropped.
fn best_path(frames: &[Vec<f64>]) -> Vec<usize> {
    let mut classes = Vec::new();
    let mut prev = 0;
    for f in frames {
        let best = argmax(f.iter().copied()).0;
        if best != 0 && best != prev {
            classes.push(best);
        }
        prev = best;
    }
    classes
}

/// Greedy (best-path) CTC decoding: the most probable class of each frame,
/// repeats merged, blanks dropped (`a a` → `a`, `a - a` → `a a`).
///
/// `scores` is `(T, N, K)` log-probabilities or logits, class 0 the blank;
/// `lengths[i]` is the number of valid frames of sample `i`. Errors when
/// `scores` is not rank 3 or has no classes, when there is not one length
/// per sample, a length exceeds `T`, or a used frame holds NaN or +inf or
/// only -inf.
pub fn greedy(log_probs: &Tensor, lengths: &[usize]) -> Result<Vec<Decoded>> {
    const OP: &str = "decode::greedy";
    let dims = check(OP, log_probs, lengths)?;
    let one = |(i, &len): (usize, &usize)| greedy_sample(OP, log_probs, dims, i, len);
    // A single line (the embedded case) is not worth a trip through the pool.
    if lengths.len() == 1 {
        return lengths.iter().enumerate().map(one).collect();
    }
    lengths.par_iter().enumerate().map(one).collect()
}

/// Best-path decoding of sample `i`, straight from its raw scores: the
/// argmax of a frame is that of its log-softmax, and the confidence's CTC
/// forward recursion runs in probability space, rescaled at every frame
/// (the logs of the scales summed in f64), so that only the blank's and the
/// decoded classes' probabilities are needed.
fn greedy_sample(
    op: &'static str,
    scores: &Tensor,
    (_, n, k): (usize, usize, usize),
    i: usize,
    len: usize,
) -> Result<Decoded> {
    let data = scores.data();
    let row = |t: usize| &data[(t * n + i) * k..(t * n + i + 1) * k];
    // e^(score - max) of every class of every frame, and per frame the
    // reciprocal of their sum: the softmax, without a second pass of exps.
    let mut exps = vec![0.0f32; len * k];
    let mut inv_sums = Vec::with_capacity(len);
    let mut classes = Vec::new();
    let mut prev = 0;
    for t in 0..len {
        let r = row(t);
        if r.iter().any(|v| v.is_nan() || *v == f32::INFINITY) {
            return Err(Error::invalid(
                op,
                format!("scores of sample {i}, frame {t} contain NaN or +inf"),
            ));
        }
        let (best, max) = argmax_f32(r);
        if max == f32::NEG_INFINITY {
            return Err(Error::invalid(
                op,
                format!("scores of sample {i}, frame {t} are all -inf"),
            ));
        }
        let e = &mut exps[t * k..(t + 1) * k];
        // -inf scores have probability 0 (the fast exp clamps its input).
        fastmath::exp_shifted(r, max, e);
        inv_sums.push(1.0 / sum_in_lanes(e));
        if best != 0 && best != prev {
            classes.push(best);
        }
        prev = best;
    }
    let prob = |t: usize, c: usize| exps[t * k + c] as f64 * inv_sums[t];
    let lp = scaled_sequence_log_prob(len, &classes, prob);
    Ok(Decoded {
        confidence: confidence(lp, len),
        classes,
    })
}

/// The first largest of `values` (no NaN among them) and its index; (0,
/// -inf) when none is above -inf. The maximum is found in eight lanes, so
/// that no single chain of comparisons runs through a frame.
fn argmax_f32(values: &[f32]) -> (usize, f32) {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(rest) {
        *lane = if v > *lane { v } else { *lane };
    }
    let max = lanes
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let best = values.iter().position(|&v| v == max).unwrap_or(0);
    (best, values.get(best).copied().unwrap_or(f32::NEG_INFINITY))
}

/// The sum of `values` in four interleaved partial sums: short dependency
/// chains for a per-frame sum of a few dozen terms (a line's decoding was
/// bound by the latency of one chain).
fn sum_in_lanes<T: Copy + Into<f64>>(values: &[T]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let chunks = values.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..4 {
            lanes[l] += c[l].into();
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(rest) {
        *lane += v.into();
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// `log P(labels | frames)` by the CTC forward recursion over `len` frames,
/// in probability space with the states rescaled to sum 1 at each frame;
/// `prob(t, c)` is the probability of class `c` at frame `t`.
fn scaled_sequence_log_prob(
    len: usize,
    labels: &[usize],
    prob: impl Fn(usize, usize) -> f64,
) -> f64 {
    if len == 0 {
        return if labels.is_empty() { 0.0 } else { NEG_INF };
    }
    let s = 2 * labels.len() + 1;
    // The extended labels (blanks between and around), and whether state j
    // may be reached by skipping the blank before it.
    let ext: Vec<usize> = (0..s)
        .map(|j| {
            if j.is_multiple_of(2) {
                0
            } else {
                labels[j / 2]
            }
        })
        .collect();
    let skip: Vec<bool> = (0..s)
        .map(|j| j >= 2 && j % 2 == 1 && ext[j] != ext[j - 2])
        .collect();
    // Per frame, the probability of each state's class, then the recursion
    // on plain slices (short, branch-free inner loop).
    let mut probs = Vec::with_capacity(len * s);
    for t in 0..len {
        probs.extend(ext.iter().map(|&c| prob(t, c)));
    }
    let skips: Vec<f64> = skip.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
    let mut alpha = vec![0.0f64; s];
    alpha[0] = probs[0];
    if s > 1 {
        alpha[1] = probs[1];
    }
    let mut next = vec![0.0f64; s];
    let mut log_scale = 0.0;
    for (t, p) in probs.chunks_exact(s).enumerate() {
        if t > 0 {
            next[0] = alpha[0] * p[0];
            if s > 1 {
                next[1] = (alpha[1] + alpha[0]) * p[1];
            }
            for j in 2..s {
                // alpha (finite, >= 0) times 0 adds nothing where no skip.
                next[j] = (alpha[j] + alpha[j - 1] + skips[j] * alpha[j - 2]) * p[j];
            }
            std::mem::swap(&mut alpha, &mut next);
        }
        let total = sum_in_lanes(&alpha);
        if total == 0.0 {
            return NEG_INF;
        }
        log_scale += total.ln();
        let inv = 1.0 / total;
        alpha.iter_mut().for_each(|a| *a *= inv);
    }
    let end = if s > 1 {
        alpha[s - 1] + alpha[s - 2]
    } else {
        alpha[0]
    };
    log_scale + end.ln()
}

/// A beam entry: prefix, log-probability of the alignments ending in blank,
/// and of those ending in the prefix's last class.
type Entry = (Vec<usize>, f64, f64);

/// CTC prefix beam search of one sample (Hannun et al. 2014), in log space.
///
/// Per frame, the only extensions tried for a prefix `P` are the classes
/// whose score is among the `beam + 1` best non-blank ones of the frame (ties
/// included) and the classes `c` for which `P + c` is already in the beam:
/// an extension by any other class has a score below `beam` distinct
/// candidates and could not be kept, so this pruning changes nothing.
fn beam_one(frames: &[Vec<f64>], beam: usize) -> Decoded {
    let k = frames.first().map_or(0, |f| f.len());
    let mut beams: Vec<Entry> = vec![(Vec::new(), 0.0, NEG_INF)];
    let mut order: Vec<usize> = (1..k).collect();
    for f in frames {
        // Non-blank classes worth extending with, best first.
        order.sort_by(|&a, &b| f[b].total_cmp(&f[a]).then(a.cmp(&b)));
        let cut = order.get(beam).map_or(NEG_INF, |&c| f[c]);
        let top: Vec<usize> = order
            .iter()
            .copied()
            .take_while(|&c| f[c] >= cut && f[c] > NEG_INF)
            .collect();
        // For each prefix in the beam, the classes that extend it into another one.
        let mut children: HashMap<&[usize], Vec<usize>> = HashMap::new();
        for (p, _, _) in &beams {
            if let Some((&c, parent)) = p.split_last() {
                children.entry(parent).or_default().push(c);
            }
        }

        let mut next: HashMap<Vec<usize>, (f64, f64)> = HashMap::new();
        let mut add = |prefix: Vec<usize>, blank: f64, non_blank: f64| {
            if blank == NEG_INF && non_blank == NEG_INF {
                return;
            }
            let e = next.entry(prefix).or_insert((NEG_INF, NEG_INF));
            e.0 = lse(e.0, blank);
            e.1 = lse(e.1, non_blank);
        };
        for (prefix, pb, pnb) in &beams {
            let total = lse(*pb, *pnb);
            let last = prefix.last().copied();
            // Stay: a blank, or a repeat of the last class.
            let repeat = last.map_or(NEG_INF, |c| pnb + f[c]);
            add(prefix.clone(), total + f[0], repeat);
            // Extend.
            let mut classes = children.get(prefix.as_slice()).cloned().unwrap_or_default();
            let extra: Vec<usize> = top
                .iter()
                .copied()
                .filter(|c| !classes.contains(c))
                .collect();
            classes.extend(extra);
            for c in classes {
                let p = if Some(c) == last { *pb } else { total } + f[c];
                let mut np = prefix.clone();
                np.push(c);
                add(np, NEG_INF, p);
            }
        }
        let mut entries: Vec<Entry> = next.into_iter().map(|(p, (b, nb))| (p, b, nb)).collect();
        entries.sort_by(|a, b| {
            lse(b.1, b.2)
                .total_cmp(&lse(a.1, a.2))
                .then_with(|| a.0.cmp(&b.0))
        });
        entries.truncate(beam);
        beams = entries;
    }
    // Rescore the final prefixes, and the best path, by their exact
    // probability: the beam's own scores miss the alignments of prefixes
    // pruned on the way, so it can rank a prefix below one less probable.
    let mut candidates: Vec<Vec<usize>> = beams.into_iter().map(|e| e.0).collect();
    let greedy = best_path(frames);
    if !candidates.contains(&greedy) {
        candidates.push(greedy);
    }
    let mut best: Option<(Vec<usize>, f64)> = None;
    for c in candidates {
        let lp = scaled_sequence_log_prob(frames.len(), &c, |t, class| frames[t][class].exp());
        if best.as_ref().is_none_or(|(_, b)| lp > *b) {
            best = Some((c, lp));
        }
    }
    let (classes, lp) = best.unwrap_or((Vec::new(), NEG_INF));
    decoded(frames, classes, lp)
}

/// CTC prefix beam search (Hannun et al. 2014) in log space, keeping the
/// `beam` most probable prefixes (summed over their alignments) per frame;
/// ties are broken towards the lexicographically smaller prefix. At the end
/// the prefixes left in the beam and the best-path decoding are rescored by
/// their exact CTC probability and the most probable is returned, so the
/// result is never less probable than [`greedy`]'s (plain prefix beam search
/// can fall below it, having pruned alignments of the better sequence).
///
/// With `beam == 1` this is [`greedy`] (a prefix beam of width 1 can differ
/// from best-path decoding; width 1 is taken to mean best path). Inputs and
/// errors as [`greedy`], and `beam` must be at least 1.
pub fn beam_search(log_probs: &Tensor, lengths: &[usize], beam: usize) -> Result<Vec<Decoded>> {
    const OP: &str = "decode::beam_search";
    if beam == 0 {
        return Err(Error::invalid(OP, "beam width must be at least 1"));
    }
    if beam == 1 {
        return greedy(log_probs, lengths);
    }
    let dims = check(OP, log_probs, lengths)?;
    lengths
        .par_iter()
        .enumerate()
        .map(|(i, &len)| Ok(beam_one(&frames(OP, log_probs, dims, i, len)?, beam)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The first largest value wins, as a scan with `>` from -inf picks it,
    /// with ties, zeros of both signs and -inf among the values.
    #[test]
    fn argmax_in_lanes_is_the_first_largest() {
        let picks = [0.0, -0.0, 1.0, -1.0, 2.5, f32::NEG_INFINITY];
        let mut rng = Rng::seed(9);
        for len in [1, 5, 8, 9, 37, 64] {
            for _ in 0..200 {
                let v: Vec<f32> = (0..len)
                    .map(|_| picks[(rng.uniform() * picks.len() as f32) as usize % picks.len()])
                    .collect();
                let want = argmax(v.iter().map(|&x| x as f64));
                let (i, m) = argmax_f32(&v);
                assert_eq!((i, m.to_bits()), (want.0, v[want.0].to_bits()), "{v:?}");
            }
        }
        assert_eq!(argmax_f32(&[f32::NEG_INFINITY; 3]), (0, f32::NEG_INFINITY));
    }

    #[test]
    fn sums_in_lanes_add_up() {
        let v: Vec<f32> = (0..41).map(|i| i as f32 * 0.25).collect();
        let want: f64 = v.iter().map(|&x| x as f64).sum();
        assert_eq!(sum_in_lanes(&v), want);
        assert_eq!(sum_in_lanes::<f64>(&[]), 0.0);
    }
}
