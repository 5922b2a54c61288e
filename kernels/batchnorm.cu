// 2-D batch normalisation over (n, c, plane), as cpu::batchnorm2d and the
// statistics handling of ops::batchnorm2d. Channel sums run in f64, one block
// per channel.

// stats[2 ch] = mean and stats[2 ch + 1] = biased variance of channel ch, in
// two passes over its n * plane values.
extern "C" __global__ void bn_batch_stats(const float* x, i64 n, i64 c, i64 plane, double* stats) {
  const i64 count = n * plane;
  BLOCK_STRIDE(ch, c) {
    double s = 0.0;
    for (i64 j = threadIdx.x; j < count; j += blockDim.x)
      s += (double)x[((j / plane) * c + ch) * plane + j % plane];
    const double mean = block_sum(s) / (double)count;
    double q = 0.0;
    for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
      const double d = (double)x[((j / plane) * c + ch) * plane + j % plane] - mean;
      q += d * d;
    }
    q = block_sum(q);
    if (threadIdx.x == 0) {
      stats[2 * ch] = mean;
      stats[2 * ch + 1] = q / (double)count;
    }
  }
}

// The per-channel mean and 1 / sqrt(var + eps) the normalisation uses. In
// training, from the batch `stats`, and the running statistics move towards
// them (the variance unbiased by `unbias` = count / (count - 1)); otherwise
// from the running statistics, left unchanged.
extern "C" __global__ void bn_prepare(const double* stats, float* run_mean, float* run_var, i64 c,
                                      double eps, float momentum, double unbias, int training,
                                      float* mean, float* rstd) {
  GRID_STRIDE(ch, c) {
    if (training) {
      const double mu = stats[2 * ch], var = stats[2 * ch + 1];
      run_mean[ch] = (1.f - momentum) * run_mean[ch] + momentum * (float)mu;
      run_var[ch] = (1.f - momentum) * run_var[ch] + momentum * (float)(var * unbias);
      mean[ch] = (float)mu;
      rstd[ch] = (float)(1.0 / sqrt(var + eps));
    } else {
      mean[ch] = run_mean[ch];
      rstd[ch] = (float)(1.0 / sqrt((double)run_var[ch] + eps));
    }
  }
}

// y = (x - mean) * (rstd * gamma) + beta per channel, then max(y, 0) when
// `relu`; y may be x.
extern "C" __global__ void bn_forward(const float* x, const float* mean, const float* rstd,
                                      const float* gamma, const float* beta, i64 c, i64 plane,
                                      int relu, float* y, i64 total) {
  GRID_STRIDE(i, total) {
    const i64 ch = (i / plane) % c;
    const float v = (x[i] - mean[ch]) * (rstd[ch] * gamma[ch]) + beta[ch];
    y[i] = relu ? fmaxf(v, 0.f) : v;
  }
}

// Per channel: sums[2 ch] = sum(dy), sums[2 ch + 1] = sum(dy * xhat) with
// xhat = (x - mean) * rstd, in f64; dbeta and dgamma receive them as f32.
extern "C" __global__ void bn_grad_sums(const float* dy, const float* x, const float* mean,
                                        const float* rstd, i64 n, i64 c, i64 plane, double* sums,
                                        float* dgamma, float* dbeta) {
  const i64 count = n * plane;
  BLOCK_STRIDE(ch, c) {
    const float m = mean[ch], r = rstd[ch];
    double sdy = 0.0, sdx = 0.0;
    for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
      const i64 at = ((j / plane) * c + ch) * plane + j % plane;
      const float d = dy[at];
      sdy += (double)d;
      sdx += (double)(d * ((x[at] - m) * r));
    }
    sdy = block_sum(sdy);
    sdx = block_sum(sdx);
    if (threadIdx.x == 0) {
      sums[2 * ch] = sdy;
      sums[2 * ch + 1] = sdx;
      dbeta[ch] = (float)sdy;
      dgamma[ch] = (float)sdx;
    }
  }
}

// dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat)) with batch
// statistics (`batch`), dx = gamma * rstd * dy with constant ones; `count`
// is n * plane.
extern "C" __global__ void bn_backward_dx(const float* dy, const float* x, const float* mean,
                                          const float* rstd, const float* gamma,
                                          const double* sums, i64 c, i64 plane, float count,
                                          int batch, float* dx, i64 total) {
  GRID_STRIDE(i, total) {
    const i64 ch = (i / plane) % c;
    const float m = mean[ch], r = rstd[ch];
    const float scale = gamma[ch] * r;
    if (batch) {
      const float mean_dy = (float)sums[2 * ch] / count;
      const float mean_dy_xhat = (float)sums[2 * ch + 1] / count;
      const float xhat = (x[i] - m) * r;
      dx[i] = scale * (dy[i] - mean_dy - xhat * mean_dy_xhat);
    } else {
      dx[i] = scale * dy[i];
    }
  }
}
