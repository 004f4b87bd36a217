"""Triton kernels for 2-D convolution as implicit GEMM, with bias and ReLU fused, forward and backward.

    y[n, co, oh, ow] = act(b[co] + sum_{ci, kh, kw} x[n, g*Cg + ci, oh*SH - PT + kh, ow*SW - PL + kw] w[co, ci, kh, kw])

for co in group g (Cg input channels per group). Padding is asymmetric (PT top, PL left; the bottom
and right padding only set the output size). Every tensor is 4-D with any strides: channels_last
makes the GEMM's K axis (kh, kw, ci) contiguous in ci, NCHW works too.

- forward: M = N*Ho*Wo output positions x Cout/groups channels, K = Cg*KH*KW; the input tile is
  gathered (zero outside the image), the weight tile read through its strides; bias and ReLU in the
  epilogue.
- grad_input: M = N*H*W input positions x Cg, K = Cout/groups*KH*KW; output positions that do not
  line up with the stride read as zero; with y given, grad_y is masked by the ReLU (y > 0) as it is
  loaded (the autograd path masks it once beforehand instead: fastalex/ops/conv2d.py).
- grad_weight (+ grad_bias): M = Cout/groups x K = Cg*KH*KW, reduced over the N*Ho*Wo positions in
  SPLIT chunks, each written to its own fp32 slice and summed afterwards in a fixed order: no atomics,
  deterministic.

Strategies, by input channels per group (Cg; FEW_CHANNELS): from 16 up, the K loops walk the taps
(kh, kw) and within each a block of channels, so every address and bound costs one scalar step per
block and channels_last rows load 16 bytes at a time (AlexNet's conv2-5). Fewer with one group
(conv1's image): _RowLayout pads the image once so each kernel row of a window is one contiguous run,
and the same tap kernels run on a view of it. Fewer with several groups: the gather kernels decode K
element by element.

fp16/bf16 run on the tensor cores with fp32 accumulation; fp32 runs as TF32 exactly when the caller
passes precision="tf32" (the ops layer follows torch's convolution setting:
torch.backends.cudnn.conv.fp32_precision, else the legacy torch.backends.cudnn.allow_tf32), else in
IEEE fp32.
"""
from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl

from fastalex.kernels import _common, conv2d_torch
from fastalex.kernels.conv2d_torch import TORCH, TorchRoute


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """Kernel size, stride, and the top/left padding (all the kernels need of the padding)."""

    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int
    groups: int

    def constexprs(self) -> dict:
        return dict(KH=self.kh, KW=self.kw, SH=self.sh, SW=self.sw, PT=self.pt, PL=self.pl)


@triton.jit
def _decode_k(k, C, KW: tl.constexpr):
    # K is ordered (kh, kw, c) with c fastest, so channels_last tensors read contiguously along it.
    c = k % C
    r = k // C
    return c, r // KW, r % KW


@triton.jit
def _tap_step(t, C_STEPS: tl.constexpr, KW: tl.constexpr, BLOCK_C: tl.constexpr):
    # Step t of a K loop ordered (kh, kw, channel block): the tap and the block's first channel, by
    # divisions by constants on one scalar (the per-element decode is what _decode_k costs the gathers).
    tap = t // C_STEPS
    kh = tap // KW
    return kh, tap - kh * KW, (t - tap * C_STEPS) * BLOCK_C


@triton.jit
def _load(ptrs, mask, MASKED: tl.constexpr):
    # A tile load whose mask the caller knows to be all true where MASKED is false (no predicate per load).
    if MASKED:
        tile = tl.load(ptrs, mask=mask, other=0.0)
    else:
        tile = tl.load(ptrs)
    return tile


@triton.jit
def _weight_tile(w_base, co, mask_k, ci, kh, kw, CG_OUT, stride_wo, stride_wi, stride_wh, stride_ww):
    # [BLOCK_K, BLOCK_N] of the weight for output channels co (within the group) and K entries (ci, kh, kw).
    return tl.load(w_base + co[None, :].to(tl.int64) * stride_wo + (ci * stride_wi + kh * stride_wh
                   + kw * stride_ww)[:, None], mask=mask_k[:, None] & (co < CG_OUT)[None, :], other=0.0)


@triton.jit
def _epilogue(acc, y_ptr, b_ptr, y_row, co, mask_m, g, CG_OUT, stride_yc, HAS_BIAS: tl.constexpr,
              RELU: tl.constexpr):
    mask_n = co < CG_OUT
    if HAS_BIAS:
        acc += tl.load(b_ptr + g * CG_OUT + co, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    if RELU:
        acc = tl.where(acc < 0, 0.0, acc)  # torch.relu: NaN stays NaN (tl.maximum would drop it)
    y_off = y_row[:, None] + ((g * CG_OUT + co) * stride_yc)[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _conv2d_forward_kernel(
    x_ptr,  # (N, Cin, H, W) input, any strides
    w_ptr,  # (Cout, Cin / groups, KH, KW) weight, any strides
    b_ptr,  # (Cout,) bias (unused without HAS_BIAS)
    y_ptr,  # (N, Cout, Ho, Wo) output, any strides
    H, W, Ho, Wo, M,
    CG_IN: tl.constexpr,  # input channels per group: a constant, so the channel mask keeps whole vectors
    CG_OUT,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_wo, stride_wi, stride_wh, stride_ww,
    stride_yn, stride_yc, stride_yh, stride_yw,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PT: tl.constexpr, PL: tl.constexpr,
    HAS_BIAS: tl.constexpr, RELU: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    N_TILES: tl.constexpr,  # BLOCK_N-wide column tiles per program, 1..3: one input tile feeds them all
    C_STEPS: tl.constexpr,  # cdiv(CG_IN, BLOCK_K): channel blocks per kernel tap
    EVEN_C: tl.constexpr,  # CG_IN % BLOCK_K == 0: no input-channel mask
    EVEN_N: tl.constexpr,  # CG_OUT % (BLOCK_N * N_TILES) == 0: no output-channel mask on the weight
):
    # The K loop walks the taps (kh, kw) and, within each, blocks of BLOCK_K input channels: a row's
    # address and bounds are computed once per step for the whole block (channels_last: one contiguous
    # run), instead of decoding every element of K. N_TILES > 1 serves channel counts that are not a
    # power of two without padding the GEMM (96 output channels are 3 tiles of 32).
    g = tl.program_id(2)
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    co0 = tl.program_id(1) * (BLOCK_N * N_TILES) + tl.arange(0, BLOCK_N)  # within the group
    mask_m = m < M
    n = (m // (Ho * Wo)).to(tl.int64)
    oh = (m // Wo) % Ho
    ow = m % Wo
    # A row's input position at tap (0, 0); rows past M start at H, so that no tap is inside the image.
    ih0 = tl.where(mask_m, oh * SH - PT, H)
    iw0 = ow * SW - PL
    c = tl.arange(0, BLOCK_K)
    x_rows = x_ptr + n * stride_xn + (g * CG_IN) * stride_xc + ih0 * stride_xh + iw0 * stride_xw  # [BLOCK_M]
    x_tile = x_rows[:, None] + (c * stride_xc)[None, :]  # [BLOCK_M, BLOCK_K] at tap (0, 0), channel block 0
    w_tile = (w_ptr + (g * CG_OUT).to(tl.int64) * stride_wo + co0[None, :].to(tl.int64) * stride_wo
              + (c * stride_wi)[:, None])  # [BLOCK_K, BLOCK_N] likewise
    mask_n0 = (co0 < CG_OUT)[None, :]
    mask_n1 = (co0 + BLOCK_N < CG_OUT)[None, :]
    mask_n2 = (co0 + 2 * BLOCK_N < CG_OUT)[None, :]
    acc0 = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc1 = acc0
    acc2 = acc0
    for t in range(KH * KW * C_STEPS):
        kh, kw, c0 = _tap_step(t, C_STEPS, KW, BLOCK_K)
        # Per step: one scalar offset for every address, two unsigned compares per row for the bounds.
        row_ok = ((ih0 + kh).to(tl.uint32) < H.to(tl.uint32)) & ((iw0 + kw).to(tl.uint32) < W.to(tl.uint32))
        k_ok = c0 + c < CG_IN
        a_mask = row_ok[:, None] if EVEN_C else row_ok[:, None] & k_ok[None, :]
        a = tl.load(x_tile + (kh * stride_xh + kw * stride_xw + c0 * stride_xc), mask=a_mask, other=0.0)
        w_tap = w_tile + (kh * stride_wh + kw * stride_ww + c0 * stride_wi)
        b0 = _load(w_tap, k_ok[:, None] & mask_n0, not (EVEN_C and EVEN_N))
        acc0 = tl.dot(a, b0, acc0, input_precision=PRECISION)
        if N_TILES > 1:
            b1 = _load(w_tap + BLOCK_N * stride_wo, k_ok[:, None] & mask_n1, not (EVEN_C and EVEN_N))
            acc1 = tl.dot(a, b1, acc1, input_precision=PRECISION)
        if N_TILES > 2:
            b2 = _load(w_tap + 2 * BLOCK_N * stride_wo, k_ok[:, None] & mask_n2, not (EVEN_C and EVEN_N))
            acc2 = tl.dot(a, b2, acc2, input_precision=PRECISION)
    y_row = n * stride_yn + oh * stride_yh + ow * stride_yw
    _epilogue(acc0, y_ptr, b_ptr, y_row, co0, mask_m, g, CG_OUT, stride_yc, HAS_BIAS, RELU)
    if N_TILES > 1:
        _epilogue(acc1, y_ptr, b_ptr, y_row, co0 + BLOCK_N, mask_m, g, CG_OUT, stride_yc, HAS_BIAS, RELU)
    if N_TILES > 2:
        _epilogue(acc2, y_ptr, b_ptr, y_row, co0 + 2 * BLOCK_N, mask_m, g, CG_OUT, stride_yc, HAS_BIAS, RELU)


@triton.jit
def _conv2d_forward_gather_kernel(
    x_ptr,  # (N, Cin, H, W) input, any strides
    w_ptr,  # (Cout, Cin / groups, KH, KW) weight, any strides
    b_ptr,  # (Cout,) bias (unused without HAS_BIAS)
    y_ptr,  # (N, Cout, Ho, Wo) output, any strides
    H, W, Ho, Wo, M, CG_IN, CG_OUT,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_wo, stride_wi, stride_wh, stride_ww,
    stride_yn, stride_yc, stride_yh, stride_yw,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PT: tl.constexpr, PL: tl.constexpr,
    HAS_BIAS: tl.constexpr, RELU: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    N_TILES: tl.constexpr,  # BLOCK_N-wide column tiles per program, 1..3: one input gather feeds them all
):
    # For few input channels per group (the image's 3): K = (kh, kw, ci) decoded element by element, so
    # a BLOCK_K step spans several taps instead of padding each tap's 3 channels to a block.
    g = tl.program_id(2)
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    co0 = tl.program_id(1) * (BLOCK_N * N_TILES) + tl.arange(0, BLOCK_N)  # within the group
    mask_m = m < M
    n = (m // (Ho * Wo)).to(tl.int64)
    oh = (m // Wo) % Ho
    ow = m % Wo
    x_base = x_ptr + n * stride_xn + (g * CG_IN) * stride_xc  # [BLOCK_M]
    w_base = w_ptr + (g * CG_OUT).to(tl.int64) * stride_wo
    K = CG_IN * KH * KW
    acc0 = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc1 = acc0
    acc2 = acc0
    for k0 in range(0, K, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        mask_k = k < K
        ci, kh, kw = _decode_k(k, CG_IN, KW)
        ih = oh[:, None] * SH - PT + kh[None, :]
        iw = ow[:, None] * SW - PL + kw[None, :]
        a_mask = mask_m[:, None] & mask_k[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(x_base[:, None] + ci[None, :] * stride_xc + ih * stride_xh + iw * stride_xw, mask=a_mask,
                    other=0.0)
        b0 = _weight_tile(w_base, co0, mask_k, ci, kh, kw, CG_OUT, stride_wo, stride_wi, stride_wh, stride_ww)
        acc0 = tl.dot(a, b0, acc0, input_precision=PRECISION)
        if N_TILES > 1:
            b1 = _weight_tile(w_base, co0 + BLOCK_N, mask_k, ci, kh, kw, CG_OUT, stride_wo, stride_wi, stride_wh,
                              stride_ww)
            acc1 = tl.dot(a, b1, acc1, input_precision=PRECISION)
        if N_TILES > 2:
            b2 = _weight_tile(w_base, co0 + 2 * BLOCK_N, mask_k, ci, kh, kw, CG_OUT, stride_wo, stride_wi, stride_wh,
                              stride_ww)
            acc2 = tl.dot(a, b2, acc2, input_precision=PRECISION)
    y_row = n * stride_yn + oh * stride_yh + ow * stride_yw
    _epilogue(acc0, y_ptr, b_ptr, y_row, co0, mask_m, g, CG_OUT, stride_yc, HAS_BIAS, RELU)
    if N_TILES > 1:
        _epilogue(acc1, y_ptr, b_ptr, y_row, co0 + BLOCK_N, mask_m, g, CG_OUT, stride_yc, HAS_BIAS, RELU)
    if N_TILES > 2:
        _epilogue(acc2, y_ptr, b_ptr, y_row, co0 + 2 * BLOCK_N, mask_m, g, CG_OUT, stride_yc, HAS_BIAS, RELU)


@triton.jit
def _load_grad_output(g_ptrs, y_ptrs, mask, RELU: tl.constexpr):
    # grad_y with ReLU's backward applied on the way in: zero where the output was not positive.
    grad = tl.load(g_ptrs, mask=mask, other=0.0)
    if RELU:
        y = tl.load(y_ptrs, mask=mask, other=0.0)
        grad = tl.where(y <= 0, 0.0, grad)  # torch's threshold_backward: a NaN output passes the gradient
    return grad


@triton.jit
def _conv2d_grad_input_kernel(
    g_ptr,  # (N, Cout, Ho, Wo) gradient of the output, any strides
    y_ptr,  # (N, Cout, Ho, Wo) forward output, the ReLU mask (unused without RELU), any strides
    w_ptr,  # (Cout, Cin / groups, KH, KW) weight, any strides
    dx_ptr,  # (N, Cin, H, W) gradient of the input (written), any strides
    H, W, Ho, Wo, M, CG_IN, CG_OUT,
    stride_gn, stride_gc, stride_gh, stride_gw,
    stride_yn, stride_yc, stride_yh, stride_yw,
    stride_wo, stride_wi, stride_wh, stride_ww,
    stride_dn, stride_dc, stride_dh, stride_dw,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PT: tl.constexpr, PL: tl.constexpr,
    RELU: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    C_STEPS: tl.constexpr,  # cdiv(CG_OUT, BLOCK_K): output-channel blocks per kernel tap
    EVEN_C: tl.constexpr,  # CG_OUT % BLOCK_K == 0: no output-channel mask
    EVEN_N: tl.constexpr,  # CG_IN % BLOCK_N == 0: no input-channel mask on the weight
):
    # dx[n, ci, ih, iw] = sum_{co, kh, kw} dy[n, co, oh, ow] w[co, ci, kh, kw], oh*SH = ih + PT - kh.
    # The K loop walks the taps and, within each, blocks of BLOCK_K output channels (as the forward).
    g = tl.program_id(2)
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ci = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # within the group
    mask_m = m < M
    mask_n = ci < CG_IN
    n = (m // (H * W)).to(tl.int64)
    ih = (m // W) % H
    iw = m % W
    c = tl.arange(0, BLOCK_K)
    # The output position a row meets at tap (0, 0), times the stride; rows past M start past the output.
    th0 = tl.where(mask_m, ih + PT, Ho * SH + KH)
    tw0 = iw + PL
    g_base = g_ptr + n * stride_gn + (g * CG_OUT) * stride_gc  # [BLOCK_M]
    y_base = y_ptr + n * stride_yn + (g * CG_OUT) * stride_yc  # [BLOCK_M]
    if SH * SW == 1:  # the tap's output position is th0 - kh: tiles at tap (0, 0) that a scalar moves
        g_tile = (g_base + th0 * stride_gh + tw0 * stride_gw)[:, None] + (c * stride_gc)[None, :]
        y_tile = (y_base + th0 * stride_yh + tw0 * stride_yw)[:, None] + (c * stride_yc)[None, :]
    w_tile = (w_ptr + (g * CG_OUT) * stride_wo + (c * stride_wo)[:, None]
              + (ci * stride_wi)[None, :])  # [BLOCK_K, BLOCK_N] at tap (0, 0), channel block 0
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for t in range(KH * KW * C_STEPS):
        kh, kw, c0 = _tap_step(t, C_STEPS, KW, BLOCK_K)
        k_ok = c0 + c < CG_OUT
        if SH * SW == 1:
            row_ok = ((th0 - kh).to(tl.uint32) < Ho.to(tl.uint32)) & ((tw0 - kw).to(tl.uint32) < Wo.to(tl.uint32))
            a_mask = row_ok[:, None] if EVEN_C else row_ok[:, None] & k_ok[None, :]
            a = _load_grad_output(g_tile + (c0 * stride_gc - kh * stride_gh - kw * stride_gw),
                                  y_tile + (c0 * stride_yc - kh * stride_yh - kw * stride_yw), a_mask, RELU)
        else:
            th = th0 - kh  # oh * SH; negative ones are masked, so how // rounds them does not matter
            tw = tw0 - kw
            oh = th // SH
            ow = tw // SW
            row_ok = (th >= 0) & (tw >= 0) & (th % SH == 0) & (tw % SW == 0) & (oh < Ho) & (ow < Wo)
            co = c0 + c
            a_mask = row_ok[:, None] & k_ok[None, :]
            a = _load_grad_output((g_base + oh * stride_gh + ow * stride_gw)[:, None] + (co * stride_gc)[None, :],
                                  (y_base + oh * stride_yh + ow * stride_yw)[:, None] + (co * stride_yc)[None, :],
                                  a_mask, RELU)
        b = _load(w_tile + (c0 * stride_wo + kh * stride_wh + kw * stride_ww), k_ok[:, None] & mask_n[None, :],
                  not (EVEN_C and EVEN_N))
        acc = tl.dot(a.to(b.dtype), b, acc, input_precision=PRECISION)
    d_off = (n * stride_dn + ih * stride_dh + iw * stride_dw)[:, None] + ((g * CG_IN + ci) * stride_dc)[None, :]
    tl.store(dx_ptr + d_off, acc.to(dx_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _position_offsets(r, stride_n, stride_h, stride_w, HO: tl.constexpr, WO: tl.constexpr, DENSE: tl.constexpr):
    # Offsets of output positions r = (n * HO + oh) * WO + ow in a tensor of the output's size.
    if DENSE:
        off = r.to(tl.int64) * stride_w
    else:
        n = r // (HO * WO)
        q = r // WO
        off = n.to(tl.int64) * stride_n + (q - n * HO) * stride_h + (r - q * WO) * stride_w
    return off


@triton.jit
def _conv2d_grad_weight_kernel(
    g_ptr,  # (N, Cout, Ho, Wo) gradient of the output, any strides
    y_ptr,  # (N, Cout, Ho, Wo) forward output, the ReLU mask (unused without RELU), any strides
    x_ptr,  # (N, Cin, H, W) forward input, any strides
    dw_ptr,  # (SPLIT, Cout, K) fp32 partial weight gradients, K ordered (kh, kw, ci), contiguous
    db_ptr,  # (SPLIT, Cout) fp32 partial bias gradients, contiguous (unused without BIAS)
    H, W, R, CG_IN, CG_OUT, COUT, R_CHUNK,
    stride_gn, stride_gc, stride_gh, stride_gw,
    stride_yn, stride_yc, stride_yh, stride_yw,
    stride_xn, stride_xc, stride_xh, stride_xw,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PT: tl.constexpr, PL: tl.constexpr,
    HO: tl.constexpr, WO: tl.constexpr,  # the output size: positions decode by divisions by constants
    RELU: tl.constexpr, BIAS: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
    C_STEPS: tl.constexpr,  # cdiv(CG_IN, BLOCK_N): input-channel blocks per kernel tap
    DENSE: tl.constexpr,  # grad_y and y hold position r at r * stride_*w (channels_last): no decode for them
):
    # dw[co, (kh, kw, ci)] = sum_r dy[r, co] x[r at tap (kh, kw), ci] over the chunk of output positions r
    # a program owns. Each K tile is one tap's block of BLOCK_N channels, so a position's input address
    # and bounds are computed once for the tile's whole row. With BIAS, one more program per output
    # tile and chunk sums dy alone (grad_bias), so the K tiles never redo it.
    TILES: tl.constexpr = KH * KW * C_STEPS
    g = tl.program_id(2)
    split = tl.program_id(1) // (TILES + BIAS)
    pid_k = tl.program_id(1) % (TILES + BIAS)
    co = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # within the group
    mask_co = co < CG_OUT
    ch = g * CG_OUT + co
    row = (split * COUT + ch).to(tl.int64)
    r_start = split * R_CHUNK
    r_end = tl.minimum(r_start + R_CHUNK, R)
    if pid_k == TILES:
        bias_acc = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for r0 in range(r_start, r_end, BLOCK_R):
            r = r0 + tl.arange(0, BLOCK_R)
            a = _load_grad_output(g_ptr + _position_offsets(r, stride_gn, stride_gh, stride_gw, HO, WO, DENSE)[None, :]
                                  + (ch * stride_gc)[:, None],
                                  y_ptr + _position_offsets(r, stride_yn, stride_yh, stride_yw, HO, WO, DENSE)[None, :]
                                  + (ch * stride_yc)[:, None],
                                  mask_co[:, None] & (r < r_end)[None, :], RELU)  # [M, R]
            bias_acc += tl.sum(a.to(tl.float32), axis=1)
        tl.store(db_ptr + row, bias_acc, mask=mask_co)
    else:
        kh, kw, c0 = _tap_step(pid_k, C_STEPS, KW, BLOCK_N)
        ci = c0 + tl.arange(0, BLOCK_N)
        mask_k = ci < CG_IN
        x_tap = x_ptr + (g * CG_IN + ci) * stride_xc + (kh - PT) * stride_xh + (kw - PL) * stride_xw  # [BLOCK_N]
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for r0 in range(r_start, r_end, BLOCK_R):
            r = r0 + tl.arange(0, BLOCK_R)
            r_ok = r < r_end
            a = _load_grad_output(g_ptr + _position_offsets(r, stride_gn, stride_gh, stride_gw, HO, WO, DENSE)[None, :]
                                  + (ch * stride_gc)[:, None],
                                  y_ptr + _position_offsets(r, stride_yn, stride_yh, stride_yw, HO, WO, DENSE)[None, :]
                                  + (ch * stride_yc)[:, None],
                                  mask_co[:, None] & r_ok[None, :], RELU)  # [M, R]
            n = r // (HO * WO)
            q = r // WO
            oh = q - n * HO
            ow = r - q * WO
            r_ok = (r_ok & ((oh * SH + (kh - PT)).to(tl.uint32) < H.to(tl.uint32))
                    & ((ow * SW + (kw - PL)).to(tl.uint32) < W.to(tl.uint32)))
            x_pos = n.to(tl.int64) * stride_xn + (oh * SH) * stride_xh + (ow * SW) * stride_xw
            b = tl.load(x_tap[None, :] + x_pos[:, None], mask=r_ok[:, None] & mask_k[None, :], other=0.0)  # [R, K]
            acc = tl.dot(a.to(b.dtype), b, acc, input_precision=PRECISION)
        col = (kh * KW + kw) * CG_IN + ci
        tl.store(dw_ptr + row[:, None] * (KH * KW * CG_IN) + col[None, :], acc,
                 mask=mask_co[:, None] & mask_k[None, :])


@triton.jit
def _conv2d_grad_weight_gather_kernel(
    g_ptr,  # (N, Cout, Ho, Wo) gradient of the output, any strides
    y_ptr,  # (N, Cout, Ho, Wo) forward output, the ReLU mask (unused without RELU), any strides
    x_ptr,  # (N, Cin, H, W) forward input, any strides
    dw_ptr,  # (SPLIT, Cout, K) fp32 partial weight gradients, K ordered (kh, kw, ci), contiguous
    db_ptr,  # (SPLIT, Cout) fp32 partial bias gradients, contiguous (unused without BIAS)
    H, W, Ho, Wo, R, CG_IN, CG_OUT, COUT, R_CHUNK,
    stride_gn, stride_gc, stride_gh, stride_gw,
    stride_yn, stride_yc, stride_yh, stride_yw,
    stride_xn, stride_xc, stride_xh, stride_xw,
    KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr, PT: tl.constexpr, PL: tl.constexpr,
    RELU: tl.constexpr, BIAS: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
):
    # For few input channels per group (the image's 3): a K tile spans several taps, decoded element by
    # element; grad_bias is the sum of dy alone, taken by the programs of the first K tile.
    g = tl.program_id(2)
    split = tl.program_id(1) // tl.cdiv(CG_IN * KH * KW, BLOCK_N)
    pid_k = tl.program_id(1) % tl.cdiv(CG_IN * KH * KW, BLOCK_N)
    co = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # within the group
    k = pid_k * BLOCK_N + tl.arange(0, BLOCK_N)
    K = CG_IN * KH * KW
    mask_co = co < CG_OUT
    mask_k = k < K
    ci, kh, kw = _decode_k(k, CG_IN, KW)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    bias_acc = tl.zeros((BLOCK_M,), dtype=tl.float32)
    r_start = split * R_CHUNK
    for r0 in range(r_start, tl.minimum(r_start + R_CHUNK, R), BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        mask_r = r < tl.minimum(r_start + R_CHUNK, R)
        n = (r // (Ho * Wo)).to(tl.int64)
        oh = (r // Wo) % Ho
        ow = r % Wo
        pos_g = n * stride_gn + oh * stride_gh + ow * stride_gw
        pos_y = n * stride_yn + oh * stride_yh + ow * stride_yw
        ch = (g * CG_OUT + co)
        a_mask = mask_co[:, None] & mask_r[None, :]
        a = _load_grad_output(g_ptr + ch[:, None] * stride_gc + pos_g[None, :],
                              y_ptr + ch[:, None] * stride_yc + pos_y[None, :], a_mask, RELU)  # [M, R]
        ih = oh[:, None] * SH - PT + kh[None, :]
        iw = ow[:, None] * SW - PL + kw[None, :]
        b_mask = mask_r[:, None] & mask_k[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        b = tl.load(x_ptr + (n * stride_xn)[:, None] + ((g * CG_IN + ci) * stride_xc)[None, :] + ih * stride_xh
                    + iw * stride_xw, mask=b_mask, other=0.0)  # [R, K]
        acc = tl.dot(a.to(b.dtype), b, acc, input_precision=PRECISION)
        if BIAS:
            bias_acc += tl.sum(a.to(tl.float32), axis=1)
    row = (split * COUT + g * CG_OUT + co).to(tl.int64)
    tl.store(dw_ptr + row[:, None] * K + k[None, :], acc, mask=mask_co[:, None] & mask_k[None, :])
    if BIAS:
        tl.store(db_ptr + row, bias_acc, mask=mask_co & (pid_k == 0))


@dataclasses.dataclass(frozen=True)
class Config:
    """block_m x block_n output tile, block_k reduction step (block_r positions for grad_weight)."""

    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int = 2
    n_tiles: int = 1  # forward: block_n-wide column tiles per program (1..3)


# The first candidate of each list is what an untuned run (FASTALEX_TUNE=0, CUDA-graph capture) uses;
# each is the fastest (by the estimate) of those that spill no registers on sm_90 under Triton 3.6 and
# 3.8, at every AlexNet shape, in bf16, fp16 and fp32 (`python -m fastalex kernels`, benchmarks/KERNELS.md).
# NCHW gathers K one strided element at a time and holds the gathered tiles in registers: there only a
# 128 x 64 tile over 8 warps with 2 stages never spills.
NCHW_FIRST = Config(128, 64, 32, 8, 2)


def _first(first: Config, configs: list[Config]) -> list[Config]:
    return list(dict.fromkeys([first, *configs]))


def _candidates(n_cols: int) -> list[Config]:
    # n_cols: the GEMM's N (output channels per group, or input channels for grad_input).
    bn = max(16, min(128, triton.next_power_of_2(n_cols)))
    out = [Config(128, bn, 32, 4, 3), Config(64, bn, 32, 4, 3), Config(128, bn, 64, 8, 3), Config(256, bn, 32, 8, 3),
           Config(64, min(bn, 64), 64, 4, 4)]
    return list(dict.fromkeys(out))


def forward_candidates(cout_g: int, channels_last: bool = True) -> list[Config]:
    """Configs the tuner times for the forward; the first is the untimed default. Channel counts of 3
    tiles (96 = 3 x 32; 33..48, 65..96, 129..192 channels) get configs that cover them in one program."""
    out = []
    for bn in (16, 32, 64):
        if 2 * bn < cout_g <= 3 * bn:
            out += [Config(128, bn, 32, 8, 3, 3), Config(128, bn, 32, 4, 3, 3), Config(64, bn, 64, 4, 3, 3),
                    Config(128, bn, 64, 8, 3, 3), Config(256, bn, 32, 8, 3, 3)]
    plain = _candidates(cout_g)
    if plain[0].block_n < 128:  # torchvision's conv1 (64 channels): the 128-row tiles spill in fp32 under 3.6
        plain = _first(Config(64, plain[0].block_n, 32, 4, 3), plain)
    out = list(dict.fromkeys(out + plain))
    return out if channels_last else _first(NCHW_FIRST, out)


def grad_input_candidates(cin_g: int, channels_last: bool = True) -> list[Config]:
    out = _candidates(cin_g)
    if out[0].block_n == 128:  # fp32 spills the 128 x 128 x 32 tile over 4 warps
        out = _first(Config(128, 128, 64, 8, 3), out)
    return out if channels_last else _first(NCHW_FIRST, out)


def grad_weight_candidates(cout_g: int, channels_last: bool = True, fp32: bool = False) -> list[Config]:
    # fp32 tiles take twice the shared memory: there the 64-row tile first (the 128-row one runs one CTA
    # per SM, 6% occupancy).
    bm = max(16, min(128, triton.next_power_of_2(cout_g)))
    out = [Config(bm, 64, 64, 4, 3), Config(min(bm, 64), 64, 64, 4, 4), Config(bm, 128, 32, 4, 3),
           Config(bm, 64, 128, 8, 3)]
    out = list(dict.fromkeys(out))
    if fp32:
        out = _first(Config(min(bm, 64), 64, 64, 4, 4), out)
    return out if channels_last else _first(NCHW_FIRST, out)


def _check_positions(op: str, t: torch.Tensor) -> None:
    # The GEMMs index positions across the whole batch (m = n * H * W + h * W + w) in int32, and a block
    # of lanes reaches past the last one: the limit is check_sample_extent's.
    count = t.shape[0] * t.shape[2] * t.shape[3]
    if count > _common.MAX_SAMPLE_EXTENT:
        raise ValueError(f"{op}: the triton backend takes at most {_common.MAX_SAMPLE_EXTENT} positions (N x H x W) "
                         f"per call, got {count} for shape {tuple(t.shape)}; split the batch")


# Input channels per group below which a tap-by-tap loop would pad each tap's few channels (the image's
# 3) to a 16-wide K block. Below it, one group: the row layout (_RowLayout); several groups: the gather
# kernels, which decode K = (kh, kw, ci) element by element.
FEW_CHANNELS = 16


def _strategy(cg_in: int, groups: int) -> str:
    if cg_in >= FEW_CHANNELS:
        return "taps"
    return "rows" if groups == 1 else "gather"


@dataclasses.dataclass(frozen=True)
class _RowLayout:
    """Few input channels, one group (conv1): the image is written once, zero-padded by the convolution's
    padding and from C to C' channels (4, else a multiple of 8) in channels_last, (N, HP, WP, C'). A kernel
    row of a window is then one contiguous run of KW x C' elements (`valid`), starting ROW (a multiple of
    16) elements after the previous row, so the tap kernels run on a view of that image as a convolution
    with a (KH, 1) kernel whose "channels" are those runs; the weight is padded alike, with zeros. The
    forward's loads stop at `valid` (conv1: 44 = 11 x 4, so 8-byte vectors); grad_weight reads whole
    16-byte-aligned rows."""

    c_pad: int
    valid: int  # elements of a kernel row that the window covers: KW * c_pad
    row: int  # elements per kernel row as laid out: valid rounded up to 16
    kw_pad: int  # pixels the weight is padded to (row / c_pad rounded up)
    hp: int
    wp: int  # a multiple of 4, so rows start 16-element aligned
    geo: ConvGeometry  # the view's: (KH, 1) kernel, stride (SH, 1), no padding

    @staticmethod
    def of(x: torch.Tensor, ho: int, wo: int, geo: ConvGeometry) -> "_RowLayout":
        c = x.shape[1]
        c_pad = 4 if c <= 4 else -(-c // 8) * 8
        row = -(-geo.kw * c_pad // 16) * 16
        kw_pad = -(-row // c_pad)
        wp = -(-((wo - 1) * geo.sw + kw_pad) // 4) * 4
        return _RowLayout(c_pad, geo.kw * c_pad, row, kw_pad, (ho - 1) * geo.sh + geo.kh, wp,
                          ConvGeometry(geo.kh, 1, geo.sh, 1, 0, 0, 1))

    def image(self, x: torch.Tensor, geo: ConvGeometry, wo: int, channels: int) -> torch.Tensor:
        """The padded image as (N, channels, HP, Wo): element (n, j, h, ow) is channel j % C' of pixel
        ow * SW + j // C' in padded row h. channels: `valid` for the forward, whose loads must not reach
        the pixel past the window (0 x NaN there would be NaN, where torch's output is not); `row` for
        grad_weight, whose extra columns are dropped."""
        n, c, h, w = x.shape
        # One pass from channels_last (negative pads crop what no window reaches); pad keeps the input's
        # dimension order in memory, so any other layout takes a second pass to (N, HP, WP, C').
        xp = torch.nn.functional.pad(x.permute(0, 2, 3, 1),
                                     (0, self.c_pad - c, geo.pl, self.wp - geo.pl - w, geo.pt, self.hp - geo.pt - h))
        xp = xp.contiguous()
        return xp.as_strided((n, channels, self.hp, wo), (self.hp * self.wp * self.c_pad, 1, self.wp * self.c_pad,
                                                          geo.sw * self.c_pad))

    def weight(self, w: torch.Tensor) -> torch.Tensor:
        """The weight as (Cout, valid, KH, 1) over rows of ROW elements, zero past C channels."""
        cout, c, kh, kw = w.shape
        wp = torch.nn.functional.pad(w.permute(0, 2, 3, 1), (0, self.c_pad - c, 0, self.kw_pad - kw))
        wp = wp.reshape(cout, kh, self.kw_pad * self.c_pad)[:, :, :self.row].contiguous()
        return wp.as_strided((cout, self.valid, kh, 1), (kh * self.row, 1, self.row, 1))

    def weight_grad(self, dw: torch.Tensor, weight_shape: tuple) -> torch.Tensor:
        """(Cout, KH * ROW) in the view's K order (kh, run element) back to (Cout, C, KH, KW)."""
        cout, c, kh, kw = weight_shape
        dw = torch.nn.functional.pad(dw.view(cout, kh, self.row), (0, self.kw_pad * self.c_pad - self.row))
        return dw.view(cout, kh, self.kw_pad, self.c_pad)[:, :, :kw, :c].permute(0, 3, 1, 2)


def _row_layout(x: torch.Tensor, y: torch.Tensor, geo: ConvGeometry) -> _RowLayout | None:
    """The row layout where the strategy is "rows" and its padded image keeps to int32 offsets per sample
    (else the gather kernels serve it). x the input, y the output or its gradient."""
    if _strategy(x.shape[1] // geo.groups, geo.groups) != "rows":
        return None
    rows = _RowLayout.of(x, y.shape[2], y.shape[3], geo)
    return rows if rows.hp * rows.wp * rows.c_pad <= _common.MAX_SAMPLE_EXTENT else None


def _launch_forward(x, w, b, y, geo: ConvGeometry, precision: str, relu: bool, cfg: Config | TorchRoute):
    if isinstance(cfg, TorchRoute):
        return conv2d_torch.forward(x, w, b, y, geo, relu)
    strategy = _strategy(x.shape[1] // geo.groups, geo.groups)
    rows = _row_layout(x, y, geo)
    if rows:
        x, w, geo = rows.image(x, geo, y.shape[3], rows.valid), rows.weight(w), rows.geo
    elif strategy == "rows":
        strategy = "gather"
    N, _, H, W = x.shape
    _, _, Ho, Wo = y.shape
    cg_in, cg_out = x.shape[1] // geo.groups, w.shape[0] // geo.groups
    M = N * Ho * Wo
    grid = (triton.cdiv(M, cfg.block_m), triton.cdiv(cg_out, cfg.block_n * cfg.n_tiles), geo.groups)
    bias_arg = b.contiguous() if b is not None else w  # the epilogue reads the bias with stride 1
    gather = strategy == "gather"
    kernel = _conv2d_forward_gather_kernel if gather else _conv2d_forward_kernel
    steps = {} if gather else dict(C_STEPS=triton.cdiv(cg_in, cfg.block_k), EVEN_C=cg_in % cfg.block_k == 0,
                                   EVEN_N=cg_out % (cfg.block_n * cfg.n_tiles) == 0)
    kernel[grid](
        x, w, bias_arg, y, H, W, Ho, Wo, M, cg_in, cg_out, *x.stride(), *w.stride(), *y.stride(),
        **geo.constexprs(), HAS_BIAS=b is not None, RELU=relu, PRECISION=precision,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, N_TILES=cfg.n_tiles, **steps,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return y


def conv2d_forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, y: torch.Tensor, geo: ConvGeometry,
                   precision: str, relu: bool, config: Config | TorchRoute | None = None) -> torch.Tensor:
    """act(conv(x, w) + b), shaped and laid out as y: y itself written by a Triton kernel, or the output of
    torch's convolution where the tuner chose that route (TORCH). x (N, Cin, H, W), w (Cout, Cin/groups,
    KH, KW), y (N, Cout, Ho, Wo)."""
    if y.numel() == 0:
        return y
    _common.check_sample_extent("conv2d", x, y, samples_on_grid=False)
    _check_positions("conv2d", y)
    if config is None:
        key = ("conv2d_fwd", x.device, x.dtype, tuple(x.shape[1:]), tuple(w.shape), geo, precision, relu,
               b is not None, x.stride(1) == 1, x.shape[0])
        config = _common.tuned_config(key, forward_candidates(w.shape[0] // geo.groups, x.stride(1) == 1) + [TORCH],
                                      lambda cfg: _launch_forward(x, w, b, y, geo, precision, relu, cfg))
    return _launch_forward(x, w, b, y, geo, precision, relu, config)


def _launch_grad_input(grad_y, y, w, dx, geo: ConvGeometry, precision: str, relu: bool, cfg: Config | TorchRoute):
    if isinstance(cfg, TorchRoute):
        return conv2d_torch.grad_input(grad_y, y, w, dx, geo)
    N, cin, H, W = dx.shape
    _, _, Ho, Wo = grad_y.shape
    cg_in, cg_out = cin // geo.groups, w.shape[0] // geo.groups
    M = N * H * W
    grid = (triton.cdiv(M, cfg.block_m), triton.cdiv(cg_in, cfg.block_n), geo.groups)
    y = y if y is not None else grad_y
    _conv2d_grad_input_kernel[grid](
        grad_y, y, w, dx, H, W, Ho, Wo, M, cg_in, cg_out, *grad_y.stride(), *y.stride(), *w.stride(), *dx.stride(),
        **geo.constexprs(), RELU=relu, PRECISION=precision, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k, C_STEPS=triton.cdiv(cg_out, cfg.block_k), EVEN_C=cg_out % cfg.block_k == 0,
        EVEN_N=cg_in % cfg.block_n == 0, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return dx


def conv2d_grad_input(grad_y: torch.Tensor, y: torch.Tensor | None, w: torch.Tensor, dx: torch.Tensor,
                      geo: ConvGeometry, precision: str, config: Config | TorchRoute | None = None) -> torch.Tensor:
    """The input gradient, shaped and laid out as dx (N, Cin, H, W): dx written by a Triton kernel, or
    torch's (TORCH). grad_y (N, Cout, Ho, Wo); y, the forward output, is the ReLU mask (None: no ReLU)."""
    if dx.numel() == 0:
        return dx
    _common.check_sample_extent("conv2d", grad_y, dx, samples_on_grid=False)
    _check_positions("conv2d", dx)
    relu = y is not None
    if config is None:
        key = ("conv2d_dgrad", dx.device, dx.dtype, tuple(dx.shape[1:]), tuple(w.shape), geo, precision, relu,
               dx.stride(1) == 1, dx.shape[0])
        config = _common.tuned_config(key, grad_input_candidates(dx.shape[1] // geo.groups, dx.stride(1) == 1)
                                      + [TORCH],
                                      lambda cfg: _launch_grad_input(grad_y, y, w, dx, geo, precision, relu, cfg))
    return _launch_grad_input(grad_y, y, w, dx, geo, precision, relu, config)


# Output positions per grad_weight chunk: enough chunks to fill the GPU when Cout x K is small (conv1).
R_CHUNK = 4096


def _positions_dense(t: torch.Tensor) -> bool:
    """Whether the positions (n, h, w) of t sit one stride apart in order (channels_last): offset r * stride(3)."""
    _, _, h, w = t.shape
    return t.stride(2) == w * t.stride(3) and (t.shape[0] == 1 or t.stride(0) == h * t.stride(2))


def _grad_weight_tiles(gather: bool, cg_in: int, geo: ConvGeometry, block_n: int, bias: bool) -> int:
    """Programs per reduction chunk along grid axis 1: the K tiles (plus the bias program of the tap
    kernel). cg_in and geo as the kernel sees them (the row layout's view for "rows")."""
    if gather:
        return triton.cdiv(cg_in * geo.kh * geo.kw, block_n)
    return geo.kh * geo.kw * triton.cdiv(cg_in, block_n) + bias


def _launch_grad_weight(grad_y, y, x, dw_parts, db_parts, geo: ConvGeometry, precision: str, relu: bool,
                        r_chunk: int, cfg: Config, gather: bool):
    # x and geo as the kernel sees them: the row layout's view of the image for "rows".
    N, cin, H, W = x.shape
    _, cout, Ho, Wo = grad_y.shape
    cg_in, cg_out = cin // geo.groups, cout // geo.groups
    R = N * Ho * Wo
    split = dw_parts.shape[0]
    bias = db_parts is not None
    grid = (triton.cdiv(cg_out, cfg.block_m), split * _grad_weight_tiles(gather, cg_in, geo, cfg.block_n, bias),
            geo.groups)
    y = y if y is not None else grad_y
    db = db_parts if bias else dw_parts
    common = dict(**geo.constexprs(), RELU=relu, BIAS=bias, PRECISION=precision, BLOCK_M=cfg.block_m,
                  BLOCK_N=cfg.block_n, BLOCK_R=cfg.block_k, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    if gather:
        _conv2d_grad_weight_gather_kernel[grid](
            grad_y, y, x, dw_parts, db, H, W, Ho, Wo, R, cg_in, cg_out, cout, r_chunk, *grad_y.stride(), *y.stride(),
            *x.stride(), **common)
    else:
        _conv2d_grad_weight_kernel[grid](
            grad_y, y, x, dw_parts, db, H, W, R, cg_in, cg_out, cout, r_chunk, *grad_y.stride(), *y.stride(),
            *x.stride(), HO=Ho, WO=Wo, C_STEPS=triton.cdiv(cg_in, cfg.block_n),
            DENSE=_positions_dense(grad_y) and _positions_dense(y), **common)


def conv2d_grad_weight(grad_y: torch.Tensor, y: torch.Tensor | None, x: torch.Tensor, weight_shape: tuple,
                       geo: ConvGeometry, precision: str, bias: bool,
                       config: Config | TorchRoute | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(grad_weight shaped like the weight, grad_bias or None): in fp32 from the Triton kernel, in x's
    dtype from torch's route (TORCH). grad_y (N, Cout, Ho, Wo), y the forward output as the ReLU mask
    (None: no ReLU), x (N, Cin, H, W)."""
    cout, cg_in, kh, kw = weight_shape
    K = cg_in * kh * kw
    R = grad_y.shape[0] * grad_y.shape[2] * grad_y.shape[3]
    if not R:
        zeros = torch.zeros((cout, cg_in, kh, kw), dtype=torch.float32, device=x.device)
        return zeros, (zeros.new_zeros(cout) if bias else None)
    _common.check_sample_extent("conv2d", grad_y, x, samples_on_grid=False)
    _check_positions("conv2d", grad_y)
    relu = y is not None
    rows, geo_k = _row_layout(x, grad_y, geo), geo  # geo_k: as the kernel sees it
    if rows:
        geo_k = rows.geo
        K = kh * rows.row
    gather = not rows and _strategy(cg_in, geo.groups) != "taps"
    # Chunks x K tiles share grid axis 1 (at most 65535; K tiles are at least 16 wide).
    tiles = _grad_weight_tiles(gather, K // (geo_k.kh * geo_k.kw), geo_k, 16, bias)
    r_chunk = max(R_CHUNK, triton.cdiv(R, max(1, 65535 // tiles)))
    split = triton.cdiv(R, r_chunk)

    def run(cfg):  # the whole direction, so that the tuner times each route's full cost
        if isinstance(cfg, TorchRoute):
            return conv2d_torch.grad_weight(grad_y, y, x, weight_shape, geo, bias)
        x_k = rows.image(x, geo, grad_y.shape[3], rows.row) if rows else x
        dw_parts = torch.zeros((split, cout, K), dtype=torch.float32, device=x.device)
        db_parts = torch.zeros((split, cout), dtype=torch.float32, device=x.device) if bias else None
        _launch_grad_weight(grad_y, y, x_k, dw_parts, db_parts, geo_k, precision, relu, r_chunk, cfg, gather)
        # Fixed-order sums of the chunks; K is (kh, kw, ci): back to the weight's (ci, kh, kw).
        if rows:
            grad_w = rows.weight_grad(dw_parts.sum(0), weight_shape)
        else:
            grad_w = dw_parts.sum(0).view(cout, kh, kw, cg_in).permute(0, 3, 1, 2)
        return grad_w, (db_parts.sum(0) if bias else None)

    if config is None:
        key = ("conv2d_wgrad", x.device, x.dtype, tuple(x.shape[1:]), tuple(weight_shape), geo, precision, relu,
               bias, x.stride(1) == 1, x.shape[0])
        candidates = grad_weight_candidates(cout // geo.groups, x.stride(1) == 1, x.dtype == torch.float32)
        config = _common.tuned_config(key, candidates + [TORCH], run)
    return run(config)
