// Fused optimizer updates, one pass over a parameter, exactly the update
// rules of optim::sgd and optim::adam (torch.optim), and the sums of squares
// of gradient-norm clipping (optim::clip), accumulated in f64.

// SGD with optional weight decay and (Nesterov) momentum; buf is the momentum
// buffer (null without momentum), initialised from the gradient on the
// parameter's `first` update.
extern "C" __global__ void sgd_update(float* p, const float* g, float* buf, i64 n, float lr,
                                      float momentum, float weight_decay, int nesterov,
                                      int first) {
  GRID_STRIDE(i, n) {
    float d = weight_decay != 0.f ? g[i] + weight_decay * p[i] : g[i];
    if (buf) {
      const float b = first ? d : momentum * buf[i] + d;
      buf[i] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[i] -= lr * d;
  }
}

// Adam (L2 decay added to the gradient) or AdamW (`decoupled`: p *= decay,
// decay = 1 - lr * wd) with moments m and v; step_size = lr / (1 - beta1^t)
// and bias2_sqrt = sqrt(1 - beta2^t) come from the host, as the CPU computes them.
extern "C" __global__ void adam_update(float* p, const float* g, float* m, float* v, i64 n,
                                       float step_size, float bias2_sqrt, float beta1,
                                       float beta2, float eps, float weight_decay, int decoupled,
                                       float decay) {
  GRID_STRIDE(i, n) {
    float gv = g[i];
    float pv = p[i];
    if (weight_decay != 0.f) {
      if (decoupled) pv *= decay;
      else gv += weight_decay * pv;
    }
    const float mv = beta1 * m[i] + (1.f - beta1) * gv;
    const float vv = beta2 * v[i] + (1.f - beta2) * gv * gv;
    m[i] = mv;
    v[i] = vv;
    const float denom = sqrtf(vv) / bias2_sqrt + eps;
    p[i] = pv - step_size * mv / denom;
  }
}

// partial[block] = sum of x^2 over the values this block visits, in f64.
extern "C" __global__ void sum_squares(const float* x, i64 n, double* partial) {
  double s = 0.0;
  GRID_STRIDE(i, n) {
    const double v = (double)x[i];
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// out[0] = sum of the n partial sums (one block).
extern "C" __global__ void sum_partials(const double* partial, i64 n, double* out) {
  double s = 0.0;
  for (i64 i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
  s = block_sum(s);
  if (threadIdx.x == 0) out[0] = s;
}
