// CUDA launchers (cuda/local_response_norm.cu, cuda/max_pool2d.cu): raw pointers and a stream, no
// torch types, so nvcc never sees the torch headers. They return the launch's cudaError_t;
// bindings.cpp checks it.
#pragma once

#include <cuda_runtime_api.h>

#include "../local_response_norm.h"
#include "../max_pool2d.h"

namespace fastalex {
namespace cuda {

// x, y: (N, C, S) device views of `dtype` with strides sx, sy.
cudaError_t lrn_forward(DType dtype, const void* x, Strides3 sx, void* y, Strides3 sy, const LRNArgs& a,
                        cudaStream_t stream);

// x, grad_y, grad_x: (N, C, S) device views of `dtype`.
cudaError_t lrn_backward(DType dtype, const void* x, Strides3 sx, const void* grad_y, Strides3 sg, void* grad_x,
                         Strides3 sd, const LRNArgs& a, cudaStream_t stream);

// x: (N, C, H, W) device tensor of `dtype`, strides sx; y: (N, C, Ho, Wo), strides sy; winners:
// (N, C, Ho, Wo) of `wtype`, strides si.
cudaError_t max_pool2d_forward(DType dtype, WinnerType wtype, const void* x, Strides4 sx, void* y, Strides4 sy,
                               void* winners, Strides4 si, const Pool2dArgs& a, cudaStream_t stream);

// grad_y: (N, C, Ho, Wo), strides sg; winners: (N, C, Ho, Wo) of `wtype`, strides si; grad_x: (N, C, H, W),
// strides sd.
cudaError_t max_pool2d_backward(DType dtype, WinnerType wtype, const void* grad_y, Strides4 sg, const void* winners,
                                Strides4 si, void* grad_x, Strides4 sd, const Pool2dArgs& a, cudaStream_t stream);

}  // namespace cuda
}  // namespace fastalex
