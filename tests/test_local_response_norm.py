"""LRN parity with torch.nn.functional.local_response_norm on every backend available here."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import fastalex
from fastalex import _backends as _backends_mod
from fastalex import functional as fa
from fastalex.kernels import local_response_norm as lrn_kernels
from backends_here import KERNEL_BACKENDS, fits
from numerics import LOW_PRECISION, assert_close, twice_rounded

# (shape, size, alpha, beta, k): odd and even sizes, C < size, C = 1, 3-D and 5-D, size 1.
CASES = [
    ((2, 7, 5, 6), 5, 1.0, 0.75, 2.0),
    ((2, 40, 3, 5), 5, 0.5, 0.75, 1.0),  # more channels than one Triton chunk
    ((1, 1, 4, 4), 3, 1.0, 0.75, 1.0),
    ((2, 3, 4, 5), 7, 2.0, 0.5, 1.0),
    ((2, 6, 9), 2, 1.0, 1.0, 0.5),
    ((1, 5, 3, 4, 5), 4, 0.3, 1.3, 1.5),
    ((3, 16, 7, 7), 1, 1.0, 0.75, 2.0),
    ((2, 9, 6, 6), 6, 1e-4, 0.75, 2.0),
]


def _make(shape, dtype, layout, seed):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g, dtype=torch.float64)
    if layout == "channels_last":
        assert len(shape) == 4
        x = base.to(dtype).to(memory_format=torch.channels_last)
    elif layout == "strided":  # a non-contiguous view: every other column of a wider tensor
        wide = torch.randn(*shape[:-1], 2 * shape[-1], generator=g, dtype=torch.float64)
        x = wide.to(dtype)[..., ::2]
    elif layout == "transposed":  # spatial dims that cannot merge into one stride
        x = base.to(dtype).transpose(-1, -2).contiguous().transpose(-1, -2)
    else:
        x = base.to(dtype)
    grad = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return x, grad


def _run(backend, x, grad, size, alpha, beta, k):
    x = x.detach().clone().requires_grad_(True)
    with fastalex.backend(backend):
        y = fa.local_response_norm(x, size, alpha, beta, k)
    y.backward(grad)
    return y.detach(), x.grad


def _reference(x, grad, size, alpha, beta, k):
    x = x.detach().clone().requires_grad_(True)
    y = F.local_response_norm(x, size, alpha, beta, k)
    y.backward(grad)
    return y.detach(), x.grad


def _check_parity(backend, x, grad, *args, what=""):
    """Forward and input gradient of `backend` against torch in the same (fp32/fp64) dtype."""
    y, dx = _run(backend, x, grad, *args)
    y_ref, dx_ref = _reference(x, grad, *args)
    assert_close(y, y_ref, what=f"forward {what}")
    assert_close(dx, dx_ref, what=f"grad_input {what}")
    return y, dx


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-n{c[1]}")
def test_parity_fp32(backend, case):
    shape, size, alpha, beta, k = case
    x, grad = _make(shape, torch.float32, "contiguous", seed=hash(case) % 1000)
    _check_parity(backend, x, grad, size, alpha, beta, k)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "strided", "transposed"])
def test_layouts(backend, layout):
    x, grad = _make((2, 11, 5, 7), torch.float32, layout, seed=3)
    y, dx = _check_parity(backend, x, grad, 5, 1.0, 0.75, 2.0)
    if layout == "channels_last":  # output memory format follows the input's
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert dx.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_channels_last_grad(backend):
    # grad_output in another layout than the input, as autograd may hand it over.
    x, grad = _make((2, 8, 4, 6), torch.float32, "channels_last", seed=5)
    grad = grad.contiguous()
    _check_parity(backend, x, grad, 3, 1.0, 0.75, 1.0)


def test_cpu_float64():
    if "cpu" not in fastalex.backends():
        pytest.skip("cpu backend unavailable")
    x, grad = _make((2, 7, 4, 5), torch.float64, "contiguous", seed=7)
    _check_parity("cpu", x, grad, 5, 1.0, 0.75, 2.0)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision(backend, dtype):
    if backend == "triton" and dtype == torch.bfloat16:
        pytest.skip("Triton's interpreter has no bfloat16 (the GPU tests cover it)")
    x64, grad64 = _make((2, 12, 5, 5), torch.float64, "contiguous", seed=11)
    x64 = x64.abs() * 3  # post-ReLU magnitudes, where the normalization matters
    args = (5, 1.0, 0.75, 2.0)
    y64, dx64 = _reference(x64, grad64, *args)
    x, grad = x64.to(dtype), grad64.to(dtype)
    y, dx = _run(backend, x, grad, *args)
    try:
        y_t, dx_t = _reference(x, grad, *args)
    except RuntimeError:
        # torch has no fp16/bf16 LRN on the CPU (avg_pool3d)
        y_t, dx_t = twice_rounded(y64, dtype), twice_rounded(dx64, dtype)
    assert_close(y, y_t, ref64=y64, torch_out=y_t, what="forward")
    assert_close(dx, dx_t, ref64=dx64, torch_out=dx_t, what="grad_input")


def _special_inputs():
    x, grad = _make((1, 37, 2, 3), torch.float32, "contiguous", seed=13)
    x[0, 2, 0, 0] = float("inf")
    x[0, 20, 1, 1] = float("nan")
    x[0, 30, 0, 1] = -float("inf")
    grad[0, 12, 0, 2] = float("inf")
    return x, grad


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_special_values(backend):
    # inf and NaN land where torch puts them, forward and backward: an inf must not poison windows
    # it has left, nor (through 0 * inf) rows it never reached.
    x, grad = _special_inputs()
    _check_parity(backend, x, grad, 5, 1.0, 0.75, 2.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_half_types_load_twice_as_far_ahead(monkeypatch, dtype):
    """2-byte rows carry half the bytes per step: the untuned sequential default prefetches 8 rows for
    them, 4 for fp32, in both directions (bytes in flight, benchmarks/KERNELS.md)."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("triton unavailable")
    firsts = []

    def first(key, candidates, launch):
        firsts.append(candidates[0])
        return candidates[0]

    monkeypatch.setattr(lrn_kernels._common, "tuned_config", first)
    x = torch.rand(2, 7, 12, dtype=torch.float64).to(dtype)  # NCHW as (N, C, S): sequential first both ways
    lrn_kernels.lrn_forward(x, torch.empty_like(x), 5, 1e-4, 0.75, 2.0)
    lrn_kernels.lrn_backward(x, torch.ones_like(x), torch.empty_like(x), 5, 1e-4, 0.75, 2.0)
    assert [(c.strategy, c.prefetch) for c in firsts] == [("sequential", 4 if dtype == torch.float32 else 8)] * 2


def test_special_values_every_triton_config():
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("needs the Triton interpreter")
    x, grad = _special_inputs()
    y_ref, dx_ref = _reference(x, grad, 5, 1.0, 0.75, 2.0)
    x3, g3 = x.view(1, 37, -1), grad.view(1, 37, -1)
    for cfg in _distinct_strategies(lrn_kernels.forward_candidates(5, False)):
        y = torch.full_like(x, 7.0)
        lrn_kernels.lrn_forward(x3, y.view(1, 37, -1), 5, 1.0, 0.75, 2.0, config=cfg)
        assert_close(y, y_ref, what=f"forward {cfg}")
    for cfg in _distinct_strategies(lrn_kernels.backward_candidates(5, False)):
        dx = torch.full_like(x, 7.0)
        lrn_kernels.lrn_backward(x3, g3, dx.view(1, 37, -1), 5, 1.0, 0.75, 2.0, config=cfg)
        assert_close(dx, dx_ref, what=f"backward {cfg}")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["torch"])
@pytest.mark.parametrize("shape", [(0, 4, 3, 3), (2, 0, 3, 3), (2, 4, 0, 3), (2, 4, 0)])
def test_empty(backend, shape):
    x = torch.randn(shape, requires_grad=True)
    with fastalex.backend(backend):
        y = fa.local_response_norm(x, 3)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_double_backward_is_refused(backend):
    """The backward kernels have no derivative of their own: asking for one raises, never a wrong value."""
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    with fastalex.backend(backend):
        y = fa.local_response_norm(x, 3)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="autograd"):
        torch.autograd.grad(g.sum(), x)


def test_triton_launcher_limits():
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("needs the Triton interpreter")
    many = torch.empty(1, 1, 1).expand(70000, 1, 1)
    with pytest.raises(ValueError, match="at most 65535 samples"):
        lrn_kernels.lrn_forward(many, torch.empty(70000, 1, 1), 3, 1e-4, 0.75, 1.0)
    wide = torch.empty_strided((1, 2, 2), (0, 2**31, 1), device="meta")  # the check never touches data
    with pytest.raises(ValueError, match="fewer than 2\\^31 per sample"):
        lrn_kernels.lrn_forward(wide, torch.empty(1, 2, 2, device="meta"), 3, 1e-4, 0.75, 1.0)


def _distinct_strategies(candidates):
    """One config per (strategy, num_warps, prefetch): every code path the tuner may pick, once."""
    seen = {}
    for cfg in candidates:
        seen.setdefault((cfg.strategy, cfg.num_warps, cfg.prefetch), cfg)
    return list(seen.values())




@pytest.mark.parametrize("size", [1, 2, 5, 8, 9, 64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_configs(size, channels_last):
    """Every forward and backward strategy the tuner may pick computes the same thing."""
    if "triton" not in KERNEL_BACKENDS:
        pytest.skip("needs the Triton interpreter")
    x, grad = _make((2, 37, 3, 4), torch.float32, "channels_last" if channels_last else "contiguous", seed=17)
    if channels_last:
        grad = grad.to(memory_format=torch.channels_last)
    args = (size, 1.0, 0.75, 2.0)
    y_ref, dx_ref = _reference(x, grad, *args)
    strategies = set()
    for cfg in _distinct_strategies(lrn_kernels.forward_candidates(size, channels_last)):
        y = torch.full_like(x, float("nan"))  # poison: every element must be written
        lrn_kernels.lrn_forward(x.view(2, 37, -1), y.view(2, 37, -1), *args, config=cfg)
        assert_close(y, y_ref, what=f"forward {cfg}")
        strategies.add(cfg.strategy)
    for cfg in _distinct_strategies(lrn_kernels.backward_candidates(size, channels_last)):
        dx = torch.full_like(x, float("nan"))
        lrn_kernels.lrn_backward(x.view(2, 37, -1), grad.view(2, 37, -1), dx.view(2, 37, -1), *args, config=cfg)
        assert_close(dx, dx_ref, what=f"backward {cfg}")
        strategies.add(cfg.strategy)
    expected = {"shift", "dot"} | ({"sequential"} if size <= lrn_kernels.MAX_SEQUENTIAL_SIZE else set())
    assert strategies == expected


def test_gradcheck_cpu():
    if "cpu" not in fastalex.backends():
        pytest.skip("cpu backend unavailable")
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64, requires_grad=True)
    with fastalex.backend("cpu"):
        assert torch.autograd.gradcheck(lambda t: fa.local_response_norm(t, 3, 1.0, 0.75, 1.0), (x,))
        assert torch.autograd.gradcheck(lambda t: fa.local_response_norm(t, 4, 0.5, 1.3, 2.0), (x,))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_opcheck(backend):
    x = torch.randn(2, 6, 3, 4, requires_grad=True)
    torch.library.opcheck(torch.ops.fastalex.local_response_norm.default, (x, 5, 1.0, 0.75, 2.0, backend))
    xc = torch.randn(2, 6, 3, 4).to(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(torch.ops.fastalex.local_response_norm.default, (xc, 3, 1.0, 0.75, 2.0, backend))


def test_module_is_drop_in():
    m = fastalex.nn.LocalResponseNorm(5, alpha=1.0, beta=0.75, k=2.0)
    assert isinstance(m, torch.nn.LocalResponseNorm)
    ref = torch.nn.LocalResponseNorm(5, alpha=1.0, beta=0.75, k=2.0)
    assert repr(m).endswith(repr(ref)[len("LocalResponseNorm"):])
    x = torch.randn(2, 8, 4, 4)
    assert_close(m(x), ref(x), what="module")


def test_default_backend_on_cpu_is_cpu():
    if "cpu" not in fastalex.backends():
        pytest.skip("cpu backend unavailable")
    from fastalex import _backends

    assert _backends.resolve("local_response_norm", torch.device("cpu")) == "cpu"


# --- bad input: each error names the argument ----------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool], ids=str)
def test_rejects_non_float(dtype):
    with pytest.raises(TypeError, match="input must have a floating point dtype"):
        fa.local_response_norm(torch.zeros(2, 3, 4, 4, dtype=dtype), 3)


@pytest.mark.parametrize("shape", [(4,), (2, 3)])
def test_rejects_low_dim(shape):
    with pytest.raises(ValueError, match="input must have at least 3 dimensions"):
        fa.local_response_norm(torch.randn(shape), 3)


@pytest.mark.parametrize("size", [0, -2])
def test_rejects_size_below_one(size):
    with pytest.raises(ValueError, match="size must be >= 1"):
        fa.local_response_norm(torch.randn(2, 3, 4, 4), size)


@pytest.mark.parametrize("size", [2.5, True, "5"])
def test_rejects_non_int_size(size):
    with pytest.raises(TypeError, match="size must be an int"):
        fa.local_response_norm(torch.randn(2, 3, 4, 4), size)


@pytest.mark.parametrize("name", ["alpha", "beta", "k"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_rejects_non_finite_params(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        fa.local_response_norm(torch.randn(2, 3, 4, 4), 3, **{name: value})


@pytest.mark.parametrize("name", ["alpha", "beta", "k"])
def test_rejects_non_number_params(name):
    with pytest.raises(TypeError, match=f"{name} must be a real number"):
        fa.local_response_norm(torch.randn(2, 3, 4, 4), 3, **{name: "0.1"})


def test_rejects_triton_float64():
    if "triton" not in fastalex.backends():
        pytest.skip("triton unavailable")
    with fastalex.backend("triton"), pytest.raises(fastalex.BackendError, match="backend 'triton' takes float32"):
        fa.local_response_norm(torch.randn(2, 3, 4, 4, dtype=torch.float64), 3)


@pytest.mark.parametrize("backend", sorted(_backends_mod.LRN_MAX_SIZE))
def test_size_beyond_a_backends_limit(backend, monkeypatch):
    """Named: a clear error. By default: the next backend in the order runs, with a warning."""
    from fastalex import _backends

    monkeypatch.setattr(_backends, "unavailable_reason", lambda name: None)  # pretend every backend exists
    monkeypatch.setattr(_backends, "_warned", set())
    cap = _backends.LRN_MAX_SIZE[backend]

    def limits(name):
        return _backends.limits(name, torch.float32, cap + 1)

    with fastalex.backend(backend), pytest.raises(fastalex.BackendError,
                                                  match=f"backend '{backend}' takes size <= {cap}, got size={cap + 1}"):
        _backends.resolve("local_response_norm", "cuda", limits)
    expected = {"triton": "cuda", "cuda": "torch"}[backend]
    with pytest.warns(RuntimeWarning, match=f"takes size <= {cap}"):
        assert _backends.resolve("local_response_norm", "cuda", limits) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # at the cuda cap, triton is skipped with a warning
        at_cap = _backends.resolve("local_response_norm", "cuda", lambda name: _backends.limits(name, torch.float32, cap))
    assert at_cap == backend


def test_default_skips_a_backend_without_the_dtype(monkeypatch):
    """float64 on a GPU: triton has no float64, so the default goes on to the cuda backend."""
    from fastalex import _backends

    monkeypatch.setattr(_backends, "unavailable_reason", lambda name: None)
    monkeypatch.setattr(_backends, "_warned", set())
    with pytest.warns(RuntimeWarning, match="backend 'triton' takes float32, float16, bfloat16 tensors"):
        got = _backends.resolve("local_response_norm", "cuda",
                                lambda name: _backends.limits(name, torch.float64, 5))
    assert got == "cuda"


def test_large_size_on_cpu():
    if "cpu" not in fastalex.backends():
        pytest.skip("cpu backend unavailable")
    x, grad = _make((2, 5, 3, 3), torch.float64, "contiguous", seed=31)
    _check_parity("cpu", x, grad, 1000, 1.0, 0.75, 2.0)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gpu_parity(backend, dtype, layout):
    if backend not in fastalex.backends():
        pytest.skip(f"{backend} unavailable")
    x64, grad64 = _make((4, 96, 13, 13), torch.float64, "contiguous", seed=23)
    x64 = (x64.abs() * 3).cuda()
    grad64 = grad64.cuda()
    if layout == "channels_last":
        x64, grad64 = x64.to(memory_format=torch.channels_last), grad64.to(memory_format=torch.channels_last)
    args = (5, 1.0, 0.75, 2.0)
    y64, dx64 = _reference(x64, grad64, *args)
    x, grad = x64.to(dtype), grad64.to(dtype)
    y, dx = _run(backend, x, grad, *args)
    y_t, dx_t = _reference(x, grad, *args)
    if dtype in LOW_PRECISION:
        assert_close(y, y_t, ref64=y64, torch_out=y_t, what="forward")
        assert_close(dx, dx_t, ref64=dx64, torch_out=dx_t, what="grad_input")
    else:
        assert_close(y, y_t, what="forward")
        assert_close(dx, dx_t, what="grad_input")
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("channels_last", [False, True])
def test_gpu_triton_configs(dtype, channels_last):
    """Every config the tuner may pick, compiled for the GPU, on an AlexNet-like shape."""
    if "triton" not in fastalex.backends():
        pytest.skip("triton unavailable")
    x64, grad64 = _make((4, 96, 13, 13), torch.float64, "contiguous", seed=29)
    x64, grad64 = (x64.abs() * 3).cuda(), grad64.cuda()
    if channels_last:
        x64, grad64 = x64.to(memory_format=torch.channels_last), grad64.to(memory_format=torch.channels_last)
    args = (5, 1.0, 0.75, 2.0)
    y64, dx64 = _reference(x64, grad64, *args)
    x, grad = x64.to(dtype), grad64.to(dtype)
    y_t, dx_t = _reference(x, grad, *args)
    x3, g3 = x.view(4, 96, -1), grad.view(4, 96, -1)
    ran = 0
    for cfg in lrn_kernels.forward_candidates(5, channels_last):
        y = torch.full_like(x, float("nan"))
        if fits(lambda: lrn_kernels.lrn_forward(x3, y.view(4, 96, -1), *args, config=cfg)):
            assert_close(y, y_t, ref64=y64, torch_out=y_t, what=f"forward {cfg}")
            ran += 1
    for cfg in lrn_kernels.backward_candidates(5, channels_last):
        dx = torch.full_like(x, float("nan"))
        if fits(lambda: lrn_kernels.lrn_backward(x3, g3, dx.view(4, 96, -1), *args, config=cfg)):
            assert_close(dx, dx_t, ref64=dx64, torch_out=dx_t, what=f"backward {cfg}")
            ran += 1
    assert ran >= 4


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_alexnet_shape(backend):
    """The shapes of the benchmark, fp32, every element checked."""
    if backend not in fastalex.backends():
        pytest.skip(f"{backend} unavailable")
    x = torch.rand(8, 96, 55, 55, device="cuda") * 4
    grad = torch.randn_like(x)
    _check_parity(backend, x, grad, 5, 1e-4, 0.75, 2.0)
