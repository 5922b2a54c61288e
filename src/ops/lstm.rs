//! LSTM over padded batches of sequences: one direction as one recorded op
//! ([`lstm_direction`]) and the stacked, optionally bidirectional network
//! ([`lstm`]) composed from it (a bidirectional layer through
//! [`bilstm_layer`], its two directions side by side).
//!
//! Layouts, gate order (i, f, g, o) and the two bias vectors follow
//! `torch.nn.LSTM`, and lengths behave as `pack_padded_sequence` /
//! `pad_packed_sequence`: padding steps output zero and never reach a real step.
//! The kernels are in [`crate::cpu::lstm`].

use crate::autograd::Tape;
use crate::cpu::lstm::{
    lstm_backward, lstm_forward_kept, KeptTransposes, LstmDims, LstmGrads, LstmNeeds, LstmParams,
};
use crate::error::{Error, Result};
use crate::ops::bilstm::bilstm_layer;
use crate::ops::frozen_weights::{self, Kept};
use crate::tensor::{Shape, Tensor};
use std::sync::Arc;

/// Weights of one direction of one LSTM layer, as `torch.nn.LSTM`: gate
/// order i, f, g, o in every 4H axis (`weight_ih_l{k}`, `weight_hh_l{k}`,
/// `bias_ih_l{k}`, `bias_hh_l{k}`, with suffix `_reverse` for the reverse one).
#[derive(Clone, Copy)]
pub struct LstmWeights<'a> {
    /// Input-to-hidden weights (4H, F).
    pub w_ih: &'a Tensor,
    /// Hidden-to-hidden weights (4H, H).
    pub w_hh: &'a Tensor,
    /// Input-to-hidden bias (4H).
    pub b_ih: &'a Tensor,
    /// Hidden-to-hidden bias (4H).
    pub b_hh: &'a Tensor,
}

/// One layer: a forward direction and, for a bidirectional layer, a reverse one.
#[derive(Clone, Copy)]
pub struct LstmLayer<'a> {
    /// The direction that reads each sequence from its first step.
    pub forward: LstmWeights<'a>,
    /// The direction that reads each sequence from its last real step, if any.
    pub reverse: Option<LstmWeights<'a>>,
}

impl LstmWeights<'_> {
    /// Checks the four tensors against each other and against `features`
    /// inputs; returns the hidden size H.
    pub(crate) fn hidden_size(&self, op: &'static str, features: usize) -> Result<usize> {
        let w_ih = self.w_ih.dims();
        let rows = match w_ih {
            [rows, _] if *rows > 0 && rows % 4 == 0 => *rows,
            _ => {
                return Err(Error::shape(
                    op,
                    format!(
                        "w_ih has shape {:?}, expected (4H, F) with H >= 1",
                        self.w_ih.shape()
                    ),
                ))
            }
        };
        let h = rows / 4;
        if w_ih[1] != features {
            return Err(Error::shape(
                op,
                format!(
                    "w_ih has shape {:?}, expected ({rows}, {features}) for {features} input features",
                    self.w_ih.shape()
                ),
            ));
        }
        self.w_hh.expect_dims(op, "w_hh", &[rows, h])?;
        self.b_ih.expect_dims(op, "b_ih", &[rows])?;
        self.b_hh.expect_dims(op, "b_hh", &[rows])?;
        Ok(h)
    }
}

/// Checks `x` (T, N, F) and `lengths` (N values, each at most T); returns (T, N, F).
pub(crate) fn sequence_dims(
    op: &'static str,
    x: &Tensor,
    lengths: &[usize],
) -> Result<(usize, usize, usize)> {
    let [t, n, f] = *x.dims() else {
        return Err(Error::shape(
            op,
            format!("x has shape {:?}, expected (T, N, F)", x.shape()),
        ));
    };
    if lengths.len() != n {
        return Err(Error::shape(
            op,
            format!(
                "{} lengths given for a batch of {n} sequences (x has shape {:?})",
                lengths.len(),
                x.shape()
            ),
        ));
    }
    if let Some((j, &len)) = lengths.iter().enumerate().find(|(_, &l)| l > t) {
        return Err(Error::shape(
            op,
            format!(
                "sequence {j} has length {len}, more than the {t} steps of x {:?}",
                x.shape()
            ),
        ));
    }
    Ok((t, n, f))
}

/// One direction of one LSTM layer over a padded batch `x` (T, N, F), from a
/// zero initial state; returns the hidden states (T, N, H).
///
/// Sample n has `lengths[n]` real steps (0 ..= T; a length of 0 gives an
/// all-zero output). Steps t >= `lengths[n]` output 0 and do not change the
/// state, as with PyTorch's packed sequences. With `reverse`, sample n is
/// read from t = `lengths[n]` - 1 down to 0, so padding never leaks into the
/// result. Weights and gate order are those of `torch.nn.LSTM`.
///
/// One op on the tape with inputs [x, w_ih, w_hh, b_ih, b_hh]. Wrong shapes
/// (F not matching `w_ih`, inconsistent H, a length count other than N, a
/// length above T) are errors.
pub fn lstm_direction(
    tape: &mut Tape,
    x: &Tensor,
    weights: LstmWeights,
    lengths: &[usize],
    reverse: bool,
) -> Result<Tensor> {
    const OP: &str = "lstm";
    let (t, n, f) = sequence_dims(OP, x, lengths)?;
    let h = weights.hidden_size(OP, f)?;
    let dims = LstmDims {
        steps: t,
        batch: n,
        input: f,
        hidden: h,
    };
    let LstmWeights {
        w_ih,
        w_hh,
        b_ih,
        b_hh,
    } = weights;
    let inputs = [x, w_ih, w_hh, b_ih, b_hh];
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of(OP, &inputs)? {
        return gpu::lstm_direction(tape, &dev, inputs, dims, lengths, reverse);
    }
    let save = tape.wants_grad(&inputs);
    let params = params_of([w_ih, w_hh, b_ih, b_hh]);
    let kept = kept_transposes(tape, [w_ih, w_hh]);
    let (out, cache) = lstm_forward_kept(
        x.data(),
        params,
        kept_views(&kept),
        dims,
        lengths,
        reverse,
        save,
    );
    let y = Tensor::from_shape_vec(Shape::new(&[t, n, h])?, out);
    let Some(cache) = cache else {
        // Nothing tracked or no recording tape: there is no backward to keep.
        return Ok(y);
    };
    let saved = [
        x.clone(),
        w_ih.clone(),
        w_hh.clone(),
        b_ih.clone(),
        b_hh.clone(),
    ];
    let lengths = lengths.to_vec();
    Ok(tape.record(OP, y, &inputs, move |g, needs| {
        let grads = lstm_backward(
            g.data(),
            saved[0].data(),
            params_of([&saved[1], &saved[2], &saved[3], &saved[4]]),
            dims,
            &lengths,
            reverse,
            &cache,
            needs_of(needs),
        );
        Ok(grad_tensors(grads, needs, &saved))
    }))
}

/// The kernel's view of one direction's weight tensors `[w_ih, w_hh, b_ih, b_hh]`.
pub(crate) fn params_of(w: [&Tensor; 4]) -> LstmParams<'_> {
    LstmParams {
        w_ih: w[0].data(),
        w_hh: w[1].data(),
        b_ih: w[2].data(),
        b_hh: w[3].data(),
    }
}

/// A frozen direction's kept forms: `[w_ih, w_hh]` transposed, and `w_hh`
/// packed for a line's steps where they run in registers.
pub(crate) struct KeptDirection {
    transposes: [Arc<Kept>; 2],
    w_hh_line: Option<Arc<Kept>>,
}

/// The kept forms of a direction's `[w_ih, w_hh]` when neither wants a
/// gradient (a frozen model: `ops::frozen_weights`).
pub(crate) fn kept_transposes(tape: &Tape, w: [&Tensor; 2]) -> Option<KeptDirection> {
    if tape.wants_grad(&w) {
        return None;
    }
    Some(KeptDirection {
        transposes: w.map(|w| frozen_weights::transposed(w, w.dims()[0], w.dims()[1])),
        w_hh_line: frozen_weights::line_recurrent(w[1], w[1].dims()[1]),
    })
}

/// The kernel's view of [`kept_transposes`].
pub(crate) fn kept_views(kept: &Option<KeptDirection>) -> Option<KeptTransposes<'_>> {
    kept.as_ref().map(|k| KeptTransposes {
        w_ih: &k.transposes[0],
        w_hh: &k.transposes[1],
        w_hh_line: k.w_hh_line.as_deref().map(|v| &v[..]),
    })
}

/// Which gradients one direction needs, from its inputs' flags `[x, w_ih, w_hh, b_ih, b_hh]`.
pub(crate) fn needs_of(needs: &[bool]) -> LstmNeeds {
    LstmNeeds {
        x: needs[0],
        w_ih: needs[1],
        w_hh: needs[2],
        bias: needs[3] || needs[4],
    }
}

/// One direction's gradients as tensors shaped like its inputs `saved`
/// (`[x, w_ih, w_hh, b_ih, b_hh]`), `None` where not needed.
pub(crate) fn grad_tensors(
    grads: LstmGrads,
    needs: &[bool],
    saved: &[Tensor],
) -> Vec<Option<Tensor>> {
    let wrap = |v: Option<Vec<f32>>, t: &Tensor| v.map(|v| Tensor::from_shape_vec(*t.shape(), v));
    let bias = |need: bool, t: &Tensor| {
        need.then(|| grads.bias.clone())
            .flatten()
            .map(|b| Tensor::from_shape_vec(*t.shape(), b))
    };
    let (db_ih, db_hh) = (bias(needs[3], &saved[3]), bias(needs[4], &saved[4]));
    vec![
        wrap(grads.x, &saved[0]),
        wrap(grads.w_ih, &saved[1]),
        wrap(grads.w_hh, &saved[2]),
        db_ih,
        db_hh,
    ]
}

/// A stacked, optionally bidirectional LSTM over a padded batch `x`
/// (T, N, F), as `torch.nn.LSTM` (with `bidirectional=True` where layers
/// have a reverse direction) applied to `pack_padded_sequence(x, lengths)`
/// and unpacked with `pad_packed_sequence`: padding positions are zero.
///
/// Layer k reads layer k-1's output. A bidirectional layer outputs
/// concat(forward, reverse) on the feature axis, (T, N, 2H); a
/// unidirectional one (T, N, H). No layers, or a layer whose input width or
/// hidden sizes do not fit, is an error, found before anything runs.
pub fn lstm(
    tape: &mut Tape,
    x: &Tensor,
    layers: &[LstmLayer],
    lengths: &[usize],
) -> Result<Tensor> {
    const OP: &str = "lstm";
    if layers.is_empty() {
        return Err(Error::shape(OP, "no layers given"));
    }
    let (_, _, mut features) = sequence_dims(OP, x, lengths)?;
    for (k, layer) in layers.iter().enumerate() {
        let context = |e: Error| match e {
            Error::Shape { op, message } => Error::shape(op, format!("layer {k}: {message}")),
            other => other,
        };
        let input = features;
        let h = layer.forward.hidden_size(OP, input).map_err(context)?;
        features = h;
        if let Some(rev) = &layer.reverse {
            let hr = rev.hidden_size(OP, input).map_err(context)?;
            if hr != h {
                return Err(Error::shape(
                    OP,
                    format!("layer {k}: forward hidden size {h} but reverse hidden size {hr}"),
                ));
            }
            features = 2 * h;
        }
    }
    let mut current = x.clone();
    for layer in layers {
        current = match &layer.reverse {
            // Both directions side by side, as one op.
            Some(rev) => bilstm_layer(tape, &current, layer.forward, *rev, lengths)?,
            None => lstm_direction(tape, &current, layer.forward, lengths, false)?,
        };
    }
    Ok(current)
}

/// The GPU path: the same op through the kernels of [`crate::cuda::lstm`],
/// with helpers that `bilstm_layer` shares.
#[cfg(feature = "cuda")]
pub(crate) mod gpu {
    use super::needs_of;
    use crate::autograd::Tape;
    use crate::cpu::lstm::LstmDims;
    use crate::cuda::lstm::{lstm_backward, lstm_forward, GpuLstmGrads, GpuLstmParams};
    use crate::cuda::CudaDevice;
    use crate::error::Result;
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    const OP: &str = "lstm";

    /// The device buffers of one direction's weight tensors `[w_ih, w_hh, b_ih, b_hh]`.
    pub(crate) fn params_of(w: [&Tensor; 4]) -> Result<GpuLstmParams<'_>> {
        Ok(GpuLstmParams {
            w_ih: w[0].cuda_buffer(OP)?,
            w_hh: w[1].cuda_buffer(OP)?,
            b_ih: w[2].cuda_buffer(OP)?,
            b_hh: w[3].cuda_buffer(OP)?,
        })
    }

    /// One direction's gradients as GPU tensors shaped like its inputs
    /// `saved` (`[x, w_ih, w_hh, b_ih, b_hh]`), `None` where not needed; the
    /// bias gradient goes to both biases, as on the CPU.
    pub(crate) fn grad_tensors(
        dev: &Arc<CudaDevice>,
        grads: GpuLstmGrads,
        needs: &[bool],
        saved: &[Tensor],
    ) -> Result<Vec<Option<Tensor>>> {
        let wrap = |v: Option<_>, t: &Tensor| v.map(|v| Tensor::from_cuda(*t.shape(), dev, v));
        let (db_ih, db_hh) = match (grads.bias, needs[3], needs[4]) {
            (Some(b), true, true) => {
                let copy = b.try_clone()?;
                (Some(b), Some(copy))
            }
            (Some(b), true, false) => (Some(b), None),
            (Some(b), false, true) => (None, Some(b)),
            _ => (None, None),
        };
        Ok(vec![
            wrap(grads.x, &saved[0]),
            wrap(grads.w_ih, &saved[1]),
            wrap(grads.w_hh, &saved[2]),
            wrap(db_ih, &saved[3]),
            wrap(db_hh, &saved[4]),
        ])
    }

    /// `lstm_direction` on a GPU, shapes already checked; `inputs` are
    /// `[x, w_ih, w_hh, b_ih, b_hh]`.
    pub(super) fn lstm_direction(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        inputs: [&Tensor; 5],
        dims: LstmDims,
        lengths: &[usize],
        reverse: bool,
    ) -> Result<Tensor> {
        let save = tape.wants_grad(&inputs);
        let [x, w_ih, w_hh, b_ih, b_hh] = inputs;
        let (out, cache) = lstm_forward(
            dev,
            x.cuda_buffer(OP)?,
            params_of([w_ih, w_hh, b_ih, b_hh])?,
            dims,
            lengths,
            reverse,
            save,
        )?;
        let shape = Shape::new(&[dims.steps, dims.batch, dims.hidden])?;
        let y = Tensor::from_cuda(shape, dev, out);
        let Some(cache) = cache else {
            return Ok(y);
        };
        let saved: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
        let (lengths, dev) = (lengths.to_vec(), dev.clone());
        Ok(tape.record(OP, y, &inputs, move |g, needs| {
            let grads = lstm_backward(
                &dev,
                g.cuda_buffer(OP)?,
                saved[0].cuda_buffer(OP)?,
                params_of([&saved[1], &saved[2], &saved[3], &saved[4]])?,
                dims,
                &lengths,
                reverse,
                &cache,
                needs_of(needs),
            )?;
            grad_tensors(&dev, grads, needs, &saved)
        }))
    }
}
