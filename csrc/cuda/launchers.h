// CUDA launchers (cuda/local_response_norm.cu): raw pointers and a stream, no torch types, so nvcc
// never sees the torch headers. They return the launch's cudaError_t; bindings.cpp checks it.
#pragma once

#include <cuda_runtime_api.h>

#include "../local_response_norm.h"

namespace fastalex {
namespace cuda {

// x, y: (N, C, S) device views of `dtype` with strides sx, sy.
cudaError_t lrn_forward(DType dtype, const void* x, Strides3 sx, void* y, Strides3 sy, const LRNArgs& a,
                        cudaStream_t stream);

// x, grad_y, grad_x: (N, C, S) device views of `dtype`.
cudaError_t lrn_backward(DType dtype, const void* x, Strides3 sx, const void* grad_y, Strides3 sg, void* grad_x,
                         Strides3 sd, const LRNArgs& a, cudaStream_t stream);

}  // namespace cuda
}  // namespace fastalex
