"""What the kernel tests share: the backends they run here (triton through the interpreter, the C++ cpu
kernels) and two small helpers."""
from __future__ import annotations

import torch

import fastalex
from fastalex.kernels._common import interpreting


def _kernel_backends() -> list[str]:
    out = []
    if "triton" in fastalex.backends() and interpreting():
        out.append("triton")
    if "cpu" in fastalex.backends():
        out.append("cpu")
    return out


KERNEL_BACKENDS = _kernel_backends()


def fits(run) -> bool:
    """run(); False when the GPU cannot hold the config it launches (the tuner skips those too)."""
    try:
        run()
    except Exception as e:  # noqa: BLE001
        if "OutOfResources" in type(e).__name__:
            return False
        raise
    return True


def layout(t: torch.Tensor) -> tuple[int, ...]:
    """t's strides, those of size-1 dimensions (which mean nothing) as 0."""
    return tuple(0 if n == 1 else s for n, s in zip(t.shape, t.stride()))


def fresh_tuner(monkeypatch, cache_dir) -> None:
    """The tuner as in a new process that times for real (not the interpreter's untimed first
    candidate): no choice in memory, its disk cache in `cache_dir`, FASTALEX_TUNE unset."""
    from fastalex.kernels import _common, _tuning_cache

    monkeypatch.setattr(_common, "interpreting", lambda: False)
    monkeypatch.setattr(_common, "_TUNED", {})
    monkeypatch.setattr(_tuning_cache, "_cache", None)
    monkeypatch.setenv("FASTALEX_TUNING_CACHE", str(cache_dir))
    monkeypatch.delenv("FASTALEX_TUNE", raising=False)
