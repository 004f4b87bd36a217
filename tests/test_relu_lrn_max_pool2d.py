"""relu_lrn_max_pool2d against the unfused torch chain max_pool2d(local_response_norm(relu(x))), forward
and gradient, on every backend available here (on triton: each fused forward and backward strategy)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fastalex
from fastalex import functional as fa
from fastalex.kernels import _common
from fastalex.kernels import relu_lrn_max_pool2d as fused_kernels
from fastalex.kernels._common import Pool
from backends_here import KERNEL_BACKENDS, fits, layout as _layout
from numerics import LOW_PRECISION, assert_close, assert_close_but_flips, twice_rounded

# (shape, size, alpha, beta, k, kernel_size, stride, padding, ceil_mode)
CASES = [
    ((2, 7, 11, 11), 5, 1.0, 0.75, 2.0, 3, 2, 0, False),  # AlexNet's, scaled down
    ((2, 9, 12, 9), 5, 5e-4, 0.75, 2.0, 3, 2, 1, True),
    ((1, 6, 9, 10), 3, 0.5, 0.5, 1.0, (3, 2), (2, 1), (1, 0), False),
    ((2, 4, 8, 7), 4, 2.0, 1.3, 1.0, (2, 4), (1, 3), (1, 2), True),
    ((2, 1, 7, 7), 5, 1.0, 0.75, 2.0, 2, 2, 0, False),  # C = 1 < size
    ((1, 20, 6, 6), 8, 1.0, 0.75, 2.0, 3, 3, 1, False),
    ((1, 6, 12, 11), 5, 1.0, 0.75, 2.0, 5, 2, 2, True),  # 25 taps: the forward's "shift" kernel only
]
IDS = [f"{c[0]}-n{c[1]}-k{c[5]}-s{c[6]}-p{c[7]}-ceil{int(c[8])}" for c in CASES]


def _chain(x, size, alpha, beta, k, kernel_size, stride, padding, ceil_mode):
    return F.max_pool2d(F.local_response_norm(F.relu(x), size, alpha, beta, k), kernel_size, stride, padding,
                        ceil_mode=ceil_mode)


def _make(shape, dtype, layout, seed, kind="mixed"):
    """kind: "mixed" (half negative: ReLU'd windows full of tied zeros), "negative" (mostly negative:
    whole windows of zeros) or "special" (NaN, +-inf)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2
    if kind == "negative":
        x -= 2.5
    elif kind == "special":
        flat = x.view(-1)
        idx = torch.randperm(flat.numel(), generator=g)
        flat[idx[:2]] = float("nan")
        flat[idx[2:4]] = float("inf")
        flat[idx[4:6]] = float("-inf")
    x = x.to(dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "strided":
        x = torch.cat([x, x], dim=-1)[..., ::2]
    return x


def _grad_and_out(fn, x, grad, args):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x, *args)
    y.backward(grad)
    return y.detach(), x.grad


def _check(backend, x, args, seed=0, what="", flips=False):
    out_shape = _chain(x.double(), *args).shape
    grad = torch.randn(out_shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x.dtype)
    with fastalex.backend(backend):
        y, dx = _grad_and_out(fa.relu_lrn_max_pool2d, x, grad, args)
    if x.dtype in LOW_PRECISION:
        y64, dx64 = _grad_and_out(_chain, x.double(), grad.double(), args)
        try:
            y_t, dx_t = _grad_and_out(_chain, x, grad, args)
        except (RuntimeError, NotImplementedError):  # torch has no fp16/bf16 LRN on the CPU
            y_t, dx_t = twice_rounded(y64, x.dtype), twice_rounded(dx64, x.dtype)
        assert_close(y, y_t, ref64=y64, torch_out=y_t, what=f"forward {what}")
        assert_close(dx, dx_t, ref64=dx64, torch_out=dx_t, what=f"grad_input {what}")
    else:
        y_t, dx_t = _grad_and_out(_chain, x, grad, args)
        assert_close(y, y_t, what=f"forward {what}")
        if flips:  # compiled on a GPU: near-ties may pick another winner (tests/numerics.py)
            _assert_close_but_flips(dx, dx_t, x, args, what=f"grad_input {what}")
        else:
            assert_close(dx, dx_t, what=f"grad_input {what}")
    assert _layout(y) == _layout(y_t), f"output strides {what}: {y.stride()} vs torch's {y_t.stride()}"
    assert _layout(dx) == _layout(dx_t), f"grad strides {what}: {dx.stride()} vs torch's {dx_t.stride()}"


def _assert_close_but_flips(dx, dx_t, x, args, what):
    """assert_close_but_flips with the float64 values the pool reads and the pool's and LRN's arguments."""
    size, alpha, beta, k, kernel_size, stride, padding, ceil_mode = args
    pooled64 = F.local_response_norm(F.relu(x.double()), size, alpha, beta, k)
    assert_close_but_flips(dx, dx_t, pooled64.to(dx.device), kernel_size, stride, padding, ceil_mode, lrn_size=size,
                           what=what)


def _backends_and_strategies():
    # (backend, forward strategy, backward strategy): each strategy of each direction once.
    out = []
    if "triton" in KERNEL_BACKENDS:
        out += [("triton", "sequential", "sequential"), ("triton", "shift", "tile")]
    if "cpu" in KERNEL_BACKENDS:
        out.append(("cpu", None, None))
    return out


def _only(monkeypatch, name: str, strategy: str) -> None:
    """The tuner of fused_kernels.<name> sees only that strategy's configs."""
    original = getattr(fused_kernels, name)

    def only(*args):
        picked = [c for c in original(*args) if c.strategy == strategy]
        return picked or pytest.skip(f"no {strategy} config for {args}")

    monkeypatch.setattr(fused_kernels, name, only)


@pytest.fixture(params=_backends_and_strategies(), ids=lambda p: p[0] + (f"-{p[1]}-{p[2]}" if p[1] else ""))
def backend(request, monkeypatch):
    name, forward, backward = request.param
    if forward is not None:
        _only(monkeypatch, "forward_candidates", forward)
        _only(monkeypatch, "backward_candidates", backward)
        monkeypatch.setattr(_common, "_TUNED", {})
    return name


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_parity(backend, case, layout):
    x = _make(case[0], torch.float32, layout, seed=1)
    _check(backend, x, case[1:], what=f"{case} {layout}")


@pytest.mark.parametrize("kind", ["negative", "special"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_ties_and_special_values(backend, kind, layout):
    """Windows of ReLU zeros send the gradient to their first element; NaN and inf propagate as in torch."""
    for case in CASES[:3]:
        x = _make(case[0], torch.float32, layout, seed=2, kind=kind)
        _check(backend, x, case[1:], what=f"{kind} {case}")


def test_low_precision(backend):
    # Triton's interpreter has no bfloat16 (the GPU tests cover it).
    dtypes = [torch.float16] if backend == "triton" else [torch.float16, torch.bfloat16, torch.float64]
    for dtype in dtypes:
        x = _make(CASES[0][0], dtype, "channels_last", seed=3)
        _check(backend, x, CASES[0][1:], what=str(dtype))


def test_large_window_composes():
    """LRN windows the fused backward does not hold (size > 8) run as LRN then max-pool on triton."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    assert not fused_kernels.fused_supported(11)
    x = _make((2, 14, 7, 7), torch.float32, "contiguous", seed=4)
    _check("triton", x, (11, 1.0, 0.75, 2.0, 3, 2, 1, True))


@pytest.mark.parametrize("name", KERNEL_BACKENDS + ["torch"])
def test_empty_batch(name):
    x = torch.randn(0, 5, 9, 9, requires_grad=True)
    with fastalex.backend(name):
        y = fa.relu_lrn_max_pool2d(x)
    assert y.shape == (0, 5, 4, 4)
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_module(backend):
    m = fastalex.nn.ReLULRNMaxPool2d(5, alpha=5e-4, beta=0.75, k=2.0)
    assert "size=5, alpha=0.0005, beta=0.75, k=2.0, kernel_size=3, stride=2" in repr(m)
    assert list(m.parameters()) == [] and m.state_dict() == {}
    x = _make((2, 6, 9, 9), torch.float32, "contiguous", seed=5)
    with fastalex.backend(backend):
        y = m(x)
    assert_close(y, _chain(x, 5, 5e-4, 0.75, 2.0, 3, 2, 0, False), what="module")


def test_gradcheck_cpu_float64():
    if "cpu" not in fastalex.backends():
        pytest.skip("cpu backend unavailable")
    x = (torch.randn(2, 6, 7, 7, dtype=torch.float64) + 0.5).requires_grad_()
    with fastalex.backend("cpu"):
        assert torch.autograd.gradcheck(lambda t: fa.relu_lrn_max_pool2d(t, 3, 1.0, 0.75, 2.0, 3, 2, 1, True), (x,))


@pytest.mark.parametrize("name", KERNEL_BACKENDS)
def test_opcheck(name):
    x = torch.randn(2, 6, 9, 8, requires_grad=True)
    torch.library.opcheck(torch.ops.fastalex.relu_lrn_max_pool2d.default,
                          (x, 5, 1.0, 0.75, 2.0, [3, 3], [2, 2], [1, 1], True, name))
    xc = torch.randn(2, 5, 7, 7).to(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(torch.ops.fastalex.relu_lrn_max_pool2d.default,
                          (xc, 3, 1.0, 0.75, 2.0, [3, 2], [2, 1], [0, 1], False, name))


def test_torch_compile_fullgraph():
    name = KERNEL_BACKENDS[0] if KERNEL_BACKENDS else pytest.skip("no kernel backend here")
    torch.compiler.reset()
    x = _make((2, 6, 9, 9), torch.float32, "channels_last", seed=6).requires_grad_()
    with fastalex.backend(name):
        fn = torch.compile(lambda t: fa.relu_lrn_max_pool2d(t, 5, 1.0, 0.75, 2.0), fullgraph=True,
                           backend="aot_eager")
        y = fn(x)
    y.sum().backward()
    x_t = x.detach().clone().requires_grad_()
    y_t = _chain(x_t, 5, 1.0, 0.75, 2.0, 3, 2, 0, False)
    y_t.sum().backward()
    assert_close(y, y_t.detach(), what="compiled forward")
    assert_close(x.grad, x_t.grad, what="compiled grad")
    torch.compiler.reset()


BAD = [
    (dict(size=0), ValueError, r"relu_lrn_max_pool2d: size must be >= 1, got 0"),
    (dict(alpha=float("nan")), ValueError, r"relu_lrn_max_pool2d: alpha must be a finite number"),
    (dict(kernel_size=0), ValueError, r"relu_lrn_max_pool2d: kernel_size must be >= 1, got 0"),
    (dict(stride=(2, 0)), ValueError, r"relu_lrn_max_pool2d: stride\[1\] must be >= 1, got 0"),
    (dict(padding=2), ValueError, r"relu_lrn_max_pool2d: padding must be at most half the kernel size"),
    (dict(kernel_size=9), ValueError, r"relu_lrn_max_pool2d: output size would be 0x0 for input size 8x8"),
    (dict(ceil_mode="yes"), TypeError, r"relu_lrn_max_pool2d: ceil_mode must be a bool"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        fa.relu_lrn_max_pool2d(torch.randn(1, 4, 8, 8), **kwargs)


@pytest.mark.parametrize("x,error,message", [
    (torch.ones(1, 4, 8, 8, dtype=torch.int64), TypeError, r"relu_lrn_max_pool2d: input must have a floating point"),
    (torch.ones(4, 8, 8), ValueError, r"relu_lrn_max_pool2d: input must be 4-D \(N, C, H, W\), got 3-D"),
    (torch.ones(1, 4, 0, 8), ValueError, r"relu_lrn_max_pool2d: input must have non-zero C, H and W"),
], ids=["int", "3-D", "zero-height"])
def test_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        fa.relu_lrn_max_pool2d(x)


def test_fused_kernels_refuse_what_they_cannot_do():
    x = torch.randn(1, 4, 8, 8)
    y, w = torch.empty(1, 4, 3, 3), torch.empty(1, 4, 3, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="the fused kernels take dilation 1"):
        fused_kernels.relu_lrn_max_pool2d_forward(x, y, w, 5, 1.0, 0.75, 2.0, Pool((3, 3), (2, 2), (0, 0), (2, 2)))
    with pytest.raises(ValueError, match="the fused backward takes size <= 8, got 9"):
        fused_kernels.relu_lrn_max_pool2d_backward(x, y, w, torch.empty_like(x), 9, 1.0, 0.75, 2.0,
                                                   Pool((3, 3), (2, 2), (0, 0), (1, 1)))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gpu_parity(name, dtype, layout):
    if name not in fastalex.backends():
        pytest.skip(f"{name} unavailable")
    for case in CASES:
        _check(name, _make(case[0], dtype, layout, seed=7).cuda(), case[1:], what=str(case), flips=True)
        # windows of exact zeros (ReLU'd negatives) cannot flip: both sides pick the first, so no allowance
        _check(name, _make(case[0], dtype, layout, seed=8, kind="negative").cuda(), case[1:], what=f"ties {case}")


@pytest.mark.gpu
@pytest.mark.parametrize("channels_last", [False, True])
def test_gpu_triton_configs(channels_last):
    """Every config the tuner may pick, compiled for the GPU, at AlexNet's conv1 shape (batch 4)."""
    if "triton" not in fastalex.backends():
        pytest.skip("triton unavailable")
    x = _make((4, 96, 55, 55), torch.float32, "channels_last" if channels_last else "contiguous", seed=9).cuda()
    args = (5, 5e-4, 0.75, 2.0, 3, 2, 0, False)
    pool = Pool((3, 3), (2, 2), (0, 0), (1, 1))
    y_t = _chain(x, *args)
    grad = torch.randn_like(y_t)
    _, dx_t = _grad_and_out(_chain, x, grad, args)
    ran = 0
    winners = torch.empty(y_t.shape, dtype=torch.uint8, device="cuda")
    for cfg in fused_kernels.forward_candidates(5, pool, channels_last):
        y = torch.full_like(y_t, float("nan"))
        if fits(lambda: fused_kernels.relu_lrn_max_pool2d_forward(x, y, winners, *args[:4], pool, config=cfg)):
            assert_close(y, y_t, what=str(cfg))
            ran += 1
    for cfg in fused_kernels.backward_candidates(channels_last):
        dx = torch.full_like(x, float("nan"))
        if fits(lambda: fused_kernels.relu_lrn_max_pool2d_backward(x, grad, winners, dx, *args[:4], pool, config=cfg)):
            _assert_close_but_flips(dx, dx_t, x, args, what=str(cfg))
            ran += 1
    assert ran >= 6
