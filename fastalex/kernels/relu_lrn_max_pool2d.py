"""Triton kernels for ReLU -> LRN -> max-pool fused into one pass each way (AlexNet after conv1, conv2).

    r = relu(x);  z_c = r_c * (k + alpha/size * sum_{c' in window(c)} r_{c'}^2)^-beta;  y = max-pool(z)

Forward: one kernel reads x once and writes y and the winners (a tap index per output, as
fastalex/kernels/max_pool2d.py). Two strategies, timed by the tuner on first use per shape:

- "sequential" (size <= 8, windows of <= 16 taps): a program owns BLOCK_P outputs of one sample and
  walks down the channels; a [TAPS, BLOCK_P] tile holds the input under every tap of every window,
  the last `size` channels of it in registers (the LRN window), rows prefetched ahead.
- "shift": a [BLOCK_C, BLOCK_P] tile of outputs; for each tap the LRN window comes from `size`
  shifted loads (repeats hit L1/L2). Any size and window; suits channels_last.

Backward: one kernel reads x, grad_y and the winners and writes grad_x; size <= 8. Two strategies:

- "sequential": a program owns BLOCK_P input positions and walks down the channels as the LRN backward
  does (fastalex/kernels/local_response_norm.py, "sequential"): at each channel it gathers the pooled
  gradient that reached its positions (from the winners, as the max-pool backward) and recomputes ReLU
  and the LRN scale from x. Suits NCHW, where a channel's positions are contiguous.
- "tile": a [BLOCK_C, BLOCK_P] tile of channels x positions, channels first, so channels_last loads
  are vectors along C; both channel windows by 0/1 band matrices on the tensor cores; each program
  writes the middle channels of its tile (the rest is the windows' halo, read twice).

Floors (H200, 4.27 TB/s copy, batch 128, 96x55x55 -> 27x27, fp32): forward reads x (149 MB) and
writes y (36 MB) and winners (9 MB): 0.045 ms; backward reads x, grad_y and winners (194 MB) and
writes grad_x (149 MB): 0.080 ms.
"""
from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl

from fastalex.kernels import _common
from fastalex.kernels._common import Pool
from fastalex.kernels._pool import _gather_grad, _scan_tap, _store_pooled
from fastalex.kernels._window import (MAX_SEQUENTIAL_SIZE, _band_sum, _grad_term, _load_row, _load_rows, _pow_neg,
                                      _prefetch, _shift_in, _slot, _sum_slots)
from fastalex.kernels.max_pool2d import is_channels_last

MAX_SEQUENTIAL_TAPS = 16


@triton.jit
def _relu(v):
    # torch.relu: NaN stays NaN.
    return tl.where(v < 0, 0.0, v)


@triton.jit
def _pool_taps(v, valid, tap, TAPS: tl.constexpr):
    # Max and winner over axis 0 of v [TAPS, P] (invalid taps ignored) with torch's scan order: the
    # first maximum wins a tie, the last NaN wins if there is one. A window with no valid tap gives
    # (-inf, 0).
    tap2 = tap[:, None]
    nan_tap = tl.max(tl.where(valid & (v != v), tap2, -1), axis=0)
    vv = tl.where(valid & (v == v), v, float("-inf"))
    m = tl.max(vv, axis=0)
    first = tl.min(tl.where(valid & (vv == m[None, :]), tap2, TAPS), axis=0)
    best = tl.where(nan_tap >= 0, float("nan"), m)
    winner = tl.where(nan_tap >= 0, nan_tap, tl.where(first < TAPS, first, 0))
    return best, winner


@triton.jit
def _forward_seq_kernel(
    x_ptr,  # (N, C, H, W) input (before the ReLU), any strides
    y_ptr,  # (N, C, Ho, Wo) pooled output, any strides
    win_ptr,  # (N, C, Ho, Wo) winner tap index (uint8 or int32), any strides
    C, H, W, Ho, Wo,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_yn, stride_yc, stride_yh, stride_yw,
    stride_wn, stride_wc, stride_wh, stride_ww,
    alpha_over_size, beta, k,
    SIZE: tl.constexpr,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
    TAPS: tl.constexpr,  # KH * KW rounded up to a power of two
    BLOCK_P: tl.constexpr,
    PREFETCH: tl.constexpr,
):
    LO: tl.constexpr = SIZE // 2
    HI: tl.constexpr = SIZE - 1 - LO
    n = tl.program_id(1).to(tl.int64)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    oh = p // Wo
    ow = p % Wo
    mask_p = p < Ho * Wo
    tap = tl.arange(0, TAPS)
    ih = (oh * SH - PH)[None, :] + (tap // KW)[:, None]
    iw = (ow * SW - PW)[None, :] + (tap % KW)[:, None]
    valid = (tap < KH * KW)[:, None] & mask_p[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    x_taps = x_ptr + n * stride_xn + ih * stride_xh + iw * stride_xw  # [TAPS, BLOCK_P] at channel 0
    y_row = y_ptr + n * stride_yn + oh * stride_yh + ow * stride_yw
    w_row = win_ptr + n * stride_wn + oh * stride_wh + ow * stride_ww
    z = tl.zeros((TAPS, BLOCK_P), dtype=tl.float32)
    w0, w1, w2, w3, w4, w5, w6, w7 = z, z, z, z, z, z, z, z
    # Step c (from -(SIZE-1), to fill the window) brings in channel c + HI; the LRN window of channel c
    # is then complete in w0..w{SIZE-1}. p0..p{PREFETCH-1} hold the next channels, loaded ahead.
    C0: tl.constexpr = -(SIZE - 1)
    p0, p1, p2, p3, p4, p5, p6, p7 = _prefetch(x_taps, C0 + HI, C, stride_xc, valid, PREFETCH)
    for c in range(C0, C):
        new = _relu(p0)
        p0, p1, p2, p3, p4, p5, p6, p7 = _shift_in(
            p0, p1, p2, p3, p4, p5, p6, p7, _load_row(x_taps, c + HI + PREFETCH, C, stride_xc, valid), PREFETCH)
        w0, w1, w2, w3, w4, w5, w6, w7 = _shift_in(w0, w1, w2, w3, w4, w5, w6, w7, new, SIZE)
        window = _sum_slots(w0, w1, w2, w3, w4, w5, w6, w7, SIZE, True)
        r_c = _slot(w0, w1, w2, w3, w4, w5, w6, w7, LO)
        best, winner = _pool_taps(r_c * _pow_neg(k + alpha_over_size * window, beta), valid, tap, TAPS)
        store = mask_p & (c >= 0)
        tl.store(y_row + c * stride_yc, best.to(y_ptr.dtype.element_ty), mask=store)
        tl.store(w_row + c * stride_wc, winner.to(win_ptr.dtype.element_ty), mask=store)


@triton.jit
def _forward_shift_kernel(
    x_ptr,  # (N, C, H, W) input (before the ReLU), any strides
    y_ptr,  # (N, C, Ho, Wo) pooled output, any strides
    win_ptr,  # (N, C, Ho, Wo) winner tap index (uint8 or int32), any strides
    C, H, W, Ho, Wo,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_yn, stride_yc, stride_yh, stride_yw,
    stride_wn, stride_wc, stride_wh, stride_ww,
    alpha_over_size, beta, k,
    SIZE: tl.constexpr,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    LO: tl.constexpr = SIZE // 2
    n = tl.program_id(2).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    oh = p // Wo
    ow = p % Wo
    mask_c = c < C
    mask_p = p < Ho * Wo
    best = tl.full((BLOCK_C, BLOCK_P), float("-inf"), tl.float32)
    winner = tl.full((BLOCK_C, BLOCK_P), -1, tl.int32)  # -1: no valid tap seen yet
    for jh in tl.static_range(KH):
        ih = oh * SH - PH + jh
        row_ok = mask_p & (ih >= 0) & (ih < H)
        for jw in tl.static_range(KW):
            iw = ow * SW - PW + jw
            ok = row_ok & (iw >= 0) & (iw < W)
            base = x_ptr + n * stride_xn + (ih * stride_xh + iw * stride_xw)[None, :]
            window = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
            r_c = window
            for d in tl.static_range(SIZE):
                r = _relu(_load_rows(base, c + (d - LO), C, stride_xc, ok))
                window += r * r
                if d == LO:
                    r_c = r
            v = r_c * _pow_neg(k + alpha_over_size * window, beta)
            best, winner = _scan_tap(v, ok[None, :], jh * KW + jw, best, winner)
    _store_pooled(y_ptr, win_ptr, best, winner, n, c, oh, ow, mask_c[:, None] & mask_p[None, :],
                  stride_yn, stride_yc, stride_yh, stride_yw, stride_wn, stride_wc, stride_wh, stride_ww)


@triton.jit
def _backward_seq_kernel(
    x_ptr,  # (N, C, H, W) forward input (before the ReLU), any strides
    g_ptr,  # (N, C, Ho, Wo) gradient of the pooled output, any strides
    win_ptr,  # (N, C, Ho, Wo) winner tap index from the forward, any strides
    dx_ptr,  # (N, C, H, W) gradient of the input (written), any strides
    C, H, W, Ho, Wo,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_gn, stride_gc, stride_gh, stride_gw,
    stride_wn, stride_wc, stride_wh, stride_ww,
    stride_dn, stride_dc, stride_dh, stride_dw,
    alpha_over_size, beta, k,
    SIZE: tl.constexpr,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr,  # most windows an input row / column can fall in
    BLOCK_P: tl.constexpr,
    PREFETCH: tl.constexpr,
):
    # As _lrn_backward_seq_kernel, with the LRN's output gradient gathered through the pooling and its
    # input gradient masked by the ReLU. Step j writes dx_j; it brings in x row j+SIZE-1 (ReLU'd) and
    # the pooled gradient of channel j+LO, whose LRN window (rows [j, j+SIZE-1]) is now complete:
    #   w: r rows [j, j+SIZE-1]    t: t rows [j-HI, j+LO]    h: gz s^-beta rows [j, j+LO]
    LO: tl.constexpr = SIZE // 2
    HI: tl.constexpr = SIZE - 1 - LO
    n = tl.program_id(1).to(tl.int64)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    ih = p // W
    iw = p % W
    mask_p = p < H * W
    x_row = x_ptr + n * stride_xn + ih * stride_xh + iw * stride_xw
    d_row = dx_ptr + n * stride_dn + ih * stride_dh + iw * stride_dw
    g_plane = g_ptr + n * stride_gn
    w_plane = win_ptr + n * stride_wn
    z = tl.zeros((BLOCK_P,), dtype=tl.float32)
    w0, w1, w2, w3, w4, w5, w6, w7 = z, z, z, z, z, z, z, z
    t0, t1, t2, t3, t4, t5, t6, t7 = z, z, z, z, z, z, z, z
    h0, h1, h2, h3, h4, h5, h6, h7 = z, z, z, z, z, z, z, z
    J0: tl.constexpr = -(SIZE - 1)
    px0, px1, px2, px3, px4, px5, px6, px7 = _prefetch(x_row, J0 + SIZE - 1, C, stride_xc, mask_p, PREFETCH)
    coef = 2.0 * alpha_over_size * beta
    for j in range(J0, C):
        new_x = _relu(px0)
        px0, px1, px2, px3, px4, px5, px6, px7 = _shift_in(
            px0, px1, px2, px3, px4, px5, px6, px7,
            _load_row(x_row, j + SIZE - 1 + PREFETCH, C, stride_xc, mask_p), PREFETCH)
        cg = j + LO
        valid = (cg >= 0) & (cg < C)
        new_g = _gather_grad(g_plane + cg * stride_gc, w_plane + cg * stride_wc, ih, iw, mask_p & valid, Ho, Wo,
                             stride_gh, stride_gw, stride_wh, stride_ww, KH, KW, SH, SW, PH, PW, 1, 1, TH, TW, False)
        w0, w1, w2, w3, w4, w5, w6, w7 = _shift_in(w0, w1, w2, w3, w4, w5, w6, w7, new_x, SIZE)
        scale = k + alpha_over_size * _sum_slots(w0, w1, w2, w3, w4, w5, w6, w7, SIZE, True)
        scale_pow = _pow_neg(scale, beta)
        r_m = _slot(w0, w1, w2, w3, w4, w5, w6, w7, LO)
        # Padding channels must contribute exact zeros (k = 0 would make 0 * inf there).
        t_new = tl.where(valid, _grad_term(new_g, r_m, scale, scale_pow, beta), 0.0)
        h_new = tl.where(valid, new_g * scale_pow, 0.0)
        t0, t1, t2, t3, t4, t5, t6, t7 = _shift_in(t0, t1, t2, t3, t4, t5, t6, t7, t_new, SIZE)
        h0, h1, h2, h3, h4, h5, h6, h7 = _shift_in(h0, h1, h2, h3, h4, h5, h6, h7, h_new, LO + 1)
        window_t = _sum_slots(t0, t1, t2, t3, t4, t5, t6, t7, SIZE, False)
        dx = h0 - coef * w0 * window_t
        dx = tl.where(w0 <= 0, 0.0, dx)  # ReLU's backward: r_j <= 0 exactly where x_j <= 0
        tl.store(d_row + j * stride_dc, dx.to(dx_ptr.dtype.element_ty), mask=mask_p & (j >= 0))


@triton.jit
def _backward_tile_kernel(
    x_ptr,  # (N, C, H, W) forward input (before the ReLU), any strides (channels_last: C contiguous)
    g_ptr,  # (N, C, Ho, Wo) gradient of the pooled output, any strides
    win_ptr,  # (N, C, Ho, Wo) winner tap index from the forward, any strides
    dx_ptr,  # (N, C, H, W) gradient of the input (written), any strides
    C, H, W, Ho, Wo,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_gn, stride_gc, stride_gh, stride_gw,
    stride_wn, stride_wc, stride_wh, stride_ww,
    stride_dn, stride_dc, stride_dh, stride_dw,
    alpha_over_size, beta, k,
    SIZE: tl.constexpr,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr,  # most windows an input row / column can fall in
    BLOCK_C: tl.constexpr,  # tile rows (channels), HALO of them above the OUT_C written ones
    OUT_C: tl.constexpr,  # channels written per program: tile_out_channels()
    HALO: tl.constexpr,  # TILE_HALO
    BLOCK_P: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    # A [BLOCK_C, BLOCK_P] tile of channels x input positions, channels first so that channels_last rows
    # load as vectors: the tile starts HALO channels above the OUT_C channels the program writes, so
    # every load is aligned. Both channel windows come from 0/1 band matrices on the tensor cores, in the
    # tile's own rows: s_i from r^2 (rows [i-LO, i+HI]), then for the written rows the sum of t over
    # [i-HI, i+LO], where t = gz r s^(-beta-1) needs s, valid for rows [LO, BLOCK_C-1-HI]. The pooled
    # gradient gz is gathered for every row by loading every covering window's gradient and winner
    # (no data-dependent masks) and selecting.
    LO: tl.constexpr = SIZE // 2
    HI: tl.constexpr = SIZE - 1 - LO
    n = tl.program_id(2).to(tl.int64)
    c = tl.program_id(1) * OUT_C - HALO + tl.arange(0, BLOCK_C)  # the tile's channels
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    ih = p // W
    iw = p % W
    mask_p = p < H * W
    in_c = (c >= 0) & (c < C)
    valid = in_c[:, None] & mask_p[None, :]
    rows = tl.arange(0, BLOCK_C)
    diff = rows[None, :] - rows[:, None]
    band_s = ((diff >= -LO) & (diff <= HI)).to(tl.float32)
    band_t = ((diff >= -HI) & (diff <= LO)).to(tl.float32)
    x_off = n * stride_xn + c[:, None] * stride_xc + (ih * stride_xh + iw * stride_xw)[None, :]
    r = _relu(tl.load(x_ptr + x_off, mask=valid, other=0.0).to(tl.float32))
    scale = k + alpha_over_size * _band_sum(band_s, r * r, DOT_PRECISION)
    scale_pow = _pow_neg(scale, beta)
    gz = _gather_grad(g_ptr + n * stride_gn + c[:, None] * stride_gc, win_ptr + n * stride_wn + c[:, None] * stride_wc,
                      ih[None, :], iw[None, :], valid, Ho, Wo, stride_gh, stride_gw, stride_wh, stride_ww,
                      KH, KW, SH, SW, PH, PW, 1, 1, TH, TW, True)
    # Rows outside the channels (and those whose s window is cut by the tile) must contribute exact zeros.
    t = tl.where(valid, _grad_term(gz, r, scale, scale_pow, beta), 0.0)
    window_t = _band_sum(band_t, t, DOT_PRECISION)
    dx = gz * scale_pow - (2.0 * alpha_over_size * beta) * r * window_t
    dx = tl.where(r <= 0, 0.0, dx)  # ReLU's backward: r <= 0 exactly where x <= 0
    out = (rows >= HALO) & (rows < HALO + OUT_C) & in_c
    d_off = n * stride_dn + c[:, None] * stride_dc + (ih * stride_dh + iw * stride_dw)[None, :]
    tl.store(dx_ptr + d_off, dx.to(dx_ptr.dtype.element_ty), mask=out[:, None] & mask_p[None, :])


@dataclasses.dataclass(frozen=True)
class Config:
    """strategy: "sequential" or "shift" (forward), "sequential" or "tile" (backward). block_c: channels
    per program (shift) or tile rows (tile); block_p: positions per program; prefetch: rows loaded ahead
    (sequential)."""

    strategy: str
    block_c: int
    block_p: int
    num_warps: int
    prefetch: int = 0


def fused_supported(size: int) -> bool:
    """Whether the fused kernels take this LRN size (the backward keeps the window in 8 registers)."""
    return size <= MAX_SEQUENTIAL_SIZE


def forward_candidates(size: int, pool: Pool, channels_last: bool) -> list[Config]:
    """The configs the tuner times for a forward launch; the first is the untimed default."""
    seq = []
    if size <= MAX_SEQUENTIAL_SIZE and pool.kernel[0] * pool.kernel[1] <= MAX_SEQUENTIAL_TAPS:
        seq = [Config("sequential", 0, bp, w, pf) for bp, w, pf in ((64, 4, 2), (32, 2, 2), (64, 4, 1), (128, 4, 1),
                                                                     (32, 4, 4))]
    if channels_last:
        shift = [Config("shift", 32, 16, 4), Config("shift", 64, 8, 4), Config("shift", 32, 32, 8)]
        return shift + seq
    shift = [Config("shift", 4, 64, 4), Config("shift", 8, 64, 4), Config("shift", 2, 128, 4)]
    return seq + shift


def backward_candidates(channels_last: bool) -> list[Config]:
    """The configs the tuner times for a backward launch; the first is the untimed default. "tile" reads
    channels_last as vectors (the sequential kernel's positions are C apart there), but by the compiled-code
    estimate, which does not model uncoalesced access, "sequential" stays the default in both layouts
    (benchmarks/KERNELS.md); the tuner times both on the GPU."""
    seq = [Config("sequential", 0, bp, w, pf)
           for bp, w, pf in ((128, 1, 2), (128, 1, 4), (256, 2, 2), (256, 1, 2), (512, 4, 2), (64, 1, 4))]
    tile = [Config("tile", bc, bp, w) for bc, bp, w in ((64, 32, 4), (64, 16, 4), (32, 32, 4), (32, 64, 4))]
    return seq + tile if channels_last else seq + tile[:2]


# The tile strategy's halo: the rows above the written ones (a multiple of 8, so channels_last loads
# stay aligned), at least SIZE - 1 (the two windows' reach).
TILE_HALO = 8


def tile_out_channels(block_c: int, size: int) -> int:
    """Channels a "tile" program writes: a multiple of 8 that leaves the windows' reach inside the tile;
    0 where block_c is too small for the size."""
    return max(0, (block_c - TILE_HALO - (size - 1)) // 8 * 8)


def _taps(pool: Pool) -> int:
    return triton.next_power_of_2(pool.kernel[0] * pool.kernel[1])


def _geometry(pool: Pool) -> dict:
    (kh, kw), (sh, sw), (ph, pw) = pool.kernel, pool.stride, pool.padding
    return dict(KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw)


def _launch_forward(x, y, winners, size, alpha, beta, k, pool: Pool, cfg: Config):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2:]
    args = (x, y, winners, C, H, W, Ho, Wo, *x.stride(), *y.stride(), *winners.stride(), alpha / size, beta, k)
    if cfg.strategy == "sequential":
        grid = (triton.cdiv(Ho * Wo, cfg.block_p), N)
        _forward_seq_kernel[grid](*args, SIZE=size, **_geometry(pool), TAPS=_taps(pool), BLOCK_P=cfg.block_p,
                                  PREFETCH=cfg.prefetch, num_warps=cfg.num_warps)
    else:
        grid = (triton.cdiv(Ho * Wo, cfg.block_p), triton.cdiv(C, cfg.block_c), N)
        _forward_shift_kernel[grid](*args, SIZE=size, **_geometry(pool), BLOCK_C=cfg.block_c, BLOCK_P=cfg.block_p,
                                    num_warps=cfg.num_warps)


def _launch_backward(x, grad_y, winners, grad_x, size, alpha, beta, k, pool: Pool, cfg: Config):
    N, C, H, W = x.shape
    Ho, Wo = grad_y.shape[2:]
    th, tw = pool.windows_per_input()
    args = (x, grad_y, winners, grad_x, C, H, W, Ho, Wo, *x.stride(), *grad_y.stride(), *winners.stride(),
            *grad_x.stride(), alpha / size, beta, k)
    if cfg.strategy == "tile":
        out_c = tile_out_channels(cfg.block_c, size)
        grid = (triton.cdiv(H * W, cfg.block_p), triton.cdiv(C, out_c), N)
        _backward_tile_kernel[grid](*args, SIZE=size, **_geometry(pool), TH=th, TW=tw, BLOCK_C=cfg.block_c,
                                    OUT_C=out_c, HALO=TILE_HALO, BLOCK_P=cfg.block_p, DOT_PRECISION=_common.band_dot_precision(),
                                    num_warps=cfg.num_warps)
        return
    grid = (triton.cdiv(H * W, cfg.block_p), N)
    _backward_seq_kernel[grid](*args, SIZE=size, **_geometry(pool), TH=th, TW=tw, BLOCK_P=cfg.block_p,
                               PREFETCH=cfg.prefetch, num_warps=cfg.num_warps)


def _check_pool(pool: Pool) -> None:
    if pool.dilation != (1, 1):
        raise ValueError(f"relu_lrn_max_pool2d: the fused kernels take dilation 1, got {pool.dilation}")


def relu_lrn_max_pool2d_forward(x: torch.Tensor, y: torch.Tensor, winners: torch.Tensor, size: int, alpha: float,
                                beta: float, k: float, pool: Pool, config: Config | None = None) -> None:
    """Writes max-pool(LRN(relu(x))) into y and each window's winning tap into winners. x: (N, C, H, W);
    y, winners: (N, C, Ho, Wo); any strides."""
    _check_pool(pool)
    if y.numel() == 0:
        return
    _common.check_sample_extent("relu_lrn_max_pool2d", x, y, winners)
    if config is None:
        cl = is_channels_last(x)
        config = _common.tuned_config(
            ("relu_lrn_max_pool2d_fwd", x.device, x.dtype, tuple(x.shape[1:]), cl, size, pool),
            # the shift kernel puts channel blocks on grid axis 1 (at most 65535)
            [c for c in forward_candidates(size, pool, cl)
             if c.strategy == "sequential" or x.shape[1] <= 65535 * c.block_c],
            lambda cfg: _launch_forward(x, y, winners, size, alpha, beta, k, pool, cfg))
    _launch_forward(x, y, winners, size, alpha, beta, k, pool, config)


def relu_lrn_max_pool2d_backward(x: torch.Tensor, grad_y: torch.Tensor, winners: torch.Tensor, grad_x: torch.Tensor,
                                 size: int, alpha: float, beta: float, k: float, pool: Pool,
                                 config: Config | None = None) -> None:
    """Writes the input gradient of max-pool(LRN(relu(x))) into grad_x (N, C, H, W) from x, grad_y and
    winners (N, C, Ho, Wo); any strides. size <= 8."""
    _check_pool(pool)
    if not fused_supported(size):
        raise ValueError(f"relu_lrn_max_pool2d: the fused backward takes size <= {MAX_SEQUENTIAL_SIZE}, got {size}")
    if grad_x.numel() == 0:
        return
    _common.check_sample_extent("relu_lrn_max_pool2d_backward", x, grad_y, winners, grad_x)
    if config is None:
        config = _common.tuned_config(
            ("relu_lrn_max_pool2d_bwd", x.device, x.dtype, tuple(x.shape[1:]), is_channels_last(x), size, pool),
            # the tile kernel puts channel blocks on grid axis 1 (at most 65535)
            [c for c in backward_candidates(is_channels_last(x))
             if c.strategy == "sequential" or 0 < x.shape[1] <= 65535 * tile_out_channels(c.block_c, size)],
            lambda cfg: _launch_backward(x, grad_y, winners, grad_x, size, alpha, beta, k, pool, cfg))
    _launch_backward(x, grad_y, winners, grad_x, size, alpha, beta, k, pool, config)
