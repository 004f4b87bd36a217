// LRN on CUDA. A block owns TS positions of one sample and walks down the channels in chunks of CC,
// staging each chunk plus its halo rows in shared memory as float: x is read from DRAM once (halo
// rows come back from L2) and every window sum reads shared memory. Loads and stores map consecutive
// threads to whichever of (channel, position) is contiguous in memory, so both NCHW and
// channels_last coalesce.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "dtypes.cuh"
#include "launchers.h"

namespace fastalex {
namespace cuda {
namespace {

constexpr int THREADS = 256;
constexpr int CC = 32;  // output channels per chunk

// Element e of a rows x ts tile -> (row, pos), with consecutive e consecutive in memory.
__device__ __forceinline__ void tile_coords(int e, int rows, int ts, bool channels_contiguous, int& r, int& p) {
  if (channels_contiguous) { r = e % rows; p = e / rows; } else { r = e / ts; p = e % ts; }
}

// tile[r * (ts + 1) + p] = src[n, c_first + r, s0 + p], zero outside the tensor. Rows are padded by one
// element so that a warp walking down channels (channels_last) hits 32 different banks.
template <typename T, typename acc_t>
__device__ void load_rows(const T* __restrict__ src, Strides3 st, int64_t n, int64_t C, int64_t S, int64_t c_first,
                          int64_t s0, int rows, int ts, acc_t* tile) {
  const bool cc = st.c == 1;
  for (int e = threadIdx.x; e < rows * ts; e += blockDim.x) {
    int r, p;
    tile_coords(e, rows, ts, cc, r, p);
    const int64_t c = c_first + r, s = s0 + p;
    acc_t v = 0;
    if (c >= 0 && c < C && s < S) v = to_acc(src[n * st.n + c * st.c + s * st.s]);
    tile[r * (ts + 1) + p] = v;
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t window_scale(const acc_t* tile, int r0, int p, int ts, int size, acc_t aos, acc_t k) {
  acc_t sum = 0;
  for (int d = 0; d < size; ++d) {
    const acc_t v = tile[(r0 + d) * (ts + 1) + p];
    sum += v * v;
  }
  return k + aos * sum;
}

template <typename T>
__global__ void __launch_bounds__(THREADS) lrn_forward_kernel(
    const T* __restrict__ x,  // (N, C, S), strides sx
    Strides3 sx,
    T* __restrict__ y,  // (N, C, S), strides sy
    Strides3 sy, int64_t C, int64_t S, int size, typename Acc<T>::type aos, typename Acc<T>::type beta,
    typename Acc<T>::type k, BetaKind kind, int ts) {
  using acc_t = typename Acc<T>::type;
  extern __shared__ __align__(8) unsigned char smem_raw[];  // fp64 tiles too
  acc_t* xs = reinterpret_cast<acc_t*>(smem_raw);  // [CC + size - 1][ts]
  const int64_t n = blockIdx.y, s0 = int64_t(blockIdx.x) * ts;
  const int lo = lrn_lo(size);
  const int rows = CC + size - 1;
  const bool cc = sy.c == 1;
  for (int64_t c0 = 0; c0 < C; c0 += CC) {
    load_rows(x, sx, n, C, S, c0 - lo, s0, rows, ts, xs);
    __syncthreads();
    for (int e = threadIdx.x; e < CC * ts; e += blockDim.x) {
      int r, p;
      tile_coords(e, CC, ts, cc, r, p);
      const int64_t c = c0 + r, s = s0 + p;
      if (c < C && s < S) {
        const acc_t scale = window_scale(xs, r, p, ts, size, aos, k);
        const acc_t out = xs[(r + lo) * (ts + 1) + p] * pow_neg_beta(scale, beta, kind);
        y[n * sy.n + c * sy.c + s * sy.s] = Store<T>::from(out);
      }
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void __launch_bounds__(THREADS) lrn_backward_kernel(
    const T* __restrict__ x,  // (N, C, S), strides sx
    Strides3 sx,
    const T* __restrict__ g,  // (N, C, S), strides sg
    Strides3 sg,
    T* __restrict__ dx,  // (N, C, S), strides sd
    Strides3 sd, int64_t C, int64_t S, int size, typename Acc<T>::type aos, typename Acc<T>::type beta,
    typename Acc<T>::type k, BetaKind kind, int ts) {
  using acc_t = typename Acc<T>::type;
  extern __shared__ __align__(8) unsigned char smem_raw[];  // fp64 tiles too
  const int lo = lrn_lo(size), hi = lrn_hi(size);
  const int x_rows = CC + 2 * (size - 1), t_rows = CC + size - 1;
  acc_t* xs = reinterpret_cast<acc_t*>(smem_raw);  // [x_rows][ts]: channels c0 - (size - 1) ...
  acc_t* tt = xs + x_rows * (ts + 1);                     // [t_rows][ts]: g, then t, for channels c0 - hi ...
  const int64_t n = blockIdx.y, s0 = int64_t(blockIdx.x) * ts;
  const acc_t coef = acc_t(2) * aos * beta;
  const bool gcc = sg.c == 1, dcc = sd.c == 1;
  for (int64_t c0 = 0; c0 < C; c0 += CC) {
    load_rows(x, sx, n, C, S, c0 - (size - 1), s0, x_rows, ts, xs);
    load_rows(g, sg, n, C, S, c0 - hi, s0, t_rows, ts, tt);
    __syncthreads();
    // t_c = g_c x_c s_c^(-beta-1) for the t rows; each thread rewrites only its own elements.
    for (int e = threadIdx.x; e < t_rows * ts; e += blockDim.x) {
      int r, p;
      tile_coords(e, t_rows, ts, gcc, r, p);
      const acc_t scale = window_scale(xs, r, p, ts, size, aos, k);
      const int64_t c = c0 - hi + r;
      // Rows outside the tensor stay exact zeros (with k = 0 their s^-beta is inf).
      acc_t t = 0;
      if (c >= 0 && c < C && s0 + p < S)
        t = lrn_grad_term(tt[r * (ts + 1) + p] * xs[(r + lo) * (ts + 1) + p] * pow_neg_beta(scale, beta, kind) / scale,
                          scale, lrn_grad_nan_at_inf(beta));
      tt[r * (ts + 1) + p] = t;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < CC * ts; e += blockDim.x) {
      int r, p;
      tile_coords(e, CC, ts, dcc, r, p);
      const int64_t c = c0 + r, s = s0 + p;
      if (c < C && s < S) {
        acc_t u = 0;
        for (int d = 0; d < size; ++d) u += tt[(r + d) * (ts + 1) + p];
        const acc_t scale = window_scale(xs, r + hi, p, ts, size, aos, k);
        const acc_t xv = xs[(r + hi + lo) * (ts + 1) + p];
        const acc_t gv = to_acc(g[n * sg.n + c * sg.c + s * sg.s]);
        dx[n * sd.n + c * sd.c + s * sd.s] = Store<T>::from(gv * pow_neg_beta(scale, beta, kind) - coef * xv * u);
      }
    }
    __syncthreads();
  }
}

// --- Sequential kernels (size <= MAX_SEQ_SIZE, positions contiguous): one thread per position walks
// down the channels with the window in registers (compile-time SIZE keeps the arrays in registers),
// loading each row once, PF rows ahead: the channel walk is serial, so in-flight bytes per SM come
// from the prefetch depth.
constexpr int MAX_SEQ_SIZE = 8;
constexpr int PF = 4;

template <typename T, typename acc_t>
struct RowReader {
  const T* __restrict__ base;  // &x[n, 0, s]
  int64_t stride_c, C;
  __device__ __forceinline__ acc_t operator()(int64_t c) const {
    return (c >= 0 && c < C) ? acc_t(to_acc(base[c * stride_c])) : acc_t(0);
  }
};

template <typename T, int SIZE>
__global__ void __launch_bounds__(THREADS) lrn_forward_seq_kernel(
    const T* __restrict__ x,  // (N, C, S), strides sx
    Strides3 sx,
    T* __restrict__ y,  // (N, C, S), strides sy
    Strides3 sy, int64_t C, int64_t S, typename Acc<T>::type aos, typename Acc<T>::type beta,
    typename Acc<T>::type k, BetaKind kind) {
  using acc_t = typename Acc<T>::type;
  constexpr int LO = SIZE / 2, HI = (SIZE - 1) / 2;
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, n = blockIdx.y;
  if (s >= S) return;
  const RowReader<T, acc_t> row{x + n * sx.n + s * sx.s, sx.c, C};
  T* out = y + n * sy.n + s * sy.s;
  acc_t w[SIZE], pf[PF];
#pragma unroll
  for (int i = 0; i < SIZE; ++i) w[i] = 0;
  // Step c (from -(SIZE-1), filling the window) brings in row c + HI; the window is rows [c-LO, c+HI].
#pragma unroll
  for (int i = 0; i < PF; ++i) pf[i] = row(-(SIZE - 1) + HI + i);
  for (int64_t c = -(SIZE - 1); c < C; ++c) {
#pragma unroll
    for (int i = 0; i < SIZE - 1; ++i) w[i] = w[i + 1];
    w[SIZE - 1] = pf[0];
#pragma unroll
    for (int i = 0; i < PF - 1; ++i) pf[i] = pf[i + 1];
    pf[PF - 1] = row(c + HI + PF);
    acc_t sum = 0;
#pragma unroll
    for (int i = 0; i < SIZE; ++i) sum += w[i] * w[i];
    if (c >= 0) out[c * sy.c] = Store<T>::from(w[LO] * pow_neg_beta(k + aos * sum, beta, kind));
  }
}

template <typename T, int SIZE>
__global__ void __launch_bounds__(THREADS) lrn_backward_seq_kernel(
    const T* __restrict__ x,  // (N, C, S), strides sx
    Strides3 sx,
    const T* __restrict__ g,  // (N, C, S), strides sg
    Strides3 sg,
    T* __restrict__ dx,  // (N, C, S), strides sd
    Strides3 sd, int64_t C, int64_t S, typename Acc<T>::type aos, typename Acc<T>::type beta,
    typename Acc<T>::type k, BetaKind kind) {
  // Step j writes dx_j: it brings in x row j+SIZE-1 and g row j+LO, finishes t and g s^-beta for
  // channel j+LO and pushes them into rings: w = x rows [j, j+SIZE-1], t = t rows [j-HI, j+LO],
  // h = g s^-beta rows [j, j+LO].
  using acc_t = typename Acc<T>::type;
  constexpr int LO = SIZE / 2;
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, n = blockIdx.y;
  if (s >= S) return;
  const RowReader<T, acc_t> xrow{x + n * sx.n + s * sx.s, sx.c, C};
  const RowReader<T, acc_t> grow{g + n * sg.n + s * sg.s, sg.c, C};
  T* out = dx + n * sd.n + s * sd.s;
  const acc_t coef = acc_t(2) * aos * beta;
  acc_t w[SIZE], t[SIZE], h[LO + 1], px[PF], pg[PF];
#pragma unroll
  for (int i = 0; i < SIZE; ++i) w[i] = t[i] = 0;
#pragma unroll
  for (int i = 0; i <= LO; ++i) h[i] = 0;
  constexpr int J0 = -(SIZE - 1);
#pragma unroll
  for (int i = 0; i < PF; ++i) {
    px[i] = xrow(J0 + SIZE - 1 + i);
    pg[i] = grow(J0 + LO + i);
  }
  for (int64_t j = J0; j < C; ++j) {
#pragma unroll
    for (int i = 0; i < SIZE - 1; ++i) w[i] = w[i + 1];
    w[SIZE - 1] = px[0];
    const acc_t g_new = pg[0];
#pragma unroll
    for (int i = 0; i < PF - 1; ++i) {
      px[i] = px[i + 1];
      pg[i] = pg[i + 1];
    }
    px[PF - 1] = xrow(j + SIZE - 1 + PF);
    pg[PF - 1] = grow(j + LO + PF);
    acc_t sum = 0;
#pragma unroll
    for (int i = 0; i < SIZE; ++i) sum += w[i] * w[i];
    const acc_t scale = k + aos * sum;
    const acc_t p = pow_neg_beta(scale, beta, kind);
    // Padding channels contribute exact zeros (k = 0 would make 0 * inf there).
    const bool valid = j + LO >= 0 && j + LO < C;
#pragma unroll
    for (int i = 0; i < SIZE - 1; ++i) t[i] = t[i + 1];
    t[SIZE - 1] = valid ? lrn_grad_term(g_new * w[LO] * p / scale, scale, lrn_grad_nan_at_inf(beta)) : acc_t(0);
#pragma unroll
    for (int i = 0; i < LO; ++i) h[i] = h[i + 1];
    h[LO] = valid ? g_new * p : acc_t(0);
    acc_t u = 0;
#pragma unroll
    for (int i = 0; i < SIZE; ++i) u += t[i];
    if (j >= 0) out[j * sd.c] = Store<T>::from(h[0] - coef * w[0] * u);
  }
}

template <typename T, int SIZE>
cudaError_t forward_seq(const void* x, Strides3 sx, void* y, Strides3 sy, const LRNArgs& a, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  const dim3 grid(unsigned((a.S + THREADS - 1) / THREADS), unsigned(a.N));
  lrn_forward_seq_kernel<T, SIZE><<<grid, THREADS, 0, stream>>>(
      static_cast<const T*>(x), sx, static_cast<T*>(y), sy, a.C, a.S, acc_t(a.alpha / a.size), acc_t(a.beta),
      acc_t(a.k), beta_kind(a.beta));
  return cudaGetLastError();
}

template <typename T, int SIZE>
cudaError_t backward_seq(const void* x, Strides3 sx, const void* g, Strides3 sg, void* dx, Strides3 sd,
                         const LRNArgs& a, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  const dim3 grid(unsigned((a.S + THREADS - 1) / THREADS), unsigned(a.N));
  lrn_backward_seq_kernel<T, SIZE><<<grid, THREADS, 0, stream>>>(
      static_cast<const T*>(x), sx, static_cast<const T*>(g), sg, static_cast<T*>(dx), sd, a.C, a.S,
      acc_t(a.alpha / a.size), acc_t(a.beta), acc_t(a.k), beta_kind(a.beta));
  return cudaGetLastError();
}

// The sequential kernels coalesce when positions are contiguous (NCHW); channels_last goes to the tiles.
bool use_sequential(const LRNArgs& a, Strides3 s) { return a.size <= MAX_SEQ_SIZE && s.s == 1; }

#define FASTALEX_SEQ_SWITCH(SIZE_VALUE, CALL) \
  switch (SIZE_VALUE) {                       \
    case 1: return CALL(1);                   \
    case 2: return CALL(2);                   \
    case 3: return CALL(3);                   \
    case 4: return CALL(4);                   \
    case 5: return CALL(5);                   \
    case 6: return CALL(6);                   \
    case 7: return CALL(7);                   \
    default: return CALL(8);                  \
  }

// Positions per block: 32 keeps a warp's row loads full (NCHW) and a channels_last tile's columns
// contiguous; shrink it when a huge window would overflow 48 KB of shared memory.
int pick_ts(int rows_total, size_t elem) {
  int ts = 32;
  while (ts > 1 && size_t(rows_total) * (ts + 1) * elem > 48 * 1024) ts /= 2;
  return ts;
}

template <typename T>
cudaError_t forward_typed(const void* x, Strides3 sx, void* y, Strides3 sy, const LRNArgs& a, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  if (use_sequential(a, sx)) {
#define FASTALEX_CALL(S) forward_seq<T, S>(x, sx, y, sy, a, stream)
    FASTALEX_SEQ_SWITCH(a.size, FASTALEX_CALL)
#undef FASTALEX_CALL
  }
  const int rows = CC + a.size - 1;
  const int ts = pick_ts(rows, sizeof(acc_t));
  const size_t smem = size_t(rows) * (ts + 1) * sizeof(acc_t);
  if (smem > 48 * 1024) return cudaErrorInvalidValue;
  const dim3 grid(unsigned((a.S + ts - 1) / ts), unsigned(a.N));
  lrn_forward_kernel<T><<<grid, THREADS, smem, stream>>>(
      static_cast<const T*>(x), sx, static_cast<T*>(y), sy, a.C, a.S, a.size, acc_t(a.alpha / a.size), acc_t(a.beta),
      acc_t(a.k), beta_kind(a.beta), ts);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward_typed(const void* x, Strides3 sx, const void* g, Strides3 sg, void* dx, Strides3 sd,
                           const LRNArgs& a, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  if (use_sequential(a, sx)) {
#define FASTALEX_CALL(S) backward_seq<T, S>(x, sx, g, sg, dx, sd, a, stream)
    FASTALEX_SEQ_SWITCH(a.size, FASTALEX_CALL)
#undef FASTALEX_CALL
  }
  const int rows = (CC + 2 * (a.size - 1)) + (CC + a.size - 1);
  const int ts = pick_ts(rows, sizeof(acc_t));
  const size_t smem = size_t(rows) * (ts + 1) * sizeof(acc_t);
  if (smem > 48 * 1024) return cudaErrorInvalidValue;
  const dim3 grid(unsigned((a.S + ts - 1) / ts), unsigned(a.N));
  lrn_backward_kernel<T><<<grid, THREADS, smem, stream>>>(
      static_cast<const T*>(x), sx, static_cast<const T*>(g), sg, static_cast<T*>(dx), sd, a.C, a.S, a.size,
      acc_t(a.alpha / a.size), acc_t(a.beta), acc_t(a.k), beta_kind(a.beta), ts);
  return cudaGetLastError();
}

bool grid_fits(const LRNArgs& a) { return a.N <= 65535; }

}  // namespace

cudaError_t lrn_forward(DType dtype, const void* x, Strides3 sx, void* y, Strides3 sy, const LRNArgs& a,
                        cudaStream_t stream) {
  if (a.N == 0 || a.C == 0 || a.S == 0) return cudaSuccess;
  if (!grid_fits(a)) return cudaErrorInvalidConfiguration;
  switch (dtype) {
    case DType::Float32: return forward_typed<float>(x, sx, y, sy, a, stream);
    case DType::Float64: return forward_typed<double>(x, sx, y, sy, a, stream);
    case DType::Float16: return forward_typed<__half>(x, sx, y, sy, a, stream);
    case DType::BFloat16: return forward_typed<__nv_bfloat16>(x, sx, y, sy, a, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t lrn_backward(DType dtype, const void* x, Strides3 sx, const void* grad_y, Strides3 sg, void* grad_x,
                         Strides3 sd, const LRNArgs& a, cudaStream_t stream) {
  if (a.N == 0 || a.C == 0 || a.S == 0) return cudaSuccess;
  if (!grid_fits(a)) return cudaErrorInvalidConfiguration;
  switch (dtype) {
    case DType::Float32: return backward_typed<float>(x, sx, grad_y, sg, grad_x, sd, a, stream);
    case DType::Float64: return backward_typed<double>(x, sx, grad_y, sg, grad_x, sd, a, stream);
    case DType::Float16: return backward_typed<__half>(x, sx, grad_y, sg, grad_x, sd, a, stream);
    case DType::BFloat16: return backward_typed<__nv_bfloat16>(x, sx, grad_y, sg, grad_x, sd, a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace fastalex
