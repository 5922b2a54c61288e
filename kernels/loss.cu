// The elementwise parts of the task losses: cross-entropy with label
// smoothing from log-probabilities (ops::cross_entropy) and the squared error
// (ops::mse_loss), forward and backward.

__device__ __forceinline__ float upstream(const float* g, i64 i, int per_item, float divisor) {
  return per_item ? g[i] : g[0] / divisor;
}

// per_row[r] = -(1 - eps) lp[r, y] - eps * mean(lp[r, :]) with y = targets[r];
// one block per row of k classes.
extern "C" __global__ void cross_entropy_rows(const float* lp, const i64* targets, i64 rows,
                                              i64 k, float eps, float* per_row) {
  BLOCK_STRIDE(r, rows) {
    float s = 0.f;
    for (i64 j = threadIdx.x; j < k; j += blockDim.x) s += lp[r * k + j];
    s = block_sum(s);
    if (threadIdx.x == 0) per_row[r] = -(1.f - eps) * lp[r * k + targets[r]] - eps * (s / (float)k);
  }
}

// grad = (exp(lp) - target) * scale, target = eps / k + (1 - eps) at the label.
extern "C" __global__ void cross_entropy_backward(const float* lp, const i64* targets,
                                                  const float* g, int per_row, float divisor,
                                                  i64 k, float eps, float* grad, i64 n) {
  GRID_STRIDE(i, n) {
    const i64 r = i / k, c = i % k;
    const float target = eps / (float)k + (c == targets[r] ? 1.f - eps : 0.f);
    grad[i] = (expf(lp[i]) - target) * upstream(g, r, per_row, divisor);
  }
}

// diff = a - b and sq = diff * diff.
extern "C" __global__ void mse_forward(const float* a, const float* b, float* diff, float* sq,
                                       i64 n) {
  GRID_STRIDE(i, n) {
    const float d = a[i] - b[i];
    diff[i] = d;
    sq[i] = d * d;
  }
}

// ga = 2 diff * scale and gb = -ga; either may be null (not wanted).
extern "C" __global__ void mse_backward(const float* diff, const float* g, int per_item,
                                        float divisor, float* ga, float* gb, i64 n) {
  GRID_STRIDE(i, n) {
    const float v = 2.f * diff[i] * upstream(g, i, per_item, divisor);
    if (ga) ga[i] = v;
    if (gb) gb[i] = -v;
  }
}
