// LRN on CUDA. A block owns TS positions of one sample and walks down the channels in chunks of CC,
// staging each chunk plus its halo rows in shared memory as float: x is read from DRAM once (halo
// rows come back from L2) and every window sum reads shared memory. Loads and stores map consecutive
// threads to whichever of (channel, position) is contiguous in memory, so both NCHW and
// channels_last coalesce.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "launchers.h"

namespace fastalex {
namespace cuda {
namespace {

constexpr int THREADS = 256;
constexpr int CC = 32;  // output channels per chunk

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

template <typename T> __device__ __forceinline__ float to_acc(T v) { return static_cast<float>(v); }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> struct Store {
  template <typename A> static __device__ __forceinline__ T from(A v) { return static_cast<T>(v); }
};
template <> struct Store<__half> {
  static __device__ __forceinline__ __half from(float v) { return __float2half_rn(v); }
};
template <> struct Store<__nv_bfloat16> {
  static __device__ __forceinline__ __nv_bfloat16 from(float v) { return __float2bfloat16_rn(v); }
};

// Element e of a rows x ts tile -> (row, pos), with consecutive e consecutive in memory.
__device__ __forceinline__ void tile_coords(int e, int rows, int ts, bool channels_contiguous, int& r, int& p) {
  if (channels_contiguous) { r = e % rows; p = e / rows; } else { r = e / ts; p = e % ts; }
}

// tile[r * ts + p] = src[n, c_first + r, s0 + p], zero outside the tensor.
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
    tile[r * ts + p] = v;
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t window_scale(const acc_t* tile, int r0, int p, int ts, int size, acc_t aos, acc_t k) {
  acc_t sum = 0;
  for (int d = 0; d < size; ++d) {
    const acc_t v = tile[(r0 + d) * ts + p];
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
  extern __shared__ unsigned char smem_raw[];
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
        const acc_t out = xs[(r + lo) * ts + p] * pow_neg_beta(scale, beta, kind);
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
  extern __shared__ unsigned char smem_raw[];
  const int lo = lrn_lo(size), hi = lrn_hi(size);
  const int x_rows = CC + 2 * (size - 1), t_rows = CC + size - 1;
  acc_t* xs = reinterpret_cast<acc_t*>(smem_raw);  // [x_rows][ts]: channels c0 - (size - 1) ...
  acc_t* tt = xs + x_rows * ts;                     // [t_rows][ts]: g, then t, for channels c0 - hi ...
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
        t = tt[r * ts + p] * xs[(r + lo) * ts + p] * pow_neg_beta(scale, beta, kind) / scale;
      tt[r * ts + p] = t;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < CC * ts; e += blockDim.x) {
      int r, p;
      tile_coords(e, CC, ts, dcc, r, p);
      const int64_t c = c0 + r, s = s0 + p;
      if (c < C && s < S) {
        acc_t u = 0;
        for (int d = 0; d < size; ++d) u += tt[(r + d) * ts + p];
        const acc_t scale = window_scale(xs, r + hi, p, ts, size, aos, k);
        const acc_t xv = xs[(r + hi + lo) * ts + p];
        const acc_t gv = to_acc(g[n * sg.n + c * sg.c + s * sg.s]);
        dx[n * sd.n + c * sd.c + s * sd.s] = Store<T>::from(gv * pow_neg_beta(scale, beta, kind) - coef * xv * u);
      }
    }
    __syncthreads();
  }
}

// Positions per block: 32 keeps a warp's row loads full (NCHW) and a channels_last tile's columns
// contiguous; shrink it when a huge window would overflow 48 KB of shared memory.
int pick_ts(int rows_total, size_t elem) {
  int ts = 32;
  while (ts > 1 && size_t(rows_total) * ts * elem > 48 * 1024) ts /= 2;
  return ts;
}

template <typename T>
cudaError_t forward_typed(const void* x, Strides3 sx, void* y, Strides3 sy, const LRNArgs& a, cudaStream_t stream) {
  using acc_t = typename Acc<T>::type;
  const int rows = CC + a.size - 1;
  const int ts = pick_ts(rows, sizeof(acc_t));
  const size_t smem = size_t(rows) * ts * sizeof(acc_t);
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
  const int rows = (CC + 2 * (a.size - 1)) + (CC + a.size - 1);
  const int ts = pick_ts(rows, sizeof(acc_t));
  const size_t smem = size_t(rows) * ts * sizeof(acc_t);
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
