// Data movement, as cpu::layout and ops::shape_ops: permute, block copies
// (concat and slice) and the length-aware reversal of padded sequences.

// out (out_dims) = x read with in_strides: the input's strides reordered by
// the permutation, so out axis i walks input axis perm[i].
extern "C" __global__ void permute4(const float* x, Dims4 out_dims, Dims4 in_strides, float* out,
                                    i64 n) {
  GRID_STRIDE(i, n) { out[i] = x[offset4(i, out_dims, in_strides)]; }
}

// dst[r * dst_stride + dst_offset + j] = src[r * src_stride + src_offset + j]
// for r < rows, j < cols.
extern "C" __global__ void copy_rows(const float* src, i64 src_stride, i64 src_offset, float* dst,
                                     i64 dst_stride, i64 dst_offset, i64 rows, i64 cols) {
  GRID_STRIDE(i, rows * cols) {
    const i64 r = i / cols, j = i % cols;
    dst[r * dst_stride + dst_offset + j] = src[r * src_stride + src_offset + j];
  }
}

// x laid out as (outer, steps, groups, inner): within each outer block, group
// g's first lengths[g % nlengths] steps are reversed (all `steps` when
// nlengths is 0); the other steps are copied.
extern "C" __global__ void reverse_blocks(const float* x, float* out, i64 outer, i64 steps,
                                          i64 groups, i64 inner, const i64* lengths,
                                          i64 nlengths) {
  GRID_STRIDE(i, outer * steps * groups * inner) {
    const i64 in = i % inner;
    const i64 g = (i / inner) % groups;
    const i64 s = (i / (inner * groups)) % steps;
    const i64 o = i / (inner * groups * steps);
    const i64 len = nlengths ? lengths[g % nlengths] : steps;
    const i64 src = s < len ? len - 1 - s : s;
    out[i] = x[((o * steps + src) * groups + g) * inner + in];
  }
}
