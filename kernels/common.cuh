// Prepended to every kernels/*.cu before NVRTC compiles it (NVRTC has no libc
// headers): integer and shape types, infinities, a grid-stride loop and
// block-wide reductions. Every launch uses a block size that is a multiple of
// 32 and at most 1024.

typedef long long i64;

// Four dimensions (or strides), outermost first, as Shape::padded4.
struct Dims4 {
  i64 d[4];
};

// A window sliding over one sample, as cpu::conv2d::ConvGeom.
struct Geom {
  i64 c, h, w, kh, kw, sh, sw, ph, pw, ho, wo;
};

#define RT_INF_F __int_as_float(0x7f800000)
#define RT_INF_D __longlong_as_double(0x7ff0000000000000LL)

// i takes this thread's first index, then every (threads in the grid)-th, below n.
#define GRID_STRIDE(i, n)                                                    \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); \
       i += (i64)blockDim.x * gridDim.x)

// Block b takes row b, then every (blocks in the grid)-th row, below rows.
#define BLOCK_STRIDE(row, rows) \
  for (i64 row = blockIdx.x; row < (i64)(rows); row += gridDim.x)

// The offset of element i of a row-major tensor of `dims` read with `strides`.
__device__ __forceinline__ i64 offset4(i64 i, const Dims4& dims, const Dims4& strides) {
  i64 off = 0;
  for (int k = 3; k >= 0; --k) {
    const i64 c = i % dims.d[k];
    i /= dims.d[k];
    off += c * strides.d[k];
  }
  return off;
}

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// The larger of two floats, ignoring a NaN as Rust's f32::max does.
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename T, typename Op>
__device__ T warp_reduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

// The reduction of every thread's v over the block, returned to every thread.
// All threads of the block must call it.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T identity) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  v = warp_reduce(v, op);
  __syncthreads();  // an earlier call may still be reading partial[0]
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? partial[lane] : identity;
    v = warp_reduce(v, op);
    if (lane == 0) partial[0] = v;
  }
  __syncthreads();
  return partial[0];
}

template <typename T>
__device__ T block_sum(T v) {
  return block_reduce(v, SumOp(), (T)0);
}

// The logistic function 1 / (1 + e^-x) without overflow, as cpu::elementwise::logistic.
__device__ __forceinline__ float logistic(float x) {
  if (x >= 0.f) return 1.f / (1.f + expf(-x));
  const float e = expf(x);
  return e / (1.f + e);
}
