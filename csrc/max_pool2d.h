// 2-D max-pool: the window arithmetic shared by the CPU (cpu/) and CUDA (cuda/) kernels. Plain C++
// with no torch headers.
//
// Output (oh, ow) reads input rows ih = oh*sh - ph + jh*dh (jh < kh) and columns iw = ow*sw - pw + jw*dw
// (jw < kw); taps outside the input are padding and never win. The valid taps are scanned row-major;
// the first one initialises and a tap replaces the best iff `v > best || isnan(v)` (torch's rule:
// ties keep the first maximum, the last NaN wins). winners holds the tap index jh*kw + jw, not a flat
// input index. The backward pass gathers: each input element sums, in ascending (oh, ow) order, the
// grad of the outputs whose winner is that element.
#pragma once

#include <math.h>
#include <stdint.h>

#include "local_response_norm.h"  // DType, FASTALEX_HD

namespace fastalex {

// Element strides of an (N, C, H, W) tensor.
struct Strides4 {
  int64_t n, c, h, w;
};

// The element type of `winners`: a byte holds the tap index of windows up to 256 taps.
enum class WinnerType : int { UInt8 = 0, Int32 = 1 };

struct Pool2dArgs {
  int64_t N, C, H, W;  // input
  int64_t Ho, Wo;      // output, as the caller sized it (floor or ceil mode)
  int kh, kw, sh, sw, ph, pw, dh, dw;
};

// Valid taps [lo, hi) along one dimension of a window starting at `start` (= o*s - p); empty when
// lo >= hi.
template <typename I>
FASTALEX_HD void pool_valid_taps(I start, int k, int d, I size, int& lo, int& hi) {
  lo = start >= 0 ? 0 : int((-start + d - 1) / d);
  hi = start >= size ? 0 : int((size - 1 - start) / d + 1 < I(k) ? (size - 1 - start) / d + 1 : I(k));
}

// Outputs [lo, hi] along one dimension whose window holds input i as some tap: o*s lies in
// [i + p - (k-1)*d, i + p]. The tap is (i + p - o*s) / d when that divides exactly. Empty when lo > hi.
template <typename I>
FASTALEX_HD void pool_candidate_outputs(I i, int k, int s, int p, int d, I out_size, I& lo, I& hi) {
  const I top = i + p, bottom = top - I(k - 1) * d;
  lo = bottom > 0 ? (bottom + s - 1) / s : I(0);
  hi = top / s;
  if (hi > out_size - 1) hi = out_size - 1;
}

// torch's replacement rule; `v != v` is isnan without <cmath> overloads on every backend.
template <typename acc_t>
FASTALEX_HD bool pool_takes(acc_t v, acc_t best) {
  return v > best || v != v;
}

}  // namespace fastalex
