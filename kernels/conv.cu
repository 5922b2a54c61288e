// im2col and its adjoint col2im for convolution as im2col + GEMM, as
// cpu::conv2d. Row r = (c * kh + ki) * kw + kj of a sample's im2col matrix
// holds, at column p = oh * wo + ow, the input value under kernel tap (ki, kj)
// of output position (oh, ow), or 0 on padding. Sample i's matrix lives at
// col + i * sample_stride, row r at + r * row_stride: (n, rows, cols) for the
// forward pass, (rows, n, cols) for one GEMM over the batch in the weight gradient.

// Writes the im2col matrices of n samples x (n, c, h, w).
extern "C" __global__ void im2col(const float* x, Geom g, i64 n, float* col, i64 sample_stride,
                                  i64 row_stride) {
  const i64 cols = g.ho * g.wo, rows = g.c * g.kh * g.kw;
  GRID_STRIDE(idx, n * rows * cols) {
    const i64 p = idx % cols;
    const i64 r = (idx / cols) % rows;
    const i64 i = idx / (cols * rows);
    const i64 kj = r % g.kw, ki = (r / g.kw) % g.kh, c = r / (g.kw * g.kh);
    const i64 oh = p / g.wo, ow = p % g.wo;
    const i64 ih = oh * g.sh + ki - g.ph, iw = ow * g.sw + kj - g.pw;
    float v = 0.f;
    if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) v = x[((i * g.c + c) * g.h + ih) * g.w + iw];
    col[i * sample_stride + r * row_stride + p] = v;
  }
}

// dx (n, c, h, w) = the sum, for each input value, of the im2col entries that
// read it, taps in (ki, kj) order as cpu::conv2d::col2im_add adds them.
extern "C" __global__ void col2im(const float* col, Geom g, i64 n, float* dx, i64 sample_stride,
                                  i64 row_stride) {
  GRID_STRIDE(idx, n * g.c * g.h * g.w) {
    const i64 iw = idx % g.w;
    const i64 ih = (idx / g.w) % g.h;
    const i64 c = (idx / (g.w * g.h)) % g.c;
    const i64 i = idx / (g.w * g.h * g.c);
    const float* base = col + i * sample_stride;
    float sum = 0.f;
    for (i64 ki = 0; ki < g.kh; ++ki) {
      const i64 t = ih + g.ph - ki;
      if (t < 0 || t % g.sh != 0 || t / g.sh >= g.ho) continue;
      const i64 oh = t / g.sh;
      for (i64 kj = 0; kj < g.kw; ++kj) {
        const i64 u = iw + g.pw - kj;
        if (u < 0 || u % g.sw != 0 || u / g.sw >= g.wo) continue;
        const i64 r = (c * g.kh + ki) * g.kw + kj;
        sum += base[r * row_stride + oh * g.wo + u / g.sw];
      }
    }
    dx[idx] = sum;
  }
}

// y (n, o, plane) = bias[channel] everywhere, before the product is added to it.
extern "C" __global__ void fill_planes(const float* bias, i64 o, i64 plane, float* y, i64 total) {
  GRID_STRIDE(i, total) { y[i] = bias[(i / plane) % o]; }
}
