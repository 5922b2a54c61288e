//! Forms of frozen models' weights that ops would otherwise rebuild at
//! every call, kept from call to call: Winograd transforms of 3x3 kernels
//! (F(2x2, 3x3) and F(4x4, 3x3)),
//! transposes of matrices that products read as `Wᵀ`, and LSTM recurrent
//! weights packed for a line's steps.
//!
//! An evaluation-mode conv block ([`super::conv2d::conv2d_bn_relu_eval`])
//! on a few lines would otherwise transform its weight at every call, which
//! costs more than the Winograd algorithm saves there; with the transform
//! kept, a `crnn-s` line's b3 and b4 run 1.2x and 1.5x faster than the
//! direct convolution. Likewise an LSTM or a linear layer of a frozen model
//! reads `W_ihᵀ`, `W_hhᵀ` and the head's `Wᵀ` row-major from here instead
//! of copying them each call (those copies were 4% of a batch-1 line).
//!
//! Entries are keyed by the weight's storage and hold a reference to it, so
//! a parameter updated in place afterwards ([`Tensor::data_mut`]) finds its
//! storage shared, copies it, and never matches its stale entry again. Ops
//! ask only for weights that want no gradient: a trained weight changes
//! every step, and a form kept for it would be a copy per step.

use crate::cpu::gemm::{transpose_into, MatRef};
use crate::cpu::lstm;
use crate::cpu::winograd::transform_weight;
use crate::cpu::winograd4;
use crate::tensor::{Storage, Tensor};
use std::sync::{Arc, Mutex};

/// Entries kept (least recently used dropped first): a few models' layers.
const ENTRIES: usize = 32;

/// What is kept of a weight.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The Winograd F(2x2, 3x3) transform of an (o, c, 3, 3) kernel.
    Winograd { o: usize, c: usize },
    /// Its F(4x4, 3x3) transform.
    Winograd4 { o: usize, c: usize },
    /// The transpose of a (rows, cols) row-major matrix, row-major.
    Transposed { rows: usize, cols: usize },
    /// An LSTM's `W_hh` of `hidden` units packed for batch-1 steps in
    /// registers.
    LineRecurrent { hidden: usize },
}

struct Entry {
    storage: Arc<Storage>,
    form: Form,
    values: Arc<Kept>,
}

/// Kept values, starting on a cache line (a row of a kept `W_hhᵀ` is read
/// whole by each step of a batch-1 LSTM).
pub(crate) struct Kept {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl Kept {
    fn new(values: Vec<f32>) -> Kept {
        const SLACK: usize = 16;
        let len = values.len();
        let mut buf: Vec<f32> = Vec::with_capacity(len + SLACK);
        let start = buf.as_ptr().align_offset(64).min(SLACK);
        buf.resize(start, 0.0);
        buf.extend(values);
        Kept { buf, start, len }
    }
}

impl std::ops::Deref for Kept {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }
}

static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The Winograd transform of `weight` (o, c, 3, 3) on the CPU, from the
/// cache or computed and kept.
pub(crate) fn winograd_weight(weight: &Tensor, o: usize, c: usize) -> Arc<Kept> {
    kept(weight, Form::Winograd { o, c }, || {
        transform_weight(weight.data(), o, c)
    })
}

/// The F(4x4, 3x3) Winograd transform of `weight` (o, c, 3, 3) on the
/// CPU, from the cache or computed and kept.
pub(crate) fn winograd4_weight(weight: &Tensor, o: usize, c: usize) -> Arc<Kept> {
    kept(weight, Form::Winograd4 { o, c }, || {
        winograd4::transform_weight(weight.data(), o, c)
    })
}

/// `weightᵀ` (cols x rows, row-major) of a row-major (rows, cols) `weight`
/// on the CPU, from the cache or computed and kept.
pub(crate) fn transposed(weight: &Tensor, rows: usize, cols: usize) -> Arc<Kept> {
    kept(weight, Form::Transposed { rows, cols }, || {
        let mut t = vec![0.0; rows * cols];
        transpose_into(MatRef::row_major(weight.data(), rows, cols).t(), &mut t);
        t
    })
}

/// An LSTM direction's `w_hh` (4H x H) packed for batch-1 steps in
/// registers ([`lstm::pack_line_recurrent`]), from the cache or packed and
/// kept; `None` where such steps do not run on this CPU.
pub(crate) fn line_recurrent(w_hh: &Tensor, hidden: usize) -> Option<Arc<Kept>> {
    lstm::steps_in_registers(hidden).then(|| {
        kept(w_hh, Form::LineRecurrent { hidden }, || {
            lstm::pack_line_recurrent(w_hh.data(), hidden)
        })
    })
}

/// The `form` of `weight`: the kept one, or `make()` kept.
fn kept(weight: &Tensor, form: Form, make: impl FnOnce() -> Vec<f32>) -> Arc<Kept> {
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let storage = weight.storage_arc();
    let hit = cache
        .iter()
        .position(|e| Arc::ptr_eq(&e.storage, storage) && e.form == form);
    let entry = match hit {
        Some(i) => cache.remove(i),
        None => Entry {
            storage: Arc::clone(storage),
            form,
            values: Arc::new(Kept::new(make())),
        },
    };
    let values = Arc::clone(&entry.values);
    if cache.len() == ENTRIES {
        cache.remove(0);
    }
    cache.push(entry);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_updated_in_place_is_transformed_again() {
        let values: Vec<f32> = (0..2 * 3 * 9).map(|i| i as f32 * 0.1 - 2.0).collect();
        let mut w = Tensor::from_vec(values.clone(), &[2, 3, 3, 3]).unwrap();
        let first = winograd_weight(&w, 2, 3);
        assert_eq!(first[..], transform_weight(&values, 2, 3));
        assert!(Arc::ptr_eq(&first, &winograd_weight(&w, 2, 3)), "not kept");
        w.data_mut()[0] = 5.0;
        let second = winograd_weight(&w, 2, 3);
        assert_eq!(second[..], transform_weight(w.data(), 2, 3));
        assert_ne!(first[..], second[..]);
    }

    #[test]
    fn a_transpose_is_kept_apart_from_other_forms_and_follows_updates() {
        let mut w = Tensor::from_vec((0..6).map(|i| i as f32).collect(), &[2, 3]).unwrap();
        let first = transposed(&w, 2, 3);
        assert_eq!(first[..], [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(first.as_ptr() as usize % 64, 0, "not on a cache line");
        assert!(Arc::ptr_eq(&first, &transposed(&w, 2, 3)), "not kept");
        assert_eq!(transposed(&w, 3, 2)[..], [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
        w.data_mut()[1] = 9.0;
        assert_eq!(transposed(&w, 2, 3)[..], [0.0, 3.0, 9.0, 4.0, 2.0, 5.0]);
    }

    /// A frozen model's ops read the kept forms; their values are those a
    /// recorded forward pass with tracked weights computes: LSTM
    /// directions (batch 1 and a ragged batch), a bidirectional layer, and
    /// a linear layer, with and without a line's steps in registers.
    #[test]
    fn frozen_ops_give_the_bits_of_tracked_ones() {
        use crate::autograd::Tape;
        use crate::ops::bilstm::bilstm_layer;
        use crate::ops::linear;
        use crate::ops::lstm::{lstm_direction, LstmWeights};
        use crate::rng::Rng;
        let mut rng = Rng::seed(5);
        let mut tensor = |dims: &[usize]| {
            let n = dims.iter().product();
            Tensor::from_vec((0..n).map(|_| rng.range(-1.0, 1.0)).collect(), dims).unwrap()
        };
        // 32 hidden units: a line's steps in registers, from the packed form
        // (on AVX2 two groups, not the transpose's order).
        for (t, f, h, k) in [(7, 20, 12, 9), (6, 12, 32, 9)] {
            let w: Vec<Tensor> = [vec![4 * h, f], vec![4 * h, h], vec![4 * h], vec![4 * h]]
                .iter()
                .cycle()
                .take(8)
                .map(|d| tensor(d))
                .collect();
            let head = (tensor(&[k, 2 * h]), tensor(&[k]));
            let inputs = [
                (tensor(&[t, 1, f]), vec![t]),
                (tensor(&[t, 3, f]), vec![t, 4, 6]),
            ];
            let run = |tape: &mut Tape, w: &[Tensor], head: &(Tensor, Tensor)| {
                let dir = |d: usize| LstmWeights {
                    w_ih: &w[4 * d],
                    w_hh: &w[4 * d + 1],
                    b_ih: &w[4 * d + 2],
                    b_hh: &w[4 * d + 3],
                };
                let mut out = Vec::new();
                for (x, lengths) in &inputs {
                    out.push(lstm_direction(tape, x, dir(0), lengths, false).unwrap());
                    out.push(lstm_direction(tape, x, dir(1), lengths, true).unwrap());
                    let y = bilstm_layer(tape, x, dir(0), dir(1), lengths).unwrap();
                    out.push(linear(tape, &y, &head.0, Some(&head.1)).unwrap());
                    out.push(y);
                }
                out.iter()
                    .map(|y| y.data().iter().map(|v| v.to_bits()).collect::<Vec<u32>>())
                    .collect::<Vec<_>>()
            };
            let frozen = run(&mut Tape::no_grad(), &w, &head);
            let tracked: Vec<Tensor> = w.iter().map(|w| w.clone().tracked()).collect();
            let tracked_head = (head.0.clone().tracked(), head.1.clone().tracked());
            assert_eq!(frozen, run(&mut Tape::new(), &tracked, &tracked_head));
            // And again from the kept forms.
            assert_eq!(frozen, run(&mut Tape::no_grad(), &w, &head));
        }
    }
}
