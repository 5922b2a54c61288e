// Row-wise softmax and log-softmax over the last axis with a temperature,
// forward and backward, as cpu::softmax. One block per row of k values.

// out = log_softmax(x * inv_t) per row, or its exponential (softmax) when `exp_out`.
extern "C" __global__ void log_softmax_rows(const float* x, float* out, i64 rows, i64 k,
                                            float inv_t, int exp_out) {
  BLOCK_STRIDE(r, rows) {
    const float* src = x + r * k;
    float* dst = out + r * k;
    float m = -RT_INF_F;
    for (i64 j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, src[j] * inv_t);
    m = block_reduce(m, MaxOp(), -RT_INF_F);
    float s = 0.f;
    for (i64 j = threadIdx.x; j < k; j += blockDim.x) s += expf(src[j] * inv_t - m);
    s = block_sum(s);
    const float lse = m + logf(s);
    for (i64 j = threadIdx.x; j < k; j += blockDim.x) {
      const float v = src[j] * inv_t - lse;
      dst[j] = exp_out ? expf(v) : v;
    }
  }
}

// Gradient of log_softmax(x * inv_t) from its output y and output gradient g:
// (g - exp(y) * sum(g)) * inv_t.
extern "C" __global__ void log_softmax_backward_rows(const float* y, const float* g, float* out,
                                                     i64 rows, i64 k, float inv_t) {
  BLOCK_STRIDE(r, rows) {
    const float* yr = y + r * k;
    const float* gr = g + r * k;
    float s = 0.f;
    for (i64 j = threadIdx.x; j < k; j += blockDim.x) s += gr[j];
    s = block_sum(s);
    for (i64 j = threadIdx.x; j < k; j += blockDim.x)
      out[r * k + j] = (gr[j] - expf(yr[j]) * s) * inv_t;
  }
}

// Gradient of softmax(x * inv_t) from its output y and output gradient g:
// y * (g - sum(g * y)) * inv_t.
extern "C" __global__ void softmax_backward_rows(const float* y, const float* g, float* out,
                                                 i64 rows, i64 k, float inv_t) {
  BLOCK_STRIDE(r, rows) {
    const float* yr = y + r * k;
    const float* gr = g + r * k;
    float dot = 0.f;
    for (i64 j = threadIdx.x; j < k; j += blockDim.x) dot += yr[j] * gr[j];
    dot = block_sum(dot);
    for (i64 j = threadIdx.x; j < k; j += blockDim.x)
      out[r * k + j] = yr[j] * (gr[j] - dot) * inv_t;
  }
}
