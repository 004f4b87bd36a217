// CPU launchers (cpu/local_response_norm.cpp), called by bindings.cpp after its tensor checks.
#pragma once

#include "../local_response_norm.h"

namespace fastalex {
namespace cpu {

// x, y: (N, C, S) views with strides sx, sy.
template <typename scalar_t>
void lrn_forward(const scalar_t* x, Strides3 sx, scalar_t* y, Strides3 sy, const LRNArgs& a);

// x, grad_y, grad_x: (N, C, S) views.
template <typename scalar_t>
void lrn_backward(const scalar_t* x, Strides3 sx, const scalar_t* grad_y, Strides3 sg, scalar_t* grad_x,
                  Strides3 sd, const LRNArgs& a);

}  // namespace cpu
}  // namespace fastalex
