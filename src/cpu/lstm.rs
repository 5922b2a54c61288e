//! LSTM kernels for one direction of one layer: the forward pass over time
//! and the backward pass through time, on host memory.
//!
//! Layouts and gate order follow `torch.nn.LSTM`: the sequence is (T, N, F)
//! time-major, `w_ih` is (4H, F), `w_hh` is (4H, H), the biases are (4H), and
//! the four gate blocks of every 4H axis are in the order i, f, g, o:
//!
//! ```text
//! i = σ(W_ii x + b_ii + W_hi h + b_hi)      c' = f ⊙ c + i ⊙ g
//! f = σ(W_if x + b_if + W_hf h + b_hf)      h' = o ⊙ tanh(c')
//! g = tanh(W_ig x + b_ig + W_hg h + b_hg)
//! o = σ(W_io x + b_io + W_ho h + b_ho)
//! ```
//!
//! Sequences of different lengths share a padded batch: sample n has
//! `lengths[n]` real steps, read from t = 0 up (forward) or from
//! t = lengths\[n\] - 1 down to 0 (reverse), as PyTorch does with a packed
//! sequence. Padding steps output zero, leave the state alone and get no
//! gradient.
//!
//! The input projection of all time steps is one GEMM before the loop; each
//! step adds h·W_hhᵀ (one small GEMM, reading a large W_hh from panels
//! packed once per call: `step_weights.rs`) and runs a fused cell over the
//! batch.
//! A single sequence with nothing saved for the backward pass (a line being
//! read) runs its steps in registers instead (`lstm_line.rs`), with
//! the same bits.
//! The backward pass collects the gate gradients of every step in one
//! (T·N, 4H) buffer and turns them into dX, dW_ih and dW_hh with one GEMM each.

use super::fastmath;
use super::gemm::{gemm, gemm_par, transpose_into, MatRef};
use super::lstm_line;
use super::scratch::with_scratch;
use super::step_weights::StepWeights;
use super::uninit::{filled, write_all};
use std::cell::Cell;
use std::mem::MaybeUninit;

/// Sizes of one LSTM direction: T steps, N samples, F input features, H hidden units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmDims {
    /// Time steps T of the padded batch.
    pub steps: usize,
    /// Samples N.
    pub batch: usize,
    /// Input features F.
    pub input: usize,
    /// Hidden units H (the gate axis has 4H).
    pub hidden: usize,
}

/// The weights of one direction as row-major slices, `torch.nn.LSTM` layout.
#[derive(Clone, Copy)]
pub struct LstmParams<'a> {
    /// (4H, F), gate blocks i, f, g, o.
    pub w_ih: &'a [f32],
    /// (4H, H), gate blocks i, f, g, o.
    pub w_hh: &'a [f32],
    /// (4H).
    pub b_ih: &'a [f32],
    /// (4H).
    pub b_hh: &'a [f32],
}

/// What the forward pass keeps for the backward pass, indexed like the input
/// by row `t * N + n` (rows of padding steps are zero).
pub struct LstmCache {
    /// Activated gates (T·N, 4H): σ(i), σ(f), tanh(g), σ(o).
    pub gates: Vec<f32>,
    /// Cell state after the step (T·N, H).
    pub c: Vec<f32>,
    /// Hidden state before the step (T·N, H): the h that multiplied W_hh.
    pub h_prev: Vec<f32>,
}

/// Gradients of one direction; `None` where not asked for.
pub struct LstmGrads {
    /// (T, N, F).
    pub x: Option<Vec<f32>>,
    /// (4H, F).
    pub w_ih: Option<Vec<f32>>,
    /// (4H, H).
    pub w_hh: Option<Vec<f32>>,
    /// (4H); equal to the gradient of `b_hh`.
    pub bias: Option<Vec<f32>>,
}

/// The time index that sample of length `len` reads at step `s < len`.
#[inline]
fn time_of(s: usize, len: usize, reverse: bool) -> usize {
    if reverse {
        len - 1 - s
    } else {
        s
    }
}

/// The transposes of one direction's weight matrices, row-major, as a
/// frozen model keeps them from call to call (`ops::frozen_weights`).
#[derive(Clone, Copy)]
pub struct KeptTransposes<'a> {
    /// W_ihᵀ (F, 4H).
    pub w_ih: &'a [f32],
    /// W_hhᵀ (H, 4H).
    pub w_hh: &'a [f32],
    /// `W_hh` as a batch-1 sequence's steps read it (`lstm_line::pack`),
    /// where they run in registers on this CPU.
    pub w_hh_line: Option<&'a [f32]>,
}

/// Whether a batch-1 sequence of `hidden` units with nothing to save runs
/// its steps in registers on this CPU (and reads [`KeptTransposes::w_hh_line`]).
pub fn steps_in_registers(hidden: usize) -> bool {
    lstm_line::applies(hidden)
}

/// `w_hh` (4H x H) packed as the steps in registers read it
/// ([`KeptTransposes::w_hh_line`]). Panics unless [`steps_in_registers`]
/// for `hidden` and `w_hh` holds 4H·H values.
pub fn pack_line_recurrent(w_hh: &[f32], hidden: usize) -> Vec<f32> {
    let mut out = vec![0.0; 4 * hidden * hidden];
    lstm_line::pack(w_hh, hidden, &mut out);
    out
}

/// Runs one direction over `x` (T, N, F) from a zero state. Returns the
/// output (T, N, H), zero at padding steps, and with `save` the cache the
/// backward pass needs. Callers check that every slice fits `dims` and that
/// each length is at most T.
pub fn lstm_forward(
    x: &[f32],
    p: LstmParams,
    dims: LstmDims,
    lengths: &[usize],
    reverse: bool,
    save: bool,
) -> (Vec<f32>, Option<LstmCache>) {
    lstm_forward_kept(x, p, None, dims, lengths, reverse, save)
}

/// [`lstm_forward`] reading the weights' transposes from `kept` when given
/// instead of making them: the same values.
pub fn lstm_forward_kept(
    x: &[f32],
    p: LstmParams,
    kept: Option<KeptTransposes>,
    dims: LstmDims,
    lengths: &[usize],
    reverse: bool,
    save: bool,
) -> (Vec<f32>, Option<LstmCache>) {
    let mut out = vec![0.0f32; dims.steps * dims.batch * dims.hidden];
    let rows = OutRows {
        ptr: out.as_mut_ptr(),
        ld: dims.hidden,
    };
    // SAFETY: `out` holds T·N rows of H values, and only this call writes it.
    let cache = unsafe { forward_into(x, p, kept, dims, lengths, reverse, save, rows) };
    (out, cache)
}

/// One direction of a bidirectional layer each, run side by side on the
/// pool's threads, both writing one (T, N, 2H) output: row `t * N + n` is
/// the forward direction's h, then the reverse direction's (PyTorch's
/// layout), with no copy that joins them. Also returns each direction's
/// cache with `save`. The values of [`lstm_forward_kept`] on each.
pub fn bilstm_forward_kept(
    x: &[f32],
    p: [LstmParams; 2],
    kept: [Option<KeptTransposes>; 2],
    dims: LstmDims,
    lengths: &[usize],
    save: bool,
) -> (Vec<f32>, [Option<LstmCache>; 2]) {
    let h = dims.hidden;
    let mut out = vec![0.0f32; dims.steps * dims.batch * 2 * h];
    let base = out.as_mut_ptr();
    let half = |offset: usize| OutRows {
        // The offset stays inside `out` (2H values a row) when it has rows.
        ptr: base.wrapping_add(offset),
        ld: 2 * h,
    };
    let (forward, reverse) = (half(0), half(h));
    // SAFETY: `out` holds T·N rows of 2H values; the forward direction
    // writes the first H of each row, the reverse one the last H.
    let (cf, cr) = rayon::join(
        || unsafe { forward_into(x, p[0], kept[0], dims, lengths, false, save, forward) },
        || unsafe { forward_into(x, p[1], kept[1], dims, lengths, true, save, reverse) },
    );
    (out, [cf, cr])
}

/// Where one direction writes its output: row r's H values from `ptr + r *
/// ld` (`ld` = H alone, 2H beside the other direction of a layer).
#[derive(Clone, Copy)]
struct OutRows {
    ptr: *mut f32,
    ld: usize,
}

// SAFETY: the two directions sharing a buffer write disjoint values (see
// `bilstm_forward_kept`), and nothing reads it until both have finished.
unsafe impl Send for OutRows {}
unsafe impl Sync for OutRows {}

impl OutRows {
    /// Row `r`'s `h` values.
    ///
    /// # Safety
    /// The row lies in the buffer, and nothing else reads or writes it
    /// while the slice lives.
    unsafe fn row<'a>(self, r: usize, h: usize) -> &'a mut [f32] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.ld), h) }
    }
}

/// [`lstm_forward_kept`] writing the output rows through `out`, which
/// starts zero (padding steps are left as they are).
///
/// # Safety
/// `out` holds T·N rows of H values, which nothing else reads or writes
/// until this returns.
#[allow(clippy::too_many_arguments)]
unsafe fn forward_into(
    x: &[f32],
    p: LstmParams,
    kept: Option<KeptTransposes>,
    dims: LstmDims,
    lengths: &[usize],
    reverse: bool,
    save: bool,
    out: OutRows,
) -> Option<LstmCache> {
    let LstmDims {
        steps: t_len,
        batch: n,
        input: f,
        hidden: h,
    } = dims;
    let g4 = 4 * h;
    let rows = t_len * n;
    debug_assert_eq!(x.len(), rows * f);
    debug_assert_eq!(lengths.len(), n);

    // Hoisted input projection: G = X·W_ihᵀ + b_ih + b_hh over all rows.
    let bias: Vec<f32> = p.b_ih.iter().zip(p.b_hh).map(|(a, b)| a + b).collect();
    let mut pre = match kept {
        Some(k) => {
            let mut pre = bias.repeat(rows);
            let w_ih_t = MatRef::row_major(k.w_ih, f, g4);
            gemm_par(1.0, MatRef::row_major(x, rows, f), w_ih_t, 1.0, &mut pre);
            pre
        }
        None => input_projection(x, p.w_ih, &bias, rows, f),
    };

    let mut cache = save.then(|| CacheSlots::new(rows, h));
    let max_len = lengths.iter().copied().max().unwrap_or(0);
    let in_registers = n == 1 && cache.is_none() && lstm_line::applies(h);
    let on_panels = !in_registers && StepWeights::packs(n, h * g4, max_len.saturating_sub(1));
    // Otherwise W_hhᵀ stored row-major once, on a cache line, so each step's
    // small product reads its rows in place (see `gemm`'s unpacked path);
    // or, for the steps in registers, packed as they read it.
    let line_kept = kept.and_then(|k| k.w_hh_line).filter(|_| in_registers);
    let rows_of_w_hh = if (kept.is_some() && !in_registers) || line_kept.is_some() || on_panels {
        0
    } else {
        h * g4
    };
    with_scratch(&W_HH_ROWS, rows_of_w_hh, |w_hh_rows| {
        // One sequence with nothing to save: the steps in registers.
        if in_registers {
            let packed = line_kept.unwrap_or_else(|| {
                lstm_line::pack(p.w_hh, h, w_hh_rows);
                w_hh_rows
            });
            // SAFETY: the T rows of `out` (N = 1; the caller's contract).
            unsafe { lstm_line::run(&pre, packed, h, lengths[0], reverse, out.ptr, out.ld) };
            return;
        }
        let w_hh_t = match kept {
            Some(k) => MatRef::row_major(k.w_hh, h, g4),
            None if on_panels => MatRef::row_major(p.w_hh, g4, h).t(),
            None => {
                transpose_into(MatRef::row_major(p.w_hh, g4, h).t(), w_hh_rows);
                MatRef::row_major(w_hh_rows, h, g4)
            }
        };
        let w_hh_t = StepWeights::new(w_hh_t, n, max_len.saturating_sub(1));
        let mut h_state = vec![0.0f32; n * h];
        let mut c_state = vec![0.0f32; n * h];
        // h·W_hhᵀ of steps whose rows are not one block (filled when needed).
        let mut recur = Vec::new();

        for s in 0..max_len {
            // h_{s-1}·W_hhᵀ for the whole batch; the state is zero at s = 0.
            // When every sample reads the same time step, its rows of `pre`
            // are one block and the product adds straight into them (beta = 1:
            // round(pre + acc), the bits of the separate sum below).
            let block = same_step(s, lengths, reverse);
            if s > 0 {
                let h_prev = MatRef::row_major(&h_state, n, h);
                match block {
                    Some(t) => w_hh_t.product(h_prev, 1.0, &mut pre[t * n * g4..(t + 1) * n * g4]),
                    None => {
                        recur.resize(n * g4, 0.0);
                        w_hh_t.product(h_prev, 0.0, &mut recur);
                    }
                }
            }
            for (j, &len) in lengths.iter().enumerate() {
                if s >= len {
                    continue;
                }
                let row = time_of(s, len, reverse) * n + j;
                let pre_row = &mut pre[row * g4..(row + 1) * g4];
                if s > 0 && block.is_none() {
                    for (a, b) in pre_row.iter_mut().zip(&recur[j * g4..(j + 1) * g4]) {
                        *a += b;
                    }
                }
                let hs = &mut h_state[j * h..(j + 1) * h];
                let cs = &mut c_state[j * h..(j + 1) * h];
                if let Some(cache) = cache.as_mut() {
                    write_all(&mut cache.h_prev[row * h..(row + 1) * h], hs);
                }
                // SAFETY: row < T·N (the caller's contract).
                let y = unsafe { out.row(row, h) };
                cell_forward(pre_row, cs, hs, y);
                if let Some(cache) = cache.as_mut() {
                    write_all(&mut cache.gates[row * g4..(row + 1) * g4], pre_row);
                    write_all(&mut cache.c[row * h..(row + 1) * h], cs);
                }
            }
        }
    });
    cache.map(|c| c.finish(lengths, h))
}

/// [`LstmCache`]'s buffers while the steps fill them: each step writes its
/// active rows (the sample's time within its length); the padding rows are
/// zeroed at the end, so nothing is cleared twice.
struct CacheSlots {
    gates: Box<[MaybeUninit<f32>]>,
    c: Box<[MaybeUninit<f32>]>,
    h_prev: Box<[MaybeUninit<f32>]>,
}

impl CacheSlots {
    fn new(rows: usize, h: usize) -> CacheSlots {
        CacheSlots {
            gates: Box::new_uninit_slice(rows * 4 * h),
            c: Box::new_uninit_slice(rows * h),
            h_prev: Box::new_uninit_slice(rows * h),
        }
    }

    /// The cache, once the steps have written every active row: sample j's
    /// rows `t * N + j` for `t < lengths[j]`.
    fn finish(mut self, lengths: &[usize], h: usize) -> LstmCache {
        let (n, g4) = (lengths.len(), 4 * h);
        let rows = self.c.len() / h.max(1);
        for (j, &len) in lengths.iter().enumerate() {
            for row in (len * n + j..rows).step_by(n) {
                filled(&mut self.gates[row * g4..(row + 1) * g4], 0.0);
                filled(&mut self.c[row * h..(row + 1) * h], 0.0);
                filled(&mut self.h_prev[row * h..(row + 1) * h], 0.0);
            }
        }
        // SAFETY: the active rows were written by the steps, the others
        // just above.
        unsafe {
            LstmCache {
                gates: self.gates.assume_init().into_vec(),
                c: self.c.assume_init().into_vec(),
                h_prev: self.h_prev.assume_init().into_vec(),
            }
        }
    }
}

thread_local! {
    /// W_hhᵀ of the direction being run, reused across calls.
    static W_HH_ROWS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `X·W_ihᵀ + bias` for `rows` rows of `x` (rows x f) and `w_ih` (4H x f),
/// row-major (rows x 4H). With few rows (a single line: T rows) `gemm`
/// computes it turned around, `(W_ih·Xᵀ + bias)ᵀ`, so that the long side is
/// the product's rows and only `x` is copied for it, not the weight.
fn input_projection(x: &[f32], w_ih: &[f32], bias: &[f32], rows: usize, f: usize) -> Vec<f32> {
    let g4 = bias.len();
    let mut pre = bias.repeat(rows);
    gemm_par(
        1.0,
        MatRef::row_major(x, rows, f),
        MatRef::row_major(w_ih, g4, f).t(),
        1.0,
        &mut pre,
    );
    pre
}

/// The time step every sample reads at step `s`, when they all have one
/// (every length above `s`, and, in reverse, all lengths equal).
fn same_step(s: usize, lengths: &[usize], reverse: bool) -> Option<usize> {
    let first = *lengths.first()?;
    let all_active = lengths.iter().all(|&len| len > s);
    let aligned = !reverse || lengths.iter().all(|&len| len == first);
    (all_active && aligned).then(|| time_of(s, first, reverse))
}

avx2_dispatch! {
    /// One LSTM cell step for one sample: `pre` (4H) holds the gate
    /// pre-activations and receives the activations σ(i), σ(f), tanh(g),
    /// σ(o); the state `c`, `h` (H each) is updated and `y` (H) receives h.
    fn cell_forward(pre: &mut [f32], c: &mut [f32], h: &mut [f32], y: &mut [f32]) {
        let n = c.len();
        let (gi, rest) = pre[..4 * n].split_at_mut(n);
        let (gf, rest) = rest.split_at_mut(n);
        let (gg, go) = rest.split_at_mut(n);
        let (h, y) = (&mut h[..n], &mut y[..n]);
        for k in 0..n {
            let i = fastmath::sigmoid(gi[k]);
            let fg = fastmath::sigmoid(gf[k]);
            let g = fastmath::tanh(gg[k]);
            let o = fastmath::sigmoid(go[k]);
            let cv = fg * c[k] + i * g;
            let hv = o * fastmath::tanh(cv);
            c[k] = cv;
            h[k] = hv;
            y[k] = hv;
            gi[k] = i;
            gf[k] = fg;
            gg[k] = g;
            go[k] = o;
        }
    }
}

avx2_dispatch! {
    /// Backward through one cell step for one sample: from the saved
    /// activations `gates` (4H), the cell state after (`c`) and before
    /// (`c_prev`) the step, and the gradients reaching h (`dy + dh_next`)
    /// and c (`dc`, updated to the gradient of `c_prev`), writes the gate
    /// pre-activation gradients into `dg` (4H).
    fn cell_backward(
        gates: &[f32],
        c: &[f32],
        c_prev: &[f32],
        dy: &[f32],
        dh_next: &[f32],
        dc: &mut [f32],
        dg: &mut [f32],
    ) {
        let n = c.len();
        let (gi, rest) = gates[..4 * n].split_at(n);
        let (gf, rest) = rest.split_at(n);
        let (gg, go) = rest.split_at(n);
        let (dgi, rest) = dg[..4 * n].split_at_mut(n);
        let (dgf, rest) = rest.split_at_mut(n);
        let (dgg, dgo) = rest.split_at_mut(n);
        let (c_prev, dy, dh_next, dc) = (&c_prev[..n], &dy[..n], &dh_next[..n], &mut dc[..n]);
        for k in 0..n {
            let (i, fg, g, o) = (gi[k], gf[k], gg[k], go[k]);
            let dh = dy[k] + dh_next[k];
            let tc = fastmath::tanh(c[k]);
            let d = dc[k] + dh * o * (1.0 - tc * tc);
            dgi[k] = d * g * i * (1.0 - i);
            dgf[k] = d * c_prev[k] * fg * (1.0 - fg);
            dgg[k] = d * i * (1.0 - g * g);
            dgo[k] = dh * tc * o * (1.0 - o);
            dc[k] = d * fg;
        }
    }
}

/// Which gradients [`lstm_backward`] should compute.
#[derive(Clone, Copy, Debug)]
pub struct LstmNeeds {
    /// Gradient of the input sequence.
    pub x: bool,
    /// Gradient of `w_ih`.
    pub w_ih: bool,
    /// Gradient of `w_hh`.
    pub w_hh: bool,
    /// Gradient of the biases (both get the same one).
    pub bias: bool,
}

/// Backward through time of [`lstm_forward`] from the output gradient `dy`
/// (T, N, H). Rows of padding steps contribute nothing. Deterministic: every
/// sum runs in a fixed order.
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward(
    dy: &[f32],
    x: &[f32],
    p: LstmParams,
    dims: LstmDims,
    lengths: &[usize],
    reverse: bool,
    cache: &LstmCache,
    needs: LstmNeeds,
) -> LstmGrads {
    let LstmDims {
        steps: t_len,
        batch: n,
        input: f,
        hidden: h,
    } = dims;
    let g4 = 4 * h;
    let rows = t_len * n;
    debug_assert_eq!(dy.len(), rows * h);

    // Each step writes its active rows; the padding rows are zeroed below.
    let mut d_gates = Box::<[f32]>::new_uninit_slice(rows * g4);
    // Gradients flowing into the state before the step being processed.
    let mut dh_next = vec![0.0f32; n * h];
    let mut dc_next = vec![0.0f32; n * h];
    // The step's gate gradients gathered per sample (zero for samples not in
    // this step), to carry dh back through W_hh in one GEMM.
    let mut step_gates = vec![0.0f32; n * g4];
    let max_len = lengths.iter().copied().max().unwrap_or(0);
    let w_hh = StepWeights::new(
        MatRef::row_major(p.w_hh, g4, h),
        n,
        max_len.saturating_sub(1),
    );
    let zeros = vec![0.0f32; h];

    for s in (0..max_len).rev() {
        for (j, &len) in lengths.iter().enumerate() {
            let sg = &mut step_gates[j * g4..(j + 1) * g4];
            if s >= len {
                sg.fill(0.0);
                continue;
            }
            let row = time_of(s, len, reverse) * n + j;
            let c_prev = if s == 0 {
                &zeros[..]
            } else {
                let prev = time_of(s - 1, len, reverse) * n + j;
                &cache.c[prev * h..(prev + 1) * h]
            };
            let gates = &cache.gates[row * g4..(row + 1) * g4];
            let c = &cache.c[row * h..(row + 1) * h];
            let dyr = &dy[row * h..(row + 1) * h];
            let dhn = &dh_next[j * h..(j + 1) * h];
            let dcn = &mut dc_next[j * h..(j + 1) * h];
            cell_backward(gates, c, c_prev, dyr, dhn, dcn, sg);
            write_all(&mut d_gates[row * g4..(row + 1) * g4], sg);
        }
        // dh_{s-1} = dGates_s·W_hh; nothing flows before the first step.
        if s > 0 {
            w_hh.product(MatRef::row_major(&step_gates, n, g4), 0.0, &mut dh_next);
        }
    }

    for (j, &len) in lengths.iter().enumerate() {
        for row in (len * n + j..rows).step_by(n) {
            filled(&mut d_gates[row * g4..(row + 1) * g4], 0.0);
        }
    }
    // SAFETY: the steps wrote every active row, the loop above the rest.
    let d_gates = unsafe { d_gates.assume_init() };
    let dg = MatRef::row_major(&d_gates, rows, g4);
    let dx = needs.x.then(|| {
        let mut dx = vec![0.0f32; rows * f];
        gemm_par(1.0, dg, MatRef::row_major(p.w_ih, g4, f), 0.0, &mut dx);
        dx
    });
    let dw_ih = needs.w_ih.then(|| {
        let mut dw = vec![0.0f32; g4 * f];
        gemm(1.0, dg.t(), MatRef::row_major(x, rows, f), 0.0, &mut dw);
        dw
    });
    let dw_hh = needs.w_hh.then(|| {
        let mut dw = vec![0.0f32; g4 * h];
        gemm(
            1.0,
            dg.t(),
            MatRef::row_major(&cache.h_prev, rows, h),
            0.0,
            &mut dw,
        );
        dw
    });
    let bias = needs.bias.then(|| {
        let mut db = vec![0.0f32; g4];
        for row in d_gates.chunks_exact(g4.max(1)) {
            db.iter_mut().zip(row).for_each(|(b, v)| *b += v);
        }
        db
    });
    LstmGrads {
        x: dx,
        w_ih: dw_ih,
        w_hh: dw_hh,
        bias,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::small_gemm::Kernel;
    use crate::rng::Rng;

    fn values(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.range(-1.0, 1.0)).collect()
    }

    /// One sequence with nothing saved runs its steps in registers
    /// (`lstm_line`) where AVX-512 or AVX2 is present: the same bits as the
    /// general path (which the saving run takes), for every hidden size it
    /// takes,
    /// both directions, a length short of the padded steps, and inputs that
    /// drive the gates into the clamps of exp and tanh and below tanh's
    /// small-argument cutoff.
    #[test]
    fn one_sequence_in_registers_matches_the_general_path() {
        if !lstm_line::applies(8) && !lstm_line::applies(16) {
            eprintln!("skipped: the CPU lacks AVX-512 and AVX2");
            return;
        }
        let mut rng = Rng::seed(12);
        for h in (8..=64).step_by(8).filter(|&h| lstm_line::applies(h)) {
            let (t, f) = (9, 6);
            let scaled = |len: usize, scale: f32, rng: &mut Rng| -> Vec<f32> {
                values(len, rng).into_iter().map(|v| v * scale).collect()
            };
            let w_ih = scaled(4 * h * f, 0.5, &mut rng);
            let w_hh = scaled(4 * h * h, 0.4, &mut rng);
            let (b_ih, mut b_hh) = (values(4 * h, &mut rng), values(4 * h, &mut rng));
            // The g gate's biases cancel, so that a tiny input gives it a
            // tiny pre-activation.
            for j in 2 * h..3 * h {
                b_hh[j] = -b_ih[j];
            }
            let p = LstmParams {
                w_ih: &w_ih,
                w_hh: &w_hh,
                b_ih: &b_ih,
                b_hh: &b_hh,
            };
            // Steps of tiny, huge (saturating) and ordinary inputs.
            let mut x = values(t * f, &mut rng);
            x[..f].iter_mut().for_each(|v| *v *= 1e-6);
            x[f..2 * f].iter_mut().for_each(|v| *v *= 400.0);
            let dims = LstmDims {
                steps: t,
                batch: 1,
                input: f,
                hidden: h,
            };
            for reverse in [false, true] {
                for len in [t, t - 2, 1] {
                    let (fast, _) = lstm_forward(&x, p, dims, &[len], reverse, false);
                    let (general, cache) = lstm_forward(&x, p, dims, &[len], reverse, true);
                    assert!(cache.is_some());
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&fast),
                        bits(&general),
                        "h {h} reverse {reverse} len {len}"
                    );
                }
            }
        }
    }

    /// Both directions written into one (T, N, 2H) output give each row the
    /// forward direction's h then the reverse one's, with zeros at padding
    /// steps and the caches of the directions run alone: one line (the
    /// steps in registers where the CPU takes them), and a ragged batch.
    #[test]
    fn both_directions_share_one_output() {
        let mut rng = Rng::seed(21);
        let (t, f, h) = (7, 5, 16);
        let params: Vec<[Vec<f32>; 4]> = (0..2)
            .map(|_| {
                [
                    values(4 * h * f, &mut rng),
                    values(4 * h * h, &mut rng),
                    values(4 * h, &mut rng),
                    values(4 * h, &mut rng),
                ]
            })
            .collect();
        let p = |d: usize| LstmParams {
            w_ih: &params[d][0],
            w_hh: &params[d][1],
            b_ih: &params[d][2],
            b_hh: &params[d][3],
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (lengths, save) in [
            (vec![t], false),
            (vec![t - 2], false),
            (vec![t, 3, 5], false),
            (vec![t, 3, 5], true),
        ] {
            let n = lengths.len();
            let x = values(t * n * f, &mut rng);
            let dims = LstmDims {
                steps: t,
                batch: n,
                input: f,
                hidden: h,
            };
            let (both, caches) =
                bilstm_forward_kept(&x, [p(0), p(1)], [None, None], dims, &lengths, save);
            assert_eq!(both.len(), t * n * 2 * h);
            for (d, cache) in caches.iter().enumerate() {
                let (alone, alone_cache) = lstm_forward(&x, p(d), dims, &lengths, d == 1, save);
                let half: Vec<f32> = both
                    .chunks_exact(2 * h)
                    .flat_map(|row| row[d * h..(d + 1) * h].to_vec())
                    .collect();
                assert_eq!(bits(&half), bits(&alone), "{lengths:?} direction {d}");
                assert_eq!(cache.is_some(), save);
                if let (Some(c), Some(a)) = (cache, alone_cache) {
                    assert_eq!(bits(&c.gates), bits(&a.gates));
                    assert_eq!(bits(&c.c), bits(&a.c));
                    assert_eq!(bits(&c.h_prev), bits(&a.h_prev));
                    // The cache's padding rows are zero: sample 1 (length
                    // 3) from t = 3 on.
                    for t in 3..t {
                        let row = t * n + 1;
                        assert!(c.gates[row * 4 * h..(row + 1) * 4 * h]
                            .iter()
                            .all(|&v| v == 0.0));
                        assert!(c.c[row * h..(row + 1) * h].iter().all(|&v| v == 0.0));
                        assert!(c.h_prev[row * h..(row + 1) * h].iter().all(|&v| v == 0.0));
                    }
                }
            }
            // Padding rows of both directions are zero: sample 1 (length
            // 3) at t = 6, when the batch is ragged.
            if n == 3 {
                let row = 6 * n + 1;
                assert!(both[row * 2 * h..(row + 1) * 2 * h]
                    .iter()
                    .all(|&v| v == 0.0));
            }
        }
    }

    /// Adding h·W_hhᵀ straight into a block of rows (every sample at the
    /// same step) gives the bits of the separate product and sum that
    /// ragged batches take: two samples alone, and beside a shorter third
    /// one (which makes every reverse step, and the forward steps past its
    /// length, take the separate path), have the same outputs.
    #[test]
    fn block_and_separate_recurrent_sums_agree() {
        let mut rng = Rng::seed(4);
        let (t, f, h) = (6, 5, 7);
        let w_ih = values(4 * h * f, &mut rng);
        let w_hh = values(4 * h * h, &mut rng);
        let (b_ih, b_hh) = (values(4 * h, &mut rng), values(4 * h, &mut rng));
        let p = LstmParams {
            w_ih: &w_ih,
            w_hh: &w_hh,
            b_ih: &b_ih,
            b_hh: &b_hh,
        };
        let three = values(t * 3 * f, &mut rng);
        // The first two samples of each step, (T, 2, F).
        let two: Vec<f32> = three
            .chunks(3 * f)
            .flat_map(|step| step[..2 * f].to_vec())
            .collect();
        for reverse in [false, true] {
            let dims = |batch| LstmDims {
                steps: t,
                batch,
                input: f,
                hidden: h,
            };
            let (y2, _) = lstm_forward(&two, p, dims(2), &[t, t], reverse, false);
            let (y3, _) = lstm_forward(&three, p, dims(3), &[t, t, t - 2], reverse, false);
            for s in 0..t {
                assert_eq!(
                    &y2[s * 2 * h..(s + 1) * 2 * h],
                    &y3[s * 3 * h..s * 3 * h + 2 * h],
                    "reverse {reverse}, step {s}"
                );
            }
        }
    }

    /// A batch whose recurrent weight is large enough to be read from
    /// panels (H = 128) gives each sample the bits it gets alone (one row:
    /// read in place), going forward (outputs, caches) and back (the input
    /// gradient, which every step's dh feeds): equal lengths (products added
    /// into a block of rows) and ragged ones (separate sums).
    #[test]
    fn steps_on_panels_match_each_sample_alone() {
        let mut rng = Rng::seed(31);
        let (t, f, h) = (5, 6, 128);
        assert!(StepWeights::packs(2, 4 * h * h, t - 1) == Kernel::best().is_some());
        let w_ih = values(4 * h * f, &mut rng);
        let w_hh: Vec<f32> = values(4 * h * h, &mut rng)
            .iter()
            .map(|v| v * 0.2)
            .collect();
        let (b_ih, b_hh) = (values(4 * h, &mut rng), values(4 * h, &mut rng));
        let p = LstmParams {
            w_ih: &w_ih,
            w_hh: &w_hh,
            b_ih: &b_ih,
            b_hh: &b_hh,
        };
        let needs = LstmNeeds {
            x: true,
            w_ih: false,
            w_hh: false,
            bias: false,
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let dims = |batch| LstmDims {
            steps: t,
            batch,
            input: f,
            hidden: h,
        };
        for lengths in [vec![t, t, t], vec![t, 3, 4]] {
            let n = lengths.len();
            let x = values(t * n * f, &mut rng);
            let dy = values(t * n * h, &mut rng);
            for reverse in [false, true] {
                let (y, cache) = lstm_forward(&x, p, dims(n), &lengths, reverse, true);
                let cache = cache.unwrap();
                let grads = lstm_backward(&dy, &x, p, dims(n), &lengths, reverse, &cache, needs);
                let dx = grads.x.unwrap();
                // Sample j's rows of a (T, N, width) buffer.
                let rows_of = |v: &[f32], j: usize, width: usize| -> Vec<f32> {
                    (0..t)
                        .flat_map(|s| v[(s * n + j) * width..][..width].to_vec())
                        .collect()
                };
                for (j, &len) in lengths.iter().enumerate() {
                    let xj = rows_of(&x, j, f);
                    let (yj, cj) = lstm_forward(&xj, p, dims(1), &[len], reverse, true);
                    let cj = cj.unwrap();
                    let dyj = rows_of(&dy, j, h);
                    let gj = lstm_backward(&dyj, &xj, p, dims(1), &[len], reverse, &cj, needs);
                    let case = format!("{lengths:?} reverse {reverse} sample {j}");
                    assert_eq!(bits(&rows_of(&y, j, h)), bits(&yj), "y {case}");
                    assert_eq!(bits(&rows_of(&cache.c, j, h)), bits(&cj.c), "c {case}");
                    assert_eq!(bits(&rows_of(&dx, j, f)), bits(&gj.x.unwrap()), "dx {case}");
                }
            }
        }
    }

    /// The turned-around input projection gives the bits of `X·W_ihᵀ`.
    #[test]
    fn input_projection_orientations_agree() {
        let mut rng = Rng::seed(8);
        for (rows, f, g4) in [(32, 128, 192), (5, 7, 64), (63, 300, 512)] {
            let x = values(rows * f, &mut rng);
            let w = values(g4 * f, &mut rng);
            let bias = values(g4, &mut rng);
            let got = input_projection(&x, &w, &bias, rows, f);
            let mut want = bias.repeat(rows);
            crate::cpu::gemm::gemm_packed(
                1.0,
                MatRef::row_major(&x, rows, f),
                MatRef::row_major(&w, g4, f).t(),
                1.0,
                &mut want,
            );
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{rows} x {f} x {g4}");
        }
    }
}
