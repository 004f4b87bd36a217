// Local Response Normalization: the math shared by the CPU (cpu/) and CUDA (cuda/) kernels.
// Plain C++ with no torch headers, so nvcc compiles the CUDA file in seconds.
//
//   y_c = x_c * s_c^-beta,   s_c = k + alpha/size * sum_{c' = c - lo}^{c + hi} x_{c'}^2,
//   lo = size / 2, hi = (size - 1) / 2, channels outside [0, C) count as zeros (torch's convention).
//
//   dx_j = g_j s_j^-beta - 2 beta alpha/size x_j * sum_{c = j - hi}^{j + lo} g_c x_c s_c^(-beta-1)
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define FASTALEX_HD __host__ __device__ __forceinline__
#else
#define FASTALEX_HD inline
#endif

namespace fastalex {

enum class DType : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

// Element strides of an (N, C, S) view: every spatial dimension merged into S.
struct Strides3 {
  int64_t n, c, s;
};

struct LRNArgs {
  int64_t N, C, S;
  int size;
  double alpha, beta, k;  // as torch takes them: the sum is scaled by alpha / size
};

FASTALEX_HD int lrn_lo(int size) { return size / 2; }
FASTALEX_HD int lrn_hi(int size) { return (size - 1) / 2; }

// The betas worth a cheaper formula than pow(); 0.75 is the paper's and torch's default.
enum class BetaKind : int { General = 0, ThreeQuarters = 1, Half = 2, One = 3 };

inline BetaKind beta_kind(double beta) {
  if (beta == 0.75) return BetaKind::ThreeQuarters;
  if (beta == 0.5) return BetaKind::Half;
  if (beta == 1.0) return BetaKind::One;
  return BetaKind::General;
}

FASTALEX_HD float fa_sqrt(float v) { return sqrtf(v); }
FASTALEX_HD double fa_sqrt(double v) { return sqrt(v); }
FASTALEX_HD float fa_pow(float a, float b) { return powf(a, b); }
FASTALEX_HD double fa_pow(double a, double b) { return pow(a, b); }

// The base the sqrt form of s^-0.75 takes: torch's pow(-inf, 0.75) is +inf (std::pow: as pow(+inf, 0.75)),
// where sqrt(-inf) would give NaN (a negative alpha with an inf input). (torch computes pow(s, 0.5) as
// sqrt(s): NaN at -inf, as the beta = 1/2 form here.)
template <typename acc_t>
FASTALEX_HD acc_t sqrt_pow_base(acc_t s) {
  return s == acc_t(-INFINITY) ? acc_t(INFINITY) : s;
}

// s^-beta, with torch's pow semantics at the edges (inf at s = 0, NaN for s < 0 unless beta is an integer).
template <typename acc_t>
FASTALEX_HD acc_t pow_neg_beta(acc_t s, acc_t beta, BetaKind kind) {
  switch (kind) {
    case BetaKind::ThreeQuarters: {
      acc_t r = fa_sqrt(sqrt_pow_base(s));
      return acc_t(1) / (r * fa_sqrt(r));
    }
    case BetaKind::Half:
      return acc_t(1) / fa_sqrt(s);
    case BetaKind::One:
      return acc_t(1) / s;
    default:
      return fa_pow(s, -beta);
  }
}

// The backward's t_c = g_c x_c s_c^(-beta-1), computed as `folded`. torch's chain rule reaches it as
// (-g x / s^(2 beta)) * beta s^(beta-1), which is 0 * inf = NaN where s is +-inf and beta > 1: the
// folded form would say 0 there, so those are NaN, as in torch.
FASTALEX_HD bool lrn_grad_nan_at_inf(double beta) { return beta > 1.0; }

template <typename acc_t>
FASTALEX_HD acc_t lrn_grad_term(acc_t folded, acc_t s, bool nan_at_inf) {
  return (nan_at_inf && (s == acc_t(INFINITY) || s == acc_t(-INFINITY))) ? acc_t(NAN) : folded;
}

}  // namespace fastalex
