"""Backend registry and selection.

Backends: "triton" (fastalex/kernels, CUDA tensors; CPU tensors too under TRITON_INTERPRET=1),
"cuda" (the extension's CUDA kernels), "cpu" (the extension's CPU kernels) and "torch" (plain
PyTorch ops, always there: the reference).

Capabilities (the one place that says what each backend takes): DTYPES, LRN_MAX_SIZE and NATIVE_OPS
(the operators a backend runs with kernels of its own; for the others it runs torch's code, e.g. the
cpu and cuda backends run torch's convolution).

Selection, most specific first: `with fastalex.backend(name)`, then `fastalex.set_backend(name)`,
then the FASTALEX_BACKEND environment variable, then the default for the tensor's device: triton
(else cuda) for CUDA tensors, cpu for CPU tensors. If the default is missing (the extension failed
to build, triton is absent) the next one runs and a warning says why, once; a backend that was asked
for by name is never replaced: it works or raises.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import warnings
from typing import Callable, Iterator

import torch

from fastalex.kernels._common import interpreting

NAMES = ("triton", "cuda", "cpu", "torch")
# dtypes each kernel backend takes; "torch" takes whatever torch does.
DTYPES = {
    "triton": (torch.float32, torch.float16, torch.bfloat16),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "cpu": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}
# Largest LRN window per backend: the Triton tiles are sized to the window and unrolled over it; the
# CUDA tiles stage 3 x size rows in 48 KB of shared memory. The cpu backend takes any size.
LRN_MAX_SIZE = {"triton": 64, "cuda": 512}
_POOLING_OPS = frozenset({"local_response_norm", "max_pool2d", "relu_lrn_max_pool2d"})
# relu_max_pool2d: the triton max-pool kernel applies the ReLU; the cuda and cpu backends run relu then max_pool2d.
NATIVE_OPS = {"triton": _POOLING_OPS | {"conv2d", "relu_max_pool2d"}, "cuda": _POOLING_OPS, "cpu": _POOLING_OPS,
              "torch": frozenset()}
_DEFAULT_ORDER = {"cuda": ("triton", "cuda", "torch"), "cpu": ("cpu", "torch")}

_global_choice: str | None = None
_scoped_choice: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastalex_backend", default=None)
_warned: set[tuple[str, str]] = set()


class BackendError(RuntimeError):
    """A backend was asked for that is not available or cannot take the tensor's device."""


@functools.lru_cache(maxsize=None)
def _triton_import_error() -> str | None:
    try:
        import triton  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"triton cannot be imported: {e}"
    return None


def unavailable_reason(name: str) -> str | None:
    """None if backend `name` works on this machine, else why not."""
    if name not in NAMES:
        return f"unknown backend {name!r}; the backends are {', '.join(NAMES)}"
    if name == "torch":
        return None
    if name == "triton":
        err = _triton_import_error()
        if err:
            return err
        if not (torch.cuda.is_available() or interpreting()):
            return "no CUDA device, and TRITON_INTERPRET=1 is not set"
        return None
    from fastalex import _extension

    st = _extension.status()
    if st.module is None:
        return st.cpu_error
    if name == "cuda":
        if not st.with_cuda:
            return st.cuda_error
        if not torch.cuda.is_available():
            return "the CUDA kernels are built, but no CUDA device is visible"
    return None


def backends() -> list[str]:
    """The backends that work on this machine, in the order of NAMES."""
    return [n for n in NAMES if unavailable_reason(n) is None]


def _validate(name: str | None) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or name not in NAMES:
        raise BackendError(f"unknown backend {name!r}; the backends are {', '.join(NAMES)}")
    return name


def set_backend(name: str | None) -> str | None:
    """Sets the default backend for every operator (None: by device). Returns the previous choice."""
    global _global_choice
    previous = _global_choice
    _global_choice = _validate(name)
    return previous


@contextlib.contextmanager
def backend(name: str | None) -> Iterator[None]:
    """`with fastalex.backend("cpu"): ...` runs the block with that backend (None: by device)."""
    token = _scoped_choice.set(_validate(name))
    try:
        yield
    finally:
        _scoped_choice.reset(token)


def current() -> str | None:
    """The backend chosen by name (context, set_backend, FASTALEX_BACKEND), or None for by-device."""
    scoped = _scoped_choice.get()
    if scoped is not None:
        return scoped
    if _global_choice is not None:
        return _global_choice
    env = os.environ.get("FASTALEX_BACKEND") or None
    return _validate(env)


def _device_error(name: str, device: torch.device) -> str | None:
    """Why backend `name` cannot take tensors on `device`, or None."""
    if device.type not in ("cpu", "cuda"):
        return f"fastalex has no kernels for device type {device.type!r}"
    if name == "cuda" and device.type != "cuda":
        return f"backend 'cuda' takes CUDA tensors, got a tensor on {device}"
    if name == "cpu" and device.type != "cpu":
        return f"backend 'cpu' takes CPU tensors, got a tensor on {device}"
    if name == "triton" and device.type == "cpu" and not interpreting():
        return f"backend 'triton' takes CUDA tensors (CPU tensors only with TRITON_INTERPRET=1), got a tensor on {device}"
    return None


def resolve(op: str, device: torch.device | str, limits: Callable[[str], str | None] | None = None) -> str:
    """The backend that runs operator `op` on tensors on `device`.

    limits(name) says why backend `name` cannot take this particular call (a dtype, a size), or
    None. A backend chosen by name that cannot take the call raises; the default order skips it.
    """
    device = torch.device(device)
    chosen = current()
    if chosen is not None:
        why = unavailable_reason(chosen)
        if why is not None:
            raise BackendError(f"{op}: backend {chosen!r} is not available: {why}")
        why = _device_error(chosen, device) or (limits and limits(chosen))
        if why:
            raise BackendError(f"{op}: {why}")
        return chosen
    order = _DEFAULT_ORDER.get(device.type)
    if order is None:
        raise BackendError(f"{op}: fastalex has no kernels for device type {device.type!r}")
    skipped = []
    for name in order:
        why = unavailable_reason(name)
        if why is not None:
            skipped.append(f"{name!r} is not available ({why.splitlines()[0]})")
            continue
        why = _device_error(name, device) or (limits and limits(name))
        if why:
            skipped.append(why)
            continue
        if skipped and (op, name) not in _warned:
            _warned.add((op, name))
            warnings.warn(f"fastalex: {op} on {device.type} runs on backend {name!r} because "
                          + "; ".join(skipped), RuntimeWarning, stacklevel=3)
        return name
    raise BackendError(f"{op}: no backend can take this call on {device}: " + "; ".join(skipped))


def runs_natively(name: str, op: str) -> bool:
    """Whether backend `name` runs operator `op` ("conv2d", "max_pool2d", ...) with its own kernels;
    if not, the call runs torch's code for it."""
    return op in NATIVE_OPS[name]


def limits(name: str, dtype: torch.dtype, lrn_size: int = 0) -> str | None:
    """Why backend `name` cannot take a call on `dtype` (with an LRN window of lrn_size; 0: no LRN), or None."""
    cap = LRN_MAX_SIZE.get(name)
    if lrn_size and cap is not None and lrn_size > cap:
        return f"backend {name!r} takes size <= {cap}, got size={lrn_size}"
    if name != "torch" and dtype not in DTYPES[name]:
        allowed = ", ".join(str(d).replace("torch.", "") for d in DTYPES[name])
        return f"backend {name!r} takes {allowed} tensors, got input of dtype {dtype}"
    return None


@torch.compiler.assume_constant_result
def _for_call_traced(op: str, device_type: str, dtype: torch.dtype, lrn_size: int) -> str:
    # Selection reads locks, context variables and the environment, which dynamo cannot trace: under
    # torch.compile it runs once while tracing and its answer is baked into the graph. A function
    # compiled under one backend keeps it; torch.compiler.reset() forgets it.
    return resolve(op, device_type, functools.partial(limits, dtype=dtype, lrn_size=lrn_size))


def for_call(op: str, input: torch.Tensor, lrn_size: int = 0) -> str:
    """The backend that runs `op` on `input` (its device and dtype; lrn_size: the LRN window, 0 for none)."""
    if torch.compiler.is_compiling():
        return _for_call_traced(op, input.device.type, input.dtype, lrn_size)
    return resolve(op, input.device, functools.partial(limits, dtype=input.dtype, lrn_size=lrn_size))
