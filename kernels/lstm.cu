// The fused LSTM cell of one direction, forward and backward, around the
// hoisted input GEMM, as cpu::lstm (gate order i, f, g, o as torch.nn.LSTM).
// Rows of the (T * N, ...) buffers are t * N + n. Sample n has lengths[n]
// real steps; at step s it reads time s, or lengths[n] - 1 - s when `reverse`.
// One thread per (sample, hidden unit); samples past their length are skipped.

__device__ __forceinline__ i64 time_of(i64 s, i64 len, int reverse) {
  return reverse ? len - 1 - s : s;
}

// pre (rows, 4H) = b_ih + b_hh on every row, before X * W_ih^T is added.
extern "C" __global__ void lstm_bias_rows(const float* b_ih, const float* b_hh, i64 g4, float* pre,
                                          i64 total) {
  GRID_STRIDE(i, total) { pre[i] = b_ih[i % g4] + b_hh[i % g4]; }
}

// Step s: pre holds the input projections, recur (N, 4H) = h_{s-1} * W_hh^T
// (not read at s = 0). Updates the state h, c (N, H), writes the output row
// (T * N, H) and, when `save`, the activated gates, the new c and the h
// before the step into the caches (rows as the output).
extern "C" __global__ void lstm_cell_forward(i64 s, const float* pre, const float* recur,
                                             const i64* lengths, int reverse, i64 n, i64 h,
                                             float* h_state, float* c_state, float* out,
                                             int save, float* gates, float* c_cache,
                                             float* h_prev) {
  GRID_STRIDE(idx, n * h) {
    const i64 j = idx / h, k = idx % h;
    const i64 len = lengths[j];
    if (s >= len) continue;
    const i64 row = time_of(s, len, reverse) * n + j;
    const float* p = pre + row * 4 * h;
    float pi = p[k], pf = p[h + k], pg = p[2 * h + k], po = p[3 * h + k];
    if (s > 0) {
      const float* r = recur + j * 4 * h;
      pi += r[k];
      pf += r[h + k];
      pg += r[2 * h + k];
      po += r[3 * h + k];
    }
    const float i = logistic(pi), f = logistic(pf), g = tanhf(pg), o = logistic(po);
    const float c = f * c_state[idx] + i * g;
    const float hv = o * tanhf(c);
    if (save) {
      h_prev[row * h + k] = h_state[idx];
      float* gr = gates + row * 4 * h;
      gr[k] = i;
      gr[h + k] = f;
      gr[2 * h + k] = g;
      gr[3 * h + k] = o;
      c_cache[row * h + k] = c;
    }
    c_state[idx] = c;
    h_state[idx] = hv;
    out[row * h + k] = hv;
  }
}

// Backward through step s from the caches of the forward pass, the output
// gradient dy (T * N, H) and the gradients reaching the state after the step
// (dh_next, dc_next: (N, H); dc_next becomes the gradient of c before the
// step). Writes the gate pre-activation gradients into step_gates (N, 4H;
// zero for samples past their length) and into their row of d_gates (T * N, 4H).
extern "C" __global__ void lstm_cell_backward(i64 s, const float* gates, const float* c_cache,
                                              const float* dy, const i64* lengths, int reverse,
                                              i64 n, i64 h, const float* dh_next, float* dc_next,
                                              float* step_gates, float* d_gates) {
  GRID_STRIDE(idx, n * h) {
    const i64 j = idx / h, k = idx % h;
    const i64 len = lengths[j];
    float* sg = step_gates + j * 4 * h;
    if (s >= len) {
      sg[k] = 0.f;
      sg[h + k] = 0.f;
      sg[2 * h + k] = 0.f;
      sg[3 * h + k] = 0.f;
      continue;
    }
    const i64 row = time_of(s, len, reverse) * n + j;
    const float c_prev = s == 0 ? 0.f : c_cache[(time_of(s - 1, len, reverse) * n + j) * h + k];
    const float* gr = gates + row * 4 * h;
    const float i = gr[k], f = gr[h + k], g = gr[2 * h + k], o = gr[3 * h + k];
    const float dh = dy[row * h + k] + dh_next[idx];
    const float tc = tanhf(c_cache[row * h + k]);
    const float d = dc_next[idx] + dh * o * (1.f - tc * tc);
    const float dgi = d * g * i * (1.f - i);
    const float dgf = d * c_prev * f * (1.f - f);
    const float dgg = d * i * (1.f - g * g);
    const float dgo = dh * tc * o * (1.f - o);
    dc_next[idx] = d * f;
    sg[k] = dgi;
    sg[h + k] = dgf;
    sg[2 * h + k] = dgg;
    sg[3 * h + k] = dgo;
    float* dr = d_gates + row * 4 * h;
    dr[k] = dgi;
    dr[h + k] = dgf;
    dr[2 * h + k] = dgg;
    dr[3 * h + k] = dgo;
  }
}
