// Sums of a tensor over its broadcast axes (tensor::reduce_sum_to): the
// gradient of a broadcast operand, sums and means over axes, bias gradients.

// out (shape `small`, out_n values) = the sum of x (shape `big`) over every
// axis where small has 1 and big does not (`count` values per output). One
// block per output value, the block's threads splitting its terms.
extern "C" __global__ void sum_to(const float* x, Dims4 big, Dims4 small, float* out, i64 out_n,
                                  i64 count) {
  Dims4 big_strides;
  i64 acc = 1;
  for (int k = 3; k >= 0; --k) {
    big_strides.d[k] = acc;
    acc *= big.d[k];
  }
  BLOCK_STRIDE(o, out_n) {
    // The output's own coordinates fix the kept axes.
    i64 base = 0, rest = o;
    for (int k = 3; k >= 0; --k) {
      const i64 c = rest % small.d[k];
      rest /= small.d[k];
      base += c * big_strides.d[k];
    }
    float sum = 0.f;
    for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
      // j enumerates the summed axes, innermost last.
      i64 off = base, r = j;
      for (int k = 3; k >= 0; --k) {
        if (small.d[k] == 1 && big.d[k] != 1) {
          off += (r % big.d[k]) * big_strides.d[k];
          r /= big.d[k];
        }
      }
      sum += x[off];
    }
    sum = block_sum(sum);
    if (threadIdx.x == 0) out[o] = sum;
  }
}
