"""Every op fuzzed against torch: property-based tests (hypothesis) of local_response_norm, max_pool2d
(with return_indices), relu_lrn_max_pool2d and conv2d / conv2d_relu on every kernel backend here (the
C++ cpu kernels, the Triton kernels through the interpreter), forward and every gradient.

One strategy per op draws a case: shapes (1-sized and odd dimensions, C below and above the LRN
window, an empty batch now and then), a layout (any order of the dimensions in memory, a dimension
read with step 2, a dimension broadcast with stride 0), a dtype, the op's parameters, the data (plain,
coarse values full of ties, ReLU'd zeros, NaN and infinities) and the output gradient (dense, in
another layout, or the stride-0 ones of `y.sum()`). On triton the case also picks which of the
tuner's candidate configs runs, so every kernel strategy gets fuzzed, not just the default one.

Tolerances come from tests/numerics.py (assert_fuzz_close, assert_fuzz_rel_close, NEAR_TIE). Where a
gradient is not well defined by the data (a pooling window whose two largest values differ by a
rounding, a ReLU whose pre-activation is a rounding away from 0), the output gradient of that element
is set to zero, so only the well-defined gradient is compared; exact ties stay in and must follow
torch (the first maximum in row-major order).

Profiles: by default (CI) a few derandomized examples per test (reproducible, without shrinking:
under 2 minutes of CPU for the whole file); the `slow`-marked tests draw 25 times as many random
examples (FASTALEX_FUZZ_FACTOR=n for n times), as does HYPOTHESIS_PROFILE=slow for every test; they
run only when asked for: `FASTALEX_FUZZ=long pytest tests/test_fuzz.py -m slow` (about 7 minutes on
the cpu backend on 2 cores, hours through the Triton interpreter: `-k cpu`, or a smaller factor;
FASTALEX_FUZZ_FACTOR=3 took 281 s for triton).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import struct
from typing import Callable
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fastalex
from fastalex import functional as fa
from fastalex.kernels import _common
from backends_here import KERNEL_BACKENDS
from numerics import NEAR_TIE, assert_fuzz_close, assert_fuzz_rel_close, fuzz_fallback

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
# Examples per (op, backend) in CI, sized to each one's cost through the interpreter; the slow profile
# multiplies them.
CI_EXAMPLES = {
    ("lrn", "cpu"): 100, ("lrn", "triton"): 30,
    ("pool", "cpu"): 100, ("pool", "triton"): 30,
    ("fused", "cpu"): 80, ("fused", "triton"): 25,
    ("conv", "cpu"): 60, ("conv", "triton"): 40,
}
SLOW_FACTOR = int(os.environ.get("FASTALEX_FUZZ_FACTOR", "25"))
# The long profile runs only when asked for (FASTALEX_FUZZ=long): `pytest -q`, CI's command, runs the
# slow-marked tests, and the long profile takes hours through the interpreter.
_LONG = os.environ.get("FASTALEX_FUZZ") == "long"


def _long_profile(fn):
    skip = pytest.mark.skipif(not _LONG, reason="the long fuzz profile: FASTALEX_FUZZ=long pytest tests/test_fuzz.py -m slow")
    return pytest.mark.slow(skip(fn))
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")


def _settings(op: str, backend: str, slow: bool) -> settings:
    n = CI_EXAMPLES[(op, backend)]
    if slow or PROFILE == "slow":
        return settings(max_examples=n * SLOW_FACTOR, **_COMMON)
    # No shrinking in CI: through the interpreter it can take minutes; the failing case is printed as drawn.
    return settings(max_examples=n, derandomize=True, phases=(Phase.explicit, Phase.generate), **_COMMON)


def _fuzz(op: str, backend: str, strategy, check: Callable, slow: bool = False) -> None:
    @_settings(op, backend, slow)
    @given(case=strategy(backend))
    def run(case):
        check(backend, case)

    run()


# --- cases: layouts, data, gradients -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a logical tensor sits in memory: `perm` is the order of its dimensions in storage (outermost
    first; (0, 2, 3, 1) is channels_last), `sliced` a dimension read with step 2 from one twice as
    long, `expanded` a dimension broadcast from size 1 (stride 0)."""

    perm: tuple[int, ...]
    sliced: int | None = None
    expanded: int | None = None


@dataclasses.dataclass(frozen=True)
class Data:
    """kind: "normal" (randn), "coarse" (a few integers: ties everywhere), "relu" (half zeros),
    "negative" (mostly below zero), "special" (NaN, +inf and -inf sprinkled), "ninf" (special, and a
    block of -inf: windows of -inf alone)."""

    kind: str
    scale: float
    seed: int


def _leaf_shape(shape, layout: Layout) -> list[int]:
    s = list(shape)
    if layout.expanded is not None:
        s[layout.expanded] = 1
    if layout.sliced is not None:
        s[layout.sliced] = 2 * s[layout.sliced] + 1
    return s


def _values(shape, data: Data) -> torch.Tensor:
    g = torch.Generator().manual_seed(data.seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if data.kind == "coarse":
        x = (x * 1.5).round()
    elif data.kind == "relu":
        x = x.relu()
    elif data.kind == "negative":
        x = x - 2.5
    x = x * data.scale
    if data.kind in ("special", "ninf") and x.numel():
        flat = x.view(-1)
        idx = torch.randperm(flat.numel(), generator=g)
        m = max(1, flat.numel() // 24)
        flat[idx[:m]] = float("nan")
        flat[idx[m:2 * m]] = float("inf")
        flat[idx[2 * m:3 * m]] = float("-inf")
        if data.kind == "ninf" and x.dim() >= 3:
            x[..., :3, :3] = float("-inf")
    return x


def _storage(shape, layout: Layout, data: Data, dtype: torch.dtype) -> torch.Tensor:
    """The leaf tensor's values, rounded to dtype, as float64 in storage order (contiguous)."""
    vals = _values(_leaf_shape(shape, layout), data)
    return vals.permute(layout.perm).contiguous().to(dtype).double()


def _view(leaf: torch.Tensor, shape, layout: Layout) -> torch.Tensor:
    inverse = [layout.perm.index(d) for d in range(len(layout.perm))]
    x = leaf.permute(inverse)
    if layout.sliced is not None:
        idx = [slice(None)] * x.dim()
        idx[layout.sliced] = slice(1, None, 2)
        x = x[tuple(idx)]
    if layout.expanded is not None:
        x = x.expand(tuple(shape))
    assert tuple(x.shape) == tuple(shape), (x.shape, shape)
    return x


def _grad(shape, kind: str, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """The output gradient in dtype: "randn" (contiguous), "permuted" (dimensions reversed in memory) or
    "ones" (stride 0 everywhere, as y.sum().backward() hands it over)."""
    if kind == "ones":
        return torch.ones((), dtype=dtype).expand(tuple(shape))
    g = torch.Generator().manual_seed(seed)
    if kind == "permuted":
        return torch.randn(tuple(shape)[::-1], generator=g, dtype=torch.float64).to(dtype).permute(
            *reversed(range(len(shape))))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float64).to(dtype)


@contextlib.contextmanager
def _pinned(pick: int | None):
    """Every Triton launch in the block runs candidate `pick` (modulo their number) of the tuner's list."""
    if pick is None:
        yield
        return
    with mock.patch.object(_common, "tuned_config", lambda key, candidates, launch: candidates[pick % len(candidates)]):
        yield


def _run(op, views, storages, dtype, grad, needs=None):
    """op(*views(*leaves)), the leaves made from `storages` (float64, None for absent) in dtype, then
    backward with grad. Returns (output, second output or None, [gradients of the op's inputs]): the
    op's own input gradients, before autograd folds them into the leaves (summing over an expanded
    dimension, in the dtype)."""
    needs = needs or [True] * len(storages)
    leaves = [None if s is None else s.to(dtype).clone().requires_grad_(n) for s, n in zip(storages, needs)]
    inputs = views(*leaves)
    for t in inputs:
        if t is not None and t.requires_grad and not t.is_leaf:
            t.retain_grad()
    out = op(*inputs)
    extra = None
    if isinstance(out, tuple):
        out, extra = out
    if any(leaf is not None and leaf.requires_grad for leaf in leaves):
        out.backward(grad.to(dtype))
    grads = [None if t is None else t.grad for t in inputs]
    return out.detach(), extra, grads


def _reference(op, views, storages, dtype, grad, needs=None):
    """torch's result in dtype, or None where torch has no kernel for it (fp16/bf16 LRN on the CPU)."""
    try:
        return _run(op, views, storages, dtype, grad, needs)
    except (RuntimeError, NotImplementedError) as e:
        if "not implemented for" not in str(e):
            raise
        return None


def _compare(ours, theirs, ref64, what, rel=False, scales=None):
    """ours, theirs, ref64: (output, extra, grads) from _run; theirs may be None (torch has no kernel for
    the dtype: then fuzz_fallback(ref64) stands in). scales: {name: magnitude of the terms} (see
    assert_fuzz_close)."""
    scales = scales or {}
    pairs = [("forward", ours[0], None if theirs is None else theirs[0], ref64[0])]
    for i, (o, r) in enumerate(zip(ours[2], ref64[2])):
        if r is not None:
            pairs.append((f"grad[{i}]", o, None if theirs is None else theirs[2][i], r))
    for name, o, t, r in pairs:
        assert o is not None, f"{what}: {name} missing"
        if t is None:
            t = fuzz_fallback(r, o.dtype)
        if rel:
            assert_fuzz_rel_close(o, t, r, what=f"{name} {what}")
        else:
            assert_fuzz_close(o, t, r, what=f"{name} {what}", scale=scales.get(name))


# --- strategies shared by the ops ----------------------------------------------------------------


def _dtypes(backend: str):
    # Triton's interpreter has no bfloat16 (and the triton backend takes no float64).
    if backend == "triton":
        return st.sampled_from([torch.float32, torch.float32, torch.float16])
    return st.sampled_from([torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16])


@st.composite
def _layouts(draw, ndim: int):
    perm = draw(st.one_of(st.just(tuple(range(ndim))), st.permutations(range(ndim)).map(tuple)))
    sliced = draw(st.one_of(st.none(), st.none(), st.integers(0, ndim - 1)))
    expanded = draw(st.one_of(st.none(), st.none(), st.integers(0, ndim - 1)))
    if expanded == sliced:
        expanded = None
    return Layout(perm, sliced, expanded)


@st.composite
def _data(draw, kinds=("normal", "normal", "coarse", "relu", "special")):
    kind = draw(st.sampled_from(kinds))
    scale = draw(st.sampled_from([1.0, 1.0, 0.05, 7.0]))
    return Data(kind, scale, draw(st.integers(0, 2**16)))


_GRADS = st.sampled_from(["randn", "randn", "permuted", "ones"])


def _batch():
    return st.sampled_from([1, 1, 2, 3, 0])


def _cfg(backend: str):
    return st.integers(0, 11) if backend == "triton" else st.none()


def _lrn_params():
    # Magnitudes fp32 holds (the kernels compute in fp32, as torch does for fp32 data), exact zeros, and
    # now and then a negative alpha or k (the scale then may be negative: NaN, or a sign for an integer beta).
    # Values fp32 holds exactly (beta = 1.9999999999999996 is 2 in fp32: an integer there, not in float64).
    def fp32(lo, hi):
        return st.floats(lo, hi).map(lambda v: struct.unpack("f", struct.pack("f", v))[0])

    return dict(alpha=st.sampled_from([1e-4, 5e-4, 0.1, 1.0, 3.0, 0.0, -0.5]) | fp32(1e-6, 4.0),
                beta=st.sampled_from([0.75, 0.5, 1.0, 2.0, 3.0]) | fp32(0.01, 3.0),
                k=st.sampled_from([1.0, 2.0, 0.5, 0.0, -1.0]) | fp32(1e-6, 3.0))


# --- local_response_norm -------------------------------------------------------------------------


def _window_sum(v: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """v (N, C, S): sums over channels [c - before, c + after], zero-padded."""
    p = F.pad(v, (0, 0, before, after))
    return sum(p[:, d:d + v.shape[1]] for d in range(before + after + 1))


def _lrn_excess_conditioning(x3: torch.Tensor, size, alpha, k) -> torch.Tensor:
    """How much s = k + alpha/size sum x^2 cancels: (|k| + |alpha|/size sum x^2) / |s| - 1, 0 where nothing
    cancels (k, alpha >= 0). A rounding of the terms moves s by that much more, relatively, and s^-beta by
    beta times it: where a negative alpha or k brings s near 0, any two summation orders differ that much."""
    sq = _window_sum(x3 * x3, size // 2, (size - 1) // 2)
    s = k + alpha / size * sq
    return torch.nan_to_num((abs(k) + abs(alpha) / size * sq) / s.abs() - 1, nan=0.0, posinf=0.0).clamp_min(0)


def _lrn_forward_scale(x: torch.Tensor, y64: torch.Tensor, size, alpha, beta, k) -> torch.Tensor:
    """|y| beta (conditioning excess of s): what an exactly rounded s may move the forward by, beyond |y|."""
    if x.numel() == 0:
        return torch.zeros_like(x)
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    excess = _lrn_excess_conditioning(x3, size, alpha, k).reshape(x.shape)
    return torch.nan_to_num(y64.abs(), nan=0.0, posinf=0.0) * abs(beta) * excess


def _lrn_grad_scale(x: torch.Tensor, g: torch.Tensor, size, alpha, beta, k) -> torch.Tensor:
    """The magnitude of the two terms whose difference is LRN's input gradient,
    |g_j| s_j^-beta + 2 alpha/size beta |x_j| sum_c |g_c x_c| s_c^(-beta-1) (float64, shaped like x), times
    1 + (|beta| + 1) x the conditioning excess of the s in reach (see _lrn_excess_conditioning)."""
    if x.numel() == 0:
        return torch.zeros_like(x)
    x3, g3 = x.reshape(x.shape[0], x.shape[1], -1), g.reshape(x.shape[0], x.shape[1], -1)
    lo, hi = size // 2, (size - 1) // 2
    s = k + alpha / size * _window_sum(x3 * x3, lo, hi)
    p = s.abs() ** -beta
    t = (g3 * x3).abs() * p / s.abs()
    terms = g3.abs() * p + 2 * abs(alpha) / size * abs(beta) * x3.abs() * _window_sum(t, hi, lo)
    excess = _window_sum(_lrn_excess_conditioning(x3, size, alpha, k), hi, lo)
    return (terms * (1 + (abs(beta) + 1) * excess)).reshape(x.shape)



@dataclasses.dataclass(frozen=True)
class LRNCase:
    shape: tuple[int, ...]
    size: int
    alpha: float
    beta: float
    k: float
    dtype: torch.dtype
    layout: Layout
    data: Data
    grad: str = "randn"
    cfg: int | None = None


@st.composite
def lrn_cases(draw, backend):
    ndim = draw(st.sampled_from([3, 4, 4, 5]))
    size = draw(st.one_of(st.integers(1, 9), st.sampled_from([12, 17, 33])))
    c = draw(st.one_of(st.integers(1, size + 2), st.integers(1, 40)))  # below and above the window
    spatial = [draw(st.integers(1, 7 if ndim < 5 else 4)) for _ in range(ndim - 2)]
    shape = (draw(_batch()), c, *spatial)
    p = _lrn_params()
    return LRNCase(shape, size, draw(p["alpha"]), draw(p["beta"]), draw(p["k"]), draw(_dtypes(backend)),
                   draw(_layouts(ndim)), draw(_data(("normal", "normal", "relu", "special"))), draw(_GRADS),
                   draw(_cfg(backend)))


def check_lrn(backend: str, case: LRNCase) -> None:
    storage = _storage(case.shape, case.layout, case.data, case.dtype)
    grad = _grad(case.shape, case.grad, case.data.seed + 1, case.dtype)
    args = (case.size, case.alpha, case.beta, case.k)

    def views(leaf):
        return [_view(leaf, case.shape, case.layout)]

    def ours(x):
        return fa.local_response_norm(x, *args)

    def torch_lrn(x):
        x = x.contiguous()  # torch's own LRN cannot view some 5-D layouts: the same values, contiguous
        return F.local_response_norm(x, *args) if x.numel() else x * 0

    with fastalex.backend(backend), _pinned(case.cfg):
        mine = _run(ours, views, [storage], case.dtype, grad)
    theirs = _reference(torch_lrn, views, [storage], case.dtype, grad)
    ref64 = _run(torch_lrn, views, [storage], torch.float64, grad.double())
    x64 = _view(storage, case.shape, case.layout)
    scales = {"forward": _lrn_forward_scale(x64, ref64[0], *args), "grad[0]": _lrn_grad_scale(x64, grad.double(), *args)}
    _compare(mine, theirs, ref64, what=repr(case), scales=scales)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_lrn(backend):
    _fuzz("lrn", backend, lrn_cases, check_lrn)


@_long_profile
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_lrn_slow(backend):
    _fuzz("lrn", backend, lrn_cases, check_lrn, slow=True)


# --- max_pool2d ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PoolCase:
    shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int] | None
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool
    dtype: torch.dtype
    layout: Layout
    data: Data
    grad: str = "randn"
    cfg: int | None = None


def _pool_out(size, k, s, p, d, ceil_mode):
    """torch's pooling output size (torch.nn.MaxPool2d's documented formula, with its ceil_mode rule)."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _min_size(k, s, p, d):
    return max(1, d * (k - 1) + 1 - 2 * p)


@st.composite
def pool_cases(draw, backend):
    # Now and then a window of more than 256 taps (int32 winners), not overlapping: through the
    # interpreter, each of the backward's candidate windows per input costs a dozen numpy calls.
    big = draw(st.integers(0, 19)) == 0
    kh, kw = (17, 16) if big else (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = None if big else draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    sh, sw = stride or (kh, kw)
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    dh, dw = (1, 1) if big else (draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3])))
    ceil_mode = draw(st.booleans())
    h = draw(st.integers(_min_size(kh, sh, ph, dh), _min_size(kh, sh, ph, dh) + 8))
    w = draw(st.integers(_min_size(kw, sw, pw, dw), _min_size(kw, sw, pw, dw) + 8))
    c = draw(st.integers(1, 9))
    ndim = draw(st.sampled_from([3, 4, 4]))
    shape = (c, h, w) if ndim == 3 else (draw(_batch()), c, h, w)
    kinds = ("normal", "coarse", "coarse", "relu", "special", "ninf")
    return PoolCase(shape, (kh, kw), stride, (ph, pw), (dh, dw), ceil_mode, draw(_dtypes(backend)),
                    draw(_layouts(ndim)), draw(_data(kinds)), draw(_GRADS), draw(_cfg(backend)))


def _window_misses_input(case: PoolCase) -> bool:
    """A dilated window that covers no input element (fastalex raises; torch reads outside the input)."""
    for size, k, s, p, d in zip(case.shape[-2:], case.kernel, case.stride or case.kernel, case.padding,
                                case.dilation):
        n = _pool_out(size, k, s, p, d, case.ceil_mode)
        if any(all(not 0 <= o * s - p + j * d < size for j in range(k)) for o in range(n)):
            return True
    return False


def check_pool(backend: str, case: PoolCase) -> None:
    storage = _storage(case.shape, case.layout, case.data, case.dtype)
    kwargs = dict(kernel_size=case.kernel, stride=case.stride, padding=case.padding, dilation=case.dilation,
                  ceil_mode=case.ceil_mode)
    if _window_misses_input(case):
        x = _view(storage.to(case.dtype), case.shape, case.layout)
        with fastalex.backend(backend), pytest.raises(ValueError, match="covers no input element"):
            fa.max_pool2d(x, **kwargs)
        return
    out_shape = F.max_pool2d(torch.empty(case.shape), **kwargs).shape
    grad = _grad(out_shape, case.grad, case.data.seed + 1, case.dtype)

    def views(leaf):
        return [_view(leaf, case.shape, case.layout)]

    def ours(x):
        return fa.max_pool2d(x, return_indices=True, **kwargs)

    def torch_pool(x):
        return F.max_pool2d(x, return_indices=True, **kwargs)

    with fastalex.backend(backend), _pinned(case.cfg):
        y, idx, (dx,) = _run(ours, views, [storage], case.dtype, grad)
    y_t, idx_t, (dx_t,) = _run(torch_pool, views, [storage], case.dtype, grad)
    what = repr(case)
    # A max rounds nothing: values and torch's indices are equal in every dtype, ties and NaN included.
    torch.testing.assert_close(y, y_t, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"forward {what}: {m}")
    assert torch.equal(idx, idx_t), f"indices {what}: {(idx != idx_t).sum()} differ"
    # The gradient sums the same grads in the same order as torch's CPU kernel: equal, but in low
    # precision, where the sums round differently (fastalex sums in fp32).
    _, _, (dx64,) = _run(torch_pool, views, [storage], torch.float64, grad.double())
    assert_fuzz_close(dx, dx_t, dx64, what=f"grad {what}", exact=case.dtype in (torch.float32, torch.float64))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_max_pool2d(backend):
    _fuzz("pool", backend, pool_cases, check_pool)


@_long_profile
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_max_pool2d_slow(backend):
    _fuzz("pool", backend, pool_cases, check_pool, slow=True)


# --- relu_lrn_max_pool2d ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FusedCase:
    shape: tuple[int, int, int, int]
    size: int
    alpha: float
    beta: float
    k: float
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    ceil_mode: bool
    dtype: torch.dtype
    layout: Layout
    data: Data
    grad: str = "randn"
    cfg: int | None = None


@st.composite
def fused_cases(draw, backend):
    size = draw(st.one_of(st.integers(1, 9), st.just(11)))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if draw(st.integers(0, 9)) == 0:
        kh, kw = 5, 5  # 25 taps: not the sequential forward's
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(_min_size(kh, sh, ph, 1), _min_size(kh, sh, ph, 1) + 7))
    w = draw(st.integers(_min_size(kw, sw, pw, 1), _min_size(kw, sw, pw, 1) + 7))
    c = draw(st.one_of(st.integers(1, size + 2), st.integers(1, 20)))
    p = _lrn_params()
    return FusedCase((draw(_batch()), c, h, w), size, draw(p["alpha"]), draw(p["beta"]), draw(p["k"]), (kh, kw),
                     (sh, sw), (ph, pw), draw(st.booleans()), draw(_dtypes(backend)), draw(_layouts(4)),
                     draw(_data(("normal", "normal", "negative", "special"))), draw(_GRADS), draw(_cfg(backend)))


def _near_ties(z: torch.Tensor, kernel, stride, padding, out_hw, dtype: torch.dtype) -> torch.Tensor:
    """(N, C, Ho, Wo): windows of z (float64) whose maximum has another, different value within
    NEAR_TIE[dtype] of it, or equal to it once rounded to dtype (both overflowing fp16, say): the winner
    there depends on rounding."""
    n, c, h, w = z.shape
    (kh, kw), (sh, sw), (ph, pw), (ho, wo) = kernel, stride, padding, out_hw
    extra_h = max(0, (ho - 1) * sh + kh - (h + 2 * ph))
    extra_w = max(0, (wo - 1) * sw + kw - (w + 2 * pw))

    def windows(t):
        tp = F.pad(t, (pw, pw + extra_w, ph, ph + extra_h), value=float("-inf"))
        return tp.unfold(2, kh, sh).unfold(3, kw, sw)[:, :, :ho, :wo].reshape(n, c, ho, wo, kh * kw)

    win, rounded = windows(z), windows(z.to(dtype).double())
    top = win.argmax(-1, keepdim=True)  # the first maximum (a NaN if there is one)
    m, m_rounded = win.gather(-1, top), rounded.gather(-1, top)
    close = (win - m).abs() <= NEAR_TIE[dtype] * m.abs()
    return ((win != m) & (close | (rounded == m_rounded))).any(-1)


def check_fused(backend: str, case: FusedCase) -> None:
    storage = _storage(case.shape, case.layout, case.data, case.dtype)
    lrn_args = (case.size, case.alpha, case.beta, case.k)
    pool_args = (case.kernel, case.stride, case.padding)

    def views(leaf):
        return [_view(leaf, case.shape, case.layout)]

    def chain(x):
        z = F.local_response_norm(F.relu(x), *lrn_args) if x.numel() else x * 0
        return F.max_pool2d(z, *pool_args, ceil_mode=case.ceil_mode)

    def ours(x):
        return fa.relu_lrn_max_pool2d(x, *lrn_args, *pool_args, ceil_mode=case.ceil_mode)

    x64 = _view(storage, case.shape, case.layout)
    z64 = F.local_response_norm(F.relu(x64), *lrn_args) if x64.numel() else x64 * 0
    out_shape = F.max_pool2d(z64, *pool_args, ceil_mode=case.ceil_mode).shape
    grad = _grad(out_shape, case.grad, case.data.seed + 1, case.dtype)
    # Windows whose winner rounding may pick get no gradient: elsewhere the gradient is well defined.
    ambiguous = _near_ties(z64, *pool_args, out_shape[-2:], case.dtype)
    if ambiguous.any():
        grad = grad.masked_fill(ambiguous, 0)
    with fastalex.backend(backend), _pinned(case.cfg):
        mine = _run(ours, views, [storage], case.dtype, grad)
    theirs = _reference(chain, views, [storage], case.dtype, grad)
    ref64 = _run(chain, views, [storage], torch.float64, grad.double())
    # The LRN gradient's terms (see check_lrn), for the gradient the pooling hands it.
    z = z64.detach().requires_grad_()
    F.max_pool2d(z, *pool_args, ceil_mode=case.ceil_mode).backward(grad.double())
    scale = _lrn_grad_scale(F.relu(x64), z.grad, *lrn_args) * (x64 > 0)
    _compare(mine, theirs, ref64, what=repr(case), scales={"grad[0]": scale})


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_relu_lrn_max_pool2d(backend):
    _fuzz("fused", backend, fused_cases, check_fused)


@_long_profile
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_relu_lrn_max_pool2d_slow(backend):
    _fuzz("fused", backend, fused_cases, check_fused, slow=True)


# --- conv2d / conv2d_relu --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConvCase:
    shape: tuple[int, ...]  # input (N, C_in, H, W) or (C_in, H, W)
    c_out: int
    kernel: tuple[int, int]
    stride: tuple[int, int] | int
    padding: object  # int, (h, w) or (left, right, top, bottom)
    groups: int
    bias: bool
    relu: bool
    dtype: torch.dtype
    layout: Layout
    weight_layout: Layout
    data: Data
    needs: tuple[bool, bool, bool] = (True, True, True)  # which of input, weight, bias need a gradient
    grad: str = "randn"
    cfg: int | None = None


def _pad4(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[1], padding[1], padding[0], padding[0]
    return tuple(padding)


def _canonical_size1_strides(t: torch.Tensor) -> torch.Tensor:
    """t with the strides its memory format gives its size-1 dimensions: the same elements, no copy.
    torch's CPU convolution gets a grouped float64 convolution's weight gradient wrong for a
    channels_last weight and an input with other strides there (test_regression_cpu_conv_size1_strides);
    the cpu backend hands its input to torch's convolution as it is."""
    from torch._prims_common import make_channels_last_strides_for, make_contiguous_strides_for

    if t.dim() != 4:
        return t
    for fmt, make in ((torch.contiguous_format, make_contiguous_strides_for),
                      (torch.channels_last, make_channels_last_strides_for)):
        if t.is_contiguous(memory_format=fmt):
            want = tuple(make(t.shape))
            return t if t.stride() == want else t.as_strided(t.shape, want)
    return t


@st.composite
def conv_cases(draw, backend):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg_in = draw(st.integers(1, 4))
    cg_out = draw(st.integers(1, 5))
    if groups == 1 and draw(st.integers(0, 7)) == 0:
        cg_out = draw(st.integers(33, 40))  # three column tiles: the forward's N_TILES=3 configs
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             st.tuples(*[st.integers(0, 3)] * 4)))
    left, right, top, bottom = _pad4(padding)
    h = draw(st.integers(max(1, kh - top - bottom), max(1, kh - top - bottom) + 7))
    w = draw(st.integers(max(1, kw - left - right), max(1, kw - left - right) + 7))
    ndim = draw(st.sampled_from([3, 4, 4, 4]))
    shape = (groups * cg_in, h, w) if ndim == 3 else (draw(_batch()), groups * cg_in, h, w)
    needs = draw(st.sampled_from([(True, True, True), (True, True, True), (False, True, True), (True, False, True),
                                  (True, False, False), (False, False, True), (False, False, False)]))
    return ConvCase(shape, groups * cg_out, (kh, kw), stride, padding, groups, draw(st.booleans()), draw(st.booleans()),
                    draw(_dtypes(backend)), draw(_layouts(ndim)),
                    draw(_layouts(4).filter(lambda l: l.expanded is None)),
                    draw(_data(("normal", "normal", "normal", "special"))), needs, draw(_GRADS), draw(_cfg(backend)))


def check_conv(backend: str, case: ConvCase) -> None:
    c_in = case.shape[-3]
    w_shape = (case.c_out, c_in // case.groups, *case.kernel)
    x_s = _storage(case.shape, case.layout, case.data, case.dtype)
    fan_in = w_shape[1] * w_shape[2] * w_shape[3]
    w_data = Data("normal", 1 / math.sqrt(fan_in), case.data.seed + 2)
    w_s = _storage(w_shape, case.weight_layout, w_data, case.dtype)
    b_s = _storage((case.c_out,), Layout((0,)), Data("normal", 0.3, case.data.seed + 3), case.dtype) if case.bias \
        else None
    stride = case.stride
    pad = _pad4(case.padding)

    def views(x, w, b):
        return [_view(x, case.shape, case.layout), _view(w, w_shape, case.weight_layout), b]

    def ours(x, w, b):
        if backend != "triton" and case.dtype == torch.float64 and case.groups > 1:
            x, w = _canonical_size1_strides(x), _canonical_size1_strides(w)  # torch's bug: see the regression test
        fn = fa.conv2d_relu if case.relu else fa.conv2d
        return fn(x, w, b, stride=stride, padding=case.padding, groups=case.groups)

    def torch_conv(x, w, b, relu=case.relu):
        y = F.conv2d(F.pad(x, pad), w, b, stride, groups=case.groups)
        return F.relu(y) if relu else y

    pre64 = torch_conv(*views(x_s, w_s, b_s), relu=False)
    grad = _grad(pre64.shape, case.grad, case.data.seed + 1, case.dtype)
    if case.relu:  # a pre-activation a rounding away from 0: its ReLU mask is not well defined
        mag = torch_conv(*views(x_s.abs(), w_s.abs(), None if b_s is None else b_s.abs()), relu=False)
        ambiguous = (mag > 0) & (pre64.abs() <= NEAR_TIE[case.dtype] * mag)
        if ambiguous.any():
            grad = grad.masked_fill(ambiguous, 0)
    needs = list(case.needs)
    with fastalex.backend(backend), _pinned(case.cfg):
        mine = _run(ours, views, [x_s, w_s, b_s], case.dtype, grad, needs)
    theirs = _reference(torch_conv, views, [x_s, w_s, b_s], case.dtype, grad, needs)
    ref64 = _run(torch_conv, views, [x_s, w_s, b_s], torch.float64, grad.double(), needs)
    _compare(mine, theirs, ref64, what=repr(case), rel=True)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_conv2d(backend):
    _fuzz("conv", backend, conv_cases, check_conv)


@_long_profile
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_conv2d_slow(backend):
    _fuzz("conv", backend, conv_cases, check_conv, slow=True)


# --- regressions: what the fuzz found, as plain tests ----------------------------------------------


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_regression_lrn_grad_nan_at_inf(backend):
    """An inf in an LRN window makes s = inf there. With beta > 1 torch's chain rule gives NaN for every
    input of that window ((g x / s^2beta) * beta s^(beta-1) = 0 * inf), where the kernels' folded
    g x s^(-beta-1) gave 0 (found by the fuzz: x = [[inf, nan], [-2.18, -inf]], size 2, beta 2)."""
    special = Data("special", 1.0, 0)
    check_lrn(backend, LRNCase((1, 2, 2), 2, 1e-4, 2.0, 1.0, torch.float32, Layout((0, 1, 2)), special))
    check_lrn(backend, LRNCase((2, 5, 3, 4), 5, 1e-4, 1.5, 2.0, torch.float32, Layout((0, 2, 3, 1)), special))
    # beta <= 1: torch's s^(beta-1) is 1 or 0 there, and the gradient is 0, not NaN
    check_lrn(backend, LRNCase((2, 5, 3, 4), 5, 1e-4, 0.75, 2.0, torch.float32, Layout((0, 1, 2, 3)), special))
    # The fused backward recomputes the LRN's: the same rule (ReLU keeps +inf).
    for cfg in ((None,) if backend == "cpu" else (0, 1)):
        check_fused(backend, FusedCase((2, 5, 6, 6), 5, 1e-4, 2.0, 1.0, (3, 3), (2, 2), (1, 1), True, torch.float32,
                                       Layout((0, 1, 2, 3)), special, cfg=cfg))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_regression_lrn_negative_scale(backend):
    """A negative k (or alpha) can make the scale s negative. torch's pow gives s^-beta for an integer beta
    ((-1)^beta |s|^-beta), NaN otherwise; the Triton kernels' exp2(-beta log2 s) gave NaN for every beta.
    And s = -inf (an inf input, a negative alpha): pow gives 0 where the cpu and cuda kernels' sqrt forms
    (beta 0.75, 0.5) gave NaN."""
    normal = Data("normal", 1.0, 3)
    for beta in (1.0, 2.0, 3.0, 0.75, 0.5, 1.5):
        check_lrn(backend, LRNCase((2, 5, 3, 3), 3, 1e-4, beta, -1.0, torch.float32, Layout((0, 1, 2, 3)), normal))
        check_lrn(backend, LRNCase((2, 5, 3, 3), 3, -0.5, beta, 1.0, torch.float32, Layout((0, 2, 3, 1)), normal))
        # an inf input with a negative alpha: s = -inf, where pow(-inf, -beta) is 0 (+-0) and sqrt(-inf) NaN
        check_lrn(backend, LRNCase((1, 2, 2), 2, -0.5, beta, 1.0, torch.float32, Layout((0, 1, 2)), Data("special", 1.0, 0)))
    for cfg in ((None,) if backend == "cpu" else (0, 1)):
        check_fused(backend, FusedCase((2, 5, 6, 6), 5, 1e-4, 2.0, -1.0, (3, 3), (2, 2), (1, 1), False, torch.float32,
                                       Layout((0, 1, 2, 3)), normal, cfg=cfg))


def test_regression_cpu_conv_size1_strides():
    """torch 2.14's CPU convolution: grouped, float64, a channels_last weight and an input (1, 4, 2, 1) whose
    size-1 dimensions have other strides than channels_last's (4, 1, 4, 1) instead of (8, 1, 4, 4): the
    weight gradient is wrong (relative error 1). fastalex's cpu backend runs torch's convolution on the
    input restrided to its layout's canonical strides (no copy), which torch gets right."""
    if "cpu" not in KERNEL_BACKENDS:
        pytest.skip("cpu backend unavailable")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 1, generator=g, dtype=torch.float64).permute(1, 0, 2).unsqueeze(0)  # strides (4, 1, 4, 1)
    w = torch.randn(2, 2, 1, 2, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(1, 2, 4, 2, generator=g, dtype=torch.float64)

    def grads(x, w):
        x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
        with fastalex.backend("cpu"):
            fa.conv2d(x, w, None, padding=1, groups=2).backward(grad)
        return x.grad, w.grad

    gx, gw = grads(x, w)
    gx_ref, gw_ref = grads(x.contiguous(), w.contiguous())
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gw, gw_ref)
