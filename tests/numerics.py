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


# A pooling window whose two largest values differ by a few ulp can choose another winner than torch
# when the values come from a recomputed LRN (a different, equally accurate rounding); that window's
# gradient then lands on the neighbour. Gradients through the fused ReLU/LRN/max-pool may differ from
# torch's in that many elements (at least 2), and must match everywhere else.
POOL_FLIP_FRACTION = 1e-4


def assert_close_but_flips(out: torch.Tensor, expected: torch.Tensor, what: str = "",
                           fraction: float = POOL_FLIP_FRACTION) -> None:
    assert out.shape == expected.shape and out.dtype == expected.dtype, what
    tol = TOL[out.dtype]
    bad = ~torch.isclose(out, expected, rtol=tol["rtol"], atol=tol["atol"], equal_nan=True)
    allowed = max(2, int(fraction * out.numel()))
    assert int(bad.sum()) <= allowed, f"{what}: {int(bad.sum())} elements differ (at most {allowed} may)"
