"""Public functions: argument checks, then dispatch to a backend (fastalex/_backends.py)."""
from __future__ import annotations

import functools
import math
import numbers

import torch
import torch.nn.functional as F

from fastalex import _backends
from fastalex import ops as _ops

# dtypes each kernel backend takes; "torch" takes whatever torch does.
_DTYPES = {
    "triton": (torch.float32, torch.float16, torch.bfloat16),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "cpu": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}
# Largest LRN window per backend: the Triton tiles are sized to the window and unrolled over it; the
# CUDA tiles stage 3 x size rows in 48 KB of shared memory. The cpu backend takes any size.
LRN_MAX_SIZE = {"triton": 64, "cuda": 512}


def _check_tensor(op: str, name: str, t, min_dim: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must have a floating point dtype, got {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{op}: {name} must have at least {min_dim} dimensions (N, C, ...), "
                         f"got {t.dim()} with shape {tuple(t.shape)}")


def _check_int(op: str, name: str, v, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v}")
    return int(v)


def _check_finite(op: str, name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {type(v).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"{op}: {name} must be a finite number, got {v}")
    return float(v)


def _dtype_limit(backend: str, dtype: torch.dtype) -> str | None:
    if backend != "torch" and dtype not in _DTYPES[backend]:
        allowed = ", ".join(str(d).replace("torch.", "") for d in _DTYPES[backend])
        return f"backend {backend!r} takes {allowed} tensors, got input of dtype {dtype}"
    return None


def _lrn_limits(backend: str, dtype: torch.dtype, size: int) -> str | None:
    cap = LRN_MAX_SIZE.get(backend)
    if cap is not None and size > cap:
        return f"backend {backend!r} takes size <= {cap}, got size={size}"
    return _dtype_limit(backend, dtype)


@torch.compiler.assume_constant_result
def _lrn_backend_traced(device_type: str, dtype: torch.dtype, size: int) -> str:
    # Backend selection reads locks, context variables and the environment, which dynamo cannot
    # trace: under torch.compile it runs once while tracing and its answer is baked into the graph.
    # A function compiled under one backend keeps it; torch.compiler.reset() forgets it.
    return _backends.resolve("local_response_norm", device_type,
                             functools.partial(_lrn_limits, dtype=dtype, size=size))


def local_response_norm(input: torch.Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,
                        k: float = 1.0) -> torch.Tensor:
    """Local response normalization across channels, as torch.nn.functional.local_response_norm.

    b_c = a_c / (k + alpha / size * sum_{c'} a_{c'}^2)^beta over the window
    [c - size // 2, c + (size - 1) // 2], zero-padded. `input` is (N, C, *), dim >= 3.

    Note the alpha / size: the paper's alpha = 1e-4 with n = 5 (applied to the raw sum) is
    alpha = 5e-4 here.
    """
    op = "local_response_norm"
    _check_tensor(op, "input", input, 3)
    size = _check_int(op, "size", size, 1)
    alpha = _check_finite(op, "alpha", alpha)
    beta = _check_finite(op, "beta", beta)
    k = _check_finite(op, "k", k)
    if torch.compiler.is_compiling():
        backend = _lrn_backend_traced(input.device.type, input.dtype, size)
    else:
        backend = _backends.resolve(op, input.device, functools.partial(_lrn_limits, dtype=input.dtype, size=size))
    if backend == "torch":
        if input.numel() == 0:  # torch's view(..., -1) cannot infer a size from zero elements
            return input * 0
        return F.local_response_norm(input, size, alpha, beta, k)
    return _ops.local_response_norm(input, size, alpha, beta, k, backend)
