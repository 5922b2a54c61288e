// 2-D max pooling over planes, as cpu::maxpool2d: padding reads as -inf,
// within a window the first maximum in row-major order wins and a NaN wins
// over every number (the last NaN). The forward pass can record each
// output's index inside its input plane; the backward pass routes each output
// gradient there.

// Whether v replaces the running maximum best.
__device__ __forceinline__ bool takes(float v, float best) { return (v > best) | (v != v); }

// y (planes, ho, wo) and, when `want_argmax`, argmax (same shape) from x (planes, h, w).
extern "C" __global__ void maxpool_forward(const float* x, Geom g, i64 planes, float* y,
                                           unsigned int* argmax, int want_argmax) {
  GRID_STRIDE(idx, planes * g.ho * g.wo) {
    const i64 ow = idx % g.wo, oh = (idx / g.wo) % g.ho, p = idx / (g.wo * g.ho);
    const float* xp = x + p * g.h * g.w;
    const i64 h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
    const i64 h_lo = h0 > 0 ? h0 : 0, w_lo = w0 > 0 ? w0 : 0;
    i64 h_hi = h0 + g.kh > 0 ? h0 + g.kh : 0, w_hi = w0 + g.kw > 0 ? w0 + g.kw : 0;
    h_hi = h_hi < g.h ? h_hi : g.h;
    w_hi = w_hi < g.w ? w_hi : g.w;
    float best = -RT_INF_F;
    i64 best_i = h_lo * g.w + w_lo;
    for (i64 ih = h_lo; ih < h_hi; ++ih) {
      for (i64 iw = w_lo; iw < w_hi; ++iw) {
        const float v = xp[ih * g.w + iw];
        if (takes(v, best)) {
          best = v;
          best_i = ih * g.w + iw;
        }
      }
    }
    if (h_lo >= h_hi || w_lo >= w_hi) best_i = 0;
    y[idx] = best;
    if (want_argmax) argmax[idx] = (unsigned int)best_i;
  }
}

// dx (planes, h, w): each input value gathers the gradients of the outputs
// whose argmax it is, in output order, as the CPU adds them.
extern "C" __global__ void maxpool_backward(const float* dy, const unsigned int* argmax, Geom g,
                                            i64 planes, float* dx) {
  GRID_STRIDE(idx, planes * g.h * g.w) {
    const i64 in_plane = g.h * g.w;
    const i64 at = idx % in_plane, p = idx / in_plane;
    const i64 ih = at / g.w, iw = at % g.w;
    // Windows covering (ih, iw): oh * sh - ph <= ih < oh * sh - ph + kh.
    const i64 th = ih + g.ph - g.kh + 1, tw = iw + g.pw - g.kw + 1;
    const i64 oh_lo = th > 0 ? (th + g.sh - 1) / g.sh : 0;
    const i64 ow_lo = tw > 0 ? (tw + g.sw - 1) / g.sw : 0;
    i64 oh_hi = (ih + g.ph) / g.sh + 1, ow_hi = (iw + g.pw) / g.sw + 1;
    oh_hi = oh_hi < g.ho ? oh_hi : g.ho;
    ow_hi = ow_hi < g.wo ? ow_hi : g.wo;
    const i64 base = p * g.ho * g.wo;
    float sum = 0.f;
    for (i64 oh = oh_lo; oh < oh_hi; ++oh)
      for (i64 ow = ow_lo; ow < ow_hi; ++ow) {
        const i64 o = base + oh * g.wo + ow;
        if ((i64)argmax[o] == at) sum += dy[o];
      }
    dx[idx] = sum;
  }
}
