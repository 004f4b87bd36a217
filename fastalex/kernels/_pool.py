"""Triton helpers shared by the max-pool kernels (max_pool2d.py) and the fused ReLU/LRN/max-pool
(relu_lrn_max_pool2d.py): one step of torch's row-major window scan, the store of the pooled values
and winners, and the gather of the output gradient onto the inputs that won."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _scan_tap(v, ok, tap, best, winner):
    # One step of torch's row-major scan: the first valid tap initialises (so a window of -inf alone
    # picks its first element), then a tap replaces the best iff v > best or v is NaN.
    take = ok & ((v > best) | (v != v) | (winner < 0))
    return tl.where(take, v, best), tl.where(take, tap, winner)


@triton.jit
def _store_pooled(y_ptr, win_ptr, best, winner, n, c, oh, ow, mask, stride_yn, stride_yc, stride_yh, stride_yw,
                  stride_wn, stride_wc, stride_wh, stride_ww):
    # best, winner: [BLOCK_C, BLOCK_P] for channels c and output positions (oh, ow) of sample n.
    y_off = n * stride_yn + c[:, None] * stride_yc + (oh * stride_yh + ow * stride_yw)[None, :]
    w_off = n * stride_wn + c[:, None] * stride_wc + (oh * stride_wh + ow * stride_ww)[None, :]
    tl.store(y_ptr + y_off, best.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(win_ptr + w_off, tl.maximum(winner, 0).to(win_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gather_grad(g_base, w_base, ih, iw, mask, Ho, Wo, stride_gh, stride_gw, stride_wh, stride_ww,
                 KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                 PH: tl.constexpr, PW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
                 TH: tl.constexpr, TW: tl.constexpr, LOAD_ALL: tl.constexpr):
    # Sum of grad_y over the windows that hold input (ih, iw) and chose it, in fp32. g_base, w_base:
    # pointers to the (Ho, Wo) planes of grad_y and winners, broadcastable with ih, iw and mask.
    # The last window that can hold row ih starts at or before it; the candidates are the TH windows
    # ending there, visited in ascending order (the order torch sums in). LOAD_ALL: load every covering
    # window's gradient and select the chosen ones (no load mask that depends on the winners' data).
    oh_last = (ih + PH) // SH
    ow_last = (iw + PW) // SW
    acc = tl.zeros(mask.shape, dtype=tl.float32)
    for th in tl.static_range(TH):
        oh = oh_last - (TH - 1 - th)
        off_h = ih + PH - oh * SH  # >= 0: how far into window oh the row lies
        jh = off_h // DH
        ok_h = mask & (oh >= 0) & (oh < Ho) & (off_h % DH == 0) & (jh < KH)
        for tw in tl.static_range(TW):
            ow = ow_last - (TW - 1 - tw)
            off_w = iw + PW - ow * SW
            jw = off_w // DW
            ok = ok_h & (ow >= 0) & (ow < Wo) & (off_w % DW == 0) & (jw < KW)
            win = tl.load(w_base + oh * stride_wh + ow * stride_ww, mask=ok, other=-1).to(tl.int32)
            chosen = ok & (win == jh * KW + jw)
            if LOAD_ALL:
                g = tl.load(g_base + oh * stride_gh + ow * stride_gw, mask=ok, other=0.0).to(tl.float32)
                acc += tl.where(chosen, g, 0.0)
            else:
                acc += tl.load(g_base + oh * stride_gh + ow * stride_gw, mask=chosen, other=0.0).to(tl.float32)
    return acc
