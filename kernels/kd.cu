// The elementwise parts of the distillation losses: the KL divergence between
// rows of log-probabilities (ops::kl_div, used by soft and sequence KD),
// forward per row and backward to both arguments.

// Row r of `rows` from a per-row or reduced upstream gradient g: g[r] when
// `per_row` (no reduction), else g[0] / divisor (1 for a sum, rows for a mean).
__device__ __forceinline__ float row_scale(const float* g, i64 r, int per_row, float divisor) {
  return per_row ? g[r] : g[0] / divisor;
}

// per_row[r] = sum_k p (log p - log q) with p = exp(lp), and 0 log 0 = 0; one
// block per row of k classes.
extern "C" __global__ void kl_div_rows(const float* lq, const float* lp, i64 rows, i64 k,
                                       float* per_row) {
  BLOCK_STRIDE(r, rows) {
    float s = 0.f;
    for (i64 j = threadIdx.x; j < k; j += blockDim.x) {
      const float l = lp[r * k + j];
      const float p = expf(l);
      s += p == 0.f ? 0.f : p * (l - lq[r * k + j]);
    }
    s = block_sum(s);
    if (threadIdx.x == 0) per_row[r] = s;
  }
}

// Gradients of the KL divergence, scaled per row: to log q, -p; to log p,
// p (log p - log q + 1) (0 where p = 0). gq or gp may be null (not wanted).
extern "C" __global__ void kl_div_backward(const float* lq, const float* lp, const float* g,
                                           int per_row, float divisor, i64 k, i64 n, float* gq,
                                           float* gp) {
  GRID_STRIDE(i, n) {
    const float scale = row_scale(g, i / k, per_row, divisor);
    const float l = lp[i];
    const float e = expf(l);
    if (gq) gq[i] = -e * scale;
    if (gp) gp[i] = (e == 0.f ? 0.f : e * (l - lq[i] + 1.f)) * scale;
  }
}
