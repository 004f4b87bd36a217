"""The one place for tolerances (the team's DESIGN.md, "Numerics": fp32 1e-5 relative of torch;
fp16/bf16 at most twice torch's own error against a float64 reference)."""
from __future__ import annotations

import torch

# Direct comparison against torch in the same dtype.
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
}

# Low precision is judged against a float64 reference: fastalex's error may be at most
# LOW_PRECISION_FACTOR times torch's own error in that dtype, plus a tiny absolute floor.
LOW_PRECISION = (torch.float16, torch.bfloat16)
LOW_PRECISION_FACTOR = 2.0
LOW_PRECISION_FLOOR = {torch.float16: 1e-4, torch.bfloat16: 5e-4}


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Frobenius relative error ||out - ref|| / ||ref|| in float64."""
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def assert_close(out: torch.Tensor, expected: torch.Tensor, ref64: torch.Tensor | None = None,
                 torch_out: torch.Tensor | None = None, what: str = "") -> None:
    """fp32/fp64: out ~ expected elementwise. fp16/bf16: error vs ref64 <= 2x torch_out's error."""
    assert out.shape == expected.shape, f"{what}: shape {tuple(out.shape)} != {tuple(expected.shape)}"
    assert out.dtype == expected.dtype, f"{what}: dtype {out.dtype} != {expected.dtype}"
    if out.dtype in LOW_PRECISION:
        assert ref64 is not None and torch_out is not None
        ours, theirs = rel_error(out, ref64), rel_error(torch_out, ref64)
        bound = LOW_PRECISION_FACTOR * theirs + LOW_PRECISION_FLOOR[out.dtype]
        assert ours <= bound, f"{what}: error {ours:.3e} vs float64 exceeds {bound:.3e} (torch's own: {theirs:.3e})"
    else:
        torch.testing.assert_close(out, expected, **TOL[out.dtype], equal_nan=True, msg=lambda m: f"{what}: {m}")


def twice_rounded(ref64: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A stand-in for torch's output in `dtype` where torch has no kernel for it (fp16/bf16 LRN on the
    CPU): the exact result off by two roundings, the least any chain of ops in that dtype makes."""
    one_ulp = (ref64.to(dtype).double() - ref64).abs().max()
    return (ref64 + torch.sign(ref64) * one_ulp).to(dtype)


# Convolutions sum hundreds of products per output: fp32 (IEEE) is judged as a whole tensor, the
# Frobenius relative error against torch's (DESIGN.md, "Numerics").
CONV_FP32_REL = 1e-5


def assert_rel_close(out: torch.Tensor, expected: torch.Tensor, rel: float = CONV_FP32_REL, what: str = "") -> None:
    assert out.shape == expected.shape, f"{what}: shape {tuple(out.shape)} != {tuple(expected.shape)}"
    assert out.dtype == expected.dtype, f"{what}: dtype {out.dtype} != {expected.dtype}"
    err = rel_error(out, expected)
    assert err <= rel, f"{what}: relative error {err:.3e} exceeds {rel:.1e}"


# --- The tolerances of particular checks (once inline in the tests; each says what it bounds) -------

EXACT = dict(rtol=0, atol=0)  # bit-equal: max-pool values and gradients on the CPU (the same comparisons as torch)
# Statistics of initialisations (tests/test_alexnet.py): a sample std of >= 35k N(0, 0.01) weights is
# within 1e-3 of 0.01 (0.4% standard error, so ~25 sigma: only a wrong distribution fails); He et al.'s
# std within 5% of sqrt(2 / fan_in) (the smallest layer, conv1 of two towers, has 35k weights).
INIT_STD_ABS = 1e-3
KAIMING_STD_REL = 0.05
# fastalex.AlexNet against reference_alexnet with the same weights (fp32): one step's loss within TOL's
# rtol; a few SGD steps on the CPU, and 200 on a GPU, within 1e-3 relative (summation orders differ
# and the differences grow with every step).
ONE_STEP_LOSS_REL = TOL[torch.float32]["rtol"]
TRACKED_LOSS_REL = 1e-3
# grad_weight reduced in other chunk sizes: only the summation order differs (fp32, a few hundred terms).
CHUNKED_SUM_REL = 1e-6
# fp16 autocast convolution against torch's in fp32: fp16 operands and output (11 bits), as a whole tensor.
AUTOCAST_FP16_REL = 2e-3
# conv2d_relu with a NaN input, elementwise against torch away from the NaNs (fp32 sums of ~50 products).
CONV_NAN_ELEMENTWISE = dict(rtol=1e-5, atol=1e-5)
# Two DDP ranks at batch B against one process at 2B after a step (tests/test_train.py): the weights
# within TOL (fp32), the summed loss of the step within 1e-5 absolute too (a sum of 8 losses ~2.5).
DDP_WEIGHTS = TOL[torch.float32]
DDP_LOSS_SUMS = dict(rtol=1e-5, atol=1e-5)
# tests/test_transforms.py:
TEN_CROP_FP16_IN_FP32 = dict(rtol=1e-6, atol=1e-7)  # softmax of fp16 logits averaged in fp32, vs float64
PIXEL_OFFSET_ABS = 1e-6       # a PCA lighting offset read back from fp32 pixels (x + offset - x): a few ulp of 1
ALPHA_ROUNDTRIP = TOL[torch.float32]  # alpha recovered from the rgb offset by a float64 solve of fp32 values
PCA_EIGVAL_SIGMAS = 6         # sample eigenvalues within 6 standard errors (sqrt(2 / n) relative) of the truth
UNIFORM_EIGVAL_REL = 0.3      # eigenvalues of 4 tiny uniform images near 1/12 (a loose sanity check)
IMAGENET_EIGVEC_ORTHO_ABS = 2e-3  # the published 4-digit eigenvectors are orthonormal to about 1e-3
RESIZE_CONSTANT_ABS = {torch.float32: 1e-6, torch.float16: 0.0, torch.uint8: 0.0}  # a constant image stays constant


# A pooling window whose two largest values differ by a few ulp can choose another winner than torch
# when the values come from a recomputed LRN (a different, equally accurate rounding); that window's
# gradient then lands on the rival (and, through the LRN, on its channel neighbours at the rival's and
# the winner's pixels). assert_close_but_flips allows a mismatch exactly there and nowhere else: at an
# element of a window whose maximum is non-zero and has a rival within NEAR_TIE (relative) of it, or
# within lrn_size // 2 channels of one. Windows of exact zeros (ReLU'd negatives) cannot flip: both
# sides compute 0 and keep the first; there, and in every other window, the gradients must match.


def pool_near_ties(pooled64: torch.Tensor, kernel_size, stride, padding=0, ceil_mode: bool = False,
                   rel: float | None = None) -> torch.Tensor:
    """Bool mask shaped like pooled64 (N, C, H, W: the float64 tensor the max-pool reads): the elements
    within `rel` (relative; default NEAR_TIE[float32]) of their window's maximum, in windows whose
    maximum is non-zero and has such a rival. Where rounding alone may pick another winner."""
    import torch.nn.functional as F

    rel = NEAR_TIE[torch.float32] if rel is None else rel
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size), pair(stride), pair(padding)
    z = pooled64.double()
    n, c, h, w = z.shape
    oh, ow = F.max_pool2d(z, (kh, kw), (sh, sw), (ph, pw), ceil_mode=ceil_mode).shape[-2:]
    # -inf padding on every side, and more on the far sides for ceil_mode's last windows
    extra_h, extra_w = max(0, (oh - 1) * sh + kh - h - 2 * ph), max(0, (ow - 1) * sw + kw - w - 2 * pw)
    padded = F.pad(z, (pw, pw + extra_w, ph, ph + extra_h), value=float("-inf"))
    windows = F.unfold(padded.reshape(n * c, 1, *padded.shape[-2:]), (kh, kw), stride=(sh, sw))  # (NC, kh*kw, L)
    assert windows.shape[-1] == oh * ow, (windows.shape, oh, ow)
    top = windows.max(1, keepdim=True).values
    close = windows >= top - rel * top.abs()
    ambiguous = (close.sum(1, keepdim=True) >= 2) & (top != 0) & torch.isfinite(top)
    marked = (close & ambiguous).double()
    folded = F.fold(marked, padded.shape[-2:], (kh, kw), stride=(sh, sw)) > 0
    return folded.reshape(n, c, *padded.shape[-2:])[..., ph:ph + h, pw:pw + w]


def assert_close_but_flips(out: torch.Tensor, expected: torch.Tensor, pooled64: torch.Tensor, kernel_size, stride,
                           padding=0, ceil_mode: bool = False, lrn_size: int = 1, what: str = "") -> None:
    """A gradient through a max-pool (fp32/fp64, against torch's): equal within TOL except where a
    near-tie window flipped its winner (pool_near_ties of pooled64, the float64 input of the pool; with an
    LRN before the pool, lrn_size widens that to the channels the LRN's backward mixes)."""
    assert out.shape == expected.shape and out.dtype == expected.dtype, what
    assert pooled64.shape == out.shape, f"{what}: pooled64 {tuple(pooled64.shape)} vs {tuple(out.shape)}"
    tol = TOL[out.dtype]
    bad = ~torch.isclose(out, expected, rtol=tol["rtol"], atol=tol["atol"], equal_nan=True)
    if not bad.any():
        return
    allowed = pool_near_ties(pooled64, kernel_size, stride, padding, ceil_mode, NEAR_TIE[out.dtype]).to(out.device)
    reach = lrn_size // 2
    if reach:  # the LRN's backward spreads a moved gradient over neighbouring channels
        allowed = torch.nn.functional.max_pool3d(allowed[:, None].double(), (2 * reach + 1, 1, 1), 1,
                                                 (reach, 0, 0))[:, 0] > 0
    unexplained = bad & ~allowed
    if unexplained.any():
        first = unexplained.nonzero()[0].tolist()
        raise AssertionError(
            f"{what}: {int(unexplained.sum())} of {int(bad.sum())} differing elements are not in a near-tie "
            f"pooling window; first at {first}: {out[tuple(first)].item()!r} vs torch {expected[tuple(first)].item()!r}")


# --- Fuzzing (tests/test_fuzz.py): any shape, parameters and data, NaN and infinities included -----

# How close (relative) two values of a pooling window, or a pre-activation and 0, may be before rounding
# alone can decide which wins: a few ulps of the dtype (fp32: the LRN's pow through exp2/log2 included).
NEAR_TIE = {torch.float64: 1e-12, torch.float32: 3e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}

# fp32/fp64 elementwise: within TOL of the float64 reference, or no further from it than this many times
# torch's own error at that element (where torch's result has a rounding error of its own, cancellation
# in a gradient say, fastalex may have a comparable one).
FUZZ_TORCH_FACTOR = 2.0


# A low-precision result is at least a rounding away from the exact one, and on a tensor of a few
# elements torch's own error can be far below that by luck: the fuzz bound on fp16/bf16 takes torch's
# error as at least one ulp (relative) of the dtype.
FUZZ_ULP = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


def _fuzz_low_precision(out: torch.Tensor, torch_out: torch.Tensor, ref64: torch.Tensor, what: str,
                        scale: torch.Tensor | None = None) -> None:
    """assert_close's rule with torch's error taken as at least FUZZ_ULP; with `scale` (the magnitude of
    terms that cancel, see assert_fuzz_close), plus fp32's TOL on them (fastalex computes in fp32)."""
    ours, theirs = rel_error(out, ref64), max(rel_error(torch_out, ref64), FUZZ_ULP[out.dtype])
    bound = LOW_PRECISION_FACTOR * theirs + LOW_PRECISION_FLOOR[out.dtype]
    if scale is not None:
        norm = ref64.double().norm().clamp_min(1e-30)
        bound += TOL[torch.float32]["rtol"] * (torch.nan_to_num(scale.double(), nan=0.0, posinf=0.0).norm() / norm).item()
    assert ours <= bound, f"{what}: error {ours:.3e} vs float64 exceeds {bound:.3e} (torch's own, at least a ulp: {theirs:.3e})"


def fuzz_fallback(ref64: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """twice_rounded for any data (torch has no fp16/bf16 LRN on the CPU): what dtype can hold is twice
    rounded; NaN, infinities and what overflows dtype stay as ref64.to(dtype) has them."""
    cast = ref64.to(dtype)
    finite = torch.isfinite(cast)
    if not finite.any():
        return cast
    return torch.where(finite, twice_rounded(torch.where(finite, ref64, 0.0), dtype), cast)


def _kind(t: torch.Tensor) -> torch.Tensor:
    """0 finite, 1 NaN, 2 +inf, 3 -inf."""
    k = torch.zeros(t.shape, dtype=torch.uint8)
    k[torch.isnan(t)] = 1
    k[t == float("inf")] = 2
    k[t == float("-inf")] = 3
    return k


def _fuzz_split(out: torch.Tensor, torch_out: torch.Tensor, ref64: torch.Tensor, what: str):
    """Asserts every element of out is finite, NaN, +inf or -inf as torch's result is, or as the float64
    reference is in out's dtype (fastalex computes low precision in fp32: where torch's own fp16 chain
    overflows, it may not; and torch's bf16 convolution on the CPU has NaN the float64 one has not).
    Returns the masks of the finite elements to compare against torch_out, and against ref64 alone
    (where torch's result is not finite but fastalex's and the reference are)."""
    assert out.shape == torch_out.shape == ref64.shape, f"{what}: shapes {out.shape}, {torch_out.shape}, {ref64.shape}"
    assert out.dtype == torch_out.dtype, f"{what}: dtype {out.dtype} != {torch_out.dtype}"
    ko, kt, kr = _kind(out), _kind(torch_out), _kind(ref64.to(out.dtype))
    bad = (ko != kt) & (ko != kr)
    if bad.any():
        names = ("finite", "NaN", "+inf", "-inf")
        first = tuple(bad.nonzero()[0].tolist())
        raise AssertionError(f"{what}: {int(bad.sum())} elements differ in kind from torch's and the float64 "
                             f"reference's; first at {list(first)}: {out[first].item()} vs torch "
                             f"{torch_out[first].item()} ({names[kt[first]]}), float64 {ref64[first].item()}")
    finite64 = torch.isfinite(ref64)
    return (ko == 0) & (kt == 0) & finite64, (ko == 0) & (kt != 0) & finite64


def assert_fuzz_close(out: torch.Tensor, torch_out: torch.Tensor, ref64: torch.Tensor, what: str = "",
                      exact: bool = False, scale: torch.Tensor | None = None) -> None:
    """out (fastalex) against torch_out (torch in the same dtype) and ref64 (torch in float64 on the same
    values): NaN and infinities where torch has them (or the float64 reference, see _fuzz_split); finite
    elements equal (exact), else for fp32/fp64 elementwise within TOL of ref64 or FUZZ_TORCH_FACTOR x
    torch's own error, for fp16/bf16 assert_close's rule (2x torch's error against float64, torch's
    error taken as at least FUZZ_ULP).

    scale (float64, like ref64): where the result is a difference of larger terms (the LRN gradient),
    their magnitude; rtol then applies to |ref64| + scale, the error an exactly rounded computation of
    the terms could make (TOL's 1e-5 is about 170 fp32 ulps of them)."""
    with_torch, alone = _fuzz_split(out, torch_out, ref64, what)
    for mask, expected in ((with_torch, torch_out), (alone, fuzz_fallback(ref64, out.dtype))):
        if not mask.any():
            continue
        o, t, r = out[mask], expected[mask], ref64[mask]
        if exact and expected is torch_out:
            torch.testing.assert_close(o, t, rtol=0, atol=0, msg=lambda m: f"{what}: {m}")
        elif out.dtype in LOW_PRECISION:
            _fuzz_low_precision(o, t, r, what, None if scale is None else scale[mask])
        else:
            o, t = o.double(), t.double()
            tol = TOL[out.dtype]
            mag = r.abs()
            if scale is not None:
                mag = mag + torch.nan_to_num(scale[mask].double(), nan=0.0, posinf=0.0)
            bound = tol["rtol"] * mag + tol["atol"] + FUZZ_TORCH_FACTOR * (t - r).abs()
            err = (o - r).abs()
            if (err > bound).any():
                i = int((err - bound).argmax())
                raise AssertionError(f"{what}: {int((err > bound).sum())} of {o.numel()} elements off; worst: "
                                     f"{o[i].item()!r} vs exact {r[i].item()!r} (torch {t[i].item()!r}, "
                                     f"bound {bound[i].item():.3e})")


def assert_fuzz_rel_close(out: torch.Tensor, torch_out: torch.Tensor, ref64: torch.Tensor, what: str = "") -> None:
    """Convolutions (sums of many products) as a whole tensor: NaN and infinities as in assert_fuzz_close;
    the finite part's Frobenius relative error within CONV_FP32_REL of torch's (fp32), within TOL's rtol
    for float64, and by assert_fuzz_close's rule for fp16/bf16."""
    with_torch, alone = _fuzz_split(out, torch_out, ref64, what)
    for mask, expected in ((with_torch, torch_out), (alone, fuzz_fallback(ref64, out.dtype))):
        if not mask.any():
            continue
        o, t, r = out[mask], expected[mask], ref64[mask]
        if out.dtype in LOW_PRECISION:
            _fuzz_low_precision(o, t, r, what)
        elif out.dtype == torch.float64:
            assert_rel_close(o, t, rel=TOL[torch.float64]["rtol"], what=what)
        else:
            assert_rel_close(o, t, what=what)
