"""max_pool2d parity with torch.nn.functional.max_pool2d on every backend available here: values,
torch's int64 indices and gradients, with ties (ReLU'd inputs), NaN and infinities."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fastalex
from fastalex import functional as fa
from fastalex.kernels import max_pool2d as pool_kernels
from fastalex.kernels._common import Pool
from backends_here import KERNEL_BACKENDS, fits, layout as _layout
from numerics import EXACT, LOW_PRECISION, assert_close

# (shape, kernel_size, stride, padding, dilation, ceil_mode): AlexNet's 3x3/2, odd sizes, non-square
# kernels and strides, padding, dilation, ceil_mode with a partial last window, stride > kernel.
CASES = [
    ((2, 3, 11, 11), 3, 2, 0, 1, False),
    ((2, 5, 12, 9), 3, 2, 1, 1, True),
    ((1, 4, 9, 13), (3, 2), (2, 1), (1, 0), 1, False),
    ((2, 3, 10, 7), (2, 4), (1, 3), (1, 2), 1, True),
    ((2, 2, 11, 12), 3, 1, 1, (2, 1), False),
    ((1, 3, 8, 8), 2, None, 0, 1, False),
    ((2, 2, 7, 9), 2, 3, 0, 1, True),
    ((3, 1, 5, 5), 5, 1, 2, 1, False),
]
IDS = [f"{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}-ceil{int(c[5])}" for c in CASES]


def _make(shape, dtype, layout, seed, kind="relu", ninf_window=True):
    """kind: "relu" (half zeros: tied windows), "coarse" (few distinct values: ties everywhere) or
    "special" (NaN, several NaN in one window, +-inf, and with ninf_window a block of -inf)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if kind == "relu":
        x = x.relu()
    elif kind == "coarse":
        x = (x * 1.5).round()
    elif kind == "special":
        flat = x.view(-1)
        idx = torch.randperm(flat.numel(), generator=g)
        flat[idx[:3]] = float("nan")
        flat[idx[3:6]] = float("inf")
        flat[idx[6:9]] = float("-inf")
        x[0, 0, 0, :2] = float("nan")  # two NaN in one window: torch picks the last
        if ninf_window:  # windows of -inf alone: torch's CPU and NCHW CUDA kernels pick the first element
            x[-1, -1, :3, :3] = float("-inf")
    x = x.to(dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "strided":  # every other column of a wider tensor
        x = torch.cat([x, x], dim=-1)[..., ::2]
    return x


def _pool_args(case):
    _, kernel, stride, padding, dilation, ceil_mode = case
    return dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)


def _run(fn, x, grad, kwargs):
    x = x.detach().clone().requires_grad_(True)
    y, idx = fn(x, return_indices=True, **kwargs)
    y.backward(grad)
    return y.detach(), idx, x.grad


def _check(backend, x, kwargs, seed=0, what=""):
    ref_y = F.max_pool2d(x, **kwargs)
    grad = torch.randn(ref_y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(x.dtype)
    y_t, idx_t, dx_t = _run(F.max_pool2d, x, grad, kwargs)
    with fastalex.backend(backend):
        y, idx, dx = _run(fa.max_pool2d, x, grad, kwargs)
    # Values are exact in every dtype (a max rounds nothing); indices are torch's.
    torch.testing.assert_close(y, y_t, **EXACT, equal_nan=True, msg=lambda m: f"forward {what}: {m}")
    assert torch.equal(idx, idx_t), f"indices {what}"
    if x.dtype in LOW_PRECISION:
        x64 = x.double()
        _, _, dx64 = _run(F.max_pool2d, x64, grad.double(), kwargs)
        assert_close(dx, dx_t, ref64=dx64, torch_out=dx_t, what=f"grad_input {what}")
    elif x.device.type == "cpu":  # the same sums in the same order as torch's CPU kernel: equal
        torch.testing.assert_close(dx, dx_t, **EXACT, msg=lambda m: f"grad_input {what}: {m}")
    else:
        assert_close(dx, dx_t, what=f"grad_input {what}")
    assert _layout(y) == _layout(y_t), f"output strides {what}: {y.stride()} vs torch's {y_t.stride()}"
    assert _layout(dx) == _layout(dx_t), f"grad strides {what}: {dx.stride()} vs torch's {dx_t.stride()}"
    return y


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_parity(backend, case, layout):
    x = _make(case[0], torch.float32, layout, seed=1)
    _check(backend, x, _pool_args(case), what=f"{case} {layout}")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("kind", ["coarse", "special"])
@pytest.mark.parametrize("case", CASES[:4], ids=IDS[:4])
def test_ties_and_special_values(backend, kind, case):
    """Ties go to the first maximum, NaN wins (the last NaN of a window), -inf windows keep their first."""
    for layout in ("contiguous", "channels_last"):
        x = _make(case[0], torch.float32, layout, seed=2, kind=kind)
        _check(backend, x, _pool_args(case), what=f"{kind} {layout}")


def _dtypes(backend):
    return [torch.float16, torch.bfloat16] + ([torch.float64] if backend == "cpu" else [])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_dtypes(backend):
    for dtype in _dtypes(backend):
        for case in (CASES[0], CASES[1]):
            x = _make(case[0], dtype, "channels_last", seed=3, kind="coarse")
            _check(backend, x, _pool_args(case), what=str(dtype))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_unbatched_and_module(backend):
    x = _make((4, 9, 10), torch.float32, "contiguous", seed=4)
    with fastalex.backend(backend):
        y = _check(backend, x, dict(kernel_size=3, stride=2, padding=1))
        assert y.shape == (4, 5, 5)
        m = fastalex.nn.MaxPool2d(3, stride=2, return_indices=True)
        assert isinstance(m, torch.nn.MaxPool2d)
        ref = torch.nn.MaxPool2d(3, stride=2, return_indices=True)
        assert repr(m) == repr(ref)
        x4 = _make((2, 3, 9, 9), torch.float32, "contiguous", seed=5)
        for a, b in zip(m(x4), ref(x4)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["torch"])
def test_empty_batch(backend):
    x = torch.randn(0, 3, 9, 9, requires_grad=True)
    with fastalex.backend(backend):
        y, idx = fa.max_pool2d(x, 3, 2, return_indices=True)
    assert y.shape == idx.shape == (0, 3, 4, 4)
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_large_window_keeps_int32_winners():
    """Windows of more than 256 taps do not fit a byte: the winners are int32."""
    from fastalex.ops.max_pool2d import winner_dtype

    assert winner_dtype((16, 16)) == torch.uint8
    assert winner_dtype((17, 16)) == torch.int32
    for backend in KERNEL_BACKENDS:
        x = _make((1, 2, 19, 18), torch.float32, "contiguous", seed=6)
        _check(backend, x, dict(kernel_size=(17, 16), stride=1, padding=(8, 8)), what=backend)


def test_gradcheck_cpu_float64():
    if "cpu" not in fastalex.backends():
        pytest.skip("cpu backend unavailable")
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True)  # distinct values: no ties
    with fastalex.backend("cpu"):
        assert torch.autograd.gradcheck(lambda t: fa.max_pool2d(t, 3, 2, 1, ceil_mode=True), (x,))
        assert torch.autograd.gradcheck(lambda t: fa.max_pool2d(t, (2, 3), (1, 2), dilation=(2, 1)), (x,))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_opcheck(backend):
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    torch.library.opcheck(torch.ops.fastalex.max_pool2d.default,
                          (x, [3, 3], [2, 2], [1, 1], [1, 1], True, False, backend))
    xc = torch.randn(2, 4, 7, 7).to(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(torch.ops.fastalex.max_pool2d.default,
                          (xc, [3, 2], [2, 1], [0, 1], [1, 2], False, False, backend))
    if backend == "triton":  # the fused ReLU
        torch.library.opcheck(torch.ops.fastalex.max_pool2d.default,
                              (xc, [3, 3], [2, 2], [1, 1], [1, 1], False, True, backend))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch.compiler.reset()
    x = _make((2, 3, 9, 9), torch.float32, "channels_last", seed=7).requires_grad_()
    with fastalex.backend(backend):
        fn = torch.compile(lambda t: fa.max_pool2d(t, 3, 2), fullgraph=True, backend="aot_eager")
        y = fn(x)
    y.sum().backward()
    x_t = x.detach().clone().requires_grad_()
    F.max_pool2d(x_t, 3, 2).sum().backward()
    assert torch.equal(y, F.max_pool2d(x, 3, 2))
    assert torch.equal(x.grad, x_t.grad)
    torch.compiler.reset()


@pytest.mark.parametrize("backend", ["triton"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_every_triton_config(backend, channels_last):
    if backend not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    x = _make((2, 5, 11, 10), torch.float32, "channels_last" if channels_last else "contiguous", seed=8, kind="coarse")
    pool = Pool((3, 3), (2, 2), (1, 1), (1, 1))
    y_t, idx_t = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    grad = torch.randn_like(y_t)
    x_r = x.clone().requires_grad_()
    F.max_pool2d(x_r, 3, 2, 1).backward(grad)
    for cfg in pool_kernels.candidates(channels_last):
        y = torch.full_like(y_t, float("nan"))
        winners = torch.full(y_t.shape, 77, dtype=torch.uint8)
        pool_kernels.max_pool2d_forward(x, y, winners, pool, config=cfg)
        assert torch.equal(y, y_t), cfg
        dx = torch.full_like(x, float("nan"))
        pool_kernels.max_pool2d_backward(grad, winners, dx, pool, config=cfg)
        assert_close(dx, x_r.grad, what=str(cfg))


BAD = [
    (dict(kernel_size=0), ValueError, r"max_pool2d: kernel_size must be >= 1, got 0"),
    (dict(kernel_size=(3, 0)), ValueError, r"max_pool2d: kernel_size\[1\] must be >= 1, got 0"),
    (dict(kernel_size=(3, 3, 3)), ValueError, r"max_pool2d: kernel_size must be an int or a pair of ints"),
    (dict(kernel_size=3, stride=0), ValueError, r"max_pool2d: stride must be >= 1, got 0"),
    (dict(kernel_size=3, padding=-1), ValueError, r"max_pool2d: padding must be >= 0, got -1"),
    (dict(kernel_size=3, padding=2), ValueError, r"max_pool2d: padding must be at most half the kernel size"),
    (dict(kernel_size=(4, 2), padding=(2, 2)), ValueError, r"max_pool2d: padding must be at most half"),
    (dict(kernel_size=3, dilation=0), ValueError, r"max_pool2d: dilation must be >= 1, got 0"),
    (dict(kernel_size=2.0), TypeError, r"max_pool2d: kernel_size must be an int, got float"),
    (dict(kernel_size=3, ceil_mode=1), TypeError, r"max_pool2d: ceil_mode must be a bool"),
    (dict(kernel_size=9), ValueError, r"max_pool2d: output size would be 0x0 for input size 8x8"),
    (dict(kernel_size=3, dilation=4), ValueError, r"max_pool2d: output size would be"),
    (dict(kernel_size=2, padding=1, dilation=(1, 9)), ValueError,
     r"max_pool2d: with dilation=\(1, 9\), padding=\(1, 1\) and kernel_size=\(2, 2\), a window along W covers no input"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_arguments(kwargs, error, message):
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(error, match=message):
        fa.max_pool2d(x, **kwargs)


@pytest.mark.parametrize("x,error,message", [
    (torch.ones(1, 2, 8, 8, dtype=torch.int32), TypeError, r"max_pool2d: input must have a floating point dtype"),
    (torch.ones(8, 8), ValueError, r"max_pool2d: input must be 3-D \(C, H, W\) or 4-D \(N, C, H, W\), got 2-D"),
    (torch.ones(1, 1, 2, 8, 8), ValueError, r"max_pool2d: input must be 3-D \(C, H, W\) or 4-D \(N, C, H, W\), got 5-D"),
    (torch.ones(1, 0, 8, 8), ValueError, r"max_pool2d: input must have non-zero C, H and W"),
    ([1.0, 2.0], TypeError, r"max_pool2d: input must be a torch.Tensor, got list"),
], ids=["int", "2-D", "5-D", "zero-channels", "list"])
def test_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        fa.max_pool2d(x, 3)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gpu_parity(backend, dtype, layout):
    if backend not in fastalex.backends():
        pytest.skip(f"{backend} unavailable")
    for case in CASES:
        x = _make(case[0], dtype, layout, seed=9).cuda()
        _check(backend, x, _pool_args(case), what=f"{case}")
        # torch's channels_last CUDA kernel reports index 0 (outside the window) for a window of -inf
        # alone; fastalex reports the window's first element, as torch's other kernels do.
        x = _make(case[0], dtype, layout, seed=10, kind="special", ninf_window=layout != "channels_last").cuda()
        _check(backend, x, _pool_args(case), what=f"special {case}")


@pytest.mark.gpu
@pytest.mark.parametrize("channels_last", [False, True])
def test_gpu_triton_configs(channels_last):
    if "triton" not in fastalex.backends():
        pytest.skip("triton unavailable")
    x = _make((8, 96, 55, 55), torch.float32, "channels_last" if channels_last else "contiguous", seed=11).cuda()
    pool = Pool((3, 3), (2, 2), (0, 0), (1, 1))
    y_t = F.max_pool2d(x, 3, 2)
    grad = torch.randn_like(y_t)
    x_r = x.clone().requires_grad_()
    F.max_pool2d(x_r, 3, 2).backward(grad)
    ran = 0
    for cfg in pool_kernels.candidates(channels_last):
        y = torch.full_like(y_t, float("nan"))
        winners = torch.empty(y_t.shape, dtype=torch.uint8, device="cuda")
        if fits(lambda: pool_kernels.max_pool2d_forward(x, y, winners, pool, config=cfg)):
            assert torch.equal(y, y_t), cfg
            dx = torch.full_like(x, float("nan"))
            pool_kernels.max_pool2d_backward(grad, winners, dx, pool, config=cfg)
            assert_close(dx, x_r.grad, what=str(cfg))
            ran += 1
    assert ran >= 3


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_alexnet_shapes(backend):
    if backend not in fastalex.backends():
        pytest.skip(f"{backend} unavailable")
    for c, hw in ((96, 55), (256, 27), (256, 13)):
        x = _make((8, c, hw, hw), torch.float32, "contiguous", seed=12).cuda()
        _check(backend, x, dict(kernel_size=3, stride=2))
