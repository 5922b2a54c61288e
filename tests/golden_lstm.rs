//! The bidirectional two-layer LSTM against torch.nn.LSTM with packed
//! variable-length sequences (tests/golden/make_golden.py; see tests/golden/README.md).

#[path = "golden/check.rs"]
mod check;
#[rustfmt::skip]
#[path = "golden/lstm.rs"]
mod data;

use check::{assert_close, leaf, tensor};
use data::*;
use retort::ops::lstm::{lstm, LstmLayer, LstmWeights};
use retort::{ops, Tape, Tensor};

/// A PyTorch weight name, its values, its shape and the gradient of sum(out * R).
type Golden = (
    &'static str,
    &'static [f32],
    &'static [usize],
    &'static [f32],
);

/// The golden weights by PyTorch name.
fn golden_weights() -> Vec<Golden> {
    vec![
        (
            "weight_ih_l0",
            &WEIGHT_IH_L0,
            &WEIGHT_IH_L0_SHAPE,
            &GRAD_WEIGHT_IH_L0,
        ),
        (
            "weight_hh_l0",
            &WEIGHT_HH_L0,
            &WEIGHT_HH_L0_SHAPE,
            &GRAD_WEIGHT_HH_L0,
        ),
        (
            "bias_ih_l0",
            &BIAS_IH_L0,
            &BIAS_IH_L0_SHAPE,
            &GRAD_BIAS_IH_L0,
        ),
        (
            "bias_hh_l0",
            &BIAS_HH_L0,
            &BIAS_HH_L0_SHAPE,
            &GRAD_BIAS_HH_L0,
        ),
        (
            "weight_ih_l0_reverse",
            &WEIGHT_IH_L0_REVERSE,
            &WEIGHT_IH_L0_REVERSE_SHAPE,
            &GRAD_WEIGHT_IH_L0_REVERSE,
        ),
        (
            "weight_hh_l0_reverse",
            &WEIGHT_HH_L0_REVERSE,
            &WEIGHT_HH_L0_REVERSE_SHAPE,
            &GRAD_WEIGHT_HH_L0_REVERSE,
        ),
        (
            "bias_ih_l0_reverse",
            &BIAS_IH_L0_REVERSE,
            &BIAS_IH_L0_REVERSE_SHAPE,
            &GRAD_BIAS_IH_L0_REVERSE,
        ),
        (
            "bias_hh_l0_reverse",
            &BIAS_HH_L0_REVERSE,
            &BIAS_HH_L0_REVERSE_SHAPE,
            &GRAD_BIAS_HH_L0_REVERSE,
        ),
        (
            "weight_ih_l1",
            &WEIGHT_IH_L1,
            &WEIGHT_IH_L1_SHAPE,
            &GRAD_WEIGHT_IH_L1,
        ),
        (
            "weight_hh_l1",
            &WEIGHT_HH_L1,
            &WEIGHT_HH_L1_SHAPE,
            &GRAD_WEIGHT_HH_L1,
        ),
        (
            "bias_ih_l1",
            &BIAS_IH_L1,
            &BIAS_IH_L1_SHAPE,
            &GRAD_BIAS_IH_L1,
        ),
        (
            "bias_hh_l1",
            &BIAS_HH_L1,
            &BIAS_HH_L1_SHAPE,
            &GRAD_BIAS_HH_L1,
        ),
        (
            "weight_ih_l1_reverse",
            &WEIGHT_IH_L1_REVERSE,
            &WEIGHT_IH_L1_REVERSE_SHAPE,
            &GRAD_WEIGHT_IH_L1_REVERSE,
        ),
        (
            "weight_hh_l1_reverse",
            &WEIGHT_HH_L1_REVERSE,
            &WEIGHT_HH_L1_REVERSE_SHAPE,
            &GRAD_WEIGHT_HH_L1_REVERSE,
        ),
        (
            "bias_ih_l1_reverse",
            &BIAS_IH_L1_REVERSE,
            &BIAS_IH_L1_REVERSE_SHAPE,
            &GRAD_BIAS_IH_L1_REVERSE,
        ),
        (
            "bias_hh_l1_reverse",
            &BIAS_HH_L1_REVERSE,
            &BIAS_HH_L1_REVERSE_SHAPE,
            &GRAD_BIAS_HH_L1_REVERSE,
        ),
    ]
}

#[test]
fn bidirectional_two_layer_lstm_matches_pytorch() {
    let named = golden_weights();
    assert_eq!(named.len(), LSTM_LAYERS * 2 * 4);
    // one tracked leaf per PyTorch tensor, in the order of `golden_weights`:
    // per layer, forward (w_ih, w_hh, b_ih, b_hh) then reverse
    let params: Vec<Tensor> = named.iter().map(|(_, v, d, _)| leaf(v, d)).collect();
    let layers: Vec<LstmLayer> = (0..LSTM_LAYERS)
        .map(|k| {
            let p = &params[k * 8..k * 8 + 8];
            LstmLayer {
                forward: LstmWeights {
                    w_ih: &p[0],
                    w_hh: &p[1],
                    b_ih: &p[2],
                    b_hh: &p[3],
                },
                reverse: Some(LstmWeights {
                    w_ih: &p[4],
                    w_hh: &p[5],
                    b_ih: &p[6],
                    b_hh: &p[7],
                }),
            }
        })
        .collect();

    let mut tape = Tape::new();
    let x = leaf(&LSTM_X, &LSTM_X_SHAPE);
    let lengths: Vec<usize> = LSTM_LENGTHS.to_vec();
    let out = lstm(&mut tape, &x, &layers, &lengths).expect("lstm");
    assert_close("lstm out (T, N, 2H)", &out, &LSTM_OUT, &LSTM_OUT_SHAPE);

    let r = tensor(&LSTM_R, &LSTM_R_SHAPE);
    let prod = ops::mul(&mut tape, &out, &r).expect("mul");
    let loss = ops::sum_all(&mut tape, &prod).expect("sum_all");
    let grads = tape.backward(&loss).expect("backward");

    let gx = grads.get(&x).expect("no gradient for x");
    assert_close("lstm d/dx", gx, &LSTM_GRAD_X, &LSTM_X_SHAPE);
    for ((name, _, dims, want), p) in named.iter().zip(&params) {
        let g = grads
            .get(p)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_close(&format!("lstm d/d{name}"), g, want, dims);
    }
}
