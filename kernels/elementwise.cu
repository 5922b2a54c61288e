// Elementwise kernels: maps over one tensor with their derivatives
// (src/ops/unary.rs), zips over two with NumPy broadcasting (src/ops/binary.rs,
// cpu::elementwise::zip_broadcast), and fills. Broadcast operands are read
// through 4-d strides that are 0 along stretched axes (tensor::broadcast_strides).

// Unary op codes, as cuda::elementwise::Unary.
#define U_SCALE 0
#define U_ADD_SCALAR 1
#define U_EXP 2
#define U_LOG 3
#define U_RELU 4
#define U_SIGMOID 5
#define U_TANH 6
#define U_SQUARE 7
#define U_SQRT 8
#define U_ABS 9
#define U_POW 10

// Binary op codes, as cuda::elementwise::Binary.
#define B_ADD 0
#define B_SUB 1
#define B_MUL 2
#define B_DIV 3

__device__ float unary_value(int op, float p, float x) {
  switch (op) {
    case U_SCALE: return x * p;
    case U_ADD_SCALAR: return x + p;
    case U_EXP: return expf(x);
    case U_LOG: return logf(x);
    case U_RELU: return fmaxf(x, 0.f);
    case U_SIGMOID: return logistic(x);
    case U_TANH: return tanhf(x);
    case U_SQUARE: return x * x;
    case U_SQRT: return sqrtf(x);
    case U_ABS: return fabsf(x);
    case U_POW: return powf(x, p);
  }
  return __int_as_float(0x7fc00000);
}

// d out / d x from the input x and the output y.
__device__ float unary_derivative(int op, float p, float x, float y) {
  switch (op) {
    case U_SCALE: return p;
    case U_ADD_SCALAR: return 1.f;
    case U_EXP: return y;
    case U_LOG: return 1.f / x;
    case U_RELU: return x > 0.f ? 1.f : 0.f;
    case U_SIGMOID: return y * (1.f - y);
    case U_TANH: return 1.f - y * y;
    case U_SQUARE: return 2.f * x;
    case U_SQRT: return 0.5f / y;
    case U_ABS: return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
    case U_POW: return p * powf(x, p - 1.f);
  }
  return __int_as_float(0x7fc00000);
}

__device__ float binary_value(int op, float a, float b) {
  switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
  }
  return __int_as_float(0x7fc00000);
}

// y = op(x); y may be x.
extern "C" __global__ void unary_forward(int op, float p, const float* x, float* y, i64 n) {
  GRID_STRIDE(i, n) { y[i] = unary_value(op, p, x[i]); }
}

// dx = g * op'(x, y).
extern "C" __global__ void unary_backward(int op, float p, const float* g, const float* x,
                                          const float* y, float* dx, i64 n) {
  GRID_STRIDE(i, n) { dx[i] = g[i] * unary_derivative(op, p, x[i], y[i]); }
}

// out = op(a, b) over the broadcast shape `dims` (n values).
extern "C" __global__ void binary_forward(int op, const float* a, Dims4 sa, const float* b,
                                          Dims4 sb, float* out, Dims4 dims, i64 n) {
  GRID_STRIDE(i, n) {
    out[i] = binary_value(op, a[offset4(i, dims, sa)], b[offset4(i, dims, sb)]);
  }
}

// The gradient of b in a / b before it is summed back to b's shape:
// -g * (a / (b * b)), with g of the broadcast shape `dims`.
extern "C" __global__ void div_grad_b(const float* g, const float* a, Dims4 sa, const float* b,
                                      Dims4 sb, float* out, Dims4 dims, i64 n) {
  GRID_STRIDE(i, n) {
    const float y = b[offset4(i, dims, sb)];
    const float q = a[offset4(i, dims, sa)] / (y * y);
    out[i] = -g[i] * q;
  }
}

// out = x read as the broadcast shape `dims` (tensor::expand).
extern "C" __global__ void broadcast_copy(const float* x, Dims4 sx, float* out, Dims4 dims, i64 n) {
  GRID_STRIDE(i, n) { out[i] = x[offset4(i, dims, sx)]; }
}

extern "C" __global__ void fill(float* out, float value, i64 n) {
  GRID_STRIDE(i, n) { out[i] = value; }
}

// out[i] = row[i % cols]: the row repeated, as `bias.repeat(rows)`.
extern "C" __global__ void repeat_row(const float* row, i64 cols, float* out, i64 n) {
  GRID_STRIDE(i, n) { out[i] = row[i % cols]; }
}
