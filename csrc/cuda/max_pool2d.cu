// Max-pool 2-D on CUDA: one thread per output element (forward) or input element (backward, a
// gather: no atomics, every grad_x element written, sums in ascending (oh, ow) order). Consecutive
// threads take consecutive elements of the contiguous dimension: W for NCHW (a "unit" is one (n, c)
// plane), C for channels_last (a unit is one sample). Units go on grid.y and elements of a unit on
// grid.x, both grid-strided; the unit base offset is 64-bit and the math inside a unit is 32-bit
// whenever every index and offset there stays under 2^30.
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
constexpr int64_t MAX_GRID_X = 1 << 18;  // with THREADS, a grid-stride step stays under 2^26
constexpr int64_t MAX_GRID_Y = 65535;
constexpr int64_t LIMIT32 = int64_t(1) << 30;

// Element e of a unit -> (oh or ih, ow or iw, c). CL: e = ((h * Wd) + w) * C + c; else e = h * Wd + w.
template <bool CL, typename I>
__device__ __forceinline__ void unit_coords(I e, I Wd, I C, I& h, I& w, I& c) {
  if (CL) {
    c = e % C;
    e /= C;
  } else {
    c = 0;
  }
  w = e % Wd;
  h = e / Wd;
}

// Base pointer of unit u: plane (n, c) = (u / C, u % C), or sample n = u for channels_last.
template <bool CL, typename T>
__device__ __forceinline__ T* unit_base(T* p, Strides4 s, int64_t u, int64_t C) {
  return CL ? p + u * s.n : p + (u / C) * s.n + (u % C) * s.c;
}

template <typename T, typename W, typename I, bool CL>
__global__ void __launch_bounds__(THREADS) max_pool2d_forward_kernel(
    const T* __restrict__ x,  // (N, C, H, W), strides sx
    Strides4 sx,
    T* __restrict__ y,  // (N, C, Ho, Wo), strides sy
    Strides4 sy,
    W* __restrict__ win,  // (N, C, Ho, Wo), strides si
    Strides4 si, Pool2dArgs a, int64_t units, I per_unit) {
  using acc_t = typename Acc<T>::type;
  const I H = I(a.H), Wd = I(a.W), Wo = I(a.Wo), C = I(a.C);
  const I xh = I(sx.h), xw = I(sx.w), xc = I(sx.c);
  for (int64_t u = blockIdx.y; u < units; u += gridDim.y) {
    const T* xb = unit_base<CL>(x, sx, u, a.C);
    T* yb = unit_base<CL>(y, sy, u, a.C);
    W* wb = unit_base<CL>(win, si, u, a.C);
    for (I e = I(blockIdx.x) * THREADS + I(threadIdx.x); e < per_unit; e += I(gridDim.x) * THREADS) {
      I oh, ow, c;
      unit_coords<CL>(e, Wo, C, oh, ow, c);
      const I h0 = oh * a.sh - a.ph, w0 = ow * a.sw - a.pw;
      int jh_lo, jh_hi, jw_lo, jw_hi;
      pool_valid_taps<I>(h0, a.kh, a.dh, H, jh_lo, jh_hi);
      pool_valid_taps<I>(w0, a.kw, a.dw, Wd, jw_lo, jw_hi);
      // The first valid tap wins unless replaced: -inf only loses to larger values and NaNs.
      acc_t best = -acc_t(INFINITY);
      int tap = (jh_lo < jh_hi && jw_lo < jw_hi) ? jh_lo * a.kw + jw_lo : 0;
      const T* xc_ = xb + c * xc;
      for (int jh = jh_lo; jh < jh_hi; ++jh) {
        const T* row = xc_ + (h0 + I(jh) * a.dh) * xh;
        for (int jw = jw_lo; jw < jw_hi; ++jw) {
          const acc_t v = to_acc(__ldg(row + (w0 + I(jw) * a.dw) * xw));
          if (pool_takes(v, best)) {
            best = v;
            tap = jh * a.kw + jw;
          }
        }
      }
      yb[oh * I(sy.h) + ow * I(sy.w) + c * I(sy.c)] = Store<T>::from(best);
      wb[oh * I(si.h) + ow * I(si.w) + c * I(si.c)] = static_cast<W>(tap);
    }
  }
}

template <typename T, typename W, typename I, bool CL>
__global__ void __launch_bounds__(THREADS) max_pool2d_backward_kernel(
    const T* __restrict__ g,  // (N, C, Ho, Wo), strides sg
    Strides4 sg,
    const W* __restrict__ win,  // (N, C, Ho, Wo), strides si
    Strides4 si,
    T* __restrict__ gx,  // (N, C, H, W), strides sd
    Strides4 sd, Pool2dArgs a, int64_t units, I per_unit) {
  using acc_t = typename Acc<T>::type;
  const I Ho = I(a.Ho), Wo = I(a.Wo), Wd = I(a.W), C = I(a.C);
  const I gh = I(sg.h), gw = I(sg.w), gc = I(sg.c), ih_ = I(si.h), iw_ = I(si.w), ic = I(si.c);
  for (int64_t u = blockIdx.y; u < units; u += gridDim.y) {
    const T* gb = unit_base<CL>(g, sg, u, a.C);
    const W* wb = unit_base<CL>(win, si, u, a.C);
    T* db = unit_base<CL>(gx, sd, u, a.C);
    for (I e = I(blockIdx.x) * THREADS + I(threadIdx.x); e < per_unit; e += I(gridDim.x) * THREADS) {
      I ih, iw, c;
      unit_coords<CL>(e, Wd, C, ih, iw, c);
      I oh_lo, oh_hi, ow_lo, ow_hi;
      pool_candidate_outputs<I>(ih, a.kh, a.sh, a.ph, a.dh, Ho, oh_lo, oh_hi);
      pool_candidate_outputs<I>(iw, a.kw, a.sw, a.pw, a.dw, Wo, ow_lo, ow_hi);
      acc_t acc = 0;
      for (I oh = oh_lo; oh <= oh_hi; ++oh) {
        const I dist_h = ih + a.ph - oh * a.sh;
        if (dist_h % a.dh != 0) continue;
        const int jh = int(dist_h / a.dh);
        for (I ow = ow_lo; ow <= ow_hi; ++ow) {
          const I dist_w = iw + a.pw - ow * a.sw;
          if (dist_w % a.dw != 0) continue;
          const int tap = jh * a.kw + int(dist_w / a.dw);
          if (int(__ldg(wb + oh * ih_ + ow * iw_ + c * ic)) == tap)
            acc += to_acc(__ldg(gb + oh * gh + ow * gw + c * gc));
        }
      }
      db[ih * I(sd.h) + iw * I(sd.w) + c * I(sd.c)] = Store<T>::from(acc);
    }
  }
}

// Largest element offset of a (.., .., h, w) tensor within a unit (plus channels for channels_last).
int64_t unit_span(Strides4 s, int64_t h, int64_t w, int64_t C, bool cl) {
  auto span = [](int64_t size, int64_t stride) {
    return size > 0 ? (size - 1) * (stride < 0 ? -stride : stride) : int64_t(0);
  };
  return span(h, s.h) + span(w, s.w) + (cl ? span(C, s.c) : 0);
}

// Whether every index, window coordinate and offset inside a unit stays under 2^30 (so 32-bit math,
// grid-stride steps included, cannot overflow).
bool fits32(const Pool2dArgs& a, bool cl, Strides4 s_in, Strides4 s_out, Strides4 s_win) {
  const int64_t cs = cl ? a.C : 1;
  const int64_t ext_h = std::max(a.Ho * a.sh, a.H) + a.sh + a.ph + int64_t(a.kh - 1) * a.dh;
  const int64_t ext_w = std::max(a.Wo * a.sw, a.W) + a.sw + a.pw + int64_t(a.kw - 1) * a.dw;
  return a.H * a.W * cs < LIMIT32 && a.Ho * a.Wo * cs < LIMIT32 && ext_h < LIMIT32 && ext_w < LIMIT32 &&
         unit_span(s_in, a.H, a.W, a.C, cl) < LIMIT32 && unit_span(s_out, a.Ho, a.Wo, a.C, cl) < LIMIT32 &&
         unit_span(s_win, a.Ho, a.Wo, a.C, cl) < LIMIT32;
}

dim3 grid_for(int64_t units, int64_t per_unit) {
  return dim3(unsigned(std::min<int64_t>((per_unit + THREADS - 1) / THREADS, MAX_GRID_X)),
              unsigned(std::min<int64_t>(units, MAX_GRID_Y)));
}

template <typename T, typename W, typename I, bool CL>
cudaError_t forward_launch(const void* x, Strides4 sx, void* y, Strides4 sy, void* win, Strides4 si,
                           const Pool2dArgs& a, cudaStream_t stream) {
  const int64_t units = CL ? a.N : a.N * a.C, per_unit = a.Ho * a.Wo * (CL ? a.C : 1);
  max_pool2d_forward_kernel<T, W, I, CL><<<grid_for(units, per_unit), THREADS, 0, stream>>>(
      static_cast<const T*>(x), sx, static_cast<T*>(y), sy, static_cast<W*>(win), si, a, units, I(per_unit));
  return cudaGetLastError();
}

template <typename T, typename W, typename I, bool CL>
cudaError_t backward_launch(const void* g, Strides4 sg, const void* win, Strides4 si, void* gx, Strides4 sd,
                            const Pool2dArgs& a, cudaStream_t stream) {
  const int64_t units = CL ? a.N : a.N * a.C, per_unit = a.H * a.W * (CL ? a.C : 1);
  max_pool2d_backward_kernel<T, W, I, CL><<<grid_for(units, per_unit), THREADS, 0, stream>>>(
      static_cast<const T*>(g), sg, static_cast<const W*>(win), si, static_cast<T*>(gx), sd, a, units, I(per_unit));
  return cudaGetLastError();
}

// Threads run along C when the tensor the pass covers is channels_last, else along W.
template <typename T, typename W>
cudaError_t forward_typed(const void* x, Strides4 sx, void* y, Strides4 sy, void* win, Strides4 si,
                          const Pool2dArgs& a, cudaStream_t stream) {
  const bool cl = sx.c == 1 && a.C > 1;
  const bool small = fits32(a, cl, sx, sy, si);
  if (cl) {
    if (small) return forward_launch<T, W, int32_t, true>(x, sx, y, sy, win, si, a, stream);
    return forward_launch<T, W, int64_t, true>(x, sx, y, sy, win, si, a, stream);
  }
  if (small) return forward_launch<T, W, int32_t, false>(x, sx, y, sy, win, si, a, stream);
  return forward_launch<T, W, int64_t, false>(x, sx, y, sy, win, si, a, stream);
}

template <typename T, typename W>
cudaError_t backward_typed(const void* g, Strides4 sg, const void* win, Strides4 si, void* gx, Strides4 sd,
                           const Pool2dArgs& a, cudaStream_t stream) {
  const bool cl = sd.c == 1 && a.C > 1;
  const bool small = fits32(a, cl, sd, sg, si);
  if (cl) {
    if (small) return backward_launch<T, W, int32_t, true>(g, sg, win, si, gx, sd, a, stream);
    return backward_launch<T, W, int64_t, true>(g, sg, win, si, gx, sd, a, stream);
  }
  if (small) return backward_launch<T, W, int32_t, false>(g, sg, win, si, gx, sd, a, stream);
  return backward_launch<T, W, int64_t, false>(g, sg, win, si, gx, sd, a, stream);
}

template <typename T>
cudaError_t forward_winner(WinnerType wtype, const void* x, Strides4 sx, void* y, Strides4 sy, void* win,
                           Strides4 si, const Pool2dArgs& a, cudaStream_t stream) {
  if (wtype == WinnerType::UInt8) return forward_typed<T, uint8_t>(x, sx, y, sy, win, si, a, stream);
  return forward_typed<T, int32_t>(x, sx, y, sy, win, si, a, stream);
}

template <typename T>
cudaError_t backward_winner(WinnerType wtype, const void* g, Strides4 sg, const void* win, Strides4 si, void* gx,
                            Strides4 sd, const Pool2dArgs& a, cudaStream_t stream) {
  if (wtype == WinnerType::UInt8) return backward_typed<T, uint8_t>(g, sg, win, si, gx, sd, a, stream);
  return backward_typed<T, int32_t>(g, sg, win, si, gx, sd, a, stream);
}

}  // namespace

cudaError_t max_pool2d_forward(DType dtype, WinnerType wtype, const void* x, Strides4 sx, void* y, Strides4 sy,
                               void* winners, Strides4 si, const Pool2dArgs& a, cudaStream_t stream) {
  if (a.N == 0 || a.C == 0 || a.Ho == 0 || a.Wo == 0) return cudaSuccess;
  switch (dtype) {
    case DType::Float32: return forward_winner<float>(wtype, x, sx, y, sy, winners, si, a, stream);
    case DType::Float64: return forward_winner<double>(wtype, x, sx, y, sy, winners, si, a, stream);
    case DType::Float16: return forward_winner<__half>(wtype, x, sx, y, sy, winners, si, a, stream);
    case DType::BFloat16: return forward_winner<__nv_bfloat16>(wtype, x, sx, y, sy, winners, si, a, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t max_pool2d_backward(DType dtype, WinnerType wtype, const void* grad_y, Strides4 sg, const void* winners,
                                Strides4 si, void* grad_x, Strides4 sd, const Pool2dArgs& a, cudaStream_t stream) {
  if (a.N == 0 || a.C == 0 || a.H == 0 || a.W == 0) return cudaSuccess;
  switch (dtype) {
    case DType::Float32: return backward_winner<float>(wtype, grad_y, sg, winners, si, grad_x, sd, a, stream);
    case DType::Float64: return backward_winner<double>(wtype, grad_y, sg, winners, si, grad_x, sd, a, stream);
    case DType::Float16: return backward_winner<__half>(wtype, grad_y, sg, winners, si, grad_x, sd, a, stream);
    case DType::BFloat16:
      return backward_winner<__nv_bfloat16>(wtype, grad_y, sg, winners, si, grad_x, sd, a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace fastalex
