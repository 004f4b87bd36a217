// What every CUDA kernel file shares about element types: the accumulation type (float, double for
// double) and conversions in and out of it, with round-to-nearest for the half types.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace fastalex {
namespace cuda {

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

}  // namespace cuda
}  // namespace fastalex
