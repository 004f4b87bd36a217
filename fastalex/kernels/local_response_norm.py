"""Triton kernels for Local Response Normalization across channels.

    y_c = x_c * s_c^-beta,   s_c = k + alpha/size * sum_{c' in [c - size//2, c + (size-1)//2]} x_{c'}^2

The launchers take 3-D strided views (N, C, S): S is every spatial dimension merged into one, which
NCHW and channels_last tensors both allow without a copy (the ops layer makes the views). A program
owns BLOCK_S positions of one sample and walks down all its channels, so x is read from DRAM once.
Three ways to get each channel's window; the tuner times a launch's candidates on first use per
shape (forward: all three; backward: "sequential" and "dot"). What it picked on an H200
(benchmarks/RESULTS.md, measured with an earlier version of the "dot" path):

- "sequential" (size <= 8): one row at a time, the last `size` rows held in registers, rows
  prefetched ahead. Picked for NCHW at 96x55x55, forward and backward.
- "shift": a [BLOCK_C, BLOCK_S] tile per chunk, the window summed from `size` shifted loads (the
  repeats hit L1/L2). Any size; forward only. Picked for the channels_last forward and the NCHW
  forward at 256x27x27.
- "dot": the window summed by a 0/1 band matrix on the tensor cores (3xTF32 for fp32 data).
  Any size. Picked for the channels_last backward.

Floors (H200, 4.27 TB/s copy, batch 128, 96x55x55 fp32): forward 0.070 ms (read x, write y),
backward 0.105 ms (read x and grad_y, write grad_x).

Plain tensors in and out: no autograd here (fastalex/ops/local_response_norm.py does that).
"""
from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl

from fastalex.kernels import _common
from fastalex.kernels._window import (MAX_SEQUENTIAL_SIZE, _band_sum, _grad_term, _load_row, _load_rows, _pow_neg,
                                      _prefetch, _shift_in, _slot, _sum_slots, _zero_slots)


@triton.jit
def _lrn_forward_kernel(
    x_ptr,  # (N, C, S) input, any strides
    y_ptr,  # (N, C, S) output, any strides
    C, S,
    stride_xn, stride_xc, stride_xs,
    stride_yn, stride_yc, stride_ys,
    alpha_over_size, beta, k,
    SIZE: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    WINDOW_BY_DOT: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    LO: tl.constexpr = SIZE // 2
    n = tl.program_id(1).to(tl.int64)
    offs_s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    mask_s = offs_s < S
    x_base = x_ptr + n * stride_xn + offs_s[None, :] * stride_xs
    y_base = y_ptr + n * stride_yn + offs_s[None, :] * stride_ys
    rows = tl.arange(0, BLOCK_C)
    if WINDOW_BY_DOT:
        # One load of BLOCK_C rows starting size//2 above the chunk; a 0/1 band matrix on the tensor
        # cores sums each output row's window (rows i .. i+SIZE-1 of the tile).
        OUT_ROWS: tl.constexpr = BLOCK_C - SIZE + 1
        band = ((rows[None, :] - rows[:, None] >= 0) & (rows[None, :] - rows[:, None] < SIZE)).to(tl.float32)
        for c0 in range(0, C, OUT_ROWS):
            x_in = _load_rows(x_base, c0 - LO + rows, C, stride_xc, mask_s)
            window = _band_sum(band, x_in * x_in, DOT_PRECISION)
            c = c0 + rows
            x_c = _load_rows(x_base, c, C, stride_xc, mask_s)  # L1 hit: same rows as x_in, shifted
            y = x_c * _pow_neg(k + alpha_over_size * window, beta)
            mask = ((rows < OUT_ROWS) & (c < C))[:, None] & mask_s[None, :]
            tl.store(y_base + c[:, None] * stride_yc, y.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        # SIZE shifted loads of the chunk: the first brings the rows from DRAM, the rest hit cache.
        for c0 in range(0, C, BLOCK_C):
            c = c0 + rows
            window = tl.zeros((BLOCK_C, BLOCK_S), dtype=tl.float32)
            x_c = tl.zeros((BLOCK_C, BLOCK_S), dtype=tl.float32)
            for d in tl.static_range(SIZE):
                v = _load_rows(x_base, c + (d - LO), C, stride_xc, mask_s)
                window += v * v
                if d == LO:
                    x_c = v
            y = x_c * _pow_neg(k + alpha_over_size * window, beta)
            mask = (c < C)[:, None] & mask_s[None, :]
            tl.store(y_base + c[:, None] * stride_yc, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _lrn_backward_kernel(
    x_ptr,  # (N, C, S) forward input, any strides
    g_ptr,  # (N, C, S) gradient of the output, any strides
    dx_ptr,  # (N, C, S) gradient of the input (written), any strides
    C, S,
    stride_xn, stride_xc, stride_xs,
    stride_gn, stride_gc, stride_gs,
    stride_dn, stride_dc, stride_ds,
    alpha_over_size, beta, k,
    SIZE: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    # dx_j = g_j s_j^-beta - 2 alpha/size beta x_j sum_{c = j-hi}^{j+lo} t_c,  t_c = g_c x_c s_c^(-beta-1)
    # The tile holds t for BLOCK_C channels starting hi above the chunk; two 0/1 matrices on the tensor
    # cores shift and window-sum it onto the chunk's OUT_ROWS output channels. s is recomputed from x.
    LO: tl.constexpr = SIZE // 2
    HI: tl.constexpr = SIZE - 1 - LO
    OUT_ROWS: tl.constexpr = BLOCK_C - SIZE + 1
    n = tl.program_id(1).to(tl.int64)
    offs_s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    mask_s = offs_s < S
    x_base = x_ptr + n * stride_xn + offs_s[None, :] * stride_xs
    g_base = g_ptr + n * stride_gn + offs_s[None, :] * stride_gs
    d_base = dx_ptr + n * stride_dn + offs_s[None, :] * stride_ds
    rows = tl.arange(0, BLOCK_C)
    band = ((rows[None, :] - rows[:, None] >= 0) & (rows[None, :] - rows[:, None] < SIZE)).to(tl.float32)
    shift = (rows[None, :] - rows[:, None] == HI).to(tl.float32)
    for c0 in range(0, C, OUT_ROWS):
        ct = c0 - HI + rows
        window = tl.zeros((BLOCK_C, BLOCK_S), dtype=tl.float32)
        x_t = tl.zeros((BLOCK_C, BLOCK_S), dtype=tl.float32)
        for d in tl.static_range(SIZE):
            v = _load_rows(x_base, ct + (d - LO), C, stride_xc, mask_s)
            window += v * v
            if d == LO:
                x_t = v
        g_t = _load_rows(g_base, ct, C, stride_gc, mask_s)
        scale = k + alpha_over_size * window
        scale_pow = _pow_neg(scale, beta)
        valid = ((ct >= 0) & (ct < C))[:, None] & mask_s[None, :]
        # Padding rows must be exact zeros (k = 0 would make 0 * inf there).
        t = tl.where(valid, _grad_term(g_t, x_t, scale, scale_pow, beta), 0.0)
        g_scaled = tl.where(valid, g_t * scale_pow, 0.0)
        window_t = _band_sum(band, t, DOT_PRECISION)
        g_scaled_out = _band_sum(shift, g_scaled, DOT_PRECISION)
        c = c0 + rows
        x_c = _load_rows(x_base, c, C, stride_xc, mask_s)
        dx = g_scaled_out - (2.0 * alpha_over_size * beta) * x_c * window_t
        mask = ((rows < OUT_ROWS) & (c < C))[:, None] & mask_s[None, :]
        tl.store(d_base + c[:, None] * stride_dc, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# --- Sequential kernels: one row of BLOCK_S positions at a time, the window held in registers ------
# For size <= MAX_SEQUENTIAL_SIZE. A program walks down its positions' channels; each step loads one
# new row (prefetched 1-8 steps ahead, so loads stay in flight) and keeps the last SIZE rows in named
# registers w0..w7, so x is read exactly once and nothing is re-read from cache. Triton has no
# register arrays, hence the named slots and the constexpr-guarded helpers of _window.py.


@triton.jit
def _lrn_forward_seq_kernel(
    x_ptr,  # (N, C, S) input, any strides
    y_ptr,  # (N, C, S) output, any strides
    C, S,
    stride_xn, stride_xc, stride_xs,
    stride_yn, stride_yc, stride_ys,
    alpha_over_size, beta, k,
    SIZE: tl.constexpr,
    BLOCK_S: tl.constexpr,
    PREFETCH: tl.constexpr,
):
    LO: tl.constexpr = SIZE // 2
    HI: tl.constexpr = SIZE - 1 - LO
    n = tl.program_id(1).to(tl.int64)
    offs_s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    mask_s = offs_s < S
    x_row = x_ptr + n * stride_xn + offs_s * stride_xs
    y_row = y_ptr + n * stride_yn + offs_s * stride_ys
    w0, w1, w2, w3, w4, w5, w6, w7 = _zero_slots(BLOCK_S)
    # Step c (from -(SIZE-1), to fill the window) brings in row c + HI; the window is rows [c-LO, c+HI].
    # p0..p{PREFETCH-1} hold the next rows, loaded PREFETCH steps ahead.
    C0: tl.constexpr = -(SIZE - 1)
    p0, p1, p2, p3, p4, p5, p6, p7 = _prefetch(x_row, C0 + HI, C, stride_xc, mask_s, PREFETCH)
    for c in range(C0, C):
        new = p0
        p0, p1, p2, p3, p4, p5, p6, p7 = _shift_in(
            p0, p1, p2, p3, p4, p5, p6, p7, _load_row(x_row, c + HI + PREFETCH, C, stride_xc, mask_s), PREFETCH)
        w0, w1, w2, w3, w4, w5, w6, w7 = _shift_in(w0, w1, w2, w3, w4, w5, w6, w7, new, SIZE)
        window = _sum_slots(w0, w1, w2, w3, w4, w5, w6, w7, SIZE, True)
        x_c = _slot(w0, w1, w2, w3, w4, w5, w6, w7, LO)
        y = x_c * _pow_neg(k + alpha_over_size * window, beta)
        tl.store(y_row + c * stride_yc, y.to(y_ptr.dtype.element_ty), mask=mask_s & (c >= 0))


@triton.jit
def _lrn_backward_seq_kernel(
    x_ptr,  # (N, C, S) forward input, any strides
    g_ptr,  # (N, C, S) gradient of the output, any strides
    dx_ptr,  # (N, C, S) gradient of the input (written), any strides
    C, S,
    stride_xn, stride_xc, stride_xs,
    stride_gn, stride_gc, stride_gs,
    stride_dn, stride_dc, stride_ds,
    alpha_over_size, beta, k,
    SIZE: tl.constexpr,
    BLOCK_S: tl.constexpr,
    PREFETCH: tl.constexpr,
):
    # Step j writes dx_j. It brings in x row j+SIZE-1 and g row j+LO, computes t and g s^-beta for
    # channel j+LO (whose window, rows [j, j+SIZE-1], is now complete) and pushes them into rings:
    #   w: x rows [j, j+SIZE-1]    t: t rows [j-HI, j+LO]    h: g s^-beta rows [j, j+LO]
    LO: tl.constexpr = SIZE // 2
    HI: tl.constexpr = SIZE - 1 - LO
    n = tl.program_id(1).to(tl.int64)
    offs_s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    mask_s = offs_s < S
    x_row = x_ptr + n * stride_xn + offs_s * stride_xs
    g_row = g_ptr + n * stride_gn + offs_s * stride_gs
    d_row = dx_ptr + n * stride_dn + offs_s * stride_ds
    w0, w1, w2, w3, w4, w5, w6, w7 = _zero_slots(BLOCK_S)
    t0, t1, t2, t3, t4, t5, t6, t7 = _zero_slots(BLOCK_S)
    h0, h1, h2, h3, h4, h5, h6, h7 = _zero_slots(BLOCK_S)
    J0: tl.constexpr = -(SIZE - 1)
    px0, px1, px2, px3, px4, px5, px6, px7 = _prefetch(x_row, J0 + SIZE - 1, C, stride_xc, mask_s, PREFETCH)
    pg0, pg1, pg2, pg3, pg4, pg5, pg6, pg7 = _prefetch(g_row, J0 + LO, C, stride_gc, mask_s, PREFETCH)
    coef = 2.0 * alpha_over_size * beta
    for j in range(J0, C):
        new_x = px0
        px0, px1, px2, px3, px4, px5, px6, px7 = _shift_in(
            px0, px1, px2, px3, px4, px5, px6, px7,
            _load_row(x_row, j + SIZE - 1 + PREFETCH, C, stride_xc, mask_s), PREFETCH)
        new_g = pg0
        pg0, pg1, pg2, pg3, pg4, pg5, pg6, pg7 = _shift_in(
            pg0, pg1, pg2, pg3, pg4, pg5, pg6, pg7, _load_row(g_row, j + LO + PREFETCH, C, stride_gc, mask_s),
            PREFETCH)
        w0, w1, w2, w3, w4, w5, w6, w7 = _shift_in(w0, w1, w2, w3, w4, w5, w6, w7, new_x, SIZE)
        scale = k + alpha_over_size * _sum_slots(w0, w1, w2, w3, w4, w5, w6, w7, SIZE, True)
        scale_pow = _pow_neg(scale, beta)
        x_m = _slot(w0, w1, w2, w3, w4, w5, w6, w7, LO)
        # Padding channels must contribute exact zeros (k = 0 would make 0 * inf there).
        valid = (j + LO >= 0) & (j + LO < C)
        t_new = tl.where(valid, _grad_term(new_g, x_m, scale, scale_pow, beta), 0.0)
        h_new = tl.where(valid, new_g * scale_pow, 0.0)
        t0, t1, t2, t3, t4, t5, t6, t7 = _shift_in(t0, t1, t2, t3, t4, t5, t6, t7, t_new, SIZE)
        h0, h1, h2, h3, h4, h5, h6, h7 = _shift_in(h0, h1, h2, h3, h4, h5, h6, h7, h_new, LO + 1)
        window_t = _sum_slots(t0, t1, t2, t3, t4, t5, t6, t7, SIZE, False)
        dx = h0 - coef * w0 * window_t
        tl.store(d_row + j * stride_dc, dx.to(dx_ptr.dtype.element_ty), mask=mask_s & (j >= 0))


@dataclasses.dataclass(frozen=True)
class Config:
    """Launch parameters. strategy: "sequential" (window in registers, size <= 8), "shift" (a
    [block_c, block_s] tile, window sums by shifted loads) or "dot" (window sums by a 0/1 band matrix
    on the tensor cores). block_c: channel rows per chunk (tile strategies); block_s: positions."""

    strategy: str
    block_c: int
    block_s: int
    num_warps: int
    prefetch: int = 0  # sequential: rows loaded ahead (1..8)


def _min_block_c(size: int) -> int:
    # The dot paths need BLOCK_C - size + 1 >= 1 output rows per chunk; 16 is tl.dot's smallest side.
    return max(16, triton.next_power_of_2(2 * size))


def _sequential_candidates(size: int, half: bool) -> list[Config]:
    # half: 2-byte data, whose rows carry half the bytes per step; loading twice as many steps ahead keeps
    # as many bytes in flight (benchmarks/KERNELS.md: at least 20 KB per SM at 96x55x55).
    if size > MAX_SEQUENTIAL_SIZE:
        return []
    out = [Config("sequential", 0, bs, w, pf)
           for bs, w, pf in ((128, 1, 4), (128, 1, 2), (128, 1, 8), (256, 2, 4), (256, 1, 2), (512, 4, 2), (512, 2, 4))]
    return [out[2]] + out[:2] + out[3:] if half else out


def forward_candidates(size: int, channels_last: bool, half: bool = False) -> list[Config]:
    """The configs the tuner times for a forward launch; the first is the untimed default. half: fp16 or
    bf16 data."""
    dot_c = _min_block_c(size)
    shift_c = max(8, triton.next_power_of_2(min(size, 32)))
    out = [] if channels_last else _sequential_candidates(size, half)
    for block_s in ((32, 64) if channels_last else (64, 128)):
        out.append(Config("shift", max(shift_c, 32 if channels_last else 16), block_s, 4))
        out.append(Config("shift", max(shift_c, 32), block_s, 8))
        out.append(Config("dot", max(dot_c, 32), block_s, 4))
    return out + (_sequential_candidates(size, half) if channels_last else [])


def backward_candidates(size: int, channels_last: bool, half: bool = False) -> list[Config]:
    """The configs the tuner times for a backward launch; the first is the untimed default: sequential
    in both layouts where the size allows, since every "dot" config spills registers on sm_90 at
    AlexNet's channels_last shapes (benchmarks/KERNELS.md; the tuner may still pick one)."""
    c = _min_block_c(size)
    out = _sequential_candidates(size, half)
    for block_s in ((32, 64) if channels_last else (64, 128)):
        out.append(Config("dot", max(c, 32), block_s, 4))
        out.append(Config("dot", max(c, 64), block_s, 8))
    return out


def _launch_forward(x, y, size, alpha, beta, k, cfg: Config):
    N, C, S = x.shape
    grid = (triton.cdiv(S, cfg.block_s), N)
    common = (x, y, C, S, *x.stride(), *y.stride(), alpha / size, beta, k)
    if cfg.strategy == "sequential":
        _lrn_forward_seq_kernel[grid](*common, SIZE=size, BLOCK_S=cfg.block_s, PREFETCH=cfg.prefetch,
                                      num_warps=cfg.num_warps)
    else:
        _lrn_forward_kernel[grid](
            *common, SIZE=size, BLOCK_C=cfg.block_c, BLOCK_S=cfg.block_s, WINDOW_BY_DOT=cfg.strategy == "dot",
            DOT_PRECISION=_common.band_dot_precision(), num_warps=cfg.num_warps)


def _launch_backward(x, g, dx, size, alpha, beta, k, cfg: Config):
    N, C, S = x.shape
    grid = (triton.cdiv(S, cfg.block_s), N)
    common = (x, g, dx, C, S, *x.stride(), *g.stride(), *dx.stride(), alpha / size, beta, k)
    if cfg.strategy == "sequential":
        _lrn_backward_seq_kernel[grid](*common, SIZE=size, BLOCK_S=cfg.block_s, PREFETCH=cfg.prefetch,
                                       num_warps=cfg.num_warps)
    else:
        _lrn_backward_kernel[grid](*common, SIZE=size, BLOCK_C=cfg.block_c, BLOCK_S=cfg.block_s,
                                   DOT_PRECISION=_common.band_dot_precision(), num_warps=cfg.num_warps)


def lrn_forward(x: torch.Tensor, y: torch.Tensor, size: int, alpha: float, beta: float, k: float,
                config: Config | None = None) -> None:
    """Writes LRN(x) into y. x, y: (N, C, S) strided views of the same shape."""
    if x.numel() == 0:
        return
    _common.check_sample_extent("local_response_norm", x, y)
    channels_last = x.stride(1) == 1 and x.shape[1] > 1
    if config is None:
        candidates = forward_candidates(size, channels_last, x.element_size() == 2)
        config = _common.tuned_config(
            ("lrn_fwd", x.device, x.dtype, x.shape[1], x.shape[2], channels_last, size), candidates,
            lambda cfg: _launch_forward(x, y, size, alpha, beta, k, cfg))
    _launch_forward(x, y, size, alpha, beta, k, config)


def lrn_backward(x: torch.Tensor, grad_y: torch.Tensor, grad_x: torch.Tensor, size: int, alpha: float,
                 beta: float, k: float, config: Config | None = None) -> None:
    """Writes the gradient of LRN at x for grad_y into grad_x. All three: (N, C, S) strided views."""
    if x.numel() == 0:
        return
    _common.check_sample_extent("local_response_norm", x, grad_y, grad_x)
    channels_last = x.stride(1) == 1 and x.shape[1] > 1
    if config is None:
        candidates = backward_candidates(size, channels_last, x.element_size() == 2)
        config = _common.tuned_config(
            ("lrn_bwd", x.device, x.dtype, x.shape[1], x.shape[2], channels_last, size), candidates,
            lambda cfg: _launch_backward(x, grad_y, grad_x, size, alpha, beta, k, cfg))
    _launch_backward(x, grad_y, grad_x, size, alpha, beta, k, config)
