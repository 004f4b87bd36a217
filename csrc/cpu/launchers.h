// CPU launchers (cpu/local_response_norm.cpp, cpu/max_pool2d.cpp), called by bindings.cpp after its tensor checks.
#pragma once

#include "../local_response_norm.h"
#include "../max_pool2d.h"

namespace fastalex {
namespace cpu {

// x, y: (N, C, S) views with strides sx, sy.
template <typename scalar_t>
void lrn_forward(const scalar_t* x, Strides3 sx, scalar_t* y, Strides3 sy, const LRNArgs& a);

// x, grad_y, grad_x: (N, C, S) views.
template <typename scalar_t>
void lrn_backward(const scalar_t* x, Strides3 sx, const scalar_t* grad_y, Strides3 sg, scalar_t* grad_x,
                  Strides3 sd, const LRNArgs& a);

// x: (N, C, H, W), strides sx; y: (N, C, Ho, Wo), strides sy; winners: (N, C, Ho, Wo) of idx_t (uint8_t
// or int32_t), strides si.
template <typename scalar_t, typename idx_t>
void max_pool2d_forward(const scalar_t* x, Strides4 sx, scalar_t* y, Strides4 sy, idx_t* winners, Strides4 si,
                        const Pool2dArgs& a);

// grad_y: (N, C, Ho, Wo), strides sg; winners: (N, C, Ho, Wo), strides si; grad_x: (N, C, H, W), strides sd.
template <typename scalar_t, typename idx_t>
void max_pool2d_backward(const scalar_t* grad_y, Strides4 sg, const idx_t* winners, Strides4 si, scalar_t* grad_x,
                         Strides4 sd, const Pool2dArgs& a);

}  // namespace cpu
}  // namespace fastalex
