// CTC loss in log space, as cpu::ctc and ops::ctc: alpha and beta
// recursions in f64 over the blank-extended labels, one block per sample,
// the block's threads splitting the states of each frame. -inf is
// probability 0 throughout and is kept exact (never -inf - -inf = NaN).

#define NEG_INF (-RT_INF_D)

// ln(e^a + e^b) with the edge cases of cpu::ctc::log_add_exp: -inf leaves the
// other term, NaN propagates, +inf absorbs.
__device__ double log_add_exp(double a, double b) {
  if (a == NEG_INF) return b;
  if (b == NEG_INF) return a;
  if (a != a || b != b) return __longlong_as_double(0x7ff8000000000000LL);
  const double hi = a >= b ? a : b, lo = a >= b ? b : a;
  if (hi == RT_INF_D) return hi;
  return hi + log1p(exp(lo - hi));
}

// Whether state s may be entered from s - 2 (skipping a blank).
__device__ __forceinline__ bool can_skip(const i64* ext, i64 s) {
  return s >= 2 && ext[s] != ext[s - 2];
}

// Per sample n of log_probs lp (T, N, C): ext + n * max_states holds its
// ext_len[n] extended labels, input_lengths[n] its frames. Writes its loss
// -ln p(target) (+inf when no alignment exists; 0 instead when
// `zero_infinity`) and, when `want_grad`, d loss / d lp into grad (T, N, C),
// zero past the sample's frames and everywhere when the loss is not finite.
// alpha and beta are workspaces of T * max_states values per sample.
extern "C" __global__ void ctc_loss_grad(const float* lp, i64 t_max, i64 batch, i64 classes,
                                         const i64* input_lengths, const i64* ext,
                                         const i64* ext_len, i64 max_states, double* alpha,
                                         double* beta, int want_grad, int zero_infinity,
                                         double* losses, double* grad) {
  __shared__ double loss_shared;
  BLOCK_STRIDE(n, batch) {
    const i64 len = input_lengths[n], L = ext_len[n];
    const i64* e = ext + n * max_states;
    double* a = alpha + n * t_max * max_states;
    double* b = beta + n * t_max * max_states;
#define LP(t, c) ((double)lp[((t) * batch + n) * classes + (c)])
    // Alpha, frame by frame: stay, advance from s - 1, or skip from s - 2.
    if (len > 0) {
      for (i64 s = threadIdx.x; s < L; s += blockDim.x)
        a[s] = s == 0 ? LP(0, e[0]) : (s == 1 ? LP(0, e[1]) : NEG_INF);
      __syncthreads();
      for (i64 t = 1; t < len; ++t) {
        const double* prev = a + (t - 1) * L;
        double* cur = a + t * L;
        for (i64 s = threadIdx.x; s < L; s += blockDim.x) {
          double acc = prev[s];
          if (s >= 1) acc = log_add_exp(acc, prev[s - 1]);
          if (can_skip(e, s)) acc = log_add_exp(acc, prev[s - 2]);
          cur[s] = acc == NEG_INF ? NEG_INF : acc + LP(t, e[s]);
        }
        __syncthreads();
      }
    }
    if (threadIdx.x == 0) {
      double loss;
      if (len == 0) {
        loss = L == 1 ? 0.0 : RT_INF_D;
      } else {
        const double* last = a + (len - 1) * L;
        double log_p = last[L - 1];
        if (L >= 2) log_p = log_add_exp(log_p, last[L - 2]);
        loss = -log_p;
      }
      loss_shared = loss;
      losses[n] = (zero_infinity && loss == RT_INF_D) ? 0.0 : loss;
    }
    __syncthreads();
    const double loss = loss_shared;
    if (want_grad) {
      const bool finite = loss == loss && loss != RT_INF_D && loss != NEG_INF;
      if (finite && len > 0) {
        // Beta, the mirror of alpha, from the last frame down.
        double* last = b + (len - 1) * L;
        for (i64 s = threadIdx.x; s < L; s += blockDim.x)
          last[s] = (s == L - 1 || s == L - 2) ? LP(len - 1, e[s]) : NEG_INF;
        __syncthreads();
        for (i64 t = len - 2; t >= 0; --t) {
          const double* next = b + (t + 1) * L;
          double* cur = b + t * L;
          for (i64 s = threadIdx.x; s < L; s += blockDim.x) {
            double acc = next[s];
            if (s + 1 < L) acc = log_add_exp(acc, next[s + 1]);
            if (s + 2 < L && can_skip(e, s + 2)) acc = log_add_exp(acc, next[s + 2]);
            cur[s] = acc == NEG_INF ? NEG_INF : acc + LP(t, e[s]);
          }
          __syncthreads();
        }
      }
      // -exp(ln sum_{s: l'(s) = c} alpha_t(s) beta_t(s) - lp + loss), states in order.
      for (i64 q = threadIdx.x; q < t_max * classes; q += blockDim.x) {
        const i64 t = q / classes, c = q % classes;
        double gv = 0.0;
        if (finite && t < len) {
          double occ = NEG_INF;
          for (i64 s = 0; s < L; ++s)
            if (e[s] == c) occ = log_add_exp(occ, a[t * L + s] + b[t * L + s]);
          const double l = LP(t, c);
          gv = (occ == NEG_INF || l == NEG_INF) ? 0.0 : -exp(occ - l + loss);
        }
        grad[(t * batch + n) * classes + c] = gv;
      }
    }
#undef LP
    __syncthreads();  // loss_shared is rewritten for the next sample
  }
}

// The result of the loss: out[n] = losses[n] as f32 when `per_sample`
// (no reduction), else out[0] = sum_n losses[n] * factors[n] summed in order.
extern "C" __global__ void ctc_reduce(const double* losses, const double* factors, i64 batch,
                                      int per_sample, float* out) {
  if (per_sample) {
    GRID_STRIDE(n, batch) { out[n] = (float)losses[n]; }
  } else if (blockIdx.x == 0 && threadIdx.x == 0) {
    double total = 0.0;
    for (i64 n = 0; n < batch; ++n) total += losses[n] * factors[n];
    out[0] = (float)total;
  }
}

// d result / d lp (T, N, C): grad times upstream * factors[n] for the frames
// of sample n, 0 after; upstream is g[n] when `per_sample`, else g[0].
extern "C" __global__ void ctc_backward(const double* grad, const double* factors,
                                        const float* g, int per_sample, const i64* input_lengths,
                                        i64 t_max, i64 batch, i64 classes, float* out) {
  GRID_STRIDE(i, t_max * batch * classes) {
    const i64 n = (i / classes) % batch, t = i / (classes * batch);
    const double upstream = (double)(per_sample ? g[n] : g[0]);
    out[i] = t < input_lengths[n] ? (float)(grad[i] * (upstream * factors[n])) : 0.f;
  }
}
