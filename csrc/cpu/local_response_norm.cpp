// LRN on the CPU. A task owns tw = min(64, S) consecutive positions of one sample and copies their C
// channel columns into a [C][tw] float tile, so every inner loop runs over tw contiguous lanes and
// vectorizes, whatever the input's layout (NCHW or channels_last).
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "launchers.h"

namespace fastalex {
namespace cpu {
namespace {

constexpr int64_t TILE = 64;

template <typename scalar_t>
using acc_type = typename std::conditional<std::is_same<scalar_t, double>::value, double, float>::type;

// tile[c * tw + j] = src[n, c, s0 + j] for j < len.
template <typename scalar_t, typename acc_t>
void load_tile(const scalar_t* src, Strides3 st, int64_t C, int64_t n, int64_t s0, int64_t len, int64_t tw,
               acc_t* tile) {
  const scalar_t* base = src + n * st.n + s0 * st.s;
  if (st.c == 1) {  // channels_last: each position's channels are contiguous
    for (int64_t j = 0; j < len; ++j)
      for (int64_t c = 0; c < C; ++c) tile[c * tw + j] = static_cast<acc_t>(base[j * st.s + c]);
  } else {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t j = 0; j < len; ++j) tile[c * tw + j] = static_cast<acc_t>(base[c * st.c + j * st.s]);
  }
}

template <typename scalar_t, typename acc_t>
void store_tile(const acc_t* tile, int64_t C, int64_t n, int64_t s0, int64_t len, int64_t tw, scalar_t* dst,
                Strides3 st) {
  scalar_t* base = dst + n * st.n + s0 * st.s;
  if (st.c == 1) {
    for (int64_t j = 0; j < len; ++j)
      for (int64_t c = 0; c < C; ++c) base[j * st.s + c] = static_cast<scalar_t>(tile[c * tw + j]);
  } else {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t j = 0; j < len; ++j) base[c * st.c + j * st.s] = static_cast<scalar_t>(tile[c * tw + j]);
  }
}

// out[c] = sum_{c' = c - before}^{c + after} in[c'] row by row (rows outside [0, C) are zero).
// Direct sums, not a running difference: an inf leaving the window must not leave a NaN behind.
template <typename acc_t>
void window_sum_rows(const acc_t* in, int64_t C, int before, int after, int64_t tw, acc_t* out) {
  for (int64_t c = 0; c < C; ++c) {
    acc_t* o = out + c * tw;
    std::fill(o, o + tw, acc_t(0));
    const int64_t lo = std::max<int64_t>(0, c - before), hi = std::min<int64_t>(C - 1, c + after);
    for (int64_t r = lo; r <= hi; ++r) {
      const acc_t* row = in + r * tw;
      for (int64_t j = 0; j < tw; ++j) o[j] += row[j];
    }
  }
}

// scale[i] <- scale[i]^-beta after turning window sums into k + alpha/size * sum.
template <typename acc_t>
void pow_scale(acc_t* v, int64_t count, acc_t alpha_over_size, acc_t k, acc_t beta, BetaKind kind) {
  switch (kind) {  // one loop per kind so each vectorizes
    case BetaKind::ThreeQuarters:
      for (int64_t i = 0; i < count; ++i) {
        acc_t r = fa_sqrt(sqrt_pow_base(k + alpha_over_size * v[i]));
        v[i] = acc_t(1) / (r * fa_sqrt(r));
      }
      break;
    case BetaKind::Half:
      for (int64_t i = 0; i < count; ++i) v[i] = acc_t(1) / fa_sqrt(k + alpha_over_size * v[i]);
      break;
    case BetaKind::One:
      for (int64_t i = 0; i < count; ++i) v[i] = acc_t(1) / (k + alpha_over_size * v[i]);
      break;
    default:
      for (int64_t i = 0; i < count; ++i) v[i] = fa_pow(k + alpha_over_size * v[i], -beta);
  }
}

// Tile width: TILE lanes, fewer when the samples have fewer positions (buffers are C x tw).
inline int64_t tile_width(const LRNArgs& a) { return std::max<int64_t>(1, std::min(TILE, a.S)); }

template <typename F>
void for_each_tile(const LRNArgs& a, F&& body) {
  const int64_t tw = tile_width(a);
  const int64_t tiles_per_sample = (a.S + tw - 1) / tw;
  // Grain so that a task holds about 64K elements.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, a.C * tw));
  at::parallel_for(0, a.N * tiles_per_sample, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / tiles_per_sample, s0 = (t % tiles_per_sample) * tw;
      body(n, s0, std::min(tw, a.S - s0), t == begin);
    }
  });
}

}  // namespace

template <typename scalar_t>
void lrn_forward(const scalar_t* x, Strides3 sx, scalar_t* y, Strides3 sy, const LRNArgs& a) {
  using acc_t = acc_type<scalar_t>;
  const int64_t C = a.C;
  const acc_t aos = static_cast<acc_t>(a.alpha / a.size), k = static_cast<acc_t>(a.k);
  const acc_t beta = static_cast<acc_t>(a.beta);
  const BetaKind kind = beta_kind(a.beta);
  const int lo = lrn_lo(a.size), hi = lrn_hi(a.size);
  const int64_t tw = tile_width(a), tile_len = C * tw;
  for_each_tile(a, [&](int64_t n, int64_t s0, int64_t len, bool first) {
    // Lanes past `len` (a sample's last, partial tile) hold stale values: lanes never mix and only
    // the first `len` are stored.
    thread_local std::vector<acc_t> buf;
    if (first) buf.resize(3 * tile_len);
    acc_t *xt = buf.data(), *sq = xt + tile_len, *scale = sq + tile_len;
    load_tile(x, sx, C, n, s0, len, tw, xt);
    for (int64_t i = 0; i < tile_len; ++i) sq[i] = xt[i] * xt[i];
    window_sum_rows(sq, C, lo, hi, tw, scale);
    pow_scale(scale, tile_len, aos, k, beta, kind);
    for (int64_t i = 0; i < tile_len; ++i) scale[i] *= xt[i];
    store_tile(scale, C, n, s0, len, tw, y, sy);
  });
}

template <typename scalar_t>
void lrn_backward(const scalar_t* x, Strides3 sx, const scalar_t* grad_y, Strides3 sg, scalar_t* grad_x,
                  Strides3 sd, const LRNArgs& a) {
  using acc_t = acc_type<scalar_t>;
  const int64_t C = a.C;
  const acc_t aos = static_cast<acc_t>(a.alpha / a.size), k = static_cast<acc_t>(a.k);
  const acc_t beta = static_cast<acc_t>(a.beta);
  const acc_t coef = acc_t(2) * aos * beta;
  const bool nan_at_inf = lrn_grad_nan_at_inf(a.beta);
  const BetaKind kind = beta_kind(a.beta);
  const int lo = lrn_lo(a.size), hi = lrn_hi(a.size);
  const int64_t tw = tile_width(a), tile_len = C * tw;
  for_each_tile(a, [&](int64_t n, int64_t s0, int64_t len, bool first) {
    thread_local std::vector<acc_t> buf;
    if (first) buf.resize(5 * tile_len);
    acc_t *xt = buf.data(), *gt = xt + tile_len, *win = gt + tile_len, *t = win + tile_len, *u = t + tile_len;
    load_tile(x, sx, C, n, s0, len, tw, xt);
    load_tile(grad_y, sg, C, n, s0, len, tw, gt);
    for (int64_t i = 0; i < tile_len; ++i) t[i] = xt[i] * xt[i];
    window_sum_rows(t, C, lo, hi, tw, win);
    for (int64_t i = 0; i < tile_len; ++i) t[i] = k + aos * win[i];  // t holds s for now
    pow_scale(win, tile_len, aos, k, beta, kind);                    // win holds s^-beta
    for (int64_t i = 0; i < tile_len; ++i) {
      const acc_t gp = gt[i] * win[i], s = t[i];
      t[i] = lrn_grad_term(gp * xt[i] / s, s, nan_at_inf);  // g x s^(-beta-1)
      gt[i] = gp;                                           // g s^-beta
    }
    // Channel c' feeds the windows of c in [c' - hi, c' + lo]: the transposed window.
    window_sum_rows(t, C, hi, lo, tw, u);
    for (int64_t i = 0; i < tile_len; ++i) u[i] = gt[i] - coef * xt[i] * u[i];
    store_tile(u, C, n, s0, len, tw, grad_x, sd);
  });
}

#define FASTALEX_INSTANTIATE(T)                                                                            \
  template void lrn_forward<T>(const T*, Strides3, T*, Strides3, const LRNArgs&);                         \
  template void lrn_backward<T>(const T*, Strides3, const T*, Strides3, T*, Strides3, const LRNArgs&);
FASTALEX_INSTANTIATE(float)
FASTALEX_INSTANTIATE(double)
FASTALEX_INSTANTIATE(c10::Half)
FASTALEX_INSTANTIATE(c10::BFloat16)
#undef FASTALEX_INSTANTIATE

}  // namespace cpu
}  // namespace fastalex
