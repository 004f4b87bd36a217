"""Triton helpers shared by the LRN kernels (local_response_norm.py) and the fused ReLU/LRN/max-pool
(relu_lrn_max_pool2d.py): loading channel rows, the named register slots that hold a sliding window of
up to MAX_SEQUENTIAL_SIZE rows (Triton has no register arrays), and LRN's pointwise math (s^-beta and
the gradient term with torch's edge cases), and the window sum by a 0/1 band matrix on the tensor cores."""
from __future__ import annotations

import triton
import triton.language as tl

# The most rows the named slots w0..w7 hold: the sequential strategies' largest LRN window.
MAX_SEQUENTIAL_SIZE = 8


@triton.jit
def _load_rows(base, rows, C, stride_c, mask_s):
    # rows: [R] channel indices, possibly outside [0, C): those read as 0 (the window's zero padding).
    mask = ((rows >= 0) & (rows < C))[:, None] & mask_s[None, :]
    return tl.load(base + rows[:, None] * stride_c, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _pow_neg(s, beta):
    # s^-beta as torch's s.pow(beta) then 1/that: inf at s == 0; for s < 0 (a negative k or alpha),
    # (-1)^beta |s|^-beta when beta is an integer, else NaN; at s == -inf 0 (std::pow(-inf, beta) is
    # +-inf), but NaN for beta = 0.5, which torch computes as sqrt.
    p = tl.exp2(-beta * tl.log2(tl.abs(s)))
    integer = beta == tl.floor(beta)
    odd = integer & (beta - 2.0 * tl.floor(0.5 * beta) == 1.0)
    negative = tl.where(integer, tl.where(odd, -p, p), float("nan"))
    return tl.where((s < 0) & ((s != -float("inf")) | (beta == 0.5)), negative, p)


@triton.jit
def _grad_term(g, x, scale, scale_pow, beta):
    # t = g x s^(-beta-1), channel c's share of its window's gradient. torch's chain rule reaches it as
    # (-g x / s^(2 beta)) * beta s^(beta-1): where s is +-inf and beta > 1 that is 0 * inf = NaN, which
    # the folded form would give as 0; NaN as in torch.
    t = g * x * scale_pow / scale
    return tl.where((tl.abs(scale) == float("inf")) & (beta > 1.0), float("nan"), t)


@triton.jit
def _shift_in(w0, w1, w2, w3, w4, w5, w6, w7, new, N: tl.constexpr):
    # w0..w{N-1} hold the last N rows, oldest first: drop w0, append `new`.
    if N > 1:
        w0 = w1
    if N > 2:
        w1 = w2
    if N > 3:
        w2 = w3
    if N > 4:
        w3 = w4
    if N > 5:
        w4 = w5
    if N > 6:
        w5 = w6
    if N > 7:
        w6 = w7
    if N == 1:
        w0 = new
    if N == 2:
        w1 = new
    if N == 3:
        w2 = new
    if N == 4:
        w3 = new
    if N == 5:
        w4 = new
    if N == 6:
        w5 = new
    if N == 7:
        w6 = new
    if N == 8:
        w7 = new
    return w0, w1, w2, w3, w4, w5, w6, w7


@triton.jit
def _zero_slots(BLOCK_S: tl.constexpr):
    z = tl.zeros((BLOCK_S,), dtype=tl.float32)
    return z, z, z, z, z, z, z, z


@triton.jit
def _term(v, SQUARE: tl.constexpr):
    if SQUARE:
        v = v * v
    return v


@triton.jit
def _sum_slots(w0, w1, w2, w3, w4, w5, w6, w7, N: tl.constexpr, SQUARE: tl.constexpr):
    # sum of w0..w{N-1} (of their squares when SQUARE) as a tree, ((w0 + w1) + (w2 + w3)) + ((w4 + w5) +
    # (w6 + w7)): a chain over the rotating slots makes LLVM's SLP vectorizer abort while compiling the
    # size-5 backward for sm_90 with Triton 3.8 ("PHI reordering is free" assertion).
    acc = _term(w0, SQUARE)
    if N > 1:
        acc = acc + _term(w1, SQUARE)
    if N > 2:
        s23 = _term(w2, SQUARE)
        if N > 3:
            s23 = s23 + _term(w3, SQUARE)
        acc = acc + s23
    if N > 4:
        s47 = _term(w4, SQUARE)
        if N > 5:
            s47 = s47 + _term(w5, SQUARE)
        if N > 6:
            s67 = _term(w6, SQUARE)
            if N > 7:
                s67 = s67 + _term(w7, SQUARE)
            s47 = s47 + s67
        acc = acc + s47
    return acc


@triton.jit
def _slot(w0, w1, w2, w3, w4, w5, w6, w7, I: tl.constexpr):
    if I == 0:
        v = w0
    elif I == 1:
        v = w1
    elif I == 2:
        v = w2
    elif I == 3:
        v = w3
    elif I == 4:
        v = w4
    elif I == 5:
        v = w5
    elif I == 6:
        v = w6
    else:
        v = w7
    return v


@triton.jit
def _load_row(row_base, row, C, stride_c, mask_s):
    # One channel row for the program's positions; rows outside [0, C) read as the zero padding.
    mask = mask_s & (row >= 0) & (row < C)
    return tl.load(row_base + row * stride_c, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _prefetch(row_base, first_row, C, stride_c, mask_s, N: tl.constexpr):
    # Rows first_row .. first_row + N - 1 in slots 0..N-1 (the rest zeros), for _shift_in to rotate.
    z = tl.zeros(mask_s.shape, dtype=tl.float32)
    p0 = _load_row(row_base, first_row, C, stride_c, mask_s)
    p1 = z
    p2 = z
    p3 = z
    p4 = z
    p5 = z
    p6 = z
    p7 = z
    if N > 1:
        p1 = _load_row(row_base, first_row + 1, C, stride_c, mask_s)
    if N > 2:
        p2 = _load_row(row_base, first_row + 2, C, stride_c, mask_s)
    if N > 3:
        p3 = _load_row(row_base, first_row + 3, C, stride_c, mask_s)
    if N > 4:
        p4 = _load_row(row_base, first_row + 4, C, stride_c, mask_s)
    if N > 5:
        p5 = _load_row(row_base, first_row + 5, C, stride_c, mask_s)
    if N > 6:
        p6 = _load_row(row_base, first_row + 6, C, stride_c, mask_s)
    if N > 7:
        p7 = _load_row(row_base, first_row + 7, C, stride_c, mask_s)
    return p0, p1, p2, p3, p4, p5, p6, p7


@triton.jit
def _band_sum(band, v, DOT_PRECISION: tl.constexpr):
    # band @ v for a 0/1 matrix `band`, with the sums' IEEE meaning for non-finite entries: a plain
    # dot would spread them through 0 * inf = NaN to rows whose band never touches them. Finite
    # entries go through the tensor cores; if the tile holds inf or NaN, 0/1 counts of each kind
    # (exact in any precision) put them back where they belong.
    finite = (v - v) == 0.0  # false for inf and NaN
    out = tl.dot(band, tl.where(finite, v, 0.0), input_precision=DOT_PRECISION)
    if tl.max(tl.where(finite, 0, 1)) > 0:
        n_nan = tl.dot(band, (v != v).to(tl.float32), input_precision=DOT_PRECISION)
        n_pos = tl.dot(band, (v == float("inf")).to(tl.float32), input_precision=DOT_PRECISION)
        n_neg = tl.dot(band, (v == -float("inf")).to(tl.float32), input_precision=DOT_PRECISION)
        out = tl.where(n_pos > 0, float("inf"), out)
        out = tl.where(n_neg > 0, -float("inf"), out)
        out = tl.where((n_nan > 0) | ((n_pos > 0) & (n_neg > 0)), float("nan"), out)
    return out
