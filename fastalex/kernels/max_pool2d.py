"""Triton kernels for 2-D max-pooling: forward (values and winners) and a gather backward.

The forward writes, besides the pooled values, the winner of each window as its tap index
jh * KW + jw (uint8 for windows of up to 256 taps, else int32): a byte per output instead of torch's
int64 index, and all the backward needs. Taps are scanned row-major and a tap replaces the best so
far iff `v > best or isnan(v)`, torch's rule: ties go to the first maximum, NaN to the last NaN.

With RELU the forward pools relu(x): the pooled value is clamped at 0, and a window whose maximum is
not positive stores the winner KH * KW, which no tap matches, so the backward (unchanged) passes it no
gradient: AlexNet's conv -> ReLU -> max-pool then needs no ReLU pass and no mask in the conv's backward.

The backward is a gather: each program owns input elements and sums grad_y over the (at most
cdiv((KH-1)*DH+1, SH) x cdiv((KW-1)*DW+1, SW)) windows that can hold them and chose them, in
ascending output order. No atomics, so it is deterministic, and every grad_x element is written.

Tensors are 4-D (N, C, H, W) with any strides; a program owns a [BLOCK_C channels, BLOCK_P positions]
tile of one sample, which covers NCHW (BLOCK_C small, positions contiguous) and channels_last
(BLOCK_C large, channels contiguous) alike. Triton specialises strides equal to 1, so each layout
gets coalesced loads along its contiguous axis.

Floors (H200, 4.27 TB/s copy, batch 128, 96x55x55 -> 27x27, fp32): forward reads x (149 MB) and
writes y (36 MB) and winners (9 MB): 0.045 ms. Backward reads grad_y and winners (45 MB) and writes
grad_x (149 MB): 0.045 ms.
"""
from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl

from fastalex.kernels import _common
from fastalex.kernels._common import Pool
from fastalex.kernels._pool import _gather_grad, _scan_tap, _store_pooled


@triton.jit
def _max_pool2d_forward_kernel(
    x_ptr,  # (N, C, H, W) input, any strides
    y_ptr,  # (N, C, Ho, Wo) pooled output, any strides
    win_ptr,  # (N, C, Ho, Wo) winner tap index (uint8 or int32), any strides
    C, H, W, Ho, Wo,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_yn, stride_yc, stride_yh, stride_yw,
    stride_wn, stride_wc, stride_wh, stride_ww,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
    PH: tl.constexpr, PW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    RELU: tl.constexpr,  # pool relu(x): max commutes with ReLU, so it is applied to the pooled value
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    n = tl.program_id(2).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    oh = p // Wo
    ow = p % Wo
    mask_c = c < C
    mask_p = p < Ho * Wo
    x_base = x_ptr + n * stride_xn + c[:, None] * stride_xc
    best = tl.full((BLOCK_C, BLOCK_P), float("-inf"), tl.float32)
    winner = tl.full((BLOCK_C, BLOCK_P), -1, tl.int32)  # -1: no valid tap seen yet
    for jh in tl.static_range(KH):
        ih = oh * SH - PH + jh * DH
        row_ok = mask_p & (ih >= 0) & (ih < H)
        for jw in tl.static_range(KW):
            iw = ow * SW - PW + jw * DW
            ok = (row_ok & (iw >= 0) & (iw < W))[None, :]
            v = tl.load(x_base + (ih * stride_xh + iw * stride_xw)[None, :], mask=mask_c[:, None] & ok,
                        other=float("-inf")).to(tl.float32)
            best, winner = _scan_tap(v, ok, jh * KW + jw, best, winner)
    if RELU:
        # A window whose maximum is negative or 0 passes no gradient, as torch's ReLU backward (0 where
        # x <= 0; a NaN passes it): its winner becomes KH * KW, a tap the backward never matches.
        winner = tl.where((best <= 0) & (winner >= 0), KH * KW, winner)
        best = tl.where(best < 0, 0.0, best)  # NaN stays NaN
    _store_pooled(y_ptr, win_ptr, best, winner, n, c, oh, ow, mask_c[:, None] & mask_p[None, :],
                  stride_yn, stride_yc, stride_yh, stride_yw, stride_wn, stride_wc, stride_wh, stride_ww)


@triton.jit
def _max_pool2d_backward_kernel(
    g_ptr,  # (N, C, Ho, Wo) gradient of the output, any strides
    win_ptr,  # (N, C, Ho, Wo) winner tap index from the forward, any strides
    dx_ptr,  # (N, C, H, W) gradient of the input (written), any strides
    C, H, W, Ho, Wo,
    stride_gn, stride_gc, stride_gh, stride_gw,
    stride_wn, stride_wc, stride_wh, stride_ww,
    stride_dn, stride_dc, stride_dh, stride_dw,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
    PH: tl.constexpr, PW: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr,  # most windows an input row / column can fall in
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    n = tl.program_id(2).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    ih = p // W
    iw = p % W
    mask_c = c < C
    mask_p = p < H * W
    g_base = g_ptr + n * stride_gn + c[:, None] * stride_gc
    w_base = win_ptr + n * stride_wn + c[:, None] * stride_wc
    acc = _gather_grad(g_base, w_base, ih[None, :], iw[None, :], mask_c[:, None] & mask_p[None, :], Ho, Wo,
                       stride_gh, stride_gw, stride_wh, stride_ww, KH, KW, SH, SW, PH, PW, DH, DW, TH, TW, False)
    d_off = n * stride_dn + c[:, None] * stride_dc + (ih * stride_dh + iw * stride_dw)[None, :]
    tl.store(dx_ptr + d_off, acc.to(dx_ptr.dtype.element_ty), mask=mask_c[:, None] & mask_p[None, :])


@dataclasses.dataclass(frozen=True)
class Config:
    """block_c channels x block_p positions per program (output positions forward, input backward)."""

    block_c: int
    block_p: int
    num_warps: int


def candidates(channels_last: bool) -> list[Config]:
    """The configs the tuner times; the first is the untimed default."""
    if channels_last:
        return [Config(64, 16, 4), Config(32, 32, 4), Config(128, 8, 4), Config(64, 32, 8), Config(32, 16, 2)]
    return [Config(2, 256, 4), Config(1, 256, 2), Config(1, 512, 4), Config(4, 128, 4), Config(2, 512, 8)]


def is_channels_last(t: torch.Tensor) -> bool:
    return t.stride(1) == 1 and t.shape[1] > 1


def _launch_forward(x, y, winners, pool: Pool, cfg: Config, relu: bool = False):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2:]
    grid = (triton.cdiv(Ho * Wo, cfg.block_p), triton.cdiv(C, cfg.block_c), N)
    _max_pool2d_forward_kernel[grid](
        x, y, winners, C, H, W, Ho, Wo, *x.stride(), *y.stride(), *winners.stride(), **pool.constexprs(),
        RELU=relu, BLOCK_C=cfg.block_c, BLOCK_P=cfg.block_p, num_warps=cfg.num_warps)


def _launch_backward(grad_y, winners, grad_x, pool: Pool, cfg: Config):
    N, C, H, W = grad_x.shape
    Ho, Wo = grad_y.shape[2:]
    th, tw = pool.windows_per_input()
    grid = (triton.cdiv(H * W, cfg.block_p), triton.cdiv(C, cfg.block_c), N)
    _max_pool2d_backward_kernel[grid](
        grad_y, winners, grad_x, C, H, W, Ho, Wo, *grad_y.stride(), *winners.stride(), *grad_x.stride(),
        **pool.constexprs(), TH=th, TW=tw, BLOCK_C=cfg.block_c, BLOCK_P=cfg.block_p, num_warps=cfg.num_warps)


def _fitting(configs: list[Config], channels: int) -> list[Config]:
    # Channel blocks go on grid axis 1, which CUDA caps at 65535.
    out = [c for c in configs if triton.cdiv(channels, c.block_c) <= 65535]
    if not out:
        raise ValueError(f"max_pool2d: the triton backend takes at most {65535 * max(c.block_c for c in configs)} "
                         f"channels, got {channels}")
    return out


def max_pool2d_forward(x: torch.Tensor, y: torch.Tensor, winners: torch.Tensor, pool: Pool,
                       config: Config | None = None, relu: bool = False) -> None:
    """Writes max-pool(x) (with relu: max-pool(relu(x))) into y and each window's winning tap into
    winners. x: (N, C, H, W); y and winners: (N, C, Ho, Wo); any strides. With relu a window whose
    maximum is not positive gets the winner KH * KW (no tap: no gradient), so winners must hold it."""
    if y.numel() == 0:
        return
    _common.check_sample_extent("max_pool2d", x, y, winners)
    if config is None:
        cl = is_channels_last(x)
        config = _common.tuned_config(
            ("max_pool2d_fwd", x.device, x.dtype, tuple(x.shape[1:]), tuple(y.shape[2:]), cl, pool, relu),
            _fitting(candidates(cl), x.shape[1]), lambda cfg: _launch_forward(x, y, winners, pool, cfg, relu))
    _launch_forward(x, y, winners, pool, config, relu)


def max_pool2d_backward(grad_y: torch.Tensor, winners: torch.Tensor, grad_x: torch.Tensor, pool: Pool,
                        config: Config | None = None) -> None:
    """Writes the input gradient of max-pool into every element of grad_x (N, C, H, W) from grad_y and
    winners (N, C, Ho, Wo); any strides."""
    if grad_x.numel() == 0:
        return
    _common.check_sample_extent("max_pool2d_backward", grad_y, winners, grad_x)
    if config is None:
        cl = is_channels_last(grad_x)
        config = _common.tuned_config(
            ("max_pool2d_bwd", grad_x.device, grad_x.dtype, tuple(grad_x.shape[1:]), tuple(grad_y.shape[2:]), cl,
             pool), _fitting(candidates(cl), grad_x.shape[1]),
            lambda cfg: _launch_backward(grad_y, winners, grad_x, pool, cfg))
    _launch_backward(grad_y, winners, grad_x, pool, config)
