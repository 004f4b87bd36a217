"""Backend listing and selection: set_backend, the backend() context, FASTALEX_BACKEND, defaults."""
from __future__ import annotations

import warnings

import pytest
import torch

import fastalex
from fastalex import _backends
from fastalex import functional as fa
from fastalex.kernels._common import interpreting


def test_backends_lists_what_works_here():
    names = fastalex.backends()
    assert names == [n for n in _backends.NAMES if n in names]  # canonical order
    assert "torch" in names
    assert ("triton" in names) == (torch.cuda.is_available() or interpreting())
    if not torch.cuda.is_available():
        assert "cuda" not in names
        assert _backends.unavailable_reason("cuda")  # a reason, for `python -m fastalex info`


def test_cpu_backend_builds_here():
    """CI's machine has a C++ compiler: the CPU kernels must build (a failure prints the compiler's log)."""
    assert _backends.unavailable_reason("cpu") is None, _backends.unavailable_reason("cpu")
    assert "cpu" in fastalex.backends()


def test_set_backend_returns_previous():
    assert fastalex.set_backend("torch") is None
    assert fastalex.set_backend("cpu") == "torch"
    assert fastalex.set_backend(None) == "cpu"
    assert _backends.current() is None


def test_context_scopes_and_nests():
    fastalex.set_backend("cpu")
    with fastalex.backend("torch"):
        assert _backends.current() == "torch"
        with fastalex.backend(None):
            assert _backends.current() == "cpu"  # None inside a context defers to set_backend
        assert _backends.current() == "torch"
    assert _backends.current() == "cpu"


def test_context_restores_on_error():
    with pytest.raises(ZeroDivisionError):
        with fastalex.backend("torch"):
            1 / 0
    assert _backends.current() is None


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("FASTALEX_BACKEND", "torch")
    assert _backends.current() == "torch"
    assert _backends.resolve("local_response_norm", torch.device("cpu")) == "torch"
    with fastalex.backend("cpu"):
        assert _backends.current() == "cpu"  # explicit beats the environment
    monkeypatch.setenv("FASTALEX_BACKEND", "bogus")
    with pytest.raises(_backends.BackendError, match="unknown backend 'bogus'"):
        _backends.current()


@pytest.mark.parametrize("bad", ["cudnn", "", "CPU"])
def test_unknown_backend_names(bad):
    with pytest.raises(_backends.BackendError, match="unknown backend"):
        fastalex.set_backend(bad)
    with pytest.raises(_backends.BackendError, match="unknown backend"):
        with fastalex.backend(bad):
            pass


def test_default_by_device():
    assert _backends.resolve("op", torch.device("cpu")) == "cpu"
    if torch.cuda.is_available():
        assert _backends.resolve("op", torch.device("cuda")) == "triton"


def test_unavailable_backend_is_an_error_not_a_fallback():
    if torch.cuda.is_available():
        pytest.skip("the cuda backend is available here")
    x = torch.randn(2, 3, 4, 4)
    with fastalex.backend("cuda"), pytest.raises(_backends.BackendError, match="backend 'cuda' is not available"):
        fa.local_response_norm(x, 3)


def test_backend_that_cannot_take_the_device(monkeypatch):
    # Pretend the cuda backend exists: a CPU tensor must still be refused, naming device and backend.
    monkeypatch.setattr(_backends, "unavailable_reason", lambda name: None)
    x = torch.randn(2, 3, 4, 4)
    with fastalex.backend("cuda"), pytest.raises(_backends.BackendError,
                                                 match="backend 'cuda' takes CUDA tensors, got a tensor on cpu"):
        fa.local_response_norm(x, 3)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with fastalex.backend("triton"), pytest.raises(_backends.BackendError,
                                                   match="backend 'triton' takes CUDA tensors"):
        fa.local_response_norm(x, 3)


def test_unsupported_device_type():
    x = torch.randn(2, 3, 4, 4, device="meta")
    with pytest.raises(_backends.BackendError, match="no kernels for device type 'meta'"):
        fa.local_response_norm(x, 3)


def test_default_falls_back_with_a_warning(monkeypatch):
    real = _backends.unavailable_reason
    monkeypatch.setattr(_backends, "unavailable_reason",
                        lambda name: "pretend the build failed" if name == "cpu" else real(name))
    monkeypatch.setattr(_backends, "_warned", set())
    x = torch.randn(2, 3, 4, 4)
    with pytest.warns(RuntimeWarning, match="runs on backend 'torch' because 'cpu' is not available"):
        y = fa.local_response_norm(x, 3)
    torch.testing.assert_close(y, torch.nn.functional.local_response_norm(x, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fa.local_response_norm(x, 3)  # warned once per op and backend


def test_torch_compile_fullgraph():
    """The op traces into one graph (no breaks); the backend is resolved while tracing."""
    def f(x):
        return fa.local_response_norm(torch.relu(x), 5, 1e-4, 0.75, 2.0) * 2

    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    torch.compiler.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    y.sum().backward()
    grad = x.grad.clone()
    x.grad = None
    f(x).sum().backward()
    torch.testing.assert_close(y, f(x))
    torch.testing.assert_close(grad, x.grad)


def test_torch_compile_inductor_channels_last():
    """Inductor lays out buffers from the fake implementation: its strides must be the real ones."""
    def f(x):
        return fa.local_response_norm(x * 2, 3, 1.0, 0.75, 2.0) + 1

    x = torch.randn(2, 6, 4, 5).to(memory_format=torch.channels_last).requires_grad_()
    torch.compiler.reset()
    compiled = torch.compile(f, fullgraph=True)
    y = compiled(x)
    y.sum().backward()
    grad = x.grad.clone()
    x.grad = None
    y_ref = f(x)
    y_ref.sum().backward()
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(grad, x.grad)
