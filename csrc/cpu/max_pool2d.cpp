// Max-pool 2-D on the CPU. Two layouts, picked by the strides of the tensor a pass covers in full
// (x forward, grad_x backward):
// - planar (NCHW and any other strides): a task owns a block of rows of one (n, c) plane and stages
//   the padded window region as acc_t split by stride phase (see Stage), so that for every tap the
//   task's outputs read one contiguous run: each tap is a single vectorized loop over all outputs.
// - channels_last: a task owns rows of one sample; every inner loop runs over contiguous channels.
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "launchers.h"

namespace fastalex {
namespace cpu {
namespace {

template <typename scalar_t>
using acc_type = typename std::conditional<std::is_same<scalar_t, double>::value, double, float>::type;

// Element conversions. c10::Half's own are scalar calls (or scalar F16C) that the vectorizer cannot
// widen, which left the channels_last loops scalar; these are branch-free bit manipulation that
// vectorizes, with F16C's results: exact half -> float, round-to-nearest-even float -> half, NaNs
// quieted with their payload kept. No float denormal is ever produced or read, so FTZ/DAZ cannot
// change them.
inline uint32_t f32_bits(float f) { return __builtin_bit_cast(uint32_t, f); }
inline float f32_from(uint32_t u) { return __builtin_bit_cast(float, u); }
// c ? a : b as masks: a ternary on float results becomes a branch (float ops are not speculated).
inline uint32_t pick(bool c, uint32_t a, uint32_t b) {
  const uint32_t m = 0u - uint32_t(c);
  return (a & m) | (b & ~m);
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, em = h & 0x7fffu, e = em >> 10;
  const uint32_t normal = (em << 13) + (112u << 23);                 // exponent bias 15 -> 127
  const uint32_t sub = f32_bits(float(int32_t(em)) * 0x1p-24f);     // e == 0: m * 2^-24
  const uint32_t special = (em << 13) | 0x7f800000u;                 // e == 31: inf, NaN (payload kept)
  return f32_from(pick(e == 0, sub, pick(e == 31, special, normal)) | sign);
}

inline uint16_t float_to_half(float f) {
  uint32_t u = f32_bits(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  const uint32_t big = pick(u > 0x7f800000u, 0x7e00u | ((u >> 13) & 0x3ffu), 0x7c00u);  // NaN; >= 2^16: inf
  const uint32_t small = f32_bits(f32_from(u) + 0.5f) - 0x3f000000u;                 // < 2^-14: rounds at 2^-24
  // Rebias and round to nearest even; a carry out of the mantissa into exponent 31 gives inf.
  const uint32_t normal = (u + 0xc8000fffu + ((u >> 13) & 1u)) >> 13;
  return uint16_t(pick(u >= 0x47800000u, big, pick(u < 0x38800000u, small, normal)) | (sign >> 16));
}

// c ? v : +0 on the bits: with a half conversion feeding v, a ternary would become a branch.
inline float keep_if(bool c, float v) { return f32_from(f32_bits(v) & (0u - uint32_t(c))); }
inline double keep_if(bool c, double v) {
  return __builtin_bit_cast(double, __builtin_bit_cast(uint64_t, v) & (uint64_t(0) - uint64_t(c)));
}

template <typename D, typename S>
inline D cvt(S v) {
  return static_cast<D>(v);
}
template <>
inline float cvt<float, c10::Half>(c10::Half v) {
  return half_to_float(v.x);
}
template <>
inline c10::Half cvt<c10::Half, float>(float v) {
  return c10::Half(float_to_half(v), c10::Half::from_bits());
}

// About this many elements per parallel task, so small batches of big planes still spread.
constexpr int64_t TASK_ELEMS = 8192;

template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// --- planar -------------------------------------------------------------------------------------

// The window region of output rows [oh0, oh1): padded rows pr = ih - row0 (row0 = oh0*sh - ph) and
// padded columns pc = iw + pw. Phase plane (pr % sh, pc % sw) holds rows pr / sh < Mh and columns
// pc / sw < Mc, so tap (jh, jw) of output (oh, ow) sits at tap(jh, jw) + (oh - oh0) * Mc + ow: for
// one tap, all the task's outputs form one contiguous run with pitch Mc >= Wo (lanes ow >= Wo are
// junk, computed and ignored).
struct Stage {
  int sh, sw;
  int64_t Mh, Mc, row0;
  int64_t plane() const { return Mh * Mc; }
  int64_t size() const { return int64_t(sh) * sw * Mh * Mc; }
  int64_t rows() const { return int64_t(sh) * Mh; }
  // Start of padded row pr's phase-0 column run; phase rc is rc * plane() further.
  int64_t row_start(int64_t pr) const { return (pr % sh) * sw * plane() + (pr / sh) * Mc; }
  int64_t tap(int64_t jh_off, int64_t jw_off) const {
    return row_start(jh_off) + (jw_off % sw) * plane() + jw_off / sw;
  }
};

Stage make_stage(const Pool2dArgs& a, int64_t oh0, int64_t oh1) {
  const int64_t rows = (oh1 - 1 - oh0) * a.sh + int64_t(a.kh - 1) * a.dh + 1;
  const int64_t cols = (a.Wo - 1) * a.sw + int64_t(a.kw - 1) * a.dw + 1;
  return {a.sh, a.sw, ceil_div(rows, a.sh), ceil_div(cols, a.sw), oh0 * a.sh - a.ph};
}

// Padded columns m*sw + rc with m in [lo, hi) are inside the row for every phase rc.
inline void whole_groups(int64_t W, int pw, int sw, int64_t Mc, int64_t& lo, int64_t& hi) {
  lo = std::min<int64_t>(Mc, ceil_div(pw, sw));
  hi = std::max<int64_t>(lo, std::min<int64_t>(Mc, (W + pw) / sw));
}

// Stages one padded row: dst[rc * plane + m] = padded column m*sw + rc (src[iw * stride] for
// iw = m*sw + rc - pw inside [0, W), else pad), m < Mc. SW > 0: sw == SW and stride == 1, so the
// grouped loop vectorizes; SW == 0: any sw and stride.
template <int SW, typename S, typename D>
void split_row(D* dst, int64_t plane, const S* src, int64_t stride, int64_t W, int pw, int sw_rt, int64_t Mc, D pad) {
  const int sw = SW > 0 ? SW : sw_rt;
  auto edge = [&](int64_t m) {
    for (int rc = 0; rc < sw; ++rc) {
      const int64_t iw = m * sw + rc - pw;
      dst[rc * plane + m] = (iw >= 0 && iw < W) ? cvt<D>(src[iw * stride]) : pad;
    }
  };
  int64_t lo, hi;
  whole_groups(W, pw, sw, Mc, lo, hi);
  for (int64_t m = 0; m < lo; ++m) edge(m);
  if (SW > 0 && hi > lo) {
    const S* s = src + (lo * SW - pw);
    for (int64_t m = 0; m < hi - lo; ++m)
      for (int rc = 0; rc < SW; ++rc) dst[rc * plane + lo + m] = cvt<D>(s[m * SW + rc]);
  } else {
    for (int rc = 0; rc < sw; ++rc)
      for (int64_t m = lo; m < hi; ++m) dst[rc * plane + m] = cvt<D>(src[(m * sw + rc - pw) * stride]);
  }
  for (int64_t m = hi; m < Mc; ++m) edge(m);
}

// The inverse for one input row: dst[iw * stride] = padded column iw + pw of the staged row, or 0
// where the stage ends before the row does (columns no window reads).
template <int SW, typename S, typename D>
void merge_row(D* dst, int64_t stride, const S* src, int64_t plane, int64_t W, int pw, int sw_rt, int64_t Mc) {
  const int sw = SW > 0 ? SW : sw_rt;
  auto one = [&](int64_t iw) {
    const int64_t pc = iw + pw, m = pc / sw;
    dst[iw * stride] = cvt<D>(m < Mc ? src[(pc % sw) * plane + m] : S(0));
  };
  int64_t lo, hi;
  whole_groups(W, pw, sw, Mc, lo, hi);
  const int64_t iw_lo = std::clamp<int64_t>(lo * sw - pw, 0, W);
  const int64_t iw_hi = std::clamp<int64_t>(hi * sw - pw, iw_lo, W);
  for (int64_t iw = 0; iw < iw_lo; ++iw) one(iw);
  if (SW > 0 && hi > lo) {
    D* d = dst + iw_lo;
    for (int64_t m = 0; m < hi - lo; ++m)
      for (int rc = 0; rc < SW; ++rc) d[m * SW + rc] = cvt<D>(src[rc * plane + lo + m]);
  } else {
    for (int64_t iw = iw_lo; iw < iw_hi; ++iw) one(iw);
  }
  for (int64_t iw = iw_hi; iw < W; ++iw) one(iw);
}

template <typename S, typename D>
void split_row_any(D* dst, int64_t plane, const S* src, int64_t stride, int64_t W, int pw, int sw, int64_t Mc, D pad) {
  if (stride == 1 && sw == 1) return split_row<1>(dst, plane, src, 1, W, pw, 1, Mc, pad);
  if (stride == 1 && sw == 2) return split_row<2>(dst, plane, src, 1, W, pw, 2, Mc, pad);
  split_row<0>(dst, plane, src, stride, W, pw, sw, Mc, pad);
}

template <typename S, typename D>
void merge_row_any(D* dst, int64_t stride, const S* src, int64_t plane, int64_t W, int pw, int sw, int64_t Mc) {
  if (stride == 1 && sw == 1) return merge_row<1>(dst, 1, src, plane, W, pw, 1, Mc);
  if (stride == 1 && sw == 2) return merge_row<2>(dst, 1, src, plane, W, pw, 2, Mc);
  merge_row<0>(dst, stride, src, plane, W, pw, sw, Mc);
}

// dst[i] = src[i] for i < cnt in fixed chunks of 16 and 8: rows are short (27 in AlexNet) and a plain
// loop over bytes would pick 32 or 64 lanes and run these rows in its scalar epilogue.
template <typename T, typename S>
inline void convert_run(T* __restrict__ dst, const S* __restrict__ src, int64_t cnt) {
  int64_t i = 0;
  for (; i + 16 <= cnt; i += 16)
    for (int j = 0; j < 16; ++j) dst[i + j] = cvt<T>(src[i + j]);
  for (; i + 8 <= cnt; i += 8)
    for (int j = 0; j < 8; ++j) dst[i + j] = cvt<T>(src[i + j]);
  for (; i < cnt; ++i) dst[i] = cvt<T>(src[i]);
}

// dst[i * stride] = src[i] for i < cnt. (Own function: with everything in arguments, byte stores
// cannot alias the loop bound.)
template <typename T, typename S>
void store_lanes(T* __restrict__ dst, int64_t stride, const S* __restrict__ src, int64_t cnt) {
  if (stride == 1) {
    convert_run(dst, src, cnt);
  } else {
    for (int64_t i = 0; i < cnt; ++i) dst[i * stride] = cvt<T>(src[i]);
  }
}

// dst[i] = src[i * stride] for i < cnt.
template <typename T, typename S>
void load_lanes(T* __restrict__ dst, const S* __restrict__ src, int64_t stride, int64_t cnt) {
  if (stride == 1) {
    convert_run(dst, src, cnt);
  } else {
    for (int64_t i = 0; i < cnt; ++i) dst[i] = cvt<T>(src[i * stride]);
  }
}

// rows x cols block: dst[r * drs + i * dcs] = src[r * srs + i * scs]. One flat loop when both sides are
// dense, so short rows (55 in AlexNet) of half conversions do not run in scalar loop epilogues.
template <typename T, typename S>
void convert_rows(T* dst, int64_t drs, int64_t dcs, const S* src, int64_t srs, int64_t scs, int64_t rows,
                  int64_t cols) {
  if (dcs == 1 && scs == 1 && drs == cols && srs == cols) {
    for (int64_t i = 0; i < rows * cols; ++i) dst[i] = cvt<T>(src[i]);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (dcs == 1)
      load_lanes(dst + r * drs, src + r * srs, scs, cols);
    else
      store_lanes(dst + r * drs, dcs, src + r * srs, cols);
  }
}

// idx[ow] = the first valid tap of output (oh, ow), given its first valid row jh_lo (see first_jw).
void init_winners(int32_t* __restrict__ idx, const int* __restrict__ first_jw, int32_t row_tap, int64_t cnt) {
  for (int64_t ow = 0; ow < cnt; ++ow) idx[ow] = first_jw[ow] >= 0 ? row_tap + first_jw[ow] : 0;
}

// One tap over a run of outputs. Padding holds -inf, which never replaces (the rule is strict), so
// taps need no bounds; each output starts at -inf with its first valid tap as the winner.
template <typename S, typename acc_t>
void tap_max(const S* __restrict__ src, acc_t* __restrict__ best, int32_t* __restrict__ idx, int32_t t, int64_t n) {
  for (int64_t o = 0; o < n; ++o) {
    const acc_t v = cvt<acc_t>(src[o]), b = best[o];
    const bool take = (v > b) | (v != v);
    best[o] = take ? v : b;
    idx[o] = take ? t : idx[o];
  }
}

// One tap of the gather: dst[o] is the input element that tap t of output o reads.
template <typename acc_t>
void tap_gather(acc_t* __restrict__ dst, const acc_t* __restrict__ g, const int32_t* __restrict__ w, int32_t t,
                int64_t n) {
  for (int64_t o = 0; o < n; ++o) dst[o] += w[o] == t ? g[o] : acc_t(0);
}

inline int64_t rows_per_task(int64_t rows, int64_t row_elems) {
  return std::max<int64_t>(1, std::min<int64_t>(rows, TASK_ELEMS / std::max<int64_t>(1, row_elems)));
}

template <typename scalar_t, typename idx_t>
void forward_planar(const scalar_t* x, Strides4 sx, scalar_t* y, Strides4 sy, idx_t* win, Strides4 si,
                    const Pool2dArgs& a) {
  using acc_t = acc_type<scalar_t>;
  const acc_t ninf = -std::numeric_limits<acc_t>::infinity();
  // First valid column tap of each output column (-1: none).
  std::vector<int> first_jw(a.Wo);
  for (int64_t ow = 0; ow < a.Wo; ++ow) {
    int lo, hi;
    pool_valid_taps<int64_t>(ow * a.sw - a.pw, a.kw, a.dw, a.W, lo, hi);
    first_jw[ow] = lo < hi ? lo : -1;
  }
  const int64_t rpt = rows_per_task(a.Ho, a.Wo), blocks = ceil_div(a.Ho, rpt);
  at::parallel_for(0, a.N * a.C * blocks, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<acc_t> xbuf, bbuf, fbuf;
    thread_local std::vector<int32_t> ibuf;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / blocks, oh0 = (task % blocks) * rpt, oh1 = std::min(a.Ho, oh0 + rpt);
      const int64_t n = plane / a.C, c = plane % a.C;
      const Stage st = make_stage(a, oh0, oh1);
      const int64_t runs = (oh1 - oh0 - 1) * st.Mc + a.Wo;
      acc_t* xb = grow(xbuf, st.size());
      acc_t* best = grow(bbuf, runs);
      int32_t* idx = grow(ibuf, runs);
      const scalar_t* xp = x + n * sx.n + c * sx.c;
      // Input rows the stage holds.
      const int64_t ih_lo = std::clamp<int64_t>(st.row0, 0, a.H);
      const int64_t ih_hi = std::clamp<int64_t>(st.row0 + st.rows(), ih_lo, a.H);
      const acc_t* rows_src = nullptr;  // low precision: those rows as acc_t, pitch W
      if constexpr (!std::is_same<scalar_t, acc_t>::value) {
        acc_t* xf = grow(fbuf, size_t((ih_hi - ih_lo) * a.W));
        convert_rows(xf, a.W, 1, xp + ih_lo * sx.h, sx.h, sx.w, ih_hi - ih_lo, a.W);
        rows_src = xf;
      }
      for (int64_t pr = 0; pr < st.rows(); ++pr) {
        const int64_t ih = st.row0 + pr;
        acc_t* dst = xb + st.row_start(pr);
        if (ih < 0 || ih >= a.H) {
          for (int rc = 0; rc < a.sw; ++rc) std::fill(dst + rc * st.plane(), dst + rc * st.plane() + st.Mc, ninf);
        } else if (rows_src != nullptr) {
          split_row_any(dst, st.plane(), rows_src + (ih - ih_lo) * a.W, int64_t(1), a.W, a.pw, a.sw, st.Mc, ninf);
        } else {
          split_row_any(dst, st.plane(), xp + ih * sx.h, sx.w, a.W, a.pw, a.sw, st.Mc, ninf);
        }
      }
      std::fill(idx, idx + runs, 0);
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        int jh_lo, jh_hi;
        pool_valid_taps<int64_t>(oh * a.sh - a.ph, a.kh, a.dh, a.H, jh_lo, jh_hi);
        const int64_t o = (oh - oh0) * st.Mc;
        if (jh_lo < jh_hi) init_winners(idx + o, first_jw.data(), jh_lo * a.kw, a.Wo);
      }
      std::fill(best, best + runs, ninf);
      for (int jh = 0; jh < a.kh; ++jh)
        for (int jw = 0; jw < a.kw; ++jw)
          tap_max(xb + st.tap(int64_t(jh) * a.dh, int64_t(jw) * a.dw), best, idx, jh * a.kw + jw, runs);
      scalar_t* yp = y + n * sy.n + c * sy.c;
      idx_t* wp = win + n * si.n + c * si.c;
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        store_lanes(yp + oh * sy.h, sy.w, best + (oh - oh0) * st.Mc, a.Wo);
        store_lanes(wp + oh * si.h, si.w, idx + (oh - oh0) * st.Mc, a.Wo);
      }
    }
  });
}

template <typename scalar_t, typename idx_t>
void backward_planar(const scalar_t* g, Strides4 sg, const idx_t* win, Strides4 si, scalar_t* gx, Strides4 sd,
                     const Pool2dArgs& a) {
  using acc_t = acc_type<scalar_t>;
  const int64_t rpt = rows_per_task(a.H, a.W), blocks = ceil_div(a.H, rpt);
  at::parallel_for(0, a.N * a.C * blocks, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<acc_t> abuf, gbuf, fbuf;
    thread_local std::vector<int32_t> wbuf;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / blocks, ih0 = (task % blocks) * rpt, ih1 = std::min(a.H, ih0 + rpt);
      const int64_t n = plane / a.C, c = plane % a.C;
      scalar_t* dp = gx + n * sd.n + c * sd.c;
      // Outputs whose windows reach these input rows.
      int64_t o0, o1, unused;
      pool_candidate_outputs<int64_t>(ih0, a.kh, a.sh, a.ph, a.dh, a.Ho, o0, unused);
      pool_candidate_outputs<int64_t>(ih1 - 1, a.kh, a.sh, a.ph, a.dh, a.Ho, unused, o1);
      if (o0 > o1) {
        for (int64_t ih = ih0; ih < ih1; ++ih)
          for (int64_t iw = 0; iw < a.W; ++iw) dp[ih * sd.h + iw * sd.w] = scalar_t(0);
        continue;
      }
      const Stage st = make_stage(a, o0, o1 + 1);
      const int64_t runs = (o1 - o0) * st.Mc + a.Wo;
      acc_t* acc = grow(abuf, st.size());
      acc_t* gb = grow(gbuf, runs);
      int32_t* wb = grow(wbuf, runs);
      std::fill(acc, acc + st.size(), acc_t(0));
      // Junk lanes (ow >= Wo) match no tap.
      std::fill(gb, gb + runs, acc_t(0));
      std::fill(wb, wb + runs, int32_t(-1));
      const scalar_t* gp = g + n * sg.n + c * sg.c;
      const idx_t* wp = win + n * si.n + c * si.c;
      for (int64_t oh = o0; oh <= o1; ++oh) {
        load_lanes(gb + (oh - o0) * st.Mc, gp + oh * sg.h, sg.w, a.Wo);
        load_lanes(wb + (oh - o0) * st.Mc, wp + oh * si.h, si.w, a.Wo);
      }
      // For one input element, descending (jh, jw) is ascending (oh, ow): sums run in torch's order.
      for (int jh = a.kh - 1; jh >= 0; --jh)
        for (int jw = a.kw - 1; jw >= 0; --jw)
          tap_gather(acc + st.tap(int64_t(jh) * a.dh, int64_t(jw) * a.dw), gb, wb, jh * a.kw + jw, runs);
      // Low precision merges into acc_t rows first and converts them in one pass.
      constexpr bool direct = std::is_same<scalar_t, acc_t>::value;
      acc_t* rows_dst = direct ? nullptr : grow(fbuf, size_t((ih1 - ih0) * a.W));
      for (int64_t ih = ih0; ih < ih1; ++ih) {
        const int64_t pr = ih - st.row0;
        if (pr < 0 || pr >= st.rows()) {  // a row no window reads
          if (direct) {
            for (int64_t iw = 0; iw < a.W; ++iw) dp[ih * sd.h + iw * sd.w] = scalar_t(0);
          } else {
            std::fill(rows_dst + (ih - ih0) * a.W, rows_dst + (ih - ih0 + 1) * a.W, acc_t(0));
          }
        } else if (direct) {
          merge_row_any(dp + ih * sd.h, sd.w, acc + st.row_start(pr), st.plane(), a.W, a.pw, a.sw, st.Mc);
        } else {
          merge_row_any(rows_dst + (ih - ih0) * a.W, int64_t(1), acc + st.row_start(pr), st.plane(), a.W, a.pw, a.sw,
                        st.Mc);
        }
      }
      if (!direct) convert_rows(dp + ih0 * sd.h, sd.h, sd.w, rows_dst, a.W, 1, ih1 - ih0, a.W);
    }
  });
}

// --- channels_last ------------------------------------------------------------------------------

// Channels per register block of the backward gather: the sums stay in registers across candidates.
constexpr int CB = 32;

// The running maxima of one output's C channels stay in an L1 buffer across the taps: each tap is one
// contiguous C-long stream, which keeps the input reads sequential (register blocks over C would
// interleave nine streams per block and run slower).
template <typename scalar_t, typename idx_t>
void forward_channels_last(const scalar_t* x, Strides4 sx, scalar_t* y, Strides4 sy, idx_t* win, Strides4 si,
                           const Pool2dArgs& a) {
  using acc_t = acc_type<scalar_t>;
  const int64_t C = a.C;
  const int64_t grain = std::max<int64_t>(1, TASK_ELEMS / std::max<int64_t>(1, a.Wo * C));
  at::parallel_for(0, a.N * a.Ho, grain, [&](int64_t begin, int64_t end) {
    thread_local std::vector<acc_t> bbuf;
    thread_local std::vector<int32_t> ibuf;
    acc_t* best = grow(bbuf, C);
    int32_t* idx = grow(ibuf, C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / a.Ho, oh = row % a.Ho;
      const int64_t h0 = oh * a.sh - a.ph;
      int jh_lo, jh_hi;
      pool_valid_taps<int64_t>(h0, a.kh, a.dh, a.H, jh_lo, jh_hi);
      for (int64_t ow = 0; ow < a.Wo; ++ow) {
        const int64_t w0 = ow * a.sw - a.pw;
        int jw_lo, jw_hi;
        pool_valid_taps<int64_t>(w0, a.kw, a.dw, a.W, jw_lo, jw_hi);
        const int32_t first = (jh_lo < jh_hi && jw_lo < jw_hi) ? jh_lo * a.kw + jw_lo : 0;
        std::fill(best, best + C, -std::numeric_limits<acc_t>::infinity());
        std::fill(idx, idx + C, first);
        for (int jh = jh_lo; jh < jh_hi; ++jh) {
          const scalar_t* row_p = x + n * sx.n + (h0 + int64_t(jh) * a.dh) * sx.h;
          for (int jw = jw_lo; jw < jw_hi; ++jw)  // sx.c == 1 on this path
            tap_max(row_p + (w0 + int64_t(jw) * a.dw) * sx.w, best, idx, jh * a.kw + jw, C);
        }
        store_lanes(y + n * sy.n + oh * sy.h + ow * sy.w, sy.c, best, C);
        store_lanes(win + n * si.n + oh * si.h + ow * si.w, si.c, idx, C);
      }
    }
  });
}

// The gather for input (ih, iw), channels [c0, c0 + cnt): the candidate outputs in ascending (oh, ow)
// order, each adding its grad where its winner is this element's tap.
template <bool FULL, typename scalar_t, typename idx_t>
inline void cl_backward_block(const scalar_t* g, Strides4 sg, const idx_t* win, Strides4 si, int64_t n, int64_t ih,
                              int64_t iw, int64_t oh_lo, int64_t oh_hi, int64_t ow_lo, int64_t ow_hi,
                              const Pool2dArgs& a, int64_t c0, int cnt_rt, scalar_t* out, int64_t osc) {
  using acc_t = acc_type<scalar_t>;
  const int cnt = FULL ? CB : cnt_rt;
  const bool unit = sg.c == 1 && si.c == 1;
  acc_t acc[CB];
  for (int c = 0; c < cnt; ++c) acc[c] = 0;
  for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
    const int64_t dist_h = ih + a.ph - oh * a.sh;
    if (dist_h % a.dh != 0) continue;
    const int jh = int(dist_h / a.dh);
    for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
      const int64_t dist_w = iw + a.pw - ow * a.sw;
      if (dist_w % a.dw != 0) continue;
      const int32_t t = jh * a.kw + int(dist_w / a.dw);
      const scalar_t* gp = g + n * sg.n + oh * sg.h + ow * sg.w + c0 * sg.c;
      const idx_t* wp = win + n * si.n + oh * si.h + ow * si.w + c0 * si.c;
      if (unit) {
        for (int c = 0; c < cnt; ++c) acc[c] += keep_if(int32_t(wp[c]) == t, cvt<acc_t>(gp[c]));
      } else {
        for (int c = 0; c < cnt; ++c) acc[c] += keep_if(int32_t(wp[c * si.c]) == t, cvt<acc_t>(gp[c * sg.c]));
      }
    }
  }
  if (osc == 1) {
    for (int c = 0; c < cnt; ++c) out[c] = cvt<scalar_t>(acc[c]);
  } else {
    for (int c = 0; c < cnt; ++c) out[c * osc] = cvt<scalar_t>(acc[c]);
  }
}

template <typename scalar_t, typename idx_t>
void backward_channels_last(const scalar_t* g, Strides4 sg, const idx_t* win, Strides4 si, scalar_t* gx,
                            Strides4 sd, const Pool2dArgs& a) {
  const int64_t C = a.C;
  const int64_t grain = std::max<int64_t>(1, TASK_ELEMS / std::max<int64_t>(1, a.W * C));
  at::parallel_for(0, a.N * a.H, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / a.H, ih = row % a.H;
      int64_t oh_lo, oh_hi;
      pool_candidate_outputs<int64_t>(ih, a.kh, a.sh, a.ph, a.dh, a.Ho, oh_lo, oh_hi);
      for (int64_t iw = 0; iw < a.W; ++iw) {
        int64_t ow_lo, ow_hi;
        pool_candidate_outputs<int64_t>(iw, a.kw, a.sw, a.pw, a.dw, a.Wo, ow_lo, ow_hi);
        scalar_t* out = gx + n * sd.n + ih * sd.h + iw * sd.w;
        int64_t c0 = 0;
        for (; c0 + CB <= C; c0 += CB)
          cl_backward_block<true>(g, sg, win, si, n, ih, iw, oh_lo, oh_hi, ow_lo, ow_hi, a, c0, CB, out + c0 * sd.c,
                                  sd.c);
        if (c0 < C)
          cl_backward_block<false>(g, sg, win, si, n, ih, iw, oh_lo, oh_hi, ow_lo, ow_hi, a, c0, int(C - c0),
                                   out + c0 * sd.c, sd.c);
      }
    }
  });
}

}  // namespace

template <typename scalar_t, typename idx_t>
void max_pool2d_forward(const scalar_t* x, Strides4 sx, scalar_t* y, Strides4 sy, idx_t* winners, Strides4 si,
                        const Pool2dArgs& a) {
  if (a.N == 0 || a.C == 0 || a.Ho == 0 || a.Wo == 0) return;
  if (sx.c == 1 && a.C > 1)
    forward_channels_last(x, sx, y, sy, winners, si, a);
  else
    forward_planar(x, sx, y, sy, winners, si, a);
}

template <typename scalar_t, typename idx_t>
void max_pool2d_backward(const scalar_t* grad_y, Strides4 sg, const idx_t* winners, Strides4 si, scalar_t* grad_x,
                         Strides4 sd, const Pool2dArgs& a) {
  if (a.N == 0 || a.C == 0 || a.H == 0 || a.W == 0) return;
  if (sd.c == 1 && a.C > 1)
    backward_channels_last(grad_y, sg, winners, si, grad_x, sd, a);
  else
    backward_planar(grad_y, sg, winners, si, grad_x, sd, a);
}

#define FASTALEX_INSTANTIATE(T, I)                                                                             \
  template void max_pool2d_forward<T, I>(const T*, Strides4, T*, Strides4, I*, Strides4, const Pool2dArgs&); \
  template void max_pool2d_backward<T, I>(const T*, Strides4, const I*, Strides4, T*, Strides4, const Pool2dArgs&);
#define FASTALEX_INSTANTIATE_BOTH(T) FASTALEX_INSTANTIATE(T, uint8_t) FASTALEX_INSTANTIATE(T, int32_t)
FASTALEX_INSTANTIATE_BOTH(float)
FASTALEX_INSTANTIATE_BOTH(double)
FASTALEX_INSTANTIATE_BOTH(c10::Half)
FASTALEX_INSTANTIATE_BOTH(c10::BFloat16)
#undef FASTALEX_INSTANTIATE_BOTH
#undef FASTALEX_INSTANTIATE

}  // namespace cpu
}  // namespace fastalex
